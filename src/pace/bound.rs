//! The bounds on every wait in the pacer: the request's deadline, cut short while draining,
//! and the errors a wait that ran out of time is answered with.

use std::time::Duration;

use tokio::time::Instant;

use super::Pacer;
use crate::error::Error;

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
    pub(super) fn too_late(&self, deadline: Instant, busy: Error) -> Error {
        if self.cutoff(deadline) < deadline {
            Error::ShuttingDown
        } else {
            busy
        }
    }

    /// The last instant a request with `deadline` may be sent: earlier while draining.
    pub(super) fn cutoff(&self, deadline: Instant) -> Instant {
        self.inner
            .drain
            .borrow()
            .map_or(deadline, |drain| drain.min(deadline))
    }

    /// Runs `fut` until it completes, the deadline passes, or draining cuts it short.
    pub(super) async fn bounded<F: std::future::Future>(
        &self,
        mut fut: std::pin::Pin<&mut F>,
        deadline: Instant,
    ) -> Result<F::Output, Stop> {
        let mut drain = self.inner.drain.subscribe();
        loop {
            let drain_by = *drain.borrow_and_update();
            let until = drain_by.map_or(deadline, |d| d.min(deadline));
            tokio::select! {
                biased;
                out = fut.as_mut() => return Ok(out),
                () = tokio::time::sleep_until(until) => {
                    return Err(if until < deadline { Stop::Drain } else { Stop::Deadline });
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
