//! A request's outcome turned into its answer: the response (Tencent's own, or the gateway's
//! error), the request metrics, the request-id and coalescing headers, the access log line, and
//! the request's spans when it is traced.

use std::sync::Arc;

use http::{HeaderValue, Response};
use tokio::time::Instant;

use super::answer::{error_response, reply_response};
use super::live::Route;
use super::trail::{Answered, Carried, Trail};
use super::{Gateway, Processed};
use crate::error::Error;
use crate::metrics::{ApiMetrics, Metrics};
use crate::pace::batch::Shared;
use crate::server::Body;

/// The outcome of a coalesced member's request on `route`: its batch's answer.
pub(super) fn shared(shared: Shared, route: Route) -> Processed {
    let carried = Some(Carried {
        tally: shared.tally,
        coalesced: shared.size,
    });
    Processed {
        result: match shared.result {
            Ok(reply) => Ok((route, reply)),
            Err(err) => Err((Some(route), err)),
        },
        carried,
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
    pub(super) fn conclude(&self, trail: &Trail, processed: Processed) -> Response<Body> {
        let verdict = match processed.result {
            Ok((route, reply)) => Verdict::reply(&self.metrics, route.metrics, &reply),
            Err((route, err)) => {
                let api = route.map_or_else(|| self.unrouted.clone(), |r| r.metrics);
                Verdict::error(&self.metrics, api, &err)
            }
        };
        self.finish(trail, verdict, processed.carried)
    }

    /// Counts and logs `verdict` once, with the request-id and coalescing headers, and queues
    /// the request's spans when it is traced.
    pub(super) fn finish(
        &self,
        trail: &Trail,
        verdict: Verdict,
        carried: Option<Carried>,
    ) -> Response<Body> {
        let Verdict {
            api,
            outcome,
            code,
            reason,
            mut response,
        } = verdict;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(trail.started);
        api.count_request(outcome);
        api.request_duration().observe(elapsed.as_secs_f64());
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&trail.request_id) {
            headers.insert(super::names::REQUEST_ID, value);
        }
        let coalesced = carried.as_ref().and_then(|c| c.coalesced);
        if let Some(size) = coalesced {
            headers.insert(super::names::COALESCED, HeaderValue::from(size));
        }
        let status = response.status().as_u16();
        log_answer(
            trail,
            (&api.name, outcome, code, &reason, status),
            elapsed,
            carried.as_ref(),
        );
        if let Some(tracer) = &self.tracer {
            let answered = Answered {
                api: &api.name,
                outcome,
                code,
                reason: &reason,
                status,
                at: now,
            };
            trail.export(tracer, &answered, carried.as_ref());
        }
        response
    }
}

/// Milliseconds with microseconds kept, as the access log gives times.
fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The access log line: the answer, and what explains its time (the wait for the slot, the time
/// upstream, the attempts, the batch it shared, the budget that paced it), the caller's name and
/// the trace id. A field that does not apply (no send, no token, no trace) is left out.
fn log_answer(
    trail: &Trail,
    (api, outcome, code, reason, status): (&str, &str, i64, &str, u16),
    elapsed: std::time::Duration,
    carried: Option<&Carried>,
) {
    let tally = carried.map(|c| &c.tally);
    // Every field is worked out inside the macro, which does so only when the line is logged.
    tracing::info!(
        request_id = &*trail.request_id,
        api,
        outcome,
        code,
        reason,
        status,
        latency_ms = millis(elapsed),
        caller = trail.caller.as_deref(),
        queue_wait_ms = trail
            .admitted
            .zip(tally.and_then(|t| t.permitted))
            .map(|(admitted, permitted)| millis(permitted.saturating_duration_since(admitted))),
        upstream_ms = tally.filter(|t| t.attempts > 0).map(|t| millis(t.upstream)),
        attempts = tally.map(|t| t.attempts),
        coalesced = carried.and_then(|c| c.coalesced),
        limiter = tally.and_then(|t| t.limiter).map(|l| l.as_str()),
        trace_id = trail.trace.as_ref().map(|t| t.trace_id_hex()),
        "Answered."
    );
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
