//! A lane's log of actual send instants: the hard cap behind the spacing. A call that counts as
//! several units (a `batchsendmsg` of 200 recipients) is that many entries at its instant.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The last sends of a lane, as they actually left: the hard cap behind the spacing. A timer that
/// fires late (a starved runtime) could otherwise bunch a late send with the ones scheduled after
/// it; the log holds every window of `send_window` to `cap` sends at the moment of sending.
#[derive(Debug, Default)]
pub(crate) struct SendLog {
    times: VecDeque<Instant>,
}

impl SendLog {
    /// When a send of `units` may leave with `held` more units counted beside the log (in flight,
    /// their sends gone from the window): now, or when enough of the last sends leave the window
    /// that at most `cap - held - units` remain in it. `None` when `held` and `units` alone
    /// exceed the cap.
    pub(crate) fn allowed_at_with(
        &self,
        cap: usize,
        (held, units): (usize, usize),
        window: Duration,
        now: Instant,
    ) -> Option<Instant> {
        if cap == 0 {
            return Some(now);
        }
        let keep = cap.checked_sub(held + units)?;
        let len = self.times.len();
        if len <= keep {
            return Some(now);
        }
        // The (keep + 1)-th newest send must have left the window.
        Some((self.times[len - keep - 1] + window).max(now))
    }

    /// The call of `units` sent at `sent` was answered late, at `now`: it counts from now, as
    /// though it arrived then (it may have), in place of its send.
    pub(crate) fn land(&mut self, cap: usize, sent: Instant, now: Instant, units: usize) {
        if cap == 0 {
            return;
        }
        remove_units(&mut self.times, sent, units);
        self.record(cap, now, units);
    }

    /// A send of `units` left `now`: the log keeps the last `cap` units.
    pub(crate) fn record(&mut self, cap: usize, now: Instant, units: usize) {
        if cap == 0 {
            return;
        }
        for _ in 0..units.min(cap) {
            if self.times.len() >= cap {
                self.times.pop_front();
            }
            self.times.push_back(now);
        }
    }

    /// When the last send leaves the window.
    pub(crate) fn quiet_at(&self, window: Duration) -> Option<Instant> {
        self.times.back().map(|&last| last + window)
    }

    pub(crate) fn is_quiet(&self, window: Duration, now: Instant) -> bool {
        self.times
            .back()
            .is_none_or(|&last| now.saturating_duration_since(last) >= window)
    }
}

/// Removes a call of `units` sent at `sent` from instants kept once per unit, oldest first: its
/// entries lie together, and any `units` of that instant are as good as its own.
pub(crate) fn remove_units(times: &mut VecDeque<Instant>, sent: Instant, units: usize) {
    if let Some(last) = times.iter().rposition(|&t| t == sent) {
        let first = (last + 1).saturating_sub(units);
        let first = (first..=last).find(|&at| times[at] == sent).unwrap_or(last);
        times.drain(first..=last);
    }
}
