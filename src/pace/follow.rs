//! The pacer's side of the shared budget: following Redis as it goes and comes back, the local
//! share while it is away, and slots reserved in Redis.
//!
//! The rule, for every replica: a shared slot is used at its time or not at all; no slot is
//! reserved more than [`shared::HORIZON`] ahead; when Redis goes away, the local share starts
//! one window after the horizon (so no local send shares a second with a shared slot any replica
//! may still hold); when it comes back, the fence holds shared slots a window after the return
//! (so none shares a second with the local sends), and every grant made before the return is
//! void and asked for again in Redis. README, "Several replicas", has the proof sketch.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Pacer;
use super::api_pace::scaled;
use super::bound::{Deadline, sleep_until};
use super::lanes::{LaneSettings, Lanes};
use super::shared::{self, Mode, Reserved, Shared};
use crate::config::{Backend, LimitsConfig, Share};
use crate::error::Error;
use crate::tencent::apis::GROUP_MESSAGES_PER_SECOND;

/// A replica that has never seen the others (Redis away since it started) takes this share:
/// as though it had one peer.
const UNSEEN_SHARE: f64 = 0.5;

/// A slot given to one attempt.
#[derive(Debug)]
pub(super) struct Grant {
    /// When it may be sent.
    pub slot: Instant,
    /// The send's instant, when it was claimed with the slot (the slot had come).
    pub claimed: Option<Instant>,
    /// The shared budget's epoch it was given in (0 for the local backend).
    pub epoch: u32,
    /// For a slot reserved in Redis, the last instant it may be sent: [`tolerance`] after the
    /// earliest its Redis time can be on this replica's clock. Checked when the send is claimed
    /// and again just before the call goes out (see `Permit::expired`).
    pub use_by: Option<Instant>,
    /// What its send counts against its API's limit (the request's units), carried here so
    /// that the wait for the slot keeps it once, not once per step.
    pub units: u32,
}

/// How late a shared slot may be used, counted from the earliest its Redis time can be on this
/// clock (the clock reading's uncertainty, see `shared::Slot`), and how loosely a slot may be
/// placed at most. Half the guard: the 201st of a lane's slots lies one second and a guard after
/// the first, and each slot is sent between its Redis time less the uncertainty and its Redis
/// time plus half the guard, so no second holds more than the limit, whichever replica sends;
/// the other half covers the way to Tencent.
pub(super) fn tolerance(settings: &LaneSettings) -> Duration {
    settings.send_window.saturating_sub(Duration::from_secs(1)) / 2
}

/// The shared budget's state the lanes were last brought in line with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Seen {
    mode: Option<Mode>,
    replicas: usize,
}

impl Seen {
    /// Where `shared` stands now, for lanes whose share was computed for `replicas`. The count
    /// is the one the share came from, never a fresh reading: the probe task runs beside the
    /// pacer and may announce between the two, and a lane left at the share of a count it
    /// believes it has applied would keep it for good.
    pub(super) fn of(shared: &Shared, replicas: usize) -> Seen {
        Seen {
            mode: Some(shared.mode()),
            replicas,
        }
    }

    /// Whether the shared budget serves: the local lanes' holds do not delay a request then.
    pub(super) fn up(&self) -> bool {
        self.mode.is_some_and(|mode| mode.up)
    }

    /// The replicas count the lanes' share was computed for.
    pub(super) fn replicas(&self) -> usize {
        self.replicas
    }
}

/// This replica's share of each limit while Redis is away: `fallback_share` when it is a number;
/// for "auto", 1 / the replicas last seen alive.
pub(super) fn share(limits: &LimitsConfig, replicas: usize) -> f64 {
    match (&limits.backend, limits.fallback_share) {
        (Backend::Local, _) => 1.0,
        (Backend::Redis(_), Share::Fixed(share)) => share,
        (Backend::Redis(_), Share::Auto) if replicas == 0 => UNSEEN_SHARE,
        (Backend::Redis(_), Share::Auto) => 1.0 / replicas as f64,
    }
}

/// Calls of one API this replica may have in flight at the standard rate: see
/// `Paces::new`, which every API lane with a limit takes its own from.
fn in_flight(limits: &LimitsConfig, share: f64) -> usize {
    let per_api = match limits.max_in_flight_per_api {
        0 => limits.app_per_second,
        set => set,
    };
    scaled(per_api, share) as usize
}

/// The local lanes' settings: the full limits for the local backend; with Redis, `share` of
/// each, which a replica keeps to while Redis is away.
pub(super) fn lane_settings(limits: &LimitsConfig, share: f64) -> LaneSettings {
    let mut settings = LaneSettings::new(
        scaled(limits.app_per_second, share),
        scaled(limits.group_writes_per_second, share),
        limits.window_guard,
        limits.max_queue_per_group,
        limits.max_queued,
    );
    settings.max_in_flight = in_flight(limits, share);
    settings.with_messages(
        scaled(GROUP_MESSAGES_PER_SECOND, share),
        limits.window_guard,
    )
}

/// Lane settings at the full limits, which the shared budget spaces by; calls in flight stay at
/// this replica's share (a stalled upstream releases every replica's at once).
pub(super) fn full_settings(limits: &LimitsConfig, share: f64) -> LaneSettings {
    let mut settings = LaneSettings::new(
        limits.app_per_second,
        limits.group_writes_per_second,
        limits.window_guard,
        limits.max_queue_per_group,
        limits.max_queued,
    );
    settings.max_in_flight = in_flight(limits, share);
    settings
}

impl Lanes {
    /// No local slot of an API until its window has passed after `at` (the end of the
    /// horizon): a shared slot reserved up to then is out of every window a local send shares.
    pub(super) fn hold_local_after(&mut self, at: Instant) {
        for app in self.apps.values_mut().chain(self.total.as_mut()) {
            app.hold = app.hold.max(at + app.paces.full.window);
        }
    }

    /// The lanes of APIs whose window is longer than the send window that this replica's own
    /// calls still hold, with how long from `now`: a window for a lane with calls in flight (a
    /// stalled upstream may deliver them at any moment), else until its last send leaves its
    /// window. A returning or stalled replica fences each in Redis, so that no shared slot
    /// shares a window with them; a lane it sent nothing on recently is not held back.
    pub(super) fn long_fences(&self, now: Instant) -> Vec<(Arc<str>, Duration)> {
        let send_window = self.full.send_window;
        self.apps
            .iter()
            .filter(|(_, app)| app.paces.full.window > send_window)
            .filter_map(|(api, app)| {
                let window = app.paces.full.window;
                let until = match app.flying.is_empty() {
                    false => now + window,
                    true => app.sent.quiet_at(window)?,
                };
                (until > now).then(|| (api.clone(), until - now))
            })
            .collect()
    }

    /// Redis is back: local slots given while it was away are void, so the local lanes start
    /// afresh (the fence covers their sends).
    fn reset_local(&mut self, now: Instant) {
        for app in self.apps.values_mut().chain(self.total.as_mut()) {
            app.tat = app.tat.min(now);
            app.hold = app.hold.min(now);
        }
        for lane in self.groups.values_mut() {
            lane.tat = lane.tat.min(now);
        }
    }
}

impl Pacer {
    /// Brings the local lanes in line with the shared budget and returns where it stands: when
    /// Redis went away, the local share starts after the horizon and a window; when it came
    /// back, the local lanes start afresh; when the replicas counted changed, so does the share.
    pub(super) fn follow(&self) -> Mode {
        let budget = &self.inner.budget;
        let Some(shared) = budget.shared() else {
            return budget.mode();
        };
        let mode = shared.mode();
        let now_seen = Seen {
            mode: Some(mode),
            replicas: shared.replicas(),
        };
        let mut lanes = self.lanes();
        if lanes.seen == now_seen {
            return mode;
        }
        let before = lanes.seen;
        lanes.seen = now_seen;
        let returned = before.mode.is_some_and(|m| m.epoch != mode.epoch);
        if returned {
            lanes.reset_local(Instant::now());
        }
        let was_up = before.mode.is_some_and(|m| m.up);
        if !mode.up && (was_up || returned) {
            let from = mode.down_at.unwrap_or_else(Instant::now);
            lanes.hold_local_after(from + shared::HORIZON);
        }
        if before.replicas != now_seen.replicas
            && let Some(limits) = self.limits().as_ref()
        {
            let share = share(limits, now_seen.replicas);
            let (settings, full) = (lane_settings(limits, share), full_settings(limits, share));
            lanes.reconfigure(settings, full, Arc::new(limits.clone()), share);
        }
        mode
    }

    /// Waits for the grant's slot: true when it came, false when the grant was revoked first
    /// (Redis came back since it was given).
    pub(super) async fn wait_slot(&self, grant: &Grant, deadline: Deadline) -> Result<bool, Error> {
        let Some(mut modes) = self.inner.budget.subscribe() else {
            self.bounded(std::pin::pin!(sleep_until(grant.slot)), deadline)
                .await
                .map_err(|stop| stop.into_error(false))?;
            return Ok(true);
        };
        let epoch = grant.epoch;
        let mut waited = Box::pin(async move {
            let slot = sleep_until(grant.slot);
            tokio::pin!(slot);
            loop {
                tokio::select! {
                    () = &mut slot => return true,
                    changed = modes.changed() => {
                        if changed.is_err() || modes.borrow_and_update().epoch != epoch {
                            return false;
                        }
                    }
                }
            }
        });
        self.bounded(waited.as_mut(), deadline)
            .await
            .map_err(|stop| stop.into_error(false))
    }

    /// Takes the slot in the shared budget, or `None` when Redis is away (pace locally). Only
    /// this replica's head of line for the API asks Redis, so a backlog costs one call per slot.
    pub(super) async fn shared_slot(
        &self,
        shared: &Shared,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        deadline: Deadline,
        first: bool,
    ) -> Option<Result<Grant, Error>> {
        loop {
            let mut head = match self
                .bounded(std::pin::pin!(shared.head(api)), deadline)
                .await
            {
                Ok(head) => Some(head),
                Err(stop) => return Some(Err(stop.into_error(false))),
            };
            // Read each time, under one lock: a reload may have changed the limits.
            let (full, pace, total) = {
                let lanes = self.lanes();
                let total = lanes.total.as_ref().map(|t| t.paces.full.interval);
                (lanes.full, lanes.paces(api).full, total)
            };
            if let Some(until) = shared.held_until(pace.window) {
                // A stall's fence: ask once it has passed.
                if self.past(deadline, until) {
                    let busy = Error::AppBusy {
                        retry_after: until.saturating_duration_since(Instant::now()),
                        full: false,
                    };
                    return Some(Err(self.too_late(deadline, busy)));
                }
                let waited = self
                    .bounded(std::pin::pin!(sleep_until(until)), deadline)
                    .await;
                if let Err(stop) = waited {
                    return Some(Err(stop.into_error(false)));
                }
                continue;
            }
            let epoch = shared.mode().epoch;
            let group_interval = group.map_or(full.group_interval, |g| full.group(g).0);
            let reserved = shared
                .reserve(
                    api,
                    group.map(|g| &**g),
                    pace.interval * units,
                    group_interval,
                    total,
                )
                .await?;
            let (later, group_later) = match reserved {
                Reserved::At(slot) if slot.within > tolerance(&full) => {
                    // Every recent answer from Redis took so long that where the slot lies on
                    // this clock is not known closely enough: leave it unused and ask again.
                    tracing::debug!(api = &**api, "Shared slot placed too loosely to use.");
                    continue;
                }
                Reserved::At(slot)
                    if shared.held_until(pace.window).is_some_and(|u| slot.at < u) =>
                {
                    // A stall began while it was asked for: the slot lies inside its fence.
                    continue;
                }
                Reserved::At(slot) => {
                    drop(head);
                    let grant = Grant {
                        slot: slot.at,
                        claimed: None,
                        epoch,
                        use_by: Some(slot.at - slot.within + tolerance(&full)),
                        units,
                    };
                    return Some(self.shared_grant((api, units), group, deadline, first, grant));
                }
                Reserved::GroupLater(later) => (later, true),
                Reserved::AppLater(later) => (later, false),
            };
            let until = Instant::now() + later;
            let left = until
                + if group_later {
                    Duration::ZERO
                } else {
                    shared::HORIZON
                };
            if self.past(deadline, left) {
                let retry_after = left.saturating_duration_since(Instant::now());
                let busy = if group_later {
                    Error::GroupBusy {
                        retry_after,
                        full: false,
                    }
                } else {
                    Error::AppBusy {
                        retry_after,
                        full: false,
                    }
                };
                return Some(Err(self.too_late(deadline, busy)));
            }
            if group_later {
                // Another replica holds the group's next slot: let this replica's other groups
                // go first, and ask again when it comes.
                head = None;
            }
            let waited = self
                .bounded(std::pin::pin!(sleep_until(until)), deadline)
                .await;
            drop(head);
            if let Err(stop) = waited {
                return Some(Err(stop.into_error(group_later)));
            }
        }
    }

    /// A slot reserved in Redis for every replica together: the local lanes keep this replica's
    /// order and send cap, and, should Redis go away, start after it.
    fn shared_grant(
        &self,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        deadline: Deadline,
        first: bool,
        grant: Grant,
    ) -> Result<Grant, Error> {
        let slot = grant.slot;
        {
            let mut lanes = self.lanes();
            lanes.follow_shared(api, group, slot);
            if first && !self.past(deadline, slot) {
                lanes.unpend(api, units);
            }
        }
        let wait = slot.saturating_duration_since(Instant::now());
        if self.past(deadline, slot) {
            let busy = Error::AppBusy {
                retry_after: wait,
                full: false,
            };
            return Err(self.too_late(deadline, busy));
        }
        self.observe_wait(false, wait);
        Ok(grant)
    }
}
