//! The accept loop every listener shares (gateway, admin, emulator): HTTP/1.1 and h2c (or h2 over
//! TLS) by hyper-util's auto builder, a cap on open connections with oldest-idle-first eviction,
//! header and idle timeouts, and graceful shutdown that lets answers in flight finish.

mod conn;
pub mod fds;
mod io;
mod registry;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use conn::{Close, Timeouts};
use conn::{ConnState, InFlight};
use io::Tracked;
use registry::Registry;

use crate::memory::{self, MemoryGuard};
use crate::metrics::ListenerMetrics;

/// The response body type of every timgate listener: answers are small and fully buffered.
pub type Body = Full<Bytes>;

/// Largest HTTP/1.1 request head (request line and headers) read into memory; a longer one is
/// refused by hyper and the connection closed. hyper's default is 408 KiB, which let 1,000
/// connections with unfinished headers hold 296 MB.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// How long an HTTP/2 connection that was told to go away (GOAWAY) may take to close.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

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
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Abort>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(MAX_HEAD_BYTES);
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
        let handler = handler.clone();
        let service_conn = conn.clone();
        let service = service_fn(move |req| {
            let in_flight = InFlight::new(service_conn.clone());
            let handler = handler.clone();
            async move {
                let _in_flight = in_flight;
                handler(req).await
            }
        });
        let builder = builder.clone();
        let tls = tls.clone();
        let registry = registry.clone();
        let draining = draining.clone();
        let timeouts = limits.timeouts;
        tokio::spawn(async move {
            let (_place, _held) = (place, held);
            let ended = match tls {
                None => {
                    let served = builder.serve_connection(
                        TokioIo::new(Tracked::new(stream, conn.clone())),
                        service,
                    );
                    watch_connection(served, &conn, &registry, timeouts, draining).await
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let limit = timeouts.header.unwrap_or(Duration::MAX);
                    match tokio::time::timeout(limit, handshake).await {
                        Ok(Ok(stream)) => {
                            let served = builder.serve_connection(
                                TokioIo::new(Tracked::new(stream, conn.clone())),
                                service,
                            );
                            watch_connection(served, &conn, &registry, timeouts, draining).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed.");
                            return;
                        }
                        Err(_) => {
                            registry.closed_by_us(Close::HeaderTimeout.reason());
                            return;
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "Connection ended with an error.");
            }
        });
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

/// Drives one connection to its end, closing it when a timeout passes, when it is picked for
/// eviction, or (gracefully) when the listener drains.
async fn watch_connection<C>(
    served: C,
    conn: &ConnState,
    registry: &Registry,
    timeouts: Timeouts,
    mut draining: watch::Receiver<bool>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    tokio::pin!(served);
    // Set once the connection was asked to go away: it may finish within its grace.
    let mut going_away: Option<tokio::time::Instant> = None;
    let mut drain_sent = *draining.borrow();
    if drain_sent {
        served.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = match going_away {
            Some(at) => Some((at, None)),
            None => conn.deadline(&timeouts).map(|(at, why)| (at, Some(why))),
        };
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ended = served.as_mut() => return ended,
            () = conn.kick.notified() => {
                if conn.evicted() && going_away.is_none() {
                    registry.closed_by_us(Close::Evicted.reason());
                    if !conn.is_h2() {
                        return Ok(());
                    }
                    served.as_mut().graceful_shutdown();
                    going_away = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
                }
            }
            () = sleep => match deadline {
                Some((_, None)) => return Ok(()),
                Some((_, Some(why))) => {
                    // Re-read: a request may have started since the deadline was computed.
                    let still = conn.deadline(&timeouts);
                    if still.is_some_and(|(at, _)| at <= tokio::time::Instant::now()) {
                        registry.closed_by_us(why.reason());
                        if !conn.is_h2() {
                            return Ok(());
                        }
                        served.as_mut().graceful_shutdown();
                        going_away = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
                    }
                }
                None => {}
            },
            changed = draining.changed(), if !drain_sent => {
                drain_sent = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
