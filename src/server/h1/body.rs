//! A request body read straight from the connection: Content-Length or chunked, in frames the
//! size of what arrived. The body owns the connection's read half while it is read and hands it
//! back (with any bytes past the body) when it ends or is dropped, so that a caller waiting in a
//! queue holds no read buffer at all.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::oneshot;

use super::head::Framing;

/// Largest read a body makes at once.
const READ_AT_MOST: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// What a body gives back to its connection.
#[derive(Debug)]
pub struct Returned {
    /// The connection's read half.
    pub read: OwnedReadHalf,
    /// Bytes read past the end of the body (a pipelined request).
    pub leftover: BytesMut,
    /// False when the body was dropped before its end: the connection cannot find the next
    /// request and must close.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
}

#[derive(Debug)]
struct State {
    read: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
    back: oneshot::Sender<Returned>,
}

/// The body of one HTTP/1.1 request.
#[derive(Debug)]
pub struct H1Body {
    state: Option<State>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl H1Body {
    /// A body framed by `framing`, starting with the `buffered` bytes already read.
    pub fn new(
        read: OwnedReadHalf,
        buffered: BytesMut,
        framing: Framing,
        back: oneshot::Sender<Returned>,
    ) -> H1Body {
        let decoder = match framing {
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::ChunkSize,
        };
        H1Body {
            state: Some(State {
                read,
                buf: buffered,
                decoder,
                back,
            }),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(state) = self.state.take() {
            // An exact copy, never the buffer itself: a view into the last read's buffer keeps
            // all of it (up to 64 KiB) alive while the caller waits for its answer.
            let leftover = match state.buf.is_empty() {
                true => BytesMut::new(),
                false => BytesMut::from(&state.buf[..]),
            };
            let _ = state.back.send(Returned {
                read: state.read,
                leftover,
                complete,
            });
        }
    }
}

impl Drop for H1Body {
    fn drop(&mut self) {
        let complete = self
            .state
            .as_ref()
            .is_some_and(|s| s.decoder == Decoder::Length(0));
        self.finish(complete);
    }
}

impl State {
    /// Reads up to `want` more bytes into the buffer; errors at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<()>> {
        let len = self.buf.len();
        self.buf.resize(len + want.clamp(1, READ_AT_MOST), 0);
        let mut read = ReadBuf::new(&mut self.buf[len..]);
        let polled = Pin::new(&mut self.read).poll_read(cx, &mut read);
        let n = read.filled().len();
        self.buf.truncate(len + n);
        ready!(polled)?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the body ended",
            )));
        }
        Poll::Ready(Ok(()))
    }

    /// A CRLF-terminated line at the front of the buffer, taken out of it (without the CRLF).
    fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(end).freeze();
                self.buf.advance(2);
                return Poll::Ready(Ok(line));
            }
            if self.buf.len() > MAX_LINE {
                return Poll::Ready(Err(invalid("chunk line too long")));
            }
            ready!(self.poll_fill(cx, 512))?;
        }
    }

    /// Up to `left` bytes of data, from the buffer or, when it is empty, from one read.
    fn poll_data(&mut self, cx: &mut Context<'_>, left: u64) -> Poll<io::Result<Bytes>> {
        if self.buf.is_empty() {
            ready!(self.poll_fill(cx, usize::try_from(left).unwrap_or(READ_AT_MOST)))?;
        }
        let take = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        Poll::Ready(Ok(self.buf.split_to(take).freeze()))
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
    let text = std::str::from_utf8(digits).map_err(|_| invalid("chunk size"))?;
    let text = text.trim_matches([' ', '\t']);
    if text.is_empty() || text.len() > 15 {
        return Err(invalid("chunk size"));
    }
    u64::from_str_radix(text, 16).map_err(|_| invalid("chunk size"))
}

impl hyper::body::Body for H1Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            let Some(state) = self.state.as_mut() else {
                return Poll::Ready(None);
            };
            let step = match state.decoder {
                Decoder::Length(0) => {
                    self.finish(true);
                    return Poll::Ready(None);
                }
                Decoder::Length(left) => state.poll_data(cx, left).map_ok(|data| {
                    state.decoder = Decoder::Length(left - data.len() as u64);
                    Some(data)
                }),
                Decoder::ChunkSize => state.poll_line(cx).map(|line| {
                    let size = chunk_size(&line?)?;
                    state.decoder = match size {
                        0 => Decoder::Trailers,
                        n => Decoder::ChunkData(n),
                    };
                    Ok(None)
                }),
                Decoder::ChunkData(left) => state.poll_data(cx, left).map_ok(|data| {
                    let left = left - data.len() as u64;
                    state.decoder = match left {
                        0 => Decoder::ChunkEnd,
                        n => Decoder::ChunkData(n),
                    };
                    Some(data)
                }),
                Decoder::ChunkEnd => state.poll_line(cx).map(|line| match line?.is_empty() {
                    true => {
                        state.decoder = Decoder::ChunkSize;
                        Ok(None)
                    }
                    false => Err(invalid("chunk not followed by CRLF")),
                }),
                Decoder::Trailers => state.poll_line(cx).map_ok(|line| {
                    if line.is_empty() {
                        // The end: behave as a finished fixed-length body.
                        state.decoder = Decoder::Length(0);
                    }
                    None
                }),
            };
            match ready!(step) {
                Ok(Some(data)) if !data.is_empty() => {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(_) => continue,
                Err(e) => {
                    self.finish(false);
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state
            .as_ref()
            .is_none_or(|s| s.decoder == Decoder::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state.as_ref().map(|s| s.decoder) {
            None => SizeHint::with_exact(0),
            Some(Decoder::Length(n)) => SizeHint::with_exact(n),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
