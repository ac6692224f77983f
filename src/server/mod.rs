//! The accept loop every listener shares (gateway, admin, emulator): HTTP/1.1 by timgate's own
//! connection (`h1`), HTTP/2 with prior knowledge and everything over TLS by hyper, a cap on
//! open connections with oldest-idle-first eviction, header and idle timeouts, the memory
//! budget's gate, and graceful shutdown that lets answers in flight finish.

mod body;
mod conn;
mod connection;
pub mod fds;
mod h1;
mod io;
mod registry;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use body::{BodyError, RequestBody};
pub use conn::{Close, Timeouts};
pub use h1::H1Body;
use registry::Registry;

use crate::memory::{self, MemoryGuard};
use crate::metrics::ListenerMetrics;

/// The response body type of every timgate listener: answers are small and fully buffered.
pub type Body = Full<Bytes>;

/// A JSON answer with this status: what every listener (gateway, admin, emulator) builds its
/// answers from.
pub fn json_response(status: http::StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Largest HTTP/1.1 request head (request line and headers) read into memory; a longer one is
/// refused by hyper and the connection closed. hyper's default is 408 KiB, which let 1,000
/// connections with unfinished headers hold 296 MB.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// A handler's way to drop the connection without answering (the emulator's "reset" fault).
#[derive(Debug)]
pub struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Abort {}

/// What one listener allows its connections.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Open connections at most; at the cap the oldest idle one is closed to make room, or the
    /// new one waits (in the kernel's backlog) while every connection has a request in flight.
    pub max_connections: usize,
    /// Header and idle timeouts.
    pub timeouts: Timeouts,
    /// The listener's connection metrics, if it reports any.
    pub metrics: Option<ListenerMetrics>,
    /// The memory budget: each connection is accounted against it, and near it new
    /// connections wait in the backlog. The default has no budget.
    pub memory: MemoryGuard,
}

impl ListenerLimits {
    /// No cap and no timeouts (the emulator).
    pub fn unbounded() -> ListenerLimits {
        ListenerLimits {
            max_connections: usize::MAX,
            timeouts: Timeouts::NONE,
            metrics: None,
            memory: MemoryGuard::default(),
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting and waits up to
/// `grace` for open connections to finish their requests. Returns false if the grace ran out.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: F,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    limits: ListenerLimits,
) -> bool
where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Abort>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEAD_BYTES);
    let builder = std::sync::Arc::new(builder);
    let registry = Registry::new(limits.max_connections, limits.metrics.clone());
    let (drain, draining) = watch::channel(false);
    tokio::pin!(shutdown);
    'accept: loop {
        // Near the memory budget new connections wait in the kernel's backlog; the ones open
        // are still served.
        while !limits.memory.accepting() {
            tokio::select! {
                () = tokio::time::sleep(memory::SAMPLE_EVERY) => {}
                () = &mut shutdown => break 'accept,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match registry.try_permit() {
            Some(permit) => permit,
            None => {
                // At the cap: close the oldest connection that has nothing in flight, or, when
                // every one is busy, hold this one until a place frees.
                registry.evict_oldest_idle();
                tokio::select! {
                    permit = registry.permit() => permit,
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (conn, place) = registry.enter(permit);
        let held = limits.memory.charge(memory::CONNECTION_BYTES);
        let task = connection::Task {
            conn,
            registry: registry.clone(),
            timeouts: limits.timeouts,
            draining: draining.clone(),
            builder: builder.clone(),
            _place: place,
            _held: held,
        };
        // Spawned as it is: wrapping it in another future would hold it twice.
        tokio::spawn(task.run(stream, peer, tls.clone(), handler.clone()));
    }
    drop(listener);
    let _ = drain.send(true);
    tokio::select! {
        () = registry.all_closed() => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                open = registry.open(),
                "Connections still open after the grace period."
            );
            false
        }
    }
}
