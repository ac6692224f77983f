//! The stream under hyper, watched: every read is noted on the connection's state, so that the
//! listener knows when an unfinished request header started to arrive without parsing anything.
//! It may first yield bytes already read from the stream (the HTTP/2 preface, read while telling
//! HTTP/2 from HTTP/1.1).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::ConnState;

/// A stream whose reads are reported to its [`ConnState`].
#[derive(Debug)]
pub(super) struct Tracked<S> {
    inner: S,
    conn: Arc<ConnState>,
    first: bool,
    prefix: bytes::BytesMut,
}

impl<S> Tracked<S> {
    /// Wraps `inner`, reporting to `conn`, yielding `prefix` (bytes already read from it, or
    /// none) first.
    pub(super) fn with_prefix(
        prefix: bytes::BytesMut,
        inner: S,
        conn: Arc<ConnState>,
    ) -> Tracked<S> {
        Tracked {
            inner,
            conn,
            first: true,
            prefix,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = if this.prefix.is_empty() {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            Poll::Ready(Ok(()))
        };
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                this.conn.read(read, this.first);
                this.first = false;
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
