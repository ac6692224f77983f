//! A lane's spacing under Tencent's throttling answers: multiplicative decrease when Tencent says
//! "too fast" (another writer shares the budget, or the limit is lower than configured), then,
//! after a cool-down, additive increase step by step. Recovery stops at 80% of the rate that was
//! throttled, so that a lane converges below a lower real limit instead of probing it again and
//! again; after a quiet minute the ceiling lifts and the lane returns to the configured rate.

use std::time::Duration;

use tokio::time::Instant;

/// How long a lane stays slowed before it starts to recover.
pub(super) const COOL_DOWN: Duration = Duration::from_secs(5);
/// How often a recovering lane takes a step back up.
pub(super) const STEP: Duration = Duration::from_secs(1);
/// How long the ceiling holds after the last throttling answer.
pub(super) const CEILING_HOLD: Duration = Duration::from_secs(60);
/// Each step adds this share of the configured rate.
const STEP_SHARE: f64 = 0.1;
/// A lane never slows below this share of the configured rate.
const FLOOR_SHARE: f64 = 1.0 / 16.0;
/// Throttling answers this soon after a slowdown belong to the same episode.
const SAME_EPISODE: Duration = Duration::from_secs(1);
/// Recovery stops at this share of the rate Tencent last throttled.
const CEILING_SHARE: f64 = 0.8;

/// A lane's current spacing and its way back to the configured one.
#[derive(Debug, Clone)]
pub(crate) struct Rate {
    base: Duration,
    current: Duration,
    /// When the next recovery step is due.
    next_step: Instant,
    /// The spacing recovery stops at, and until when.
    ceiling: Option<(Duration, Instant)>,
    /// When the lane was last slowed.
    last_slowdown: Option<Instant>,
}

impl Rate {
    /// A lane at its configured spacing.
    pub(crate) fn new(base: Duration, now: Instant) -> Rate {
        Rate {
            base,
            current: base,
            next_step: now,
            ceiling: None,
            last_slowdown: None,
        }
    }

    /// The spacing to use now, after any recovery steps that are due.
    pub(crate) fn interval(&mut self, now: Instant) -> Duration {
        if self.ceiling.is_some_and(|(_, until)| now >= until) {
            self.ceiling = None;
        }
        let top = self
            .ceiling
            .map_or(self.base, |(ceiling, _)| ceiling.max(self.base));
        let (base_rate, top_rate) = (1.0 / self.base.as_secs_f64(), 1.0 / top.as_secs_f64());
        while self.current > top && now >= self.next_step {
            let rate = (1.0 / self.current.as_secs_f64() + base_rate * STEP_SHARE).min(top_rate);
            self.current = Duration::from_secs_f64(1.0 / rate).max(top);
            self.next_step += STEP;
        }
        if self.current <= top && self.next_step <= now {
            // Steps not taken while held at the ceiling are not saved up for later.
            self.next_step = now + STEP;
        }
        self.current
    }

    /// A new configured spacing (a reload): an unslowed lane takes it at once; a slowed one
    /// keeps its slowdown, but never runs faster than the new spacing allows.
    pub(crate) fn set_base(&mut self, base: Duration) {
        let slowed = self.current > self.base;
        self.base = base;
        if !slowed || self.current < base {
            self.current = base;
        }
    }

    /// The spacing as it stands, without recovering (for estimates).
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// Tencent said "too fast": halve the rate (down to a floor), hold it for the cool-down, and
    /// cap recovery at 80% of the rate that was too fast. Answers within a second of the last
    /// slowdown are about sends made before it and do not slow the lane again. Returns whether
    /// the lane was slowed.
    pub(crate) fn slow_down(&mut self, now: Instant) -> bool {
        if self
            .last_slowdown
            .is_some_and(|last| now < last + SAME_EPISODE)
        {
            return false;
        }
        self.last_slowdown = Some(now);
        let floor = self.base.div_f64(FLOOR_SHARE);
        self.ceiling = Some((
            self.current.div_f64(CEILING_SHARE).min(floor),
            now + CEILING_HOLD,
        ));
        self.current = (self.current * 2).min(floor);
        self.next_step = now + COOL_DOWN;
        true
    }

    /// True while slower than configured or held under a ceiling.
    pub(crate) fn is_slowed(&self) -> bool {
        self.current > self.base || self.ceiling.is_some()
    }

    /// Sends per second at the current spacing.
    pub(crate) fn per_second(&self) -> f64 {
        1.0 / self.current.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(rate: &Rate, at: Instant) -> f64 {
        1.0 / rate.clone().interval(at).as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn halves_holds_recovers_to_the_ceiling_then_to_the_configured_rate() {
        let start = Instant::now();
        let base = Duration::from_millis(200); // 5 per second
        let mut rate = Rate::new(base, start);
        assert!(rate.slow_down(start)); // 5/s was too fast: 2.5/s, ceiling 4/s
        assert_eq!(rate.interval(start), Duration::from_millis(400));
        assert!(
            !rate.slow_down(start + Duration::from_millis(500)),
            "same episode"
        );
        assert_eq!(rate.current(), Duration::from_millis(400));
        let t1 = start + SAME_EPISODE;
        assert!(rate.slow_down(t1)); // 2.5/s was too fast too: 1.25/s, ceiling 2/s
        assert_eq!(rate.interval(t1), Duration::from_millis(800));
        assert!((rate.per_second() - 1.25).abs() < 1e-9);
        let cooled = t1 + COOL_DOWN;
        assert!((per_second(&rate, cooled - Duration::from_millis(1)) - 1.25).abs() < 1e-9);
        // +0.5/s a step from the end of the cool-down, up to the 2/s ceiling, where it stays.
        assert!((per_second(&rate, cooled) - 1.75).abs() < 1e-6);
        assert!((per_second(&rate, cooled + STEP) - 2.0).abs() < 1e-6);
        assert!((per_second(&rate, t1 + Duration::from_secs(59)) - 2.0).abs() < 1e-6);
        assert!(rate.is_slowed());
        // The ceiling lifts after a quiet minute; then +0.5/s a second up to 5/s.
        let mut later = rate.clone();
        later.interval(t1 + Duration::from_secs(59));
        assert!((per_second(&later, t1 + CEILING_HOLD) - 2.5).abs() < 1e-6);
        let recovered = t1 + CEILING_HOLD + STEP * 5;
        assert!((per_second(&later, recovered) - 5.0).abs() < 1e-6);
        later.interval(recovered);
        assert!(!later.is_slowed());
        for i in 1..=10 {
            later.slow_down(recovered + SAME_EPISODE * i);
        }
        assert_eq!(later.current(), base * 16, "never slower than a sixteenth");
    }
}
