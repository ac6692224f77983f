//! The gateway settings that a reload (SIGHUP) may change while requests are in flight: the
//! allow-list, the bearer tokens, the body cap, the default wait and coalescing. Each request reads one
//! snapshot, so a reload never changes the rules halfway through a request.

use std::sync::Arc;
use std::time::Duration;

use super::auth::Tokens;
use crate::config::Config;
use crate::metrics::{ApiMetrics, Metrics};
use crate::tencent::apis;
use crate::tencent::catalogue::ApiKind;

/// An allow-listed API.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// `service/command`: the upstream path and the `api` metric label.
    pub(super) name: Arc<str>,
    pub(super) kind: ApiKind,
    /// Whether it may be sent again after an attempt that may have arrived (the catalogue's
    /// `idempotent`; false for an API the catalogue does not list).
    pub(super) idempotent: bool,
    /// Its calls allowed in any 24 hours, for a daily-capped API (`pace::daily`).
    pub(super) daily: Option<u32>,
    /// Its handles of the per-request metrics.
    pub(super) metrics: Arc<ApiMetrics>,
}

/// One snapshot of the reloadable settings.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) routes: crate::FastMap<String, Route>,
    /// The bearer tokens' digests, made once here rather than at every request.
    pub(super) auth_tokens: Tokens,
    pub(super) max_body_bytes: usize,
    /// How long a body may take to arrive (`server.body_read_timeout_ms`).
    pub(super) body_read_timeout: Duration,
    /// The longest a call taken now may take to reach Tencent: its wait and one attempt (a
    /// daily cap counts over a day and this).
    pub(super) daily_margin: Duration,
    pub(super) max_wait: Duration,
    /// Merge queued modify writes of a group (`limits.coalesce`).
    pub(super) coalesce: bool,
    /// Most members in one batch: a group's queue bound, so a batch is never a bigger pile of
    /// waiting callers than a full queue.
    pub(super) batch_cap: usize,
    /// The spacing of a group's writes (durable mode estimates a write's wait with it).
    pub(super) group_spacing: Duration,
    /// How long past its deadline a durable write can still be on the wire (every attempt and
    /// the backoffs between them): a caller waiting for its answer waits this much longer.
    pub(super) send_time: Duration,
}

impl Live {
    pub(super) fn new(config: &Config, metrics: &Metrics) -> Live {
        let routes = config
            .allow
            .iter()
            .map(|name| {
                let api: Arc<str> = Arc::from(name.as_str());
                (
                    name.clone(),
                    Route {
                        metrics: metrics.api(api.clone()),
                        name: api,
                        kind: ApiKind::of(name),
                        idempotent: apis::is_idempotent(name),
                        daily: config.limits.limit_of(name).and_then(|limit| limit.daily),
                    },
                )
            })
            .collect();
        Live {
            routes,
            auth_tokens: Tokens::new(&config.server.auth_tokens, metrics),
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            max_wait: config.limits.max_wait,
            daily_margin: config.limits.max_wait + config.upstream.request_timeout,
            coalesce: config.limits.coalesce,
            batch_cap: config.limits.max_queue_per_group,
            group_spacing: crate::pace::interval(
                config.limits.group_writes_per_second,
                config.limits.window_guard,
            ),
            send_time: (config.upstream.request_timeout + config.retry.max_delay)
                * config.retry.max_attempts,
        }
    }

    /// The allowed APIs' names.
    pub(super) fn apis(&self) -> Vec<Arc<str>> {
        self.routes
            .values()
            .map(|route| route.name.clone())
            .collect()
    }
}
