//! The moment of sending and of answering: a send is claimed against both lanes' logs and the
//! API's calls in flight, and an answer that came late moves its call to the moment it came.
//!
//! Why answers matter: a call may reach Tencent at any moment between leaving and being answered.
//! An upstream that stalls and then works through what it holds sees every held call at once, so
//! a call answered later than `window_guard` after it left is counted at its answer, and a call
//! still in flight is counted for as long as it flies. A send is then claimed only while the
//! calls that could share Tencent's second with it (logged in the window, or still flying) are
//! fewer than the cap: whatever the upstream does with them, no second can hold more.

use std::sync::Arc;

use tokio::time::Instant;

use super::lanes::Lanes;

/// Why a send cannot be claimed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// A lane's window is full until then.
    Until(Instant),
    /// The calls in flight alone fill the cap: an answer has to come first.
    Landing,
}

impl Lanes {
    /// [`Lanes::claim_send_capped`] with the settings in force.
    pub(crate) fn claim_send(
        &mut self,
        api: (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        now: Instant,
    ) -> Result<Instant, Hold> {
        self.claim_send_capped(api, group, now, false)
    }

    /// The moment of sending: records the send in both lanes' logs and among the API's calls in
    /// flight, and returns its instant (the permit lands it with that); or says what holds it,
    /// recording nothing. `full` caps at the full limits: a shared budget governs the totals and
    /// this replica may use all of it; else at this replica's share. A send of `units` needs
    /// room for them all in the API's lane (the total's counts it once).
    pub(crate) fn claim_send_capped(
        &mut self,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        now: Instant,
        full: bool,
    ) -> Result<Instant, Hold> {
        let settings = match full {
            true => self.full,
            false => self.settings,
        };
        // The API's lane and the app's total (when capped): both must have room.
        let app_at = self
            .apps
            .get(api)
            .map_or(Some(now), |lane| lane.allowed_at(full, now, units as usize));
        let total_at = self
            .total
            .as_ref()
            .map_or(Some(now), |lane| lane.allowed_at(full, now, 1));
        let window = settings.send_window;
        let app_at = app_at
            .ok_or(Hold::Landing)?
            .max(total_at.ok_or(Hold::Landing)?);
        let group_cap = group.map_or(0, |g| settings.group(g).1);
        let lane = group.and_then(|g| self.groups.get(g));
        let group_at = lane
            .and_then(|lane| lane.sent.allowed_at_with(group_cap, (0, 1), window, now))
            .unwrap_or(now);
        let at = app_at.max(group_at);
        if at > now {
            return Err(Hold::Until(at));
        }
        if let Some(app) = self.apps.get_mut(api) {
            app.record(full, now, units as usize);
        }
        if let Some(total) = self.total.as_mut() {
            total.record(full, now, 1);
        }
        if let Some(lane) = group.and_then(|g| self.groups.get_mut(g)) {
            lane.sent.record(group_cap, now, 1);
        }
        Ok(now)
    }

    /// The call claimed at `sent` was answered (or given up on) `now`: it no longer flies, and,
    /// if the answer came later than the guard allows for, it counts in both logs as arriving now.
    pub(crate) fn land(
        &mut self,
        (api, units): (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        sent: Instant,
        now: Instant,
    ) {
        let settings = self.settings;
        let full = self.full;
        let late = now.saturating_duration_since(sent) + std::time::Duration::from_secs(1)
            > settings.send_window;
        if let Some(app) = self.apps.get_mut(api) {
            app.land(sent, now, late, units as usize);
        }
        if let Some(total) = self.total.as_mut() {
            total.land(sent, now, late, 1);
        }
        if let Some(group) = group.filter(|_| late)
            && let Some(lane) = self.groups.get_mut(group)
        {
            let cap = settings.group(group).1.max(full.group(group).1);
            lane.sent.land(cap, sent, now, 1);
        }
    }

    /// A claim was held until `at`: the request takes a new app slot from then, so that the
    /// requests held together leave spaced again, not all at `at`. Returns the new slot.
    pub(crate) fn respace(
        &mut self,
        (api, units): (&Arc<str>, u32),
        at: Instant,
        now: Instant,
    ) -> Instant {
        let Some(app) = self.apps.get_mut(api) else {
            return at;
        };
        let slot = app.tat.max(at);
        app.tat = slot + app.rate.interval(now) * units;
        slot
    }
}
