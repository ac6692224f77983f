//! Pacing: every request passes its API's lane, group attribute writes their group's lane too, so
//! that Tencent never sees more than `app_per_second` calls per API or `group_writes_per_second`
//! writes per group in any sliding second. Sends are spaced evenly (GCRA with a burst of one) at
//! `(1000 ms + window_guard_ms) / rate`; a group's writes leave in accept order, one in flight.
//!
//! Each request waits in its own task on tokio timers: the only shared state is [`lanes::Lanes`]
//! behind one short lock, and each step costs a hash lookup, so dispatch does not scan groups.

mod claim;
mod follow;
mod idle;
pub(crate) mod lanes;
mod metrics;
mod rate;
mod send_log;
pub mod shared;
mod ticket;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Backend, LimitsConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use claim::Hold;
use follow::{Grant, full_settings, lane_settings};
pub use lanes::LaneSettings;
use lanes::{Admitted, Lanes};
use metrics::PaceMetrics;
use shared::{Mode, Shared};
pub use ticket::{Admission, Permit};
use ticket::{Phase, Ticket};

/// How long a claim held for the calls in flight waits at most before it looks again, should
/// the signal of an answer have come between its look and its wait.
const LANDING_POLL: Duration = Duration::from_millis(50);

/// The spacing that keeps `rate` sends inside any window of one second plus `guard`.
pub fn interval(rate: u32, guard: Duration) -> Duration {
    (Duration::from_secs(1) + guard) / rate.max(1)
}

/// The pacer, shared by every request.
#[derive(Clone, Debug)]
pub struct Pacer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    lanes: Mutex<Lanes>,
    metrics: PaceMetrics,
    /// Set when the gateway starts draining: nothing is sent after this instant.
    drain: watch::Sender<Option<Instant>>,
    /// The shared budget, with the lane settings of the full limits, when the backend is Redis.
    shared: Option<Arc<Shared>>,
    /// Signalled when a call is answered: claims held for the calls in flight look again.
    landed: tokio::sync::Notify,
    /// The limits in force, which the local share is recomputed from as replicas come and go.
    limits: Mutex<Option<LimitsConfig>>,
}

/// Why a wait ended without its turn.
enum Stop {
    /// The request's own deadline passed.
    Deadline,
    /// The gateway is shutting down and the request could not leave in time.
    Drain,
}

impl Pacer {
    /// A pacer for the given APIs with the configured limits.
    ///
    /// With `limits.backend = "redis"`, lanes are reserved in Redis at the full limits, shared by
    /// every replica, and locally at `fallback_share` of them while Redis is away. Must be called
    /// within a tokio runtime then: a task keeps connecting to Redis for as long as the pacer lives.
    pub fn new(limits: &LimitsConfig, sdkappid: u64, apis: &[Arc<str>], metrics: Metrics) -> Pacer {
        Self::publish_limits(limits, &metrics);
        let shared = match &limits.backend {
            Backend::Local => None,
            Backend::Redis(url) => {
                metrics.register_limiter();
                let window = full_settings(limits, 1.0).send_window;
                let shared =
                    Shared::new(url, &limits.redis_prefix, sdkappid, window, metrics.clone());
                tokio::spawn(Shared::run(Arc::downgrade(&shared)));
                Some(shared)
            }
        };
        // Computed for no replicas seen; the first `follow` applies the count Redis gives.
        let share = follow::share(limits, 0);
        let pacer = Self::build(lane_settings(limits, share), apis, metrics, shared);
        *pacer.limits() = Some(limits.clone());
        let mut lanes = pacer.lanes();
        lanes.full = full_settings(limits, share);
        if let Some(shared) = &pacer.inner.shared {
            // Away until the first connection: what other replicas hold in Redis is unknown, so
            // the local share waits as it does whenever Redis goes away (see `Pacer::follow`).
            let from = Instant::now() + shared::HORIZON + lanes.full.send_window;
            lanes.hold_local_until(from);
            lanes.seen = follow::Seen::of(shared, 0);
        }
        drop(lanes);
        pacer
    }

    /// Applies reloaded limits: rates, guard and queue bounds change at once, and every queue,
    /// reserved slot and slowdown is kept.
    pub fn reconfigure(&self, limits: &LimitsConfig) {
        let mut lanes = self.lanes();
        // The count the lanes were last brought in line with: `follow` moves the share on from
        // there, so a count announced meanwhile is applied too.
        let share = follow::share(limits, lanes.seen.replicas());
        let full = full_settings(limits, share);
        lanes.reconfigure(lane_settings(limits, share), full);
        // Under the lanes' lock (the order `follow` takes them in): a share recomputed between
        // the two would otherwise come from the old limits.
        *self.limits() = Some(limits.clone());
        drop(lanes);
        if let Some(shared) = &self.inner.shared {
            shared.set_window(full.send_window);
        }
        Self::publish_limits(limits, &self.inner.metrics.all);
    }

    fn limits(&self) -> MutexGuard<'_, Option<LimitsConfig>> {
        self.inner
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish_limits(limits: &LimitsConfig, metrics: &Metrics) {
        metrics
            .limit
            .with_label_values(&["app"])
            .set(limits.app_per_second.into());
        metrics
            .limit
            .with_label_values(&["group"])
            .set(limits.group_writes_per_second.into());
    }

    /// Tencent said "too fast" (10049 for a group, 60007 and kin for an API): slow that lane down
    /// for a cool-down, after which it recovers step by step.
    pub fn slow_down(&self, api: &Arc<str>, group: Option<&Arc<str>>) {
        let rate = self.lanes().slow_down(api, group, Instant::now());
        let Some(rate) = rate else { return };
        let metrics = &self.inner.metrics.all;
        let lane = if group.is_some() { "group" } else { "app" };
        metrics.throttles.with_label_values(&[lane]).inc();
        if let (None, Some(gauge)) = (group, self.inner.metrics.lane_rate.get(api)) {
            gauge.set(rate);
        }
        tracing::warn!(
            api = &**api,
            lane,
            group = group.map(|g| &**g),
            rate_per_second = rate,
            "Tencent answered too fast: lane slowed."
        );
    }

    /// A pacer with explicit lane settings (tests and benchmarks).
    pub fn with_settings(settings: LaneSettings, apis: &[Arc<str>], metrics: Metrics) -> Pacer {
        Self::build(settings, apis, metrics, None)
    }

    fn build(
        settings: LaneSettings,
        apis: &[Arc<str>],
        metrics: Metrics,
        shared: Option<Arc<Shared>>,
    ) -> Pacer {
        let lanes = Mutex::new(Lanes::new(apis, &settings, Instant::now()));
        let (drain, _) = watch::channel(None);
        let metrics = PaceMetrics::new(metrics, apis, 1.0 / settings.app_interval.as_secs_f64());
        Pacer {
            inner: Arc::new(Inner {
                lanes,
                metrics,
                drain,
                shared,
                landed: tokio::sync::Notify::new(),
                limits: Mutex::new(None),
            }),
        }
    }

    fn lanes(&self) -> MutexGuard<'_, Lanes> {
        // A panic while holding the lock cannot leave lanes half-updated in a way that matters
        // more than stopping the gateway would: keep serving.
        self.inner
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits for this request's turn: its group's earlier writes answered, its group's spacing
    /// passed, and an app slot reserved. Returns the permit to send at its slot, or refuses at
    /// once when the request cannot leave before `deadline`. Dropping the future (the caller
    /// hung up) takes the request out of line; it is never sent.
    pub async fn acquire(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
    ) -> Result<Permit, Error> {
        // Straight to `ready`, in parts: a future keeps its arguments apart from its locals, and
        // another layer, or the whole `Admission` beside its parts, would be kept by every queued
        // request (500 bytes each, 50 MB at 100,000 queued).
        let Admission {
            ticket,
            handover,
            admitted_at,
            ..
        } = self.admit(api, group, deadline)?;
        self.ready(ticket, handover, admitted_at, deadline).await
    }

    /// The first half of [`Pacer::acquire`], without waiting: takes the request's place in line
    /// now, or refuses it at once when it cannot leave before `deadline`. Coalescing needs the
    /// place taken under its own lock, so that a group's batches and barriers keep accept order.
    pub fn admit(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
    ) -> Result<Admission, Error> {
        let admitted_at = Instant::now();
        let (id, admitted, estimate) = {
            let mut lanes = self.lanes();
            let result = lanes.admit(api, group, self.cutoff(deadline), admitted_at);
            self.publish(&lanes);
            result?
        };
        match self.inner.metrics.admitted.get(api) {
            Some(counter) => counter.inc(),
            None => self
                .inner
                .metrics
                .all
                .admitted
                .with_label_values(&[&**api])
                .inc(),
        }
        let mut ticket = Ticket::new(self.clone(), api.clone(), group.cloned(), id);
        let handover = match admitted {
            Admitted::Wait(handover) => {
                ticket.phase = Phase::Waiting;
                Some(handover)
            }
            Admitted::Go => None,
        };
        Ok(Admission {
            ticket,
            handover,
            admitted_at,
            estimate,
        })
    }

    /// The second half of [`Pacer::acquire`]: waits for the admitted request's turn and slot.
    async fn ready(
        &self,
        mut ticket: Ticket,
        handover: Option<tokio::sync::oneshot::Receiver<()>>,
        admitted_at: Instant,
        deadline: Instant,
    ) -> Result<Permit, Error> {
        let (api, group) = (&ticket.api, ticket.group.as_ref());
        if let Some(handover) = handover {
            let handed = self
                .bounded(std::pin::pin!(handover), deadline)
                .await
                .map_err(|stop| stop.into_error(true))?;
            // The sender lives in the group's queue until it hands over; a lane with waiters is
            // never forgotten, so a closed channel would be a bug, answered rather than hung.
            handed.map_err(|_| Error::Internal("group lane handover lost".into()))?;
        }
        ticket.phase = Phase::Holding;
        let mut first = true;
        loop {
            let grant = self.take_slot(api, group, deadline, first).await?;
            if first {
                ticket.phase = Phase::Reserved;
                if group.is_some() {
                    self.observe_wait(true, admitted_at.elapsed());
                }
                first = false;
            }
            // Wait for the slot here, where a caller who hangs up still takes the request out of
            // line: the slot goes unused, but nothing is sent for a caller who is gone.
            if let Some(sent) = self.send_at(api, group, &grant, deadline).await? {
                return Ok(ticket.into_permit(&grant, sent));
            }
            // The grant was revoked (Redis came back, or its send was held): a new slot.
        }
    }

    /// Takes a new slot in both lanes for another attempt of a request that holds `permit`, and
    /// waits for it, keeping its group's lane (so no later write overtakes a retry).
    pub async fn reacquire(&self, permit: &mut Permit, deadline: Instant) -> Result<(), Error> {
        let (api, group) = (permit.api.clone(), permit.group.clone());
        loop {
            let grant = self
                .take_slot(&api, group.as_ref(), deadline, false)
                .await?;
            if let Some(sent) = self.send_at(&api, group.as_ref(), &grant, deadline).await? {
                permit.slot = grant.slot;
                permit.use_by = grant.use_by;
                permit.sent = Some(sent);
                return Ok(());
            }
        }
    }

    /// Waits for the grant's slot and claims the send: its instant, or `None` when the grant was
    /// revoked on the way (ask for a new one).
    async fn send_at(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        grant: &Grant,
        deadline: Instant,
    ) -> Result<Option<Instant>, Error> {
        if let Some(sent) = grant.claimed {
            return Ok(Some(sent));
        }
        if !self.wait_slot(grant, deadline).await? {
            return Ok(None);
        }
        self.claim(api, group, deadline, grant).await
    }

    /// The call claimed at `sent` was answered, or given up on: see [`Lanes::land`].
    pub(super) fn land(&self, api: &Arc<str>, group: Option<&Arc<str>>, sent: Instant) {
        let now = Instant::now();
        if let Some(shared) = &self.inner.shared
            && now.saturating_duration_since(sent) >= shared::STALLED
        {
            // The upstream held this call: it may release every replica's at once, so no shared
            // slot may be used for a window from now (see `Shared::stalled`). Before the call
            // stops flying: a send it held back must not slip out between the two.
            shared.stalled(sent);
        }
        self.lanes().land(api, group, sent, now);
        self.inner.landed.notify_waiters();
    }

    /// The moment of sending: checks the lanes' send logs (a late timer must not bunch sends) and
    /// the calls in flight, and records this send, waiting first if they say so. Returns the
    /// instant it was recorded at, or `None` when the grant is void: Redis came back since it was
    /// given, or, while Redis serves, the send was held or its time has passed (a shared slot is
    /// used at its time or not at all, so it is asked for again).
    async fn claim(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
        grant: &Grant,
    ) -> Result<Option<Instant>, Error> {
        loop {
            let now = Instant::now();
            let mode = self.follow();
            if mode.epoch != grant.epoch {
                return Ok(None);
            }
            let wait = {
                let mut lanes = self.lanes();
                let full = lanes.full;
                let late = grant.use_by.is_some_and(|use_by| now > use_by);
                if mode.up && late {
                    // Sent now, this slot could share a second with the limit's worth of others.
                    return Ok(None);
                }
                // While the shared budget governs the totals, this replica may send all of it.
                if mode.up {
                    lanes.claim_send_capped(api, group, now, &full)
                } else {
                    lanes.claim_send(api, group, now)
                }
            };
            let until = match wait {
                Ok(sent) => return Ok(Some(sent)),
                Err(Hold::Until(until)) if mode.up => until,
                Err(Hold::Until(until)) => {
                    // Everything held with this request would leave at `until` at once: take a
                    // new slot from then instead, so that they leave spaced.
                    self.lanes().respace(api, until, now)
                }
                Err(Hold::Landing) => {
                    // Wake at the next answer; the timer only covers a signal missed between
                    // the check and here.
                    let landed = self.inner.landed.notified();
                    let nap = tokio::time::sleep(LANDING_POLL);
                    let either = async {
                        tokio::select! {
                            () = landed => {}
                            () = nap => {}
                        }
                    };
                    self.bounded(std::pin::pin!(either), deadline)
                        .await
                        .map_err(|stop| stop.into_error(false))?;
                    if mode.up {
                        return Ok(None);
                    }
                    continue;
                }
            };
            tracing::debug!(
                api = &**api,
                wait_us = until.saturating_duration_since(Instant::now()).as_micros() as u64,
                "Send held back by the cap."
            );
            self.bounded(std::pin::pin!(sleep_until(until)), deadline)
                .await
                .map_err(|stop| stop.into_error(false))?;
            if mode.up {
                return Ok(None);
            }
        }
    }

    /// Waits out the group's spacing, then reserves the app slot and the group slot together:
    /// in Redis while it serves, else locally. The grant says when, and whether the send was
    /// already claimed (the slot had come).
    async fn take_slot(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
        first: bool,
    ) -> Result<Grant, Error> {
        loop {
            let mut mode = self.follow();
            // While the shared budget serves, Redis spaces the group; the local lane only orders it.
            if let Some(group) = group.filter(|_| !mode.up) {
                let ready = self.lanes().group_ready_at(group, Instant::now());
                if ready > self.cutoff(deadline) {
                    let retry_after = ready.saturating_duration_since(Instant::now());
                    return Err(self.too_late(
                        deadline,
                        Error::GroupBusy {
                            retry_after,
                            full: false,
                        },
                    ));
                }
                self.bounded(std::pin::pin!(sleep_until(ready)), deadline)
                    .await
                    .map_err(|stop| stop.into_error(true))?;
                // Redis may have come back during the wait: a local slot taken now would lie
                // outside its fence.
                mode = self.follow();
            }
            if self.inner.shared.is_some() && mode.up {
                // Boxed, and only with a Redis backend: inline, the Redis call's state would sit
                // in every queued request's future, local backend or not.
                let shared = Box::pin(self.shared_slot(api, group, deadline, first));
                if let Some(taken) = shared.await {
                    return taken;
                }
                // Redis went away on the way: the local share, from where it starts.
                mode = self.follow();
            }
            if let Some(grant) = self.local_slot(api, group, deadline, first, mode)? {
                return Ok(grant);
            }
        }
    }

    /// A slot in the local lanes (the local backend, or this replica's share while Redis is
    /// away), claimed at once when it has come. `None` when Redis came back since `mode` was
    /// read: the returning replica's fence covers the local sends claimed before its return,
    /// not after (measured: a write that had waited out its local group spacing across a return
    /// left 25 ms before the group's first shared slot, six writes in a second).
    fn local_slot(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
        first: bool,
        mode: Mode,
    ) -> Result<Option<Grant>, Error> {
        let now = Instant::now();
        let (slot, rate, claimed) = {
            let mut lanes = self.lanes();
            if let Some(shared) = &self.inner.shared
                && shared.mode().epoch != mode.epoch
            {
                return Ok(None);
            }
            let slot = lanes.reserve(api, group, self.cutoff(deadline), now, first);
            // A slot that has come is claimed under the same lock: the common case, lanes with
            // room, costs one lock per request.
            let claimed = slot
                .filter(|&slot| slot <= now)
                .and_then(|_| lanes.claim_send(api, group, now).ok());
            (slot, lanes.app_rate(api), claimed)
        };
        // Recovery is lazy, so the gauge follows the lane whenever it is used.
        if let (Some(rate), Some(gauge)) = (rate, self.inner.metrics.lane_rate.get(api)) {
            gauge.set(rate);
        }
        let busy = Error::AppBusy {
            retry_after: Duration::from_secs(1),
            full: false,
        };
        let slot = slot.ok_or_else(|| self.too_late(deadline, busy))?;
        self.observe_wait(false, slot.saturating_duration_since(now));
        Ok(Some(Grant {
            slot,
            claimed,
            epoch: mode.epoch,
            use_by: None,
        }))
    }

    /// The answer for a request that cannot leave in time: 503 when draining cut its time short,
    /// else `busy` (a 429).
    fn too_late(&self, deadline: Instant, busy: Error) -> Error {
        if self.cutoff(deadline) < deadline {
            Error::ShuttingDown
        } else {
            busy
        }
    }

    /// The last instant a request with `deadline` may be sent: earlier while draining.
    fn cutoff(&self, deadline: Instant) -> Instant {
        self.inner
            .drain
            .borrow()
            .map_or(deadline, |drain| drain.min(deadline))
    }

    /// Runs `fut` until it completes, the deadline passes, or draining cuts it short.
    async fn bounded<F: std::future::Future>(
        &self,
        mut fut: std::pin::Pin<&mut F>,
        deadline: Instant,
    ) -> Result<F::Output, Stop> {
        let mut drain = self.inner.drain.subscribe();
        loop {
            let drain_by = *drain.borrow_and_update();
            let until = drain_by.map_or(deadline, |d| d.min(deadline));
            tokio::select! {
                biased;
                out = fut.as_mut() => return Ok(out),
                () = tokio::time::sleep_until(until) => {
                    return Err(if until < deadline { Stop::Drain } else { Stop::Deadline });
                }
                changed = drain.changed() => {
                    if changed.is_err() {
                        // The pacer is going away with the gateway: stop waiting.
                        return Err(Stop::Drain);
                    }
                }
            }
        }
    }

    /// The gateway is shutting down: requests that cannot be sent by `by` are answered 503 then
    /// (or now), never left hanging past the grace period.
    pub fn drain(&self, by: Instant) {
        self.inner.drain.send_replace(Some(by));
    }

    /// Forgets idle groups now (a timer calls it, so a quiet gateway shrinks too).
    pub fn forget_idle(&self) {
        let mut lanes = self.lanes();
        lanes.forget_idle(Instant::now());
        self.publish(&lanes);
    }

    fn observe_wait(&self, group_lane: bool, waited: Duration) {
        let metrics = &self.inner.metrics;
        let histogram = if group_lane {
            &metrics.wait_group
        } else {
            &metrics.wait_app
        };
        histogram.observe(waited.as_secs_f64());
    }

    fn publish(&self, lanes: &Lanes) {
        let metrics = &self.inner.metrics;
        metrics.queued_app.set(lanes.queued as i64);
        metrics.queued_group.set(lanes.group_waiting as i64);
        metrics.all.active_groups.set(lanes.groups.len() as i64);
    }

    /// Requests admitted and not yet given a slot.
    pub fn queued(&self) -> usize {
        self.lanes().queued
    }

    /// Groups with state in memory.
    pub fn active_groups(&self) -> usize {
        self.lanes().groups.len()
    }
}

/// Sleeps until `at`, or not at all when it has passed: a timer registration costs more than
/// the pacer's whole bookkeeping, and most requests find their lanes free.
async fn sleep_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

impl Stop {
    fn into_error(self, group: bool) -> Error {
        let retry_after = Duration::from_secs(1);
        match self {
            Stop::Drain => Error::ShuttingDown,
            Stop::Deadline if group => Error::GroupBusy {
                retry_after,
                full: false,
            },
            Stop::Deadline => Error::AppBusy {
                retry_after,
                full: false,
            },
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod claim_tests;
