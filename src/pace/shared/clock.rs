//! Redis's clock on this replica's: every reservation also reads Redis's `TIME`, and the
//! answer with the shortest round trip of the last few seconds says most closely where Redis's
//! microseconds fall on this replica's clock. A slot is placed with that, not with the round
//! trip of its own answer: one slow answer (a busy machine, a busy Redis) no longer makes its
//! slot's place unknown.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How long a reading is trusted: clocks drift apart by microseconds a second at most.
const MEMORY: Duration = Duration::from_secs(5);
/// Readings kept at most.
const READINGS: usize = 64;

/// One answer's reading: Redis's clock minus this replica's at the middle of the round trip.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    round_trip: Duration,
    offset_us: i64,
}

/// Recent readings of Redis's clock against this replica's.
#[derive(Debug)]
pub(super) struct Clock {
    base: Instant,
    readings: VecDeque<Reading>,
}

impl Clock {
    pub(super) fn new() -> Clock {
        Clock {
            base: Instant::now(),
            readings: VecDeque::new(),
        }
    }

    fn micros(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.base).as_micros() as i64
    }

    /// Redis said its clock read `redis_us` during the call asked at `asked` and answered at
    /// `answered`.
    pub(super) fn read(&mut self, asked: Instant, answered: Instant, redis_us: i64) {
        let round_trip = answered.saturating_duration_since(asked);
        let middle = self.micros(asked) + round_trip.as_micros() as i64 / 2;
        while self
            .readings
            .front()
            .is_some_and(|r| r.at + MEMORY < answered || self.readings.len() >= READINGS)
        {
            self.readings.pop_front();
        }
        self.readings.push_back(Reading {
            at: answered,
            round_trip,
            offset_us: redis_us - middle,
        });
    }

    /// Where Redis's `redis_us` falls on this clock, and how far from there it may be at most
    /// (half the best round trip); `None` before any reading.
    pub(super) fn local(&self, redis_us: i64) -> Option<(Instant, Duration)> {
        let best = self.readings.iter().min_by_key(|r| r.round_trip)?;
        let local_us = redis_us - best.offset_us;
        let at = self.base + Duration::from_micros(local_us.max(0) as u64);
        Some((at, best.round_trip / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_answer_is_placed_by_the_fastest_recent_one() {
        let mut clock = Clock::new();
        let base = clock.base;
        let t = |ms: u64| base + Duration::from_millis(ms);
        let (a, b, c, d) = (t(10), t(11), t(100), t(140));
        // Redis's clock reads 1,000,000 µs ahead of ours. A 1 ms round trip at 10-11 ms...
        clock.read(a, b, 1_000_000 + 10_500);
        // ...and a 40 ms one at 100-140 ms, whose reading is 15 ms off its middle.
        clock.read(c, d, 1_000_000 + 105_000);
        let (at, within) = clock.local(1_000_000 + 500_000).expect("read");
        assert_eq!(at, t(500));
        assert_eq!(within, Duration::from_micros(500));
    }

    #[test]
    fn old_readings_are_forgotten() {
        let mut clock = Clock::new();
        let base = clock.base;
        clock.read(base, base + Duration::from_millis(1), 500);
        let later = base + MEMORY + Duration::from_secs(1);
        clock.read(later, later + Duration::from_millis(30), 0);
        let (_, within) = clock.local(0).expect("read");
        assert_eq!(
            within,
            Duration::from_millis(15),
            "only the recent, slower one is left"
        );
    }
}
