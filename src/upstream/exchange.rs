//! One HTTP/1.1 exchange on an upstream connection: the request written in one buffer, the
//! answer's head parsed with httparse and its body read by `Content-Length`, chunks, or to the
//! end of the connection; and whether the connection may carry the next request.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Headers an answer may carry; Tencent sends about eight.
const MAX_HEADERS: usize = 64;
/// An answer's head larger than this is not Tencent's.
const MAX_HEAD: usize = 64 * 1024;

/// A plain or TLS connection.
#[derive(Debug)]
pub(super) enum Stream {
    /// `http://` (tests, the emulator).
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection and what was read past the last answer (nothing, when it is reusable).
#[derive(Debug)]
pub(super) struct Conn {
    stream: Stream,
    buf: BytesMut,
}

/// An answer read whole.
pub(super) struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, unchunked.
    pub body: Bytes,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// How an exchange failed: before anything was written (nothing reached the server) or after.
#[derive(Debug)]
pub(super) enum Failed {
    /// The request could not be written.
    Write(std::io::Error),
    /// The request was written (it may have reached Tencent); the answer could not be read.
    Read(String),
}

impl Conn {
    pub(super) fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// Whether an idle connection is still open: reading it now finds nothing waiting. The
    /// server closing it (end of stream) or sending anything unasked both rule it out.
    pub(super) fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut read = ReadBuf::new(&mut byte);
        matches!(Pin::new(self).poll_read(&mut cx, &mut read), Poll::Pending)
    }

    /// Writes `head` and `body`, then reads the answer, of at most `max` body bytes.
    pub(super) async fn exchange(
        &mut self,
        head: &[u8],
        body: &[u8],
        max: usize,
    ) -> Result<Answer, Failed> {
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head);
        out.extend_from_slice(body);
        self.write_all(&out).await.map_err(Failed::Write)?;
        self.flush().await.map_err(Failed::Write)?;
        self.buf.clear();
        self.read_answer(max).await.map_err(Failed::Read)
    }

    /// Reads what the connection has into the buffer: 0 at its end.
    async fn read_some(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        let Conn { stream, buf } = self;
        match stream {
            Stream::Plain(s) => s.read_buf(buf).await,
            Stream::Tls(s) => s.read_buf(buf).await,
        }
    }

    async fn read_answer(&mut self, max: usize) -> Result<Answer, String> {
        let (status, length, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(at)) => {
                    let parsed = head_of(&response)?;
                    self.buf.advance(at);
                    break parsed;
                }
                Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => self.more().await?,
                Ok(httparse::Status::Partial) => return Err("answer head too large".into()),
                Err(e) => return Err(format!("answer head: {e}")),
            }
        };
        let (body, reusable) = match length {
            _ if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED => {
                (Bytes::new(), !close)
            }
            Length::Fixed(n) if n > max as u64 => return Err(format!("answer of {n} bytes")),
            Length::Fixed(n) => {
                while (self.buf.len() as u64) < n {
                    self.more().await?;
                }
                (self.buf.split_to(n as usize).freeze(), !close)
            }
            Length::Chunked => (super::chunked::read(self, max).await?, !close),
            Length::ToEnd => {
                // Only the connection's end ends such a body: a reset mid-way is an error.
                while self.read_some().await.map_err(|e| e.to_string())? > 0 {
                    if self.buf.len() > max {
                        return Err("answer too large".into());
                    }
                }
                (self.buf.split().freeze(), false)
            }
        };
        Ok(Answer {
            status,
            body,
            reusable: reusable && self.buf.is_empty(),
        })
    }

    /// Reads more of the answer into the buffer.
    pub(super) async fn more(&mut self) -> Result<(), String> {
        match self.read_some().await {
            Ok(0) => Err("connection closed before the answer was complete".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The bytes read and not yet taken.
    pub(super) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

/// How the answer's body ends.
enum Length {
    Fixed(u64),
    Chunked,
    ToEnd,
}

/// The status, the body's length and whether the server closes the connection after it.
fn head_of(response: &httparse::Response<'_, '_>) -> Result<(StatusCode, Length, bool), String> {
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("answer without a status")?;
    let mut length = Length::ToEnd;
    let mut close = response.version == Some(0);
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or("bad Content-Length")?;
            if !matches!(length, Length::Chunked) {
                length = Length::Fixed(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                length = Length::Chunked;
            } else {
                return Err("unsupported Transfer-Encoding".into());
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = h.value.to_ascii_lowercase();
            close = (close && !value.windows(10).any(|w| w == b"keep-alive"))
                || value.windows(5).any(|w| w == b"close");
        }
    }
    Ok((status, length, close))
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
