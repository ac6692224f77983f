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
    /// When a send may leave: now, or when the oldest of the last `cap` sends leaves the window.
    pub(crate) fn allowed_at(&self, cap: usize, window: Duration, now: Instant) -> Instant {
        match self.times.front() {
            Some(&oldest) if cap > 0 && self.times.len() >= cap => (oldest + window).max(now),
            _ => now,
        }
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
