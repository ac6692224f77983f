//! Lane state behind the pacer's lock: one app lane per API, one group lane per GroupId (its line
//! is in `group_queue`), the admission arithmetic and the reservation of slots.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api_pace::Paces;
use super::idle::IdleQueue;
use super::lane::estimate;
pub(crate) use super::lane::{AppLane, GroupLane};
use super::rate::Rate;
pub use super::settings::{LaneSettings, message_lane};
use super::total::total_estimate;
use crate::config::LimitsConfig;
use crate::error::Error;

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
    pub apps: crate::FastMap<Arc<str>, AppLane>,
    /// The app's total over every API (`limits.app_total_per_second`), when capped: every
    /// request passes it besides its API's lane.
    pub total: Option<AppLane>,
    /// Group lanes.
    pub groups: crate::FastMap<Arc<str>, GroupLane>,
    /// Groups that went idle, by when they may be forgotten.
    pub(super) idle: IdleQueue,
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
    pub(super) daily: crate::FastMap<Arc<str>, VecDeque<Instant>>,
    /// The limits each API lane is paced by, and the share of them the local lanes keep; none
    /// for lanes made from settings alone (tests, benchmarks): each API then has `settings`'s.
    limits: Option<(Arc<LimitsConfig>, f64)>,
    next_id: u64,
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
            daily: crate::FastMap::default(),
            groups: crate::FastMap::default(),
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
    /// in line times the lane's spacing) past its deadline. `units`: what the request counts
    /// against its API's limit (1, or its recipients). Returns its id, how it proceeds, and that
    /// estimate.
    pub(crate) fn admit(
        &mut self,
        (api, units): (&Arc<str>, u32),
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
        app.pending += units as usize;
        self.queued += 1;
        self.next_id += 1;
        let id = self.next_id;
        let admitted = match group {
            Some(key) => self.join_group(key, id, now),
            None => Admitted::Go,
        };
        Ok((id, admitted, estimate))
    }

    /// Reserves the next app slot (and the group's, together): the send time, or `None` if it
    /// would be past `deadline` (when there is one), in which case nothing is taken.
    ///
    /// A slot may lie up to [`TIMER_SLACK`] in the past: tokio's timers fire on whole
    /// milliseconds, and charging that lateness to the schedule would lose up to 1 ms per send
    /// (a fifth of an app interval). The schedule stays exactly spaced; actual sends trail it by
    /// at most the slack, which `window_guard_ms` covers. `first` is false for a retry, which
    /// was never counted as pending. A request of `units` reserves the API lane's spacing that
    /// many times (the total's once: it counts calls).
    pub(crate) fn reserve(
        &mut self,
        (api, units): (&Arc<str>, u32),
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
        app.tat = slot + app.rate.interval(now) * units;
        if first {
            app.pending = app.pending.saturating_sub(units as usize);
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

    /// An admitted request of `units` gave up before it had a slot.
    pub(crate) fn unpend(&mut self, api: &Arc<str>, units: u32) {
        if let Some(app) = self.apps.get_mut(api) {
            app.pending = app.pending.saturating_sub(units as usize);
        }
        if let Some(total) = self.total.as_mut() {
            total.pending = total.pending.saturating_sub(1);
        }
    }

    /// An admitted request leaves the queue: it is being sent, or it gave up.
    pub(crate) fn unqueue(&mut self) {
        self.queued = self.queued.saturating_sub(1);
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
}
