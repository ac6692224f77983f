//! Writing HTTP/1.1 answers: the head (status line, the handler's headers, `content-length`,
//! `date`, `connection: close` when closing) and the body in one write, `100 Continue`, bare
//! refusals of heads that cannot be served, and a close that lets the answer arrive.

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::server::Body;

/// Bodies at most this long go out in the same write as their head.
const INLINE_BODY: usize = 16 * 1024;
/// What a closing connection reads and discards at most, so that unread request bytes do not
/// turn the close into a reset that could destroy the answer in flight.
const DRAIN_AT_MOST: usize = 256 * 1024;
const DRAIN_FOR: Duration = Duration::from_millis(500);

thread_local! {
    /// The `date` header's value, made once a second per thread.
    static DATE_CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends the `date` header's value to `out`.
fn date(out: &mut Vec<u8>) {
    let now = crate::clock::system_now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(cache.1.as_bytes());
    })
}

/// Writes `response`; `head_only` for an answer to HEAD, `close` to say the connection ends.
pub(super) async fn response(
    write: &mut OwnedWriteHalf,
    response: Response<Body>,
    head_only: bool,
    close: bool,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(
        256 + if body.len() <= INLINE_BODY {
            body.len()
        } else {
            0
        },
    );
    // Pieces appended rather than `write!`: core::fmt cost about a thousand instructions per
    // answer here.
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(DATE) {
        out.extend_from_slice(b"date: ");
        date(&mut out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if head_only {
        return write.write_all(&out).await;
    }
    if body.len() <= INLINE_BODY {
        out.extend_from_slice(&body);
        write.write_all(&out).await
    } else {
        write.write_all(&out).await?;
        write.write_all(&body).await
    }
}

/// Tells a caller that sent `Expect: 100-continue` to send its body.
pub(super) async fn continue_100(write: &mut OwnedWriteHalf) -> std::io::Result<()> {
    write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await
}

/// Answers a head that cannot be served (400, 431, 501) with an empty body.
pub(super) async fn refusal(write: &mut OwnedWriteHalf, status: StatusCode) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ndate: ",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    )
    .into_bytes();
    date(&mut head);
    head.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    write.write_all(&head).await
}

/// Ends the connection: our side is shut, and what the caller still sends is read and dropped
/// for a moment, so that the kernel does not answer it with a reset that could destroy the
/// answer before the caller reads it.
pub(super) async fn close(read: &mut OwnedReadHalf, write: &mut OwnedWriteHalf) {
    let _ = write.shutdown().await;
    let drain = async {
        // On the heap, and only while closing: the connection's future stays small.
        let mut sink = vec![0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_AT_MOST {
            match read.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
}
