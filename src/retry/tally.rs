//! What a send did, for the access log and the trace: when its slot came, how many attempts it
//! made and how long they took upstream, which budget gave the last slot, and, for a traced
//! request only, each attempt's times and outcome.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::pace::Limiter;
use crate::upstream::Reply;

/// The tally of one send (its retries included). Shared as it is by a coalesced batch's members.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// When the first slot came and the request left its queue.
    pub permitted: Option<Instant>,
    /// Attempts made (0 when none went out).
    pub attempts: u32,
    /// Their time upstream, summed.
    pub upstream: Duration,
    /// The budget that gave the last attempt's slot.
    pub limiter: Option<Limiter>,
    /// Each attempt, in order: kept only when the request is traced (empty otherwise, so an
    /// untraced send allocates nothing for it).
    pub spans: Vec<Attempt>,
}

/// One attempt, for its trace span.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it went out.
    pub start: Instant,
    /// When its outcome was known.
    pub end: Instant,
    /// Tencent's `ErrorCode`, or the gateway's own for an attempt that got no answer.
    pub code: i64,
    /// The gateway's reason for an attempt that got no answer; empty for Tencent's answers.
    pub reason: &'static str,
}

impl Tally {
    /// A tally for a send whose first slot came at `permitted`.
    pub(crate) fn new(permitted: Option<Instant>) -> Tally {
        Tally {
            permitted,
            ..Tally::default()
        }
    }

    /// Counts an attempt that went out at `start` and ended at `end` with `outcome`, at a slot
    /// `limiter` gave; its span is kept when `traced`. Returns how long it took.
    pub(crate) fn attempted(
        &mut self,
        (start, end): (Instant, Instant),
        outcome: &Result<Reply, Error>,
        limiter: Limiter,
        traced: bool,
    ) -> Duration {
        let took = end.saturating_duration_since(start);
        self.attempts += 1;
        self.upstream += took;
        self.limiter = Some(limiter);
        if traced {
            let (code, reason) = match outcome {
                Ok(reply) => (reply.code.unwrap_or(-1), ""),
                Err(err) => (err.error_code(), err.reason()),
            };
            self.spans.push(Attempt {
                start,
                end,
                code,
                reason,
            });
        }
        took
    }
}

/// A send's outcome with its tally.
#[derive(Debug)]
pub struct Sent {
    /// Tencent's answer, or the gateway's error.
    pub result: Result<Reply, Error>,
    /// What the send did.
    pub tally: Tally,
}

impl super::detach::Recover for Sent {
    fn panicked() -> Sent {
        Sent {
            result: Err(Error::Internal("the send panicked".into())),
            tally: Tally::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: i64) -> Result<Reply, Error> {
        Ok(Reply {
            status: http::StatusCode::OK,
            body: bytes::Bytes::new(),
            code: Some(code),
        })
    }

    #[test]
    fn attempts_add_up_and_only_a_traced_send_keeps_their_spans() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut untraced = Tally::new(Some(t0));
        untraced.attempted((t0, t0 + ms(30)), &reply(0), Limiter::Local, false);
        assert_eq!((untraced.attempts, untraced.upstream), (1, ms(30)));
        assert!(untraced.spans.is_empty());

        let mut traced = Tally::new(Some(t0));
        traced.attempted((t0, t0 + ms(20)), &reply(10004), Limiter::Redis, true);
        let timeout = Err(Error::UpstreamTimeout(ms(40)));
        traced.attempted(
            (t0 + ms(50), t0 + ms(90)),
            &timeout,
            Limiter::Fallback,
            true,
        );
        assert_eq!((traced.attempts, traced.upstream), (2, ms(60)));
        assert_eq!(traced.limiter, Some(Limiter::Fallback));
        let codes: Vec<(i64, &str)> = traced.spans.iter().map(|a| (a.code, a.reason)).collect();
        assert_eq!(codes[0], (10004, ""));
        assert_eq!(codes[1].1, Error::UpstreamTimeout(ms(0)).reason());
        assert_eq!(traced.spans[1].start, t0 + ms(50));
    }
}
