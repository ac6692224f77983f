//! The one error type. Every failure a request can meet is a variant here, and each variant knows
//! its HTTP status, its `ErrorCode`, its `x-timgate-error` reason and whether it is worth a retry;
//! `gateway::answer::error_response` is the only place that turns one into an answer.

use std::time::Duration;

use http::StatusCode;

use crate::config::ConfigError;
use crate::validate::Invalid;

/// Everything that can go wrong in timgate. Clone, so that the callers of one coalesced upstream
/// call all get the same answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The body breaks a rule Tencent would enforce; answered as Tencent would.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The caller sent no or a wrong bearer token.
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// The API is not on `apis.allow`.
    #[error("{api} is not on this gateway's allow-list")]
    NotAllowed {
        /// The `service/command` asked for.
        api: String,
    },
    /// The path is not `/v4/<service>/<command>`.
    #[error("no such path: {path}; APIs are served at POST /v4/<service>/<command>")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// An API was called with a method other than POST.
    #[error("method {method} not allowed; Tencent's REST APIs take POST")]
    MethodNotAllowed {
        /// The method used.
        method: String,
    },
    /// The body is larger than `server.max_body_bytes`.
    #[error("request body over the {limit}-byte limit")]
    BodyTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A timgate header had a value it cannot use.
    #[error("{0}")]
    BadHeader(String),
    /// The caller's body could not be read (the caller hung up or sent a broken stream).
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive in full within `server.body_read_timeout_ms`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    /// The group's queue is full, or its writes could not leave before the deadline.
    #[error("{} for this group's attribute writes (5 per second); retry after {retry_after:?}", busy_text(*full))]
    GroupBusy {
        /// When a retry has a chance.
        retry_after: Duration,
        /// True when the queue was full, false when the deadline could not be met.
        full: bool,
    },
    /// The API's queue (or all queues together) is full, or the request could not leave before
    /// its deadline.
    #[error("{} for this API's limit (its calls a second, or its calls or recipients a minute); retry after {retry_after:?}", busy_text(*full))]
    AppBusy {
        /// When a retry has a chance.
        retry_after: Duration,
        /// True when a queue was full, false when the deadline could not be met.
        full: bool,
    },
    /// The API's calls for any 24 hours are spent (`known`), or cannot be counted now: the
    /// shared budget that counts them across replicas is away, and a replica alone cannot know
    /// what the others sent.
    #[error("{}; retry after {retry_after:?}", match known {
        true => "this API's calls for the day are spent",
        false => "this API's daily calls are counted in Redis, which is away",
    })]
    DailyCap {
        /// When a retry has a chance.
        retry_after: Duration,
        /// True when the day's calls are spent, false when they cannot be counted.
        known: bool,
    },
    /// The gateway is draining for shutdown.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The memory budget (`server.memory_limit_bytes`) is nearly spent: new work waits outside.
    #[error("the gateway is near its memory budget; retry after {retry_after:?}")]
    Overloaded {
        /// When a retry has a chance.
        retry_after: Duration,
    },
    /// Durable mode: the queue's Redis cannot be reached now, so a write is not accepted (or a
    /// job not read).
    #[error(
        "the durable queue's Redis cannot be reached ({0}): no write is accepted and no job read now, retry"
    )]
    QueueUnavailable(String),
    /// `GET /timgate/jobs/<id>` for a job that is unknown, or whose answer is no longer kept.
    #[error("no such job: {0} (unknown, or its answer is past queue.result_ttl_secs)")]
    JobNotFound(String),
    /// A durable write that could not be sent within its deadline (`queue.max_age_secs` for an
    /// async one): it was never sent.
    #[error("the write waited {0:?} in the durable queue, past its deadline; it was not sent")]
    JobExpired(Duration),
    /// A caller waited for a durable write's answer, and it did not come in time; the write is
    /// kept and may still be sent: its job says.
    #[error("no answer from the durable queue in time; the write is kept, see /timgate/jobs/{0}")]
    QueueNoAnswer(String),
    /// No connection to the upstream could be made: nothing was sent.
    #[error("upstream unreachable: {0}")]
    UpstreamConnect(String),
    /// The connection broke after the request may have been sent, before an answer.
    #[error("upstream unreachable: {0}")]
    UpstreamUnreachable(String),
    /// The upstream did not answer within `upstream.request_timeout_ms`.
    #[error("upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// The configuration is wrong.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Startup failed (a listener could not be bound, a CA file could not be parsed, ...).
    #[error("{0}")]
    Internal(String),
}

/// Every reason a request can be refused for (`rejections_total{reason}`), so that the metric's
/// series exist at zero from the start and `rate()` sees their first increment.
pub const REJECTION_REASONS: &[&str] = &[
    "invalid_json",
    "invalid_param",
    "duplicate_key",
    "invalid_group_id",
    "key_too_long",
    "value_too_long",
    "too_many_attrs",
    "values_too_large",
    "invalid_recipients",
    "too_many_recipients",
    "unauthorized",
    "api_not_allowed",
    "not_found",
    "method_not_allowed",
    "body_too_large",
    "body_read",
    "body_timeout",
    "bad_header",
    "group_queue_full",
    "group_deadline",
    "app_queue_full",
    "app_deadline",
    "daily_cap",
    "daily_cap_unknown",
    "shutting_down",
    "overloaded",
    "queue_unavailable",
    "job_not_found",
    "job_expired",
    "queue_no_answer",
    "config",
    "internal",
];

fn busy_text(full: bool) -> &'static str {
    if full {
        "queue full"
    } else {
        "deadline cannot be met"
    }
}

/// The gateway's own `ErrorCode`s: 900000 plus the HTTP status, outside Tencent's ranges.
pub mod gateway_code {
    /// 401: no or a wrong bearer token.
    pub const UNAUTHORIZED: i64 = 900401;
    /// 403: the API is not on the allow-list.
    pub const NOT_ALLOWED: i64 = 900403;
    /// 404: not a `/v4/<service>/<command>` path.
    pub const NOT_FOUND: i64 = 900404;
    /// 405: not POST.
    pub const METHOD_NOT_ALLOWED: i64 = 900405;
    /// 413: body over `server.max_body_bytes`.
    pub const BODY_TOO_LARGE: i64 = 900413;
    /// 400: the body could not be read, or a timgate header was malformed.
    pub const BODY_READ: i64 = 900400;
    /// 408: the body did not arrive in time.
    pub const BODY_TIMEOUT: i64 = 900408;
    /// 429: the API's queue is full or its deadline cannot be met.
    pub const APP_BUSY: i64 = 900429;
    /// 503: shutting down.
    pub const SHUTTING_DOWN: i64 = 900503;
    /// 503: near the memory budget.
    pub const OVERLOADED: i64 = 900503;
    /// 502: upstream unreachable.
    pub const UPSTREAM_UNREACHABLE: i64 = 900502;
    /// 504: upstream timed out.
    pub const UPSTREAM_TIMEOUT: i64 = 900504;
    /// 500: a fault inside the gateway.
    pub const INTERNAL: i64 = 900500;
}

impl Error {
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::OK, // Tencent answers payload errors with 200
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotAllowed { .. } => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyRead(_) | Error::BadHeader(_) => StatusCode::BAD_REQUEST,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::GroupBusy { .. } | Error::AppBusy { .. } | Error::DailyCap { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::ShuttingDown | Error::Overloaded { .. } | Error::QueueUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::JobNotFound(_) => StatusCode::NOT_FOUND,
            Error::JobExpired(_) | Error::QueueNoAnswer(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::UpstreamConnect(_) | Error::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Config(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `ErrorCode` of the answer: Tencent's where Tencent would answer, else a gateway code.
    pub fn error_code(&self) -> i64 {
        use gateway_code::*;
        match self {
            Error::Invalid(invalid) => invalid.code(),
            Error::Unauthorized => UNAUTHORIZED,
            Error::NotAllowed { .. } => NOT_ALLOWED,
            Error::NotFound { .. } => NOT_FOUND,
            Error::MethodNotAllowed { .. } => METHOD_NOT_ALLOWED,
            Error::BodyTooLarge { .. } => BODY_TOO_LARGE,
            Error::BodyRead(_) | Error::BadHeader(_) => BODY_READ,
            Error::BodyTimeout(_) => BODY_TIMEOUT,
            Error::GroupBusy { .. } => 10049, // as Tencent's own group write limit
            Error::AppBusy { .. } | Error::DailyCap { .. } => APP_BUSY,
            Error::ShuttingDown => SHUTTING_DOWN,
            Error::Overloaded { .. } | Error::QueueUnavailable(_) => OVERLOADED,
            Error::JobNotFound(_) => NOT_FOUND,
            Error::JobExpired(_) | Error::QueueNoAnswer(_) => UPSTREAM_TIMEOUT,
            Error::UpstreamConnect(_) | Error::UpstreamUnreachable(_) => UPSTREAM_UNREACHABLE,
            Error::UpstreamTimeout(_) => UPSTREAM_TIMEOUT,
            Error::Config(_) | Error::Internal(_) => INTERNAL,
        }
    }

    /// A stable snake_case name: the `x-timgate-error` header and the `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(invalid) => invalid.reason(),
            Error::Unauthorized => "unauthorized",
            Error::NotAllowed { .. } => "api_not_allowed",
            Error::NotFound { .. } => "not_found",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::BodyRead(_) => "body_read",
            Error::BodyTimeout(_) => "body_timeout",
            Error::BadHeader(_) => "bad_header",
            Error::GroupBusy { full: true, .. } => "group_queue_full",
            Error::GroupBusy { full: false, .. } => "group_deadline",
            Error::AppBusy { full: true, .. } => "app_queue_full",
            Error::AppBusy { full: false, .. } => "app_deadline",
            Error::DailyCap { known: true, .. } => "daily_cap",
            Error::DailyCap { known: false, .. } => "daily_cap_unknown",
            Error::ShuttingDown => "shutting_down",
            Error::Overloaded { .. } => "overloaded",
            Error::QueueUnavailable(_) => "queue_unavailable",
            Error::JobNotFound(_) => "job_not_found",
            Error::JobExpired(_) => "job_expired",
            Error::QueueNoAnswer(_) => "queue_no_answer",
            Error::UpstreamConnect(_) | Error::UpstreamUnreachable(_) => "upstream_unreachable",
            Error::UpstreamTimeout(_) => "upstream_timeout",
            Error::Config(_) => "config",
            Error::Internal(_) => "internal",
        }
    }

    /// When a 429 may be retried, for the `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::GroupBusy { retry_after, .. }
            | Error::AppBusy { retry_after, .. }
            | Error::DailyCap { retry_after, .. }
            | Error::Overloaded { retry_after } => Some(*retry_after),
            // A reconnect is tried at most every 250 ms; a second is a fair first retry.
            Error::QueueUnavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_reason_is_listed_for_the_metrics() {
        let invalid =
            |body: &[u8], kind| crate::validate::validate(kind, body).expect_err("invalid");
        use crate::tencent::catalogue::ApiKind::{BatchSendMsg, GetGroupAttr, ModifyGroupAttr};
        let long = |n: usize| {
            format!(
                r#"{{"GroupId":"g","GroupAttr":[{{"key":"k","value":"{}"}}]}}"#,
                "v".repeat(n)
            )
        };
        let many: Vec<String> = (0..17)
            .map(|i| format!(r#"{{"key":"k{i}","value":"v"}}"#))
            .collect();
        let errors: Vec<Error> = vec![
            invalid(b"x", GetGroupAttr).into(),
            invalid(b"{}", GetGroupAttr).into(),
            invalid(br#"{"GroupId":"g","GroupId":"g"}"#, GetGroupAttr).into(),
            invalid(br#"{"GroupId":""}"#, GetGroupAttr).into(),
            invalid(
                format!(
                    r#"{{"GroupId":"g","GroupAttr":[{{"key":"{}","value":"v"}}]}}"#,
                    "k".repeat(33)
                )
                .as_bytes(),
                ModifyGroupAttr,
            )
            .into(),
            invalid(long(4001).as_bytes(), ModifyGroupAttr).into(),
            invalid(
                format!(r#"{{"GroupId":"g","GroupAttr":[{}]}}"#, many.join(",")).as_bytes(),
                ModifyGroupAttr,
            )
            .into(),
            invalid(
                format!(
                    r#"{{"GroupId":"g","GroupAttr":[{}]}}"#,
                    (0..5)
                        .map(|i| format!(r#"{{"key":"k{i}","value":"{}"}}"#, "v".repeat(3500)))
                        .collect::<Vec<_>>()
                        .join(",")
                )
                .as_bytes(),
                ModifyGroupAttr,
            )
            .into(),
            invalid(br#"{"To_Account":"one"}"#, BatchSendMsg).into(),
            invalid(br#"{"To_Account":[]}"#, BatchSendMsg).into(),
            Error::Unauthorized,
            Error::NotAllowed { api: String::new() },
            Error::NotFound {
                path: String::new(),
            },
            Error::MethodNotAllowed {
                method: String::new(),
            },
            Error::BodyTooLarge { limit: 1 },
            Error::BodyRead(String::new()),
            Error::BodyTimeout(Duration::ZERO),
            Error::BadHeader(String::new()),
            Error::GroupBusy {
                retry_after: Duration::ZERO,
                full: true,
            },
            Error::GroupBusy {
                retry_after: Duration::ZERO,
                full: false,
            },
            Error::AppBusy {
                retry_after: Duration::ZERO,
                full: true,
            },
            Error::AppBusy {
                retry_after: Duration::ZERO,
                full: false,
            },
            Error::DailyCap {
                retry_after: Duration::ZERO,
                known: true,
            },
            Error::DailyCap {
                retry_after: Duration::ZERO,
                known: false,
            },
            Error::ShuttingDown,
            Error::Overloaded {
                retry_after: Duration::ZERO,
            },
            Error::QueueUnavailable(String::new()),
            Error::JobNotFound(String::new()),
            Error::JobExpired(Duration::ZERO),
            Error::QueueNoAnswer(String::new()),
            Error::Config(ConfigError::one("x")),
            Error::Internal(String::new()),
        ];
        let reasons: Vec<&str> = errors.iter().map(Error::reason).collect();
        assert_eq!(
            reasons, REJECTION_REASONS,
            "the list follows the variants, in order"
        );
    }
}
