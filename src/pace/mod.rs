//! Pacing: every request passes its API's lane, group attribute writes their group's lane too, so
//! that Tencent never sees more than an API's own limit (its catalogue row or `[limits.api]`:
//! `app_per_second` a second for most, 12,000 recipients a minute for `batchsendmsg`, each call
//! counting the recipients it names) or
//! `group_writes_per_second` writes per group in any sliding period. Sends are spaced evenly (GCRA
//! with a burst of one) at `(period + window_guard_ms) / limit` per unit (a recipient-counted
//! call reserves its units, and the spacing keeps room for a last call of the most); a group's
//! writes leave in accept order, one in flight.
//!
//! Each request waits in its own task on tokio timers: the only shared state is [`lanes::Lanes`]
//! behind one short lock, and each step costs a hash lookup, so dispatch does not scan groups.

mod api_pace;
pub(crate) mod batch;
mod bound;
mod budget;
mod claim;
mod daily;
mod follow;
mod group_queue;
mod idle;
mod lane;
pub(crate) mod lanes;
mod metrics;
mod rate;
mod send_log;
mod settings;
pub mod shared;
mod slow;
mod snapshot;
mod ticket;
mod total;
mod turn;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{Backend, LimitsConfig};
use crate::error::Error;
use crate::metrics::Metrics;
use bound::Deadline;
use budget::Budget;
use follow::{Grant, full_settings, lane_settings};
use lanes::{Admitted, Lanes};
pub use lanes::{LaneSettings, message_lane};
use metrics::PaceMetrics;
pub use snapshot::{GroupView, LaneView, PacerView};
pub use ticket::{Admission, Limiter, Permit};
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
    /// Where the totals are kept: locally, or in Redis shared with every replica.
    budget: Budget,
    /// Signalled when a call is answered: claims held for the calls in flight look again.
    landed: tokio::sync::Notify,
    /// The limits in force, which the local share is recomputed from as replicas come and go.
    limits: Mutex<Option<LimitsConfig>>,
}

impl Pacer {
    /// A pacer for the given APIs with the configured limits.
    ///
    /// With `limits.backend = "redis"`, lanes are reserved in Redis at the full limits, shared by
    /// every replica, and locally at `fallback_share` of them while Redis is away. Must be called
    /// within a tokio runtime then: a task keeps connecting to Redis for as long as the pacer lives.
    pub fn new(limits: &LimitsConfig, sdkappid: u64, apis: &[Arc<str>], metrics: Metrics) -> Pacer {
        Self::publish_limits(limits, &metrics);
        let budget = match &limits.backend {
            Backend::Local => Budget::Local,
            Backend::Redis(target) => {
                let window = full_settings(limits, 1.0).send_window;
                Budget::redis(target, limits, sdkappid, window, &metrics)
            }
        };
        // Computed for no replicas seen; the first `follow` applies the count Redis gives.
        let share = follow::share(limits, 0);
        let pacer = Self::build(lane_settings(limits, share), apis, metrics, budget);
        *pacer.limits() = Some(limits.clone());
        let mut lanes = pacer.lanes();
        lanes.start_with(
            full_settings(limits, share),
            Arc::new(limits.clone()),
            share,
        );
        if let Some(shared) = pacer.inner.budget.shared() {
            // Away until the first connection: what other replicas hold in Redis is unknown, so
            // the local share waits as it does whenever Redis goes away (see `Pacer::follow`).
            lanes.hold_local_after(Instant::now() + shared::HORIZON);
            lanes.seen = follow::Seen::of(shared, 0);
        }
        drop(lanes);
        pacer.apply_paces();
        if let Some(shared) = pacer.inner.budget.shared() {
            // Weak: the fence must not keep a dropped pacer's lanes alive.
            let inner = Arc::downgrade(&pacer.inner);
            shared.set_long_fences(Arc::new(move || {
                inner.upgrade().map_or_else(Vec::new, |inner| {
                    let lanes = inner.lanes.lock().unwrap_or_else(|p| p.into_inner());
                    lanes.long_fences(Instant::now())
                })
            }));
        }
        pacer
    }

    /// Shows each API lane's rate, and tells the budget the send window.
    fn apply_paces(&self) {
        let window = {
            let lanes = self.lanes();
            for (api, app) in &lanes.apps {
                self.show_rate(api, app.rate.per_second());
            }
            lanes.full.send_window
        };
        self.inner.budget.set_window(window);
    }

    /// Applies reloaded limits: rates, guard and queue bounds change at once, and every queue,
    /// reserved slot and slowdown is kept. Open batches take no more writes (they are still sent).
    pub fn reconfigure(&self, limits: &LimitsConfig) {
        let mut lanes = self.lanes();
        // The count the lanes were last brought in line with: `follow` moves the share on from
        // there, so a count announced meanwhile is applied too.
        let share = follow::share(limits, lanes.seen.replicas());
        let full = full_settings(limits, share);
        let settings = lane_settings(limits, share);
        lanes.reconfigure(settings, full, Arc::new(limits.clone()), share);
        lanes.close_batches();
        // Under the lanes' lock (the order `follow` takes them in): a share recomputed between
        // the two would otherwise come from the old limits.
        *self.limits() = Some(limits.clone());
        drop(lanes);
        self.apply_paces();
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

    /// A pacer with explicit lane settings (tests and benchmarks).
    pub fn with_settings(settings: LaneSettings, apis: &[Arc<str>], metrics: Metrics) -> Pacer {
        Self::build(settings, apis, metrics, Budget::Local)
    }

    fn build(settings: LaneSettings, apis: &[Arc<str>], metrics: Metrics, budget: Budget) -> Pacer {
        let lanes = Mutex::new(Lanes::new(apis, &settings, Instant::now()));
        let (drain, _) = watch::channel(None);
        let metrics = PaceMetrics::new(metrics, apis, 1.0 / settings.app_interval.as_secs_f64());
        Pacer {
            inner: Arc::new(Inner {
                lanes,
                metrics,
                drain,
                budget,
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
        // Straight to `ready`, in parts, the admission bound by `let`: a `match` on it would keep
        // its 104 bytes for the whole wait (measured: 1,464 bytes for this future, not 1,360),
        // and another layer, or the whole `Admission` beside its parts, would be kept by every
        // queued request too (a future keeps its arguments apart from its locals).
        let Admission {
            ticket,
            handover,
            admitted_at,
            ..
        } = self.admit(api, group, deadline)?;
        self.ready(ticket, handover, admitted_at, Deadline::At(deadline))
            .await
    }

    /// The second half of [`Pacer::acquire`]: waits for an admitted request's turn and slot.
    pub fn wait(
        &self,
        admission: Admission,
        deadline: Instant,
    ) -> impl Future<Output = Result<Permit, Error>> + '_ {
        self.wait_for(admission, Deadline::At(deadline))
    }

    /// [`Pacer::wait`] for any bound. Not `async` itself, and the admission taken apart before
    /// the wait: a future keeps its arguments apart from its locals, and the whole `Admission`
    /// beside its parts would be kept by every queued request (500 bytes each, 50 MB at 100,000
    /// queued).
    fn wait_for(
        &self,
        admission: Admission,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Permit, Error>> + '_ {
        let Admission {
            ticket,
            handover,
            admitted_at,
            ..
        } = admission;
        self.ready(ticket, handover, admitted_at, deadline)
    }

    /// The first half of [`Pacer::acquire`], without waiting: takes the request's place in line
    /// now, or refuses it at once when it cannot leave before `deadline`. A write to a group
    /// closes the group's open batch (coalescing), so nothing merges across it.
    pub fn admit(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
    ) -> Result<Admission, Error> {
        self.admit_units((api, 1), group, deadline)
    }

    /// [`Pacer::admit`] for a request that counts `units` against its API's limit: a
    /// recipient-counted API's call counts its recipients (at least 1).
    pub fn admit_units(
        &self,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        deadline: Instant,
    ) -> Result<Admission, Error> {
        // The lanes in line with the shared budget first: its estimate depends on whether it serves.
        self.follow();
        let mut lanes = self.lanes();
        self.admit_in(&mut lanes, (api, units.max(1)), group, deadline)
    }

    /// [`Pacer::admit`] under the lanes' lock, held by the caller (coalescing opens a batch
    /// under the same lock it looked for one in).
    fn admit_in(
        &self,
        lanes: &mut Lanes,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        deadline: Instant,
    ) -> Result<Admission, Error> {
        let admitted_at = Instant::now();
        let cutoff = self.cutoff_at(deadline);
        let result = lanes.admit((api, units), group, cutoff, admitted_at);
        self.publish(lanes);
        let (id, admitted, estimate) = result?;
        self.count_admitted(api);
        let mut ticket = Ticket::new(self.clone(), (api.clone(), units), group.cloned(), id);
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

    /// Counts a request admitted: once each, whether it took a place in line or joined a batch.
    fn count_admitted(&self, api: &Arc<str>) {
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
    }

    /// The call claimed at `sent` was answered, or given up on: see [`Lanes::land`].
    pub(super) fn land(&self, api: (&Arc<str>, u32), group: Option<&Arc<str>>, sent: Instant) {
        let now = Instant::now();
        // Before the call stops flying: a send a stall's fence holds back must not slip out
        // between the two.
        self.inner.budget.landed(sent, now);
        self.lanes().land(api, group, sent, now);
        self.inner.landed.notify_waiters();
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod claim_tests;
#[cfg(test)]
mod units_tests;
