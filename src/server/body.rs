//! The request body every listener's handler receives: read by timgate's own HTTP/1.1
//! connection, or by hyper (HTTP/2, and TLS listeners).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};

use super::h1::H1Body;

/// The error of a body that could not be read to its end.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request's body, from whichever connection carried it.
#[derive(Debug)]
pub enum RequestBody {
    /// From timgate's HTTP/1.1 connection.
    H1(H1Body),
    /// From hyper.
    Hyper(Incoming),
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            RequestBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::H1(body) => body.is_end_stream(),
            RequestBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::H1(body) => body.size_hint(),
            RequestBody::Hyper(body) => body.size_hint(),
        }
    }
}
