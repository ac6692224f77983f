//! The HTTP service callers talk to: authenticate, route against the allow-list, read the body
//! within its cap, validate, sign, forward, and answer exactly once, with Tencent's answer or the
//! gateway's own.

pub mod answer;
mod auth;
mod coalesce;
pub mod durable;
mod head;
mod live;
mod outcome;
mod owner;
mod owner_send;
mod place;
mod trail;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Request, Response};

use crate::config::{Backend, Config};
use crate::error::Error;
use crate::memory::{self, MemoryGuard};
use crate::metrics::Metrics;
use crate::pace::Pacer;
use crate::queue::Queue;
use crate::retry::send::{Forwarder, Job};
use crate::server::Body;
use crate::signer::Signer;
use crate::upstream::{Reply, Upstream};
use durable::Enqueued;
use head::Begun;
use live::{Live, Route};
use place::{Checked, Place};
use tokio::time::Instant;
use trail::{Carried, Trail};

pub use answer::error_response;

/// The label used for requests that matched no allowed API, so labels stay bounded.
const UNROUTED: &str = "other";

/// The header that carries a request's id: the caller's, or one the gateway makes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The header on the answer of a coalesced write: how many requests shared its upstream call.
pub const COALESCED_HEADER: &str = "x-timgate-coalesced";

/// A request's outcome before its answer is built: the route and Tencent's reply, or the route
/// (when one matched) and the error; with what carried it upstream, when it went (its send's
/// tally, and its coalesced batch's size).
struct Processed {
    result: Result<(Route, Reply), Failed>,
    carried: Option<Carried>,
}

/// A request refused, or whose send failed: the route when one matched, and the error.
type Failed = (Option<Route>, Error);

impl From<Failed> for Processed {
    /// Refused before anything carried it upstream.
    fn from(failed: Failed) -> Processed {
        Processed {
            result: Err(failed),
            carried: None,
        }
    }
}

/// The header a caller may send to wait less than `limits.max_wait_ms` for its slot.
pub const MAX_WAIT_HEADER: &str = "x-timgate-max-wait-ms";

/// The headers above as `HeaderName`s, made at compile time: looked up or set by a `&str`, a
/// header's name is parsed and hashed again at every request.
mod names {
    use http::HeaderName;

    pub(super) const REQUEST_ID: HeaderName = HeaderName::from_static(super::REQUEST_ID_HEADER);
    pub(super) const COALESCED: HeaderName = HeaderName::from_static(super::COALESCED_HEADER);
    pub(super) const MAX_WAIT: HeaderName = HeaderName::from_static(super::MAX_WAIT_HEADER);
    pub(super) const PREFER: HeaderName = HeaderName::from_static("prefer");
}

/// The gateway service, shared by every connection.
#[derive(Debug)]
pub struct Gateway {
    live: RwLock<Arc<Live>>,
    pacer: Pacer,
    forwarder: Arc<Forwarder>,
    metrics: Metrics,
    memory: MemoryGuard,
    draining: AtomicBool,
    /// The durable queue (`queue.durable`).
    queue: Option<Arc<Queue>>,
    /// The durable queue's partitions this replica owns.
    owners: owner::Owners,
    /// The metric handles of requests that matched no route.
    unrouted: Arc<crate::metrics::ApiMetrics>,
    /// The trace exporter (`tracing.enabled`).
    tracer: Option<Arc<crate::trace::Tracer>>,
}

impl Gateway {
    /// Wires the service from checked settings and its collaborators.
    pub fn new(
        config: &Config,
        signer: Arc<Signer>,
        upstream: Upstream,
        metrics: Metrics,
    ) -> Gateway {
        let live = Live::new(config, &metrics);
        let apis = live.apis();
        let pacer = Pacer::new(
            &config.limits,
            config.tencent.sdkappid,
            &apis,
            metrics.clone(),
        );
        let forwarder = Forwarder::new(
            signer,
            upstream,
            pacer.clone(),
            config,
            &apis,
            metrics.clone(),
        );
        let forwarder = Arc::new(forwarder);
        let budget = memory::budget(config.server.memory_limit_bytes, &config.server.cgroup_root);
        let memory = MemoryGuard::new(budget, &metrics.pressure);
        let queue = match &config.limits.backend {
            Backend::Redis(target) if config.queue.durable => {
                metrics.register_queue();
                let l = &config.limits;
                Some(Arc::new(Queue::new(
                    target,
                    &config.queue,
                    &l.redis_prefix,
                    config.tencent.sdkappid,
                    (l.max_queue_per_group, l.max_queued),
                    metrics.queue.clone(),
                )))
            }
            _ => None,
        };
        let unrouted = metrics.api(Arc::from(UNROUTED));
        Gateway {
            live: RwLock::new(Arc::new(live)),
            pacer,
            forwarder,
            metrics,
            memory,
            draining: AtomicBool::new(false),
            queue,
            owners: owner::Owners::default(),
            unrouted,
            tracer: None,
        }
    }

    /// Traces requests with `tracer` (see [`crate::trace::Tracer::start`]).
    pub fn with_tracer(self, tracer: Option<Arc<crate::trace::Tracer>>) -> Gateway {
        Gateway { tracer, ..self }
    }

    /// The trace exporter, when tracing is on (flushed at shutdown).
    pub fn tracer(&self) -> Option<&Arc<crate::trace::Tracer>> {
        self.tracer.as_ref()
    }

    /// Applies a reloaded configuration: allow-list, tokens, body cap, waits, limits and retry
    /// policy change at once; queues, slots and slowdowns are kept.
    pub fn reconfigure(&self, config: &Config) {
        let live = Live::new(config, &self.metrics);
        let apis = live.apis();
        self.pacer.reconfigure(&config.limits);
        self.forwarder.reconfigure(config, &apis);
        *self
            .live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(live);
    }

    fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Re-reads a rotated `secret_key_file`; see [`Signer::reload_key`].
    pub fn reload_key(&self) -> bool {
        self.forwarder.reload_key()
    }

    /// The memory budget's guard (the listeners gate accepts on it).
    pub fn memory(&self) -> &MemoryGuard {
        &self.memory
    }

    /// The pacer (the app's timer forgets idle groups through it).
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// From now on, new requests are answered 503; queued requests that cannot be sent by `by`
    /// are answered 503 too, so every caller has an answer before the grace period ends.
    pub fn start_draining(&self, by: Instant) {
        self.draining.store(true, Ordering::SeqCst);
        self.pacer.drain(by);
        if let Some(queue) = &self.queue {
            queue.drain(by);
        }
    }

    /// Answers one request. Never fails: every error becomes an answer here. Generic over the
    /// body so that tests can call it without a socket. The head is checked here, before the
    /// future is made, so that the future a waiting request is kept in holds only what the wait
    /// needs (the route, the body, the deadline's inputs), never the request itself; it takes
    /// the gateway by `Arc` so that it owns everything and can be boxed as it is.
    pub fn handle<B>(self: Arc<Self>, req: Request<B>) -> impl Future<Output = Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut trail = Trail::begin(req.headers(), self.tracer.as_deref());
        let begun = self.begin(req, &mut trail);
        self.answer(trail, begun)
    }

    /// The rest of [`Gateway::handle`]: the body and its checks, the wait, the one upstream
    /// call (its own, or the batch's it joined), then the answer. An `async` block rather than
    /// an `async fn`, and its steps in a labelled block rather than a nested one, so that nothing
    /// is held twice while the request waits: an `async fn` keeps a copy of its arguments beside
    /// its locals, and a nested one would keep what it is passed beside what it was given.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would copy its arguments"
    )]
    fn answer<B>(
        self: Arc<Self>,
        mut trail: Trail,
        begun: Result<Begun<B>, Failed>,
    ) -> impl Future<Output = Response<Body>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        async move {
            // Durable mode with Redis away and `queue.fallback = "memory"`: said in a header.
            let mut in_memory = false;
            let processed: Processed = 'processed: {
                let Begun {
                    live,
                    route,
                    body,
                    declared,
                    max_wait,
                    respond_async,
                    held: _held,
                } = match begun {
                    Ok(begun) => begun,
                    Err(failed) => break 'processed failed.into(),
                };
                let fail = |e| (Some(route.clone()), e);
                let body = match Self::read_body(&live, body).await {
                    Ok(body) => body,
                    Err(e) => break 'processed fail(e).into(),
                };
                let mut checked = match self.check(&route, body, declared, max_wait) {
                    Ok(checked) => checked,
                    Err(e) => break 'processed fail(e).into(),
                };
                if let Some(cap) = route.daily {
                    // Boxed: only a daily-capped API's request holds this wait's state.
                    let taking =
                        Box::pin(self.pacer.take_daily(&route.name, cap, live.daily_margin));
                    if let Err(e) = taking.await {
                        break 'processed fail(e).into();
                    }
                }
                if let Some(queue) = self.durable_queue(&route) {
                    // Boxed: only a durable write holds this wait's state.
                    let enqueued = Box::pin(self.clone().enqueue(
                        queue,
                        (live.clone(), route.clone()),
                        &checked,
                        trail.request_id.clone(),
                        respond_async,
                    ));
                    match enqueued.await {
                        Enqueued::Answered(verdict) => {
                            return self.finish(&trail, verdict, None);
                        }
                        Enqueued::Refused(e) => break 'processed fail(e).into(),
                        Enqueued::Memory => in_memory = true,
                    }
                }
                let admission = match self.place(&live, &route, &mut checked, &trail) {
                    Place::Batch(write) => {
                        trail.admitted = Some(Instant::now());
                        // Boxed, as the send below: a queued request's future holds only what
                        // it waits with.
                        let batched = Box::pin(self.clone().coalesce(write, live.batch_cap));
                        break 'processed outcome::shared(batched.await, route);
                    }
                    Place::Alone(Ok(admission)) => {
                        // The pacer's own reading: no second clock read per request.
                        trail.admitted = Some(admission.admitted_at());
                        admission
                    }
                    Place::Alone(Err(e)) => break 'processed fail(e).into(),
                };
                let Checked {
                    body,
                    deadline,
                    group,
                    ..
                } = checked;
                let permit = match self.pacer.wait(admission, deadline).await {
                    Ok(permit) => permit,
                    Err(e) => break 'processed fail(e).into(),
                };
                let job = Job {
                    api: route.name.clone(),
                    idempotent: route.idempotent,
                    group,
                    body,
                    deadline,
                    request_id: trail.request_id.clone(),
                    traced: trail.traced(),
                };
                // Boxed once the slot is had: the send's state (the upstream call, its retries)
                // is the largest part of a request's future, and inline it would sit in every
                // queued request.
                let sending = Box::pin(self.forwarder.clone().send(job, permit));
                let sent = sending.await;
                Processed {
                    result: match sent.result {
                        Ok(reply) => Ok((route, reply)),
                        Err(e) => Err((Some(route), e)),
                    },
                    carried: Carried::alone(sent.tally),
                }
            };
            let mut response = self.conclude(&trail, processed);
            if in_memory {
                response.headers_mut().insert(
                    durable::QUEUE_HEADER,
                    http::HeaderValue::from_static("memory"),
                );
            }
            response
        }
    }
}
