//! The bounds on every wait in the pacer: the request's deadline, cut short while draining,
//! and the errors a wait that ran out of time is answered with.

use std::time::Duration;

use tokio::time::Instant;

use super::Pacer;
use crate::error::Error;

/// When a wait in line gives up.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// The caller's deadline: it is answered 429 if it cannot leave by then.
    At(Instant),
    /// None of its own: a coalesced batch, whose members keep their deadlines and leave at
    /// them; the batch leaves line when its last member has gone. Only draining bounds it.
    Members,
}

impl Deadline {
    fn at(self) -> Option<Instant> {
        match self {
            Deadline::At(at) => Some(at),
            Deadline::Members => None,
        }
    }
}

/// Why a wait ended without its turn.
pub(super) enum Stop {
    /// The request's own deadline passed.
    Deadline,
    /// The gateway is shutting down and the request could not leave in time.
    Drain,
}

impl Pacer {
    /// The answer for a request that cannot leave in time: 503 when draining cut its time short,
    /// else `busy` (a 429).
    pub(super) fn too_late(&self, deadline: Deadline, busy: Error) -> Error {
        match (self.cutoff(deadline), deadline.at()) {
            (Some(cutoff), Some(at)) if cutoff >= at => busy,
            (None, _) => busy,
            _ => Error::ShuttingDown,
        }
    }

    /// The last instant a request with `deadline` may be sent: earlier while draining; `None`
    /// when nothing bounds it.
    pub(super) fn cutoff(&self, deadline: Deadline) -> Option<Instant> {
        earliest(*self.inner.drain.borrow(), deadline.at())
    }

    /// [`Pacer::cutoff`] for a caller's deadline.
    pub(super) fn cutoff_at(&self, deadline: Instant) -> Instant {
        self.cutoff(Deadline::At(deadline)).unwrap_or(deadline)
    }

    /// Whether `at` is past the last instant a request with `deadline` may be sent.
    pub(super) fn past(&self, deadline: Deadline, at: Instant) -> bool {
        self.cutoff(deadline).is_some_and(|cutoff| at > cutoff)
    }

    /// Runs `fut` until it completes, the deadline passes, or draining cuts it short.
    pub(super) async fn bounded<F: std::future::Future>(
        &self,
        mut fut: std::pin::Pin<&mut F>,
        deadline: Deadline,
    ) -> Result<F::Output, Stop> {
        let mut drain = self.inner.drain.subscribe();
        loop {
            let drain_by = *drain.borrow_and_update();
            let until = earliest(drain_by, deadline.at());
            tokio::select! {
                biased;
                out = fut.as_mut() => return Ok(out),
                // With no bound at all (a batch, not draining) only a drain ends the wait. No
                // future of its own for that case: every queued request holds this one.
                () = tokio::time::sleep_until(until.unwrap_or_else(Instant::now)), if until.is_some() => {
                    let drained = deadline.at().is_none_or(|at| until.is_some_and(|u| u < at));
                    return Err(if drained { Stop::Drain } else { Stop::Deadline });
                }
                changed = drain.changed() => {
                    if changed.is_err() {
                        // The pacer is going away with the gateway: stop waiting.
                        return Err(Stop::Drain);
                    }
                }
            }
        }
    }
}

/// The earlier of two bounds, either of which may be absent.
fn earliest(drain: Option<Instant>, at: Option<Instant>) -> Option<Instant> {
    match (drain, at) {
        (Some(drain), Some(at)) => Some(drain.min(at)),
        (drain, at) => drain.or(at),
    }
}

/// Sleeps until `at`, or not at all when it has passed: a timer registration costs more than
/// the pacer's whole bookkeeping, and most requests find their lanes free.
pub(super) async fn sleep_until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}

impl Stop {
    pub(super) fn into_error(self, group: bool) -> Error {
        let retry_after = Duration::from_secs(1);
        match self {
            Stop::Drain => Error::ShuttingDown,
            Stop::Deadline if group => Error::GroupBusy {
                retry_after,
                full: false,
            },
            Stop::Deadline => Error::AppBusy {
                retry_after,
                full: false,
            },
        }
    }
}
