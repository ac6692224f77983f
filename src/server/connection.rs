//! One accepted connection's task: plain connections go to timgate's HTTP/1.1 driver (which
//! hands an HTTP/2 preface to hyper), TLS connections to hyper's auto builder after a handshake
//! bounded by the header timeout; hyper's connections are watched for timeouts, eviction and
//! drain like the driver's own.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::conn::{Close, ConnState, InFlight, Timeouts};
use super::io::Tracked;
use super::registry::{Place, Registry};
use super::{Abort, Body, RequestBody, h1};
use crate::memory::Charge;

/// How long an HTTP/2 connection that was told to go away (GOAWAY) may take to close.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// What a connection's task needs of its listener.
pub(super) struct Task {
    pub(super) conn: Arc<ConnState>,
    pub(super) registry: Arc<Registry>,
    pub(super) timeouts: Timeouts,
    pub(super) draining: watch::Receiver<bool>,
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    /// The connection's place under its listener's cap, freed when the task ends.
    pub(super) _place: Place,
    /// The connection's share of the memory budget.
    pub(super) _held: Charge,
}

impl Task {
    /// Serves `stream` to its end.
    pub(super) async fn run<F, Fut>(
        mut self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        handler: F,
    ) where
        F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, Abort>> + Send + 'static,
    {
        let Some(acceptor) = tls else {
            let serving = h1::serve(
                stream,
                &self.conn,
                &handler,
                &self.registry,
                self.timeouts,
                &mut self.draining,
            );
            let handed = serving.await;
            if let Some((stream, prefix)) = handed {
                // Boxed: hyper's connection state is large, and inline it would make every
                // HTTP/1.1 connection's task as large as an HTTP/2 one. (Two statements: a
                // temporary inside the awaited expression would keep its place in this future.)
                let serving = Box::pin(self.hyper(stream, prefix, peer, handler));
                serving.await;
            }
            return;
        };
        // Boxed: a TLS handshake's state is large, and inline it would make every plain
        // connection's task as large.
        let serving = Box::pin(self.tls(acceptor, stream, peer, handler));
        serving.await;
    }

    /// Serves a TLS connection: the handshake within the header timeout, then hyper.
    async fn tls<F, Fut>(
        self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        peer: SocketAddr,
        handler: F,
    ) where
        F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, Abort>> + Send + 'static,
    {
        let limit = self.timeouts.header.unwrap_or(Duration::MAX);
        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.hyper(stream, BytesMut::new(), peer, handler).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed."),
            Err(_) => self.registry.closed_by_us(Close::HeaderTimeout.reason()),
        }
    }

    /// Serves `io` with hyper (HTTP/2, or anything over TLS), `prefix` being what was read of it.
    async fn hyper<I, F, Fut>(self, io: I, prefix: BytesMut, peer: SocketAddr, handler: F)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, Abort>> + Send + 'static,
    {
        let conn = self.conn.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let in_flight = InFlight::new(conn.clone());
            // Boxed: moved into the block below, it would be held twice in each stream's state.
            let answering = Box::pin(handler(req.map(RequestBody::Hyper)));
            async move {
                let _in_flight = in_flight;
                answering.await
            }
        });
        let io = TokioIo::new(Tracked::with_prefix(prefix, io, self.conn.clone()));
        let served = self.builder.serve_connection(io, service);
        let ended = watch(
            served,
            &self.conn,
            &self.registry,
            self.timeouts,
            self.draining,
        )
        .await;
        if let Err(e) = ended {
            tracing::debug!(%peer, error = %e, "Connection ended with an error.");
        }
    }
}

/// Drives one hyper connection to its end, closing it when a timeout passes, when it is picked
/// for eviction, or (gracefully) when the listener drains.
async fn watch<C>(
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
        // What to close for, if anything, after this turn.
        let mut close = None;
        tokio::select! {
            ended = served.as_mut() => return ended,
            () = conn.kick.notified() => {
                if conn.evicted() && going_away.is_none() {
                    close = Some(Close::Evicted);
                }
            }
            () = sleep => match deadline {
                Some((_, None)) => return Ok(()),
                Some((_, Some(why))) => {
                    // Re-read: a request may have started since the deadline was computed.
                    let still = conn.deadline(&timeouts);
                    if still.is_some_and(|(at, _)| at <= tokio::time::Instant::now()) {
                        close = Some(why);
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
        if let Some(why) = close {
            registry.closed_by_us(why.reason());
            if !conn.is_h2() {
                return Ok(());
            }
            served.as_mut().graceful_shutdown();
            going_away = Some(tokio::time::Instant::now() + GOAWAY_GRACE);
        }
    }
}
