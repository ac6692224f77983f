//! Checks `[limits]`: the limiter backend (its Redis is `redis`'s to check), the fallback share,
//! the rates and queue bounds.

use std::time::Duration;

use super::check::Problems;
use super::raw::{RawLimits, RawShare};
use super::redis;
use super::{Backend, LimitsConfig, Share};
use crate::tencent::apis;

/// Checks `[limits]`, adding a problem for each value that cannot be used.
pub(super) fn check(l: &RawLimits, p: &mut Problems) -> LimitsConfig {
    if !matches!(l.backend.as_str(), "local" | "redis") {
        p.add(
            "limits.backend",
            format!("{:?} is not one of \"local\", \"redis\"", l.backend),
        );
    }
    let target = redis::check(l, p);
    let backend = match (l.backend.as_str(), target) {
        ("redis", None) => {
            p.add(
                "limits.redis_url",
                "required when limits.backend = \"redis\": set redis_url (one server), \
                 redis_sentinels with redis_sentinel_master (Sentinel) or redis_cluster_nodes \
                 (Cluster)",
            );
            Backend::Local
        }
        ("redis", Some(target)) => Backend::Redis(target),
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
