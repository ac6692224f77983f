//! A lane's log of actual send instants: the hard cap behind the spacing.

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
    /// When a send may leave with `held` more calls counted beside the log (in flight, their
    /// sends gone from the window): now, or when enough of the last sends leave the window that
    /// fewer than `cap` remain with it. `None` when `held` alone fills the cap.
    pub(crate) fn allowed_at_with(
        &self,
        cap: usize,
        held: usize,
        window: Duration,
        now: Instant,
    ) -> Option<Instant> {
        if cap == 0 {
            return Some(now);
        }
        let room = cap.checked_sub(held).filter(|&room| room > 0)?;
        let len = self.times.len();
        if len < room {
            return Some(now);
        }
        // The room-th newest send must have left the window.
        Some((self.times[len - room] + window).max(now))
    }

    /// The call sent at `sent` was answered late, at `now`: it counts from now, as though it
    /// arrived then (it may have), in place of its send.
    pub(crate) fn land(&mut self, cap: usize, sent: Instant, now: Instant) {
        if cap == 0 {
            return;
        }
        if let Some(at) = self.times.iter().rposition(|&t| t == sent) {
            self.times.remove(at);
        }
        self.record(cap, now);
    }

    pub(crate) fn record(&mut self, cap: usize, now: Instant) {
        if cap == 0 {
            return;
        }
        if self.times.len() >= cap {
            self.times.pop_front();
        }
        self.times.push_back(now);
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
