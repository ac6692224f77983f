//! Checks `[limits]`: the limiter backend and its Redis URL, the fallback share, the rates and
//! queue bounds. A Redis URL is checked for its scheme before the redis crate parses it, so that
//! a URL meant for something else is named as such, and it is only ever shown redacted.

use std::time::Duration;

use super::check::Problems;
use super::raw::{RawLimits, RawShare};
use super::redact;
use super::{Backend, LimitsConfig, Share};
use crate::tencent::apis;

/// The schemes of a Redis URL that this build can use.
const SCHEMES: [&str; 3] = ["redis", "unix", "redis+unix"];

/// What the refusal of a URL's scheme lists as accepted.
const ACCEPTED: &str = "redis://host[:port][/db], unix:///path or redis+unix:///path";

/// Checks `[limits]`, adding a problem for each value that cannot be used.
pub(super) fn check(l: &RawLimits, p: &mut Problems) -> LimitsConfig {
    if !matches!(l.backend.as_str(), "local" | "redis") {
        p.add(
            "limits.backend",
            format!("{:?} is not one of \"local\", \"redis\"", l.backend),
        );
    }
    // A URL that is set is checked whichever the backend: a mistake in it is said at once, not
    // on the day someone switches the backend on.
    let url_ok = l.redis_url.is_empty() || redis_url(&l.redis_url, p);
    let backend = match l.backend.as_str() {
        "redis" if l.redis_url.is_empty() => {
            p.add(
                "limits.redis_url",
                "required when limits.backend = \"redis\"",
            );
            Backend::Local
        }
        "redis" if url_ok => Backend::Redis(l.redis_url.clone()),
        _ => Backend::Local,
    };
    if l.redis_prefix.is_empty() || l.redis_prefix.contains(['{', '}', ' ']) {
        p.add(
            "limits.redis_prefix",
            "must be non-empty, without spaces or braces",
        );
    }
    LimitsConfig {
        backend,
        redis_prefix: l.redis_prefix.clone(),
        fallback_share: share(&l.fallback_share, p),
        max_in_flight_per_api: l.max_in_flight_per_api,
        app_per_second: p.positive("limits.app_per_second", l.app_per_second.into()) as u32,
        group_writes_per_second: p.positive(
            "limits.group_writes_per_second",
            l.group_writes_per_second.into(),
        ) as u32,
        window_guard: Duration::from_millis(l.window_guard_ms),
        max_queue_per_group: p.positive("limits.max_queue_per_group", l.max_queue_per_group.into())
            as usize,
        max_queued: p.positive("limits.max_queued", l.max_queued.into()) as usize,
        max_wait: Duration::from_millis(p.positive("limits.max_wait_ms", l.max_wait_ms)),
        coalesce: l.coalesce,
        api: l.api.clone(),
        api_daily: l.api_daily.clone(),
        app_total_per_second: l.app_total_per_second,
    }
}

/// Checks `[limits.api]` against the allow-list: every allowed API has a limit (the catalogue's
/// or its own), and each limit given is positive and names an allowed API (a name that matches
/// none would otherwise be a typo that silently changes nothing).
pub(super) fn check_api_limits(l: &RawLimits, allow: &[String], p: &mut Problems) {
    let limits = &l.api;
    for name in allow {
        if apis::find(name).is_none() && !limits.contains_key(name) {
            p.add(
                "apis.allow",
                format!(
                    "{name:?} has no documented limit in timgate's catalogue: give it one in \
                     [limits.api] (calls a second), e.g. \"{name}\" = 50"
                ),
            );
        }
    }
    for (key, table) in [("limits.api", limits), ("limits.api_daily", &l.api_daily)] {
        for (name, &count) in table {
            if count == 0 {
                p.add(key, format!("{name:?} must be a positive count"));
            }
            // A call may carry the most recipients: a limit below that could never be kept.
            let most = apis::find(name).and_then(|api| match api.rate {
                apis::Rate::Own(limit) => Some(limit.most()),
                apis::Rate::Standard => None,
            });
            if let Some(most) = most.filter(|&most| key == "limits.api" && count < most) {
                p.add(
                    key,
                    format!(
                        "{name:?} counts recipients, up to {most} a call: give at least {most}"
                    ),
                );
            }
            if !allow.contains(name) {
                p.add(key, format!("{name:?} is not in apis.allow"));
            }
        }
    }
}

/// Whether the Redis client can use `url`; if not, a problem naming the key, the URL with its
/// password masked, and what would do.
fn redis_url(url: &str, p: &mut Problems) -> bool {
    let shown = redact::redis_url(url);
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("rediss") => {
            // The redis crate is built without its TLS features (they would bring a second
            // certificate store); saying so beats "the feature is not enabled".
            p.add(
                "limits.redis_url",
                format!(
                    "{shown:?}: rediss:// (Redis over TLS) is not supported by this build; \
                     use {ACCEPTED}"
                ),
            );
            return false;
        }
        Some(scheme) if SCHEMES.contains(&scheme) => {}
        Some(scheme) => {
            p.add(
                "limits.redis_url",
                format!("{shown:?} is not a Redis URL (scheme {scheme:?}); use {ACCEPTED}"),
            );
            return false;
        }
        None => {
            p.add(
                "limits.redis_url",
                format!("{shown:?} is not a Redis URL (no scheme); use {ACCEPTED}"),
            );
            return false;
        }
    }
    match redis::IntoConnectionInfo::into_connection_info(url) {
        Ok(_) => true,
        Err(e) => {
            p.add("limits.redis_url", format!("{shown:?} cannot be used: {e}"));
            false
        }
    }
}

/// `limits.fallback_share`: `"auto"`, or a number in (0, 1] (quoted or not, as an environment
/// variable gives it).
fn share(raw: &RawShare, p: &mut Problems) -> Share {
    const KEY: &str = "limits.fallback_share";
    let value = match raw {
        RawShare::Number(value) => *value,
        RawShare::Text(text) if text.trim().eq_ignore_ascii_case("auto") => return Share::Auto,
        RawShare::Text(text) => match text.trim().parse::<f64>() {
            Ok(value) => value,
            Err(_) => {
                p.add(
                    KEY,
                    format!("{text:?} is neither \"auto\" nor a number in (0, 1]"),
                );
                return Share::Auto;
            }
        },
    };
    Share::Fixed(p.share(KEY, value, false))
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
