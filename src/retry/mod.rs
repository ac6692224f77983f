//! Retry policy: which outcomes of an attempt are worth another (reading Tencent's `ErrorCode`,
//! which no general proxy can) and how long to back off; the loop that carries it out
//! ([`send`]); and the per-API retry budget that stops a failing upstream from turning into a
//! retry storm ([`budget`]).

mod budget;
mod detach;
pub(crate) mod send;
pub mod tally;

pub use budget::{FLOOR_PER_SECOND, RetryBudget};

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;
use crate::error::Error;
use crate::tencent::catalogue::ApiKind;
use crate::tencent::codes::{self, Class};
use crate::upstream::Reply;

pub use crate::tencent::codes::Slow;

/// What is done to the signature before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renew {
    /// Nothing: the same sig, a fresh `random`.
    Nothing,
    /// Regenerate the UserSig (70001).
    Sig,
    /// Re-read the key file, and retry only if the key has changed since the attempt was
    /// signed (70009 after a rotation); otherwise the 70009 is the answer.
    KeyIfChanged,
}

/// What was already done to this request's signature: each is done once at most.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resigned {
    /// The UserSig was regenerated after a 70001.
    pub sig: bool,
    /// A changed key was taken up after a 70009.
    pub key: bool,
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
        /// What to do to the signature first.
        renew: Renew,
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
    /// safely, so an attempt whose answer was lost may be repeated. `done`: what was already
    /// done to this request's signature.
    pub fn decide(
        &self,
        outcome: &Result<Reply, Error>,
        attempt: u32,
        idempotent: bool,
        done: Resigned,
    ) -> Verdict {
        if attempt >= self.max_attempts {
            return Verdict::Answer;
        }
        let retry = |reason, delay, renew, slow| Verdict::Retry {
            reason,
            delay,
            renew,
            slow,
        };
        let backoff = self.backoff(attempt);
        match outcome {
            // Nothing was sent: any API may go again.
            Err(Error::UpstreamConnect(_)) => retry("connect", backoff, Renew::Nothing, None),
            // The request may have arrived: only an idempotent API may go again.
            Err(Error::UpstreamUnreachable(_)) if idempotent => {
                retry("reset", backoff, Renew::Nothing, None)
            }
            Err(Error::UpstreamTimeout(_)) if idempotent => {
                retry("timeout", backoff, Renew::Nothing, None)
            }
            Err(_) => Verdict::Answer,
            // A 5xx from in front of Tencent says nothing of whether Tencent got the call:
            // measured, one create_group against a 502 was sent 4 times (up to 4 groups).
            Ok(reply) if reply.status.is_server_error() && idempotent => {
                retry("http_5xx", backoff, Renew::Nothing, None)
            }
            Ok(reply) if reply.status.is_server_error() => Verdict::Answer,
            Ok(reply) => {
                let Some(code) = reply.code else {
                    return Verdict::Answer;
                };
                let (class, reason) = codes::lookup(code);
                match class {
                    Class::Success | Class::Final => Verdict::Answer,
                    Class::Retryable => retry(reason, backoff, Renew::Nothing, None),
                    Class::Throttled(slow) => {
                        // Whatever counts Tencent keeps, a window's length later the answered
                        // attempt has left them: wait that long, or the retry meets it again.
                        let delay = backoff.max(self.window);
                        retry(reason, delay, Renew::Nothing, Some(slow))
                    }
                    Class::ThrottledLong => retry(reason, SIG_LOCKOUT, Renew::Nothing, None),
                    Class::SigExpired if !done.sig => {
                        retry(reason, Duration::ZERO, Renew::Sig, None)
                    }
                    Class::BadSignature if !done.key => {
                        retry(reason, Duration::ZERO, Renew::KeyIfChanged, None)
                    }
                    Class::SigExpired | Class::BadSignature => Verdict::Answer,
                }
            }
        }
    }
}

/// Whether an attempt with this outcome may have reached Tencent without its answer reaching
/// the gateway: a reset, a timeout, or a 5xx from something in front of Tencent.
pub(crate) fn unsure(outcome: &Result<Reply, Error>) -> bool {
    match outcome {
        Err(Error::UpstreamUnreachable(_) | Error::UpstreamTimeout(_)) => true,
        Err(_) => false,
        Ok(reply) => reply.status.is_server_error(),
    }
}

/// What a retry's outcome stands for, given that an earlier attempt of the request was
/// `unsure`: a delete answered 10050 ("no such attribute") then did delete, in the attempt
/// whose answer was lost, and is answered as the success it was.
pub(crate) fn settle(
    api: &str,
    outcome: Result<Reply, Error>,
    unsure: bool,
) -> Result<Reply, Error> {
    match outcome {
        Ok(reply)
            if unsure
                && reply.code == Some(codes::NO_SUCH_ATTRIBUTE)
                && ApiKind::of(api) == ApiKind::DeleteGroupAttr =>
        {
            tracing::info!(
                api,
                "A re-sent delete answered 10050: the attempt whose answer was lost deleted; answered OK."
            );
            Ok(Reply {
                status: http::StatusCode::OK,
                body: codes::ok_body().into(),
                code: Some(0),
            })
        }
        outcome => outcome,
    }
}

#[cfg(test)]
mod tests;
