//! A request's outcome turned into its answer: the response (Tencent's own, or the gateway's
//! error), the request metrics, the request-id and coalescing headers, and the access log line.

use std::sync::Arc;

use http::{HeaderValue, Response};
use tokio::time::Instant;

use super::answer::{error_response, reply_response};
use super::live::Route;
use super::{Gateway, Processed};
use crate::error::Error;
use crate::metrics::{ApiMetrics, Metrics};
use crate::pace::batch::Shared;
use crate::server::Body;

/// The outcome of a coalesced member's request on `route`: its batch's answer.
pub(super) fn shared(shared: Shared, route: Route) -> Processed {
    match shared.result {
        Ok(reply) => Ok((route, reply, shared.size)),
        Err(err) => Err((Some(route), err, shared.size)),
    }
}

/// What the access log and the request metrics say about one answer.
pub(super) struct Verdict {
    /// The API's metric handles: the route's, or [`super::UNROUTED`]'s.
    pub(super) api: Arc<ApiMetrics>,
    /// `ok`, `fail` (Tencent refused), `invalid`, `rejected` (the gateway refused) or `error`
    /// (the upstream could not be reached); `accepted` for a durable write answered 202.
    pub(super) outcome: &'static str,
    /// Tencent's `ErrorCode`, or the gateway's own.
    pub(super) code: i64,
    /// The gateway's reason, empty for Tencent's answers.
    pub(super) reason: std::borrow::Cow<'static, str>,
    pub(super) response: Response<Body>,
}

impl Gateway {
    /// Answers `processed`: builds the response, counts it, and logs it once.
    pub(super) fn conclude(
        &self,
        started: Instant,
        request_id: &str,
        processed: Processed,
    ) -> Response<Body> {
        let (Ok((_, _, shared)) | Err((_, _, shared))) = processed;
        let verdict = match processed {
            Ok((route, reply, _)) => Verdict::reply(&self.metrics, route.metrics, &reply),
            Err((route, err, _)) => {
                let api = route.map_or_else(|| self.unrouted.clone(), |r| r.metrics);
                Verdict::error(&self.metrics, api, &err)
            }
        };
        self.finish(started, request_id, verdict, shared)
    }

    /// Counts and logs `verdict` once, with the request-id and coalescing headers.
    pub(super) fn finish(
        &self,
        started: Instant,
        request_id: &str,
        verdict: Verdict,
        shared: Option<usize>,
    ) -> Response<Body> {
        let Verdict {
            api,
            outcome,
            code,
            reason,
            mut response,
        } = verdict;
        let elapsed = started.elapsed();
        api.count_request(outcome);
        api.request_duration().observe(elapsed.as_secs_f64());
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(super::names::REQUEST_ID, value);
        }
        if let Some(size) = shared {
            headers.insert(super::names::COALESCED, HeaderValue::from(size));
        }
        tracing::info!(
            request_id,
            api = &*api.name,
            outcome,
            code,
            reason = &*reason,
            status = response.status().as_u16(),
            latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            "Answered."
        );
        response
    }
}

impl Verdict {
    /// Tencent answered: passed through; a non-zero code is counted by API and code.
    fn reply(metrics: &Metrics, api: Arc<ApiMetrics>, reply: &crate::upstream::Reply) -> Verdict {
        let code = reply.code.unwrap_or(-1);
        if code != 0 {
            metrics
                .tencent_errors
                .with_label_values(&[&*api.name, &code.to_string()])
                .inc();
        }
        Verdict {
            api,
            outcome: if reply.code == Some(0) { "ok" } else { "fail" },
            code,
            reason: "".into(),
            response: reply_response(reply),
        }
    }

    /// The gateway answered: a refusal is counted by reason; an unreachable upstream is not a
    /// refusal (the upstream metrics count it).
    fn error(metrics: &Metrics, api: Arc<ApiMetrics>, err: &Error) -> Verdict {
        let outcome = match err {
            Error::Invalid(_) => "invalid",
            Error::UpstreamConnect(_)
            | Error::UpstreamUnreachable(_)
            | Error::UpstreamTimeout(_) => "error",
            _ => "rejected",
        };
        if outcome != "error" {
            metrics.rejections.with_label_values(&[err.reason()]).inc();
        }
        Verdict {
            api,
            outcome,
            code: err.error_code(),
            reason: err.reason().into(),
            response: error_response(err),
        }
    }
}
