//! Retry policy: which outcomes of an attempt are worth another (reading Tencent's `ErrorCode`,
//! which no general proxy can), how long to back off, and the per-API retry budget that stops a
//! failing upstream from turning into a retry storm.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::config::RetryConfig;
use crate::error::Error;
use crate::tencent::codes::{Class, classify};
use crate::upstream::Reply;

/// Which lane a throttling answer should slow down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// 10049: the group's write budget.
    Group,
    /// 60007, 60011, 60018, 60019: the API's budget.
    App,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Give the caller this outcome.
    Answer,
    /// Try again after `delay`.
    Retry {
        /// Why, as the `reason` label of `timgate_retries_total` (a bounded set).
        reason: &'static str,
        /// Backoff before asking the pacer for the next slot.
        delay: Duration,
        /// Regenerate the UserSig first (70001).
        renew_sig: bool,
        /// Slow a lane first (Tencent said "too fast").
        slow: Option<Slow>,
    },
}

/// The retry policy of `[retry]`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    /// Tencent's counting window plus the guard: the least wait after a throttling answer.
    window: Duration,
}

/// What 70050 asks: "verify again after 1 minute".
const SIG_LOCKOUT: Duration = Duration::from_secs(60);

fn code_reason(code: i64) -> &'static str {
    match code {
        10002 => "code_10002",
        60008 => "code_60008",
        60014 => "code_60014",
        70169 => "code_70169",
        70202 => "code_70202",
        70500 => "code_70500",
        10049 => "code_10049",
        60007 => "code_60007",
        60011 => "code_60011",
        60018 => "code_60018",
        60019 => "code_60019",
        70050 => "code_70050",
        70001 => "code_70001",
        _ => "code_other",
    }
}

impl RetryPolicy {
    /// The policy from checked settings.
    pub fn new(config: &RetryConfig, window_guard: Duration) -> RetryPolicy {
        RetryPolicy {
            max_attempts: config.max_attempts,
            base_delay: config.base_delay,
            max_delay: config.max_delay,
            window: Duration::from_secs(1) + window_guard,
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Full-jitter exponential backoff before attempt `attempt + 1`: uniform in
    /// `[0, min(max_delay, base_delay * 2^(attempt - 1))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        Duration::from_nanos(rand::rng().random_range(0..=cap.as_nanos() as u64))
    }

    /// Decides after attempt number `attempt` (1-based). `idempotent`: the API may be sent twice
    /// safely, so an attempt whose answer was lost may be repeated. `renewed`: the UserSig was
    /// already regenerated once for this request.
    pub fn decide(
        &self,
        outcome: &Result<Reply, Error>,
        attempt: u32,
        idempotent: bool,
        renewed: bool,
    ) -> Verdict {
        if attempt >= self.max_attempts {
            return Verdict::Answer;
        }
        let retry = |reason, delay, renew_sig, slow| Verdict::Retry {
            reason,
            delay,
            renew_sig,
            slow,
        };
        let backoff = self.backoff(attempt);
        match outcome {
            // Nothing was sent: any API may go again.
            Err(Error::UpstreamConnect(_)) => retry("connect", backoff, false, None),
            // The request may have arrived: only an idempotent API may go again.
            Err(Error::UpstreamUnreachable(_)) if idempotent => {
                retry("reset", backoff, false, None)
            }
            Err(Error::UpstreamTimeout(_)) if idempotent => retry("timeout", backoff, false, None),
            Err(_) => Verdict::Answer,
            Ok(reply) if reply.status.is_server_error() => retry("http_5xx", backoff, false, None),
            Ok(reply) => {
                let Some(code) = reply.code else {
                    return Verdict::Answer;
                };
                match classify(code) {
                    Class::Success | Class::Final => Verdict::Answer,
                    Class::Retryable => retry(code_reason(code), backoff, false, None),
                    Class::Throttled => {
                        let slow = if code == 10049 {
                            Slow::Group
                        } else {
                            Slow::App
                        };
                        // Whatever counts Tencent keeps, a window's length later the answered
                        // attempt has left them: wait that long, or the retry meets it again.
                        let delay = backoff.max(self.window);
                        retry(code_reason(code), delay, false, Some(slow))
                    }
                    Class::ThrottledLong => retry(code_reason(code), SIG_LOCKOUT, false, None),
                    Class::SigExpired if !renewed => {
                        retry(code_reason(code), Duration::ZERO, true, None)
                    }
                    Class::SigExpired => Verdict::Answer,
                }
            }
        }
    }
}

/// One API's retry budget: every first attempt deposits `ratio` of a retry, every retry withdraws
/// one, and a floor of `FLOOR_PER_SECOND` retries a second lets a quiet API retry at all.
#[derive(Debug)]
pub struct RetryBudget {
    /// The ratio as f64 bits, so that a reload can change it without a lock.
    ratio: std::sync::atomic::AtomicU64,
    state: Mutex<(f64, Instant)>,
}

/// Retries a second any API may make whatever its traffic (and the balance a new budget starts
/// with), so that a quiet API can still retry a few failures.
pub const FLOOR_PER_SECOND: f64 = 10.0;
/// Most retries saved up: a burst of failures after a long quiet spell is still bounded.
const MAX_BALANCE: f64 = 100.0;

impl RetryBudget {
    /// A budget allowing `ratio` retries per first attempt on top of the floor.
    pub fn new(ratio: f64) -> RetryBudget {
        RetryBudget {
            ratio: std::sync::atomic::AtomicU64::new(ratio.to_bits()),
            state: Mutex::new((FLOOR_PER_SECOND, Instant::now())),
        }
    }

    /// A reloaded `budget_ratio`; the balance saved so far is kept.
    pub fn set_ratio(&self, ratio: f64) {
        self.ratio
            .store(ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    fn with<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (balance, last) = &mut *guard;
        let now = Instant::now();
        *balance = (*balance + (now - *last).as_secs_f64() * FLOOR_PER_SECOND).min(MAX_BALANCE);
        *last = now;
        f(balance)
    }

    /// A first attempt was made.
    pub fn deposit(&self) {
        let ratio = f64::from_bits(self.ratio.load(std::sync::atomic::Ordering::Relaxed));
        self.with(|balance| *balance = (*balance + ratio).min(MAX_BALANCE));
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.with(|balance| {
            // The epsilon forgives float sums: ten deposits of 0.2 make two whole retries.
            if *balance >= 1.0 - 1e-9 {
                *balance -= 1.0;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
