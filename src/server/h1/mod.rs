//! timgate's own HTTP/1.1 connection, built for callers who wait: once a request's head and body
//! are read, the connection holds no buffer while the answer is prepared (hyper keeps 16 KiB of
//! read and write buffers per connection whatever it is doing). It reads heads with httparse,
//! frames bodies by RFC 9112, answers in order (pipelining), notices a caller that hangs up while
//! it waits (dropping the request, which takes it out of its queue), and closes on the header and
//! idle timeouts, on eviction and, between requests, on drain. A connection that opens with the
//! HTTP/2 preface is handed to hyper's HTTP/2 server.

mod body;
mod head;
mod write;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use http::{Method, Request, Response};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{oneshot, watch};

pub use body::H1Body;
use body::Returned;
use head::{Framing, Refused};

use super::conn::{Close, ConnState, InFlight, Timeouts};
use super::registry::Registry;
use super::{Abort, Body, MAX_HEAD_BYTES, RequestBody};

/// How a connection's turn at reading a head ended.
enum Next {
    /// A request head (its bytes taken from the buffer); boxed, as it is far larger than the
    /// other outcomes.
    Head(Box<head::Head>),
    /// The connection opened with the HTTP/2 preface; these bytes were read.
    H2(BytesMut),
    /// Close quietly: end of stream, a timeout, an eviction, a drain.
    Close,
    /// Answer this status, then close.
    Refuse(Refused),
}

/// Serves HTTP/1.1 on `stream` until it closes; returns the stream and what was read of it when
/// the caller turns out to speak HTTP/2 (prior knowledge).
pub(super) async fn serve<F, Fut>(
    stream: TcpStream,
    conn: &Arc<ConnState>,
    handler: &F,
    registry: &Registry,
    timeouts: Timeouts,
    draining: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, BytesMut)>
where
    F: Fn(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Result<Response<Body>, Abort>>,
{
    let (mut read, mut write) = stream.into_split();
    let mut pending = BytesMut::new();
    let mut first = true;
    loop {
        let next = read_head(
            &mut read,
            &mut pending,
            conn,
            registry,
            timeouts,
            draining,
            first,
        )
        .await;
        let head = match next {
            Next::Head(head) => head,
            Next::H2(prefix) => return read.reunite(write).ok().map(|s| (s, prefix)),
            Next::Close => return None,
            Next::Refuse(Refused(status)) => {
                let _ = write::refusal(&mut write, status).await;
                write::close(&mut read, &mut write).await;
                return None;
            }
        };
        first = false;
        let in_flight = InFlight::new(conn.clone());
        if head.expect_continue
            && head.framing != Framing::Length(0)
            && write::continue_100(&mut write).await.is_err()
        {
            return None;
        }
        let head_only = head.request.method() == Method::HEAD;
        let keep_alive = head.keep_alive;
        let (back, returned) = oneshot::channel();
        // The head's buffer is freed here: the body starts from an exact copy of what followed.
        let buffered = BytesMut::from(&pending[..]);
        drop(pending);
        let body = H1Body::new(read, buffered, head.framing, back);
        let request = head.request.map(|()| RequestBody::H1(body));
        // Boxed once, so that the handler's future is not copied into this one's state twice.
        let answering = Box::pin(handler(request));
        let Some((answer, returned)) = answer(answering, returned).await else {
            return None; // the caller hung up while waiting
        };
        let Ok(response) = answer else {
            return None; // the handler asked to drop the connection
        };
        let close = !keep_alive || !returned.complete || *draining.borrow();
        drop(in_flight);
        read = returned.read;
        pending = returned.leftover;
        if write::response(&mut write, response, head_only, close)
            .await
            .is_err()
        {
            return None;
        }
        if close {
            write::close(&mut read, &mut write).await;
            return None;
        }
    }
}

/// Runs the handler to its answer, watching the connection once the body is read: a caller
/// that hangs up cancels its request (None).
async fn answer<Fut>(
    mut answering: Pin<Box<Fut>>,
    mut returned: oneshot::Receiver<Returned>,
) -> Option<(Result<Response<Body>, Abort>, Returned)>
where
    Fut: Future<Output = Result<Response<Body>, Abort>>,
{
    let mut back: Option<Returned> = None;
    let mut watching = true;
    loop {
        tokio::select! {
            answer = answering.as_mut() => {
                let back = match back {
                    Some(back) => back,
                    // The handler dropped the request, and with it the body, which sends.
                    None => returned.await.ok()?,
                };
                return Some((answer, back));
            }
            got = &mut returned, if back.is_none() => back = Some(got.ok()?),
            hung_up = hang_up(back.as_mut()), if back.is_some() && watching => {
                if hung_up {
                    return None;
                }
                watching = false;
            }
        }
    }
}

/// Resolves true when the caller closes its end, false when it sends more (a pipelined request,
/// kept for later).
async fn hang_up(back: Option<&mut Returned>) -> bool {
    let Some(back) = back else {
        return std::future::pending().await;
    };
    loop {
        if back.read.readable().await.is_err() {
            return true;
        }
        // On the stack of this poll only, never in the waiting future's state.
        let mut probe = [0u8; 256];
        match back.read.try_read(&mut probe) {
            Ok(0) => return true,
            Ok(n) => {
                back.leftover.extend_from_slice(&probe[..n]);
                return false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return true,
        }
    }
}

/// Reads until `pending` holds a complete head, closing on a timeout, an eviction or (with
/// nothing half-read) a drain.
async fn read_head(
    read: &mut OwnedReadHalf,
    pending: &mut BytesMut,
    conn: &ConnState,
    registry: &Registry,
    timeouts: Timeouts,
    draining: &mut watch::Receiver<bool>,
    first: bool,
) -> Next {
    const PREFACE: &[u8] = b"PRI ";
    loop {
        // The HTTP/2 preface starts "PRI * HTTP/2.0"; no HTTP/1.1 method is PRI.
        let maybe_h2 = first && PREFACE.starts_with(&pending[..pending.len().min(PREFACE.len())]);
        if maybe_h2 && pending.len() >= PREFACE.len() {
            return Next::H2(std::mem::take(pending));
        }
        if !pending.is_empty() && !maybe_h2 {
            match head::parse(pending) {
                Ok(Some(head)) => return Next::Head(Box::new(head)),
                Ok(None) if pending.len() >= MAX_HEAD_BYTES => {
                    return Next::Refuse(Refused(
                        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    ));
                }
                Ok(None) => {}
                Err(refused) => return Next::Refuse(refused),
            }
        }
        if *draining.borrow() && pending.is_empty() {
            return Next::Close;
        }
        let deadline = conn.deadline(&timeouts);
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            readable = read.readable() => {
                if readable.is_err() {
                    return Next::Close;
                }
                // Room to read: 2 KiB at first, doubling, never past the head's cap.
                let len = pending.len();
                let room = len.max(2048).min(MAX_HEAD_BYTES.saturating_sub(len)).max(1);
                pending.resize(len + room, 0);
                match read.try_read(&mut pending[len..]) {
                    Ok(0) => return Next::Close,
                    Ok(n) => {
                        pending.truncate(len + n);
                        // Never the HTTP/2 preface here: that goes to hyper, which notes it.
                        conn.read(&pending[len..], false);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => pending.truncate(len),
                    Err(_) => return Next::Close,
                }
            }
            () = sleep => {
                if let Some((at, why)) = conn.deadline(&timeouts)
                    && at <= tokio::time::Instant::now()
                {
                    registry.closed_by_us(why.reason());
                    return Next::Close;
                }
            }
            () = conn.kick.notified() => {
                if conn.evicted() {
                    registry.closed_by_us(Close::Evicted.reason());
                    return Next::Close;
                }
            }
            changed = draining.changed() => {
                if changed.is_err() {
                    return Next::Close; // the listener is gone
                }
            }
        }
    }
}
