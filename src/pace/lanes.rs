//! Lane state behind the pacer's lock: one app lane per API, one group lane per GroupId with a
//! FIFO of waiting writes, the admission arithmetic, and the forgetting of idle groups.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api_pace::Paces;
use super::idle::IdleQueue;
use super::lane::estimate;
pub(crate) use super::lane::{AppLane, GroupLane};
use super::rate::Rate;
use super::send_log::SendLog;
use super::total::total_estimate;
use crate::config::LimitsConfig;
use crate::error::Error;
use crate::tencent::apis::GROUP_MESSAGES_PER_SECOND;

/// How far in the past a slot may be reserved (see [`Lanes::reserve`]).
pub(crate) const TIMER_SLACK: Duration = Duration::from_millis(1);

/// How an admitted request proceeds.
pub(crate) enum Admitted {
    /// It holds its group lane (or has none) and may go for its slot at once.
    Go,
    /// It waits behind earlier writes of its group until this fires.
    Wait(oneshot::Receiver<()>),
}

/// A lane takes a new configured spacing: its next slot was set at the old spacing from its last
/// send, so it moves by the difference.
pub(super) fn respace(rate: &mut Rate, tat: &mut Instant, base: Duration) {
    let old = rate.current();
    rate.set_base(base);
    let new = rate.current();
    *tat = if new >= old {
        *tat + (new - old)
    } else {
        tat.checked_sub(old - new).unwrap_or(*tat)
    };
}

/// Everything the pacer's lock protects.
#[derive(Debug)]
pub(crate) struct Lanes {
    pub apps: HashMap<Arc<str>, AppLane>,
    /// The app's total over every API (`limits.app_total_per_second`), when capped: every
    /// request passes it besides its API's lane.
    pub total: Option<AppLane>,
    /// Group lanes; foldhash, seeded per process, hashes a GroupId several times faster than
    /// SipHash, which showed in profiles (each write looks its group up a few times).
    pub groups: HashMap<Arc<str>, GroupLane, foldhash::fast::RandomState>,
    /// Groups that went idle, by when they may be forgotten.
    idle: IdleQueue,
    /// Admitted requests without a slot, over all lanes.
    pub queued: usize,
    /// Group writes waiting behind another write.
    pub group_waiting: usize,
    /// The shared budget's state these lanes follow (see `Pacer::follow`).
    pub(super) seen: super::follow::Seen,
    /// The settings in force (a reload may change them).
    pub(super) settings: LaneSettings,
    /// The settings at the full limits: what a shared (Redis) budget spaces and caps by. The
    /// same as `settings` for the local backend; `settings` holds the fallback share otherwise.
    pub full: LaneSettings,
    /// When each daily-capped API's calls of the last day were taken (local budget only).
    pub(super) daily: HashMap<Arc<str>, VecDeque<Instant>>,
    /// The limits each API lane is paced by, and the share of them the local lanes keep; none
    /// for lanes made from settings alone (tests, benchmarks): each API then has `settings`'s.
    limits: Option<(Arc<LimitsConfig>, f64)>,
    next_id: u64,
}

/// The settings lanes are made with.
#[derive(Debug, Clone, Copy)]
pub struct LaneSettings {
    /// Spacing of one API's sends (an API lane without a limit of its own: see `ApiPace`).
    pub app_interval: Duration,
    /// Spacing of one group's writes.
    pub group_interval: Duration,
    /// Most writes waiting in one group's queue.
    pub max_queue_per_group: usize,
    /// Most requests waiting over all lanes.
    pub max_queued: usize,
    /// Most actual sends of one API within `send_window` (0: no check).
    pub app_cap: usize,
    /// Most actual sends of one group within `send_window` (0: no check).
    pub group_cap: usize,
    /// Most calls of one API in flight (sent, not yet answered); 0: no bound beyond `app_cap`.
    pub max_in_flight: usize,
    /// One second plus the guard: the window the caps hold in.
    pub send_window: Duration,
    /// Spacing of one group's messages (`send_group_msg`, in its own lane: see [`message_lane`]).
    pub message_interval: Duration,
    /// Most messages of one group within `send_window`.
    pub message_cap: usize,
}

/// What starts the lane key of a group's messages: a GroupId is printable ASCII, so no GroupId
/// (whose attribute writes have the lane named by it alone) can start so.
const MESSAGE_LANE: &str = "\u{2709} ";

/// The lane a group's messages (`send_group_msg`) wait in: apart from its attribute writes,
/// which have a budget of their own (5 a second against 40).
pub fn message_lane(group_id: &str) -> Arc<str> {
    format!("{MESSAGE_LANE}{group_id}").into()
}

impl LaneSettings {
    /// The spacing and cap of the group lane `key`: a group's messages or its attribute writes.
    pub(crate) fn group(&self, key: &str) -> (Duration, usize) {
        match key.starts_with(MESSAGE_LANE) {
            true => (self.message_interval, self.message_cap),
            false => (self.group_interval, self.group_cap),
        }
    }

    /// The same settings with `per_second` messages a second per group.
    pub fn with_messages(mut self, per_second: u32, guard: Duration) -> LaneSettings {
        self.message_interval = super::interval(per_second, guard);
        self.message_cap = per_second as usize;
        self
    }
}

impl LaneSettings {
    /// Settings for `app_per_second` per API and `group_per_second` per group, spaced so that
    /// any second plus `guard` holds at most that many sends, and capped so at the send instant.
    pub fn new(
        app_per_second: u32,
        group_per_second: u32,
        guard: Duration,
        max_queue_per_group: usize,
        max_queued: usize,
    ) -> LaneSettings {
        LaneSettings {
            max_in_flight: app_per_second as usize,
            app_interval: super::interval(app_per_second, guard),
            group_interval: super::interval(group_per_second, guard),
            max_queue_per_group,
            max_queued,
            app_cap: app_per_second as usize,
            group_cap: group_per_second as usize,
            send_window: Duration::from_secs(1) + guard,
            message_interval: super::interval(GROUP_MESSAGES_PER_SECOND, guard),
            message_cap: GROUP_MESSAGES_PER_SECOND as usize,
        }
    }
}

impl Lanes {
    /// Empty lanes for the given APIs.
    pub(crate) fn new(apis: &[Arc<str>], settings: &LaneSettings, now: Instant) -> Lanes {
        let paces = Paces::of_settings(settings, settings);
        let apps = apis
            .iter()
            .map(|api| (api.clone(), AppLane::new(paces, now)))
            .collect();
        Lanes {
            apps,
            total: None,
            daily: HashMap::new(),
            groups: HashMap::default(),
            idle: IdleQueue::default(),
            queued: 0,
            group_waiting: 0,
            seen: super::follow::Seen::default(),
            settings: *settings,
            full: *settings,
            limits: None,
            next_id: 0,
        }
    }

    /// Lanes that have sent nothing take their limits: each API lane is made afresh with its own
    /// paces, `full` the settings at the full limits.
    pub(crate) fn start_with(&mut self, full: LaneSettings, limits: Arc<LimitsConfig>, share: f64) {
        self.full = full;
        self.limits = Some((limits, share));
        let now = Instant::now();
        let apis: Vec<Arc<str>> = self.apps.keys().cloned().collect();
        for api in apis {
            let lane = AppLane::new(self.paces_of(&api), now);
            self.apps.insert(api, lane);
        }
        self.set_total(now);
    }

    /// The limits in force and the share of them kept locally, when the lanes were given limits.
    pub(super) fn limits(&self) -> Option<(&LimitsConfig, f64)> {
        self.limits
            .as_ref()
            .map(|(limits, share)| (&**limits, *share))
    }

    /// The paces of `api`: from its limit, or the settings' own numbers.
    pub(crate) fn paces_of(&self, api: &str) -> Paces {
        match &self.limits {
            Some((limits, share)) => match limits.limit_of(api) {
                Some(limit) => Paces::new(limit, limits, *share),
                None => Paces::of_settings(&self.settings, &self.full),
            },
            None => Paces::of_settings(&self.settings, &self.full),
        }
    }

    /// The paces the lane of `api` has (the settings' for an API without a lane yet).
    pub(crate) fn paces(&self, api: &str) -> Paces {
        self.apps
            .get(api)
            .map_or_else(|| self.paces_of(api), |app| app.paces)
    }

    /// Admits a request or refuses it at once: queues full, or its estimated send time (its place
    /// in line times the lane's spacing) past its deadline. Returns its id, how it proceeds, and
    /// that estimate.
    pub(crate) fn admit(
        &mut self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Instant,
        now: Instant,
    ) -> Result<(u64, Admitted, Instant), Error> {
        let settings = self.settings;
        self.forget_idle(now);
        if self.queued >= settings.max_queued {
            return Err(Error::AppBusy {
                retry_after: Duration::from_secs(1),
                full: true,
            });
        }
        // An API first seen after a reload added it: its lane takes its own limit.
        let paces = self.paces(api);
        let app = self
            .apps
            .entry(api.clone())
            .or_insert_with(|| AppLane::new(paces, now));
        let lane = group.and_then(|key| self.groups.get(key));
        let shared = self.seen.up();
        let estimate = estimate(app, lane, &settings, (deadline, now), shared)?;
        let estimate = match &mut self.total {
            Some(total) => total_estimate(total, estimate, (deadline, now), shared)?,
            None => estimate,
        };
        app.pending += 1;
        self.queued += 1;
        self.next_id += 1;
        let id = self.next_id;
        let admitted = match group {
            Some(key) => self.join_group(key, id, now),
            None => Admitted::Go,
        };
        Ok((id, admitted, estimate))
    }

    /// Puts admitted request `id` in its group's lane: it holds the lane when the lane is free,
    /// else waits behind the lane's holder and waiters.
    fn join_group(&mut self, key: &Arc<str>, id: u64, now: Instant) -> Admitted {
        let (interval, _) = self.settings.group(key);
        let lane = self.groups.entry(key.clone()).or_insert_with(|| GroupLane {
            tat: now,
            rate: Rate::new(interval, now),
            sent: SendLog::default(),
            busy: false,
            waiters: VecDeque::new(),
            open: None,
        });
        // Nothing merges across a write: a batch opened for it sets itself open afterwards.
        if let Some(batch) = lane.open.take() {
            batch.close();
        }
        if !lane.busy {
            lane.busy = true;
            return Admitted::Go;
        }
        let (tx, rx) = oneshot::channel();
        lane.waiters.push_back((id, tx));
        self.group_waiting += 1;
        Admitted::Wait(rx)
    }

    /// When the group's next write may leave (now for a new or rested group).
    pub(crate) fn group_ready_at(&self, group: &Arc<str>, now: Instant) -> Instant {
        self.groups.get(group).map_or(now, |lane| lane.tat.max(now))
    }

    /// Reserves the next app slot (and the group's, together): the send time, or `None` if it
    /// would be past `deadline` (when there is one), in which case nothing is taken.
    ///
    /// A slot may lie up to [`TIMER_SLACK`] in the past: tokio's timers fire on whole
    /// milliseconds, and charging that lateness to the schedule would lose up to 1 ms per send
    /// (a fifth of an app interval). The schedule stays exactly spaced; actual sends trail it by
    /// at most the slack, which `window_guard_ms` covers. `first` is false for a retry, which
    /// was never counted as pending.
    pub(crate) fn reserve(
        &mut self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Option<Instant>,
        now: Instant,
        first: bool,
    ) -> Option<Instant> {
        let app = self.apps.get_mut(api)?;
        let earliest = now.checked_sub(TIMER_SLACK).unwrap_or(now);
        let group_tat = group.and_then(|g| self.groups.get(g)).map(|lane| lane.tat);
        let total_tat = self.total.as_ref().map(|total| total.tat.max(total.hold));
        let slot = app
            .tat
            .max(app.hold)
            .max(group_tat.unwrap_or(earliest))
            .max(earliest);
        let slot = slot.max(total_tat.unwrap_or(slot));
        if deadline.is_some_and(|deadline| slot > deadline) {
            return None;
        }
        app.tat = slot + app.rate.interval(now);
        if first {
            app.pending = app.pending.saturating_sub(1);
        }
        if let Some(total) = self.total.as_mut() {
            total.tat = slot + total.rate.interval(now);
            if first {
                total.pending = total.pending.saturating_sub(1);
            }
        }
        if let Some(lane) = group.and_then(|g| self.groups.get_mut(g)) {
            lane.tat = slot + lane.rate.interval(now);
        }
        Some(slot)
    }

    /// An admitted request gave up before it had a slot.
    pub(crate) fn unpend(&mut self, api: &Arc<str>) {
        let total = self.total.as_mut();
        for app in self.apps.get_mut(api).into_iter().chain(total) {
            app.pending = app.pending.saturating_sub(1);
        }
    }

    /// An admitted request leaves the queue: it is being sent, or it gave up.
    pub(crate) fn unqueue(&mut self) {
        self.queued = self.queued.saturating_sub(1);
    }

    /// Removes a waiter from its group's queue. False if it was no longer there: it had already
    /// been handed the lane.
    pub(crate) fn leave_queue(&mut self, group: &Arc<str>, id: u64) -> bool {
        let Some(lane) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(at) = lane.waiters.iter().position(|(waiter, _)| *waiter == id) else {
            return false;
        };
        lane.waiters.remove(at);
        self.group_waiting -= 1;
        true
    }

    /// The write holding the group is done: hand the lane to the next live waiter, in order.
    pub(crate) fn release(&mut self, group: &Arc<str>) {
        let Some(lane) = self.groups.get_mut(group) else {
            return;
        };
        while let Some((_, handover)) = lane.waiters.pop_front() {
            self.group_waiting -= 1;
            // A waiter whose caller just hung up has dropped its receiver: skip it. Its own
            // cleanup will find itself gone from the queue and do nothing more.
            if handover.send(()).is_ok() {
                return;
            }
        }
        lane.busy = false;
        let forgettable = lane
            .sent
            .quiet_at(self.settings.send_window)
            .map_or(lane.tat, |quiet| quiet.max(lane.tat));
        self.idle.push(forgettable, group.clone(), Instant::now());
    }

    /// The API lane's sending rate per second now.
    pub(crate) fn app_rate(&self, api: &Arc<str>) -> Option<f64> {
        Some(self.apps.get(api)?.rate.per_second())
    }

    /// A slot was reserved in the shared budget. Its wait showed how far every replica's
    /// reservations reach; should Redis go away, this replica's local pacing waits until that
    /// slot has left the send window, so that its local sends never share a window with shared
    /// slots still to be sent.
    pub(crate) fn follow_shared(
        &mut self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        slot: Instant,
    ) {
        let window = self.settings.send_window;
        let total = self.total.as_mut();
        for app in self.apps.get_mut(api).into_iter().chain(total) {
            app.hold = app.hold.max(slot + app.paces.local.window);
        }
        if let Some(lane) = group.and_then(|g| self.groups.get_mut(g)) {
            lane.tat = lane.tat.max(slot + window);
        }
    }

    /// Applies new settings (a configuration reload, or a new share): bounds at once, and each
    /// lane's configured spacing, keeping every queue, slot and slowdown. Each API lane takes
    /// its paces from `limits` at `share`.
    pub(crate) fn reconfigure(
        &mut self,
        settings: LaneSettings,
        full: LaneSettings,
        limits: Arc<LimitsConfig>,
        share: f64,
    ) {
        self.settings = settings;
        self.full = full;
        self.limits = Some((limits, share));
        let apis: Vec<Arc<str>> = self.apps.keys().cloned().collect();
        for api in apis {
            let paces = self.paces_of(&api);
            if let Some(app) = self.apps.get_mut(&api) {
                app.paces = paces;
                respace(&mut app.rate, &mut app.tat, paces.local.interval);
            }
        }
        for (key, lane) in self.groups.iter_mut() {
            respace(&mut lane.rate, &mut lane.tat, settings.group(key).0);
        }
        self.set_total(Instant::now());
    }

    /// Tencent said "too fast" for this lane: slow it down. Returns the lane's new rate per
    /// second, or `None` if the lane is unknown.
    pub(crate) fn slow_down(
        &mut self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        now: Instant,
    ) -> Option<f64> {
        let (rate, tat) = match group {
            Some(group) => self
                .groups
                .get_mut(group)
                .map(|lane| (&mut lane.rate, &mut lane.tat))?,
            None => self
                .apps
                .get_mut(api)
                .map(|lane| (&mut lane.rate, &mut lane.tat))?,
        };
        let before = rate.current();
        if rate.slow_down(now) {
            // The next slot was set at the old spacing from the last send: apply the new one.
            *tat += rate.current().saturating_sub(before);
        }
        Some(rate.per_second())
    }

    /// Forgets groups whose last write's spacing has passed with nothing waiting: memory follows
    /// queued work, not the number of groups ever seen.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        while let Some(group) = self.idle.pop_due(now) {
            let Some(lane) = self.groups.get_mut(&group) else {
                continue;
            };
            if lane.is_idle(now, self.settings.send_window) {
                self.groups.remove(&group);
            } else if !lane.busy && lane.waiters.is_empty() {
                // Quiet but still slowed down: look again when the window has passed once more.
                // (A busy lane is looked at again when it is released.)
                self.idle.push(now + self.settings.send_window, group, now);
            }
        }
    }
}
