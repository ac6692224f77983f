//! One lane's state: an API's budget, a group's budget and queue, and the arithmetic of when a
//! request admitted now would leave through them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api_pace::{ApiPace, Paces};
use super::batch::Batch;
use super::lanes::LaneSettings;
use super::rate::Rate;
use super::send_log::SendLog;
use crate::error::Error;

/// One API's budget: GCRA with a burst of one, as the next instant a send may be reserved.
#[derive(Debug)]
pub(crate) struct AppLane {
    /// The theoretical arrival time: no slot before it.
    pub tat: Instant,
    /// Spacing between sends, slowed after throttling answers.
    pub rate: Rate,
    /// When its last sends actually left.
    pub sent: SendLog,
    /// The units (calls, or recipients for a recipient-counted API) of admitted requests of
    /// this API that have no slot yet.
    pub pending: usize,
    /// When each of its calls now in flight left, oldest first, once per unit: until answered, a
    /// call may reach Tencent at any moment.
    pub flying: VecDeque<Instant>,
    /// Its spacing, cap and window, from its own limit.
    pub paces: Paces,
    /// No local slot before it: the shared slots reserved in Redis must have left their window
    /// first, should Redis go away. Apart from `tat`, so that a request admitted while Redis
    /// serves is not estimated behind a hold (a minute, for a per-minute API) it never waits for.
    pub hold: Instant,
}

impl AppLane {
    pub(super) fn new(paces: Paces, now: Instant) -> AppLane {
        AppLane {
            paces,
            hold: now,
            tat: now,
            rate: Rate::new(paces.local.interval, now),
            sent: SendLog::default(),
            pending: 0,
            flying: VecDeque::new(),
        }
    }
}

impl AppLane {
    /// The next slot there can be: not before `tat`, nor, while the lanes pace locally
    /// (`shared` false), before the hold.
    pub(super) fn next(&self, now: Instant, shared: bool) -> Instant {
        match shared {
            true => self.tat.max(now),
            false => self.tat.max(self.hold).max(now),
        }
    }

    /// Its pace at the full limit (`full`, while a shared budget governs) or this replica's share.
    fn pace(&self, full: bool) -> ApiPace {
        match full {
            true => self.paces.full,
            false => self.paces.local,
        }
    }

    /// When a send of `units` may be claimed: now, or when its window has room; `None` while its
    /// calls in flight alone fill it (an answer has to come first).
    pub(super) fn allowed_at(&self, full: bool, now: Instant, units: usize) -> Option<Instant> {
        let pace = self.pace(full);
        if pace.max_in_flight == 0 {
            return self
                .sent
                .allowed_at_with(pace.cap, (0, units), pace.window, now);
        }
        if self.flying.len() + units > pace.max_in_flight {
            return None;
        }
        // Calls still flying whose send has left the window: the log no longer counts them,
        // yet each may still arrive.
        let window = pace.window;
        let stale = self.flying.iter().filter(|&&t| t + window <= now).count();
        self.sent
            .allowed_at_with(pace.cap, (stale, units), window, now)
    }

    /// A send of `units` claimed `now`: in the log, and flying until it lands.
    pub(super) fn record(&mut self, full: bool, now: Instant, units: usize) {
        let pace = self.pace(full);
        self.sent.record(pace.cap, now, units);
        if pace.max_in_flight > 0 {
            self.flying.extend(std::iter::repeat_n(now, units));
        }
    }

    /// The call of `units` sent at `sent` was answered `now`; `late`: later than the guard allows
    /// for, so it counts from now.
    pub(super) fn land(&mut self, sent: Instant, now: Instant, late: bool, units: usize) {
        super::send_log::remove_units(&mut self.flying, sent, units);
        if late {
            let cap = self.paces.local.cap.max(self.paces.full.cap);
            self.sent.land(cap, sent, now, units);
        }
    }
}

/// One group's write budget and queue.
#[derive(Debug)]
pub(crate) struct GroupLane {
    /// No write of this group is sent before it.
    pub tat: Instant,
    /// Spacing between this group's writes, slowed after throttling answers.
    pub rate: Rate,
    /// When its last writes actually left.
    pub sent: SendLog,
    /// A write of this group holds the lane: it is waiting for its slot or its answer.
    pub busy: bool,
    /// Writes waiting behind it, in accept order, each with when it was admitted (for
    /// `GET /queues`) and the signal that hands it the lane.
    pub waiters: VecDeque<(u64, Instant, oneshot::Sender<()>)>,
    /// When the write holding the lane (`busy`) was admitted: the oldest wait of the group.
    pub held_since: Instant,
    /// The coalesced batch a mergeable write may join: the newest write in this lane, not yet
    /// sent (see `pace::batch`). Any other write admitted to the lane closes it.
    pub open: Option<Arc<Batch>>,
}

impl GroupLane {
    pub(super) fn is_idle(&mut self, now: Instant, window: Duration) -> bool {
        // Recovery is lazy: bring the rate up to date before asking whether it has recovered.
        self.rate.interval(now);
        // A slowed group is kept until it has recovered, and any group until its last send has
        // left the window: forgetting either would forget what holds the next send back.
        !self.busy
            && self.waiters.is_empty()
            && self.tat <= now
            && !self.rate.is_slowed()
            && self.sent.is_quiet(window, now)
    }
}

/// When a request admitted now would leave, by its API's lane and its group's (`lane`, when the
/// group has one), or why it may not wait: its group's queue is full, or it would leave after
/// `deadline`. A group behind by more than the API is answered as the group's refusal.
pub(super) fn estimate(
    app: &AppLane,
    lane: Option<&GroupLane>,
    settings: &LaneSettings,
    (deadline, now): (Instant, Instant),
    shared: bool,
) -> Result<Instant, Error> {
    // Its slot comes once the units ahead have theirs (its own space the slot after it).
    let app_estimate = app.next(now, shared) + app.rate.current() * app.pending as u32;
    let mut estimate = app_estimate;
    if let Some(lane) = lane {
        if lane.waiters.len() >= settings.max_queue_per_group {
            let ahead = lane.waiters.len() as u32 + 1;
            let retry_after = busy(lane.tat.max(now) + lane.rate.current() * ahead, now);
            return Err(Error::GroupBusy {
                retry_after,
                full: true,
            });
        }
        let ahead = lane.waiters.len() as u32 + u32::from(lane.busy);
        let group_estimate = lane.tat.max(now) + lane.rate.current() * ahead;
        if group_estimate > deadline && group_estimate >= app_estimate {
            return Err(Error::GroupBusy {
                retry_after: busy(group_estimate, now),
                full: false,
            });
        }
        estimate = estimate.max(group_estimate);
    }
    if estimate > deadline {
        return Err(Error::AppBusy {
            retry_after: busy(estimate, now),
            full: false,
        });
    }
    Ok(estimate)
}

fn busy(estimate: Instant, now: Instant) -> Duration {
    estimate
        .saturating_duration_since(now)
        .max(Duration::from_secs(1))
}
