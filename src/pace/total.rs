//! The app's total: `limits.app_total_per_second`, a cap on the SDKAppID's calls over every API
//! together (Tencent answers 60011 beyond its app-wide limit), kept as one more API lane that
//! every request passes besides its own API's. Off (no lane) at 0, the default.

use tokio::time::Instant;

use super::api_pace::Paces;
use super::lane::AppLane;
use super::lanes::Lanes;
use crate::error::Error;
use crate::tencent::apis::Limit;

impl Lanes {
    /// Makes, keeps (at its new spacing) or drops the total lane for the limits in force.
    pub(super) fn set_total(&mut self, now: Instant) {
        let paces = self.limits().and_then(|(limits, share)| {
            let per_second = limits.app_total_per_second;
            (per_second > 0).then(|| Paces::new(Limit::calls_per_second(per_second), limits, share))
        });
        match (paces, self.total.as_mut()) {
            (None, _) => self.total = None,
            (Some(paces), None) => self.total = Some(AppLane::new(paces, now)),
            (Some(paces), Some(total)) => {
                total.paces = paces;
                super::lanes::respace(&mut total.rate, &mut total.tat, paces.local.interval);
            }
        }
    }
}

impl Lanes {
    /// Tencent said the app's total is too fast (60011): slow the total lane, when there is one.
    pub(super) fn slow_total(&mut self, now: Instant) {
        if let Some(total) = self.total.as_mut() {
            let before = total.rate.current();
            if total.rate.slow_down(now) {
                total.tat += total.rate.current().saturating_sub(before);
            }
        }
    }
}

/// When a request whose own lanes let it leave at `estimate` would pass the total lane too, or
/// the refusal when that is past `deadline`; counts it as pending there.
pub(super) fn total_estimate(
    total: &mut AppLane,
    estimate: Instant,
    (deadline, now): (Instant, Instant),
    shared: bool,
) -> Result<Instant, Error> {
    let at = total.next(now, shared) + total.rate.current() * total.pending as u32;
    let at = at.max(estimate);
    if at > deadline {
        return Err(Error::AppBusy {
            retry_after: at
                .saturating_duration_since(now)
                .max(std::time::Duration::from_secs(1)),
            full: false,
        });
    }
    total.pending += 1;
    Ok(at)
}
