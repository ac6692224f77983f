//! The emulator's rate limits per API: the catalogue's limit (a recipient-counted one counts each
//! account a call names, a daily cap its day), else `app_per_second` calls a sliding second.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{EmulatorConfig, SECOND, others, state};
use crate::tencent::apis::{Rate, Unit};

/// Counts one call of `api` against its limits; false when it goes over one (Tencent's 60007).
pub(super) fn allowed(
    config: &EmulatorConfig,
    api: &str,
    body: &Result<Value, serde_json::Error>,
    inner: &mut state::Inner,
    now: Instant,
) -> bool {
    // Tencent's limit for the API, from the catalogue: a recipient-counted one counts each
    // account the call names.
    let own = match crate::tencent::apis::find(api).map(|a| a.rate) {
        Some(Rate::Own(limit)) => Some(limit),
        _ => None,
    };
    let (span, limit, count) = match own {
        Some(limit) => {
            let count = match (limit.unit, body) {
                (Unit::Recipients { .. }, Ok(body)) => others::recipients(body),
                _ => 1,
            };
            (limit.per.duration(), limit.count, count)
        }
        _ => (SECOND, config.app_per_second, 1),
    };
    let window = inner.api_windows.entry(api.to_string()).or_default();
    let mut allowed = window.arrive_many(now, span, limit, count);
    let in_window = window.len();
    if let Some(cap) = own.and_then(|limit| limit.daily) {
        let day = inner.api_windows.entry(format!("day:{api}")).or_default();
        allowed &= day.arrive(now, Duration::from_secs(24 * 60 * 60), cap);
    }
    inner
        .api_tally
        .entry(api.to_string())
        .or_default()
        .count(in_window, allowed);
    allowed
}
