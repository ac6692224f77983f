//! Strict sliding-window counting, as the emulator enforces Tencent's limits: a call is refused
//! when the window already holds `limit` arrivals, whatever the window's phase.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The arrivals of the last window's length for one lane.
#[derive(Debug, Default)]
pub struct Window {
    arrivals: VecDeque<Instant>,
}

impl Window {
    /// Records an arrival at `now`. Returns false (too fast) when `limit` arrivals already fall
    /// within the `span` before it. Refused arrivals count too: Tencent sees them all.
    pub fn arrive(&mut self, now: Instant, span: Duration, limit: u32) -> bool {
        self.arrive_many(now, span, limit, 1)
    }

    /// Records `count` arrivals at `now` (a call to many recipients, each counted). Returns false
    /// when they do not all fit under `limit` within the `span` before it.
    pub fn arrive_many(&mut self, now: Instant, span: Duration, limit: u32, count: u32) -> bool {
        while self
            .arrivals
            .front()
            .is_some_and(|&t| now.duration_since(t) >= span)
        {
            self.arrivals.pop_front();
        }
        let allowed = self.arrivals.len() + count as usize <= limit as usize;
        self.arrivals
            .extend(std::iter::repeat_n(now, count as usize));
        allowed
    }

    /// Arrivals within the span before the last one, that one included.
    pub fn len(&self) -> usize {
        self.arrivals.len()
    }

    /// True when no arrival is held.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// True when nothing arrived within `span` before `now`, so the lane can be forgotten.
    pub fn is_idle(&self, now: Instant, span: Duration) -> bool {
        self.arrivals
            .back()
            .is_none_or(|&t| now.duration_since(t) >= span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_sixth_arrival_within_one_second_and_allows_it_after() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut window = Window::default();
        for i in 0..5 {
            assert!(window.arrive(start + Duration::from_millis(i * 100), second, 5));
        }
        assert!(!window.arrive(start + Duration::from_millis(999), second, 5));
        // 1000 ms after the first arrival, that one has left the window, but the refused one at
        // 999 ms still counts: arrivals at 100..=400 and 999 fill it.
        assert!(!window.arrive(start + Duration::from_millis(1000), second, 5));
        assert!(window.arrive(start + Duration::from_millis(1400), second, 5));
    }
}
