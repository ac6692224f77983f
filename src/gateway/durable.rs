//! Durable mode, the caller's side (`queue.durable`): a checked group write is appended to its
//! partition's stream before anything answers it; then the caller has `202 Accepted` at once
//! (`Prefer: respond-async`) or waits for the answer its partition's owner writes back, whichever
//! replica that is. `GET /timgate/jobs/<id>` reads a job from any replica.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tokio::time::Instant;

use super::Gateway;
use super::answer::error_response;
use super::live::{Live, Route};
use super::outcome::Verdict;
use super::place::Checked;
use crate::config::QueueFallback;
use crate::error::Error;
use crate::metrics::ApiMetrics;
use crate::queue::waiters::Waiters;
use crate::queue::{Entry, JobId, JobState, Queue, Stored, unix_ms};
use crate::server::{Body, json_response};

/// Where jobs are read: `GET /timgate/jobs/<id>` on the proxy listener.
pub const JOBS_PATH: &str = "/timgate/jobs/";

/// The header on an answer made without the durable queue while Redis is away
/// (`queue.fallback = "memory"`): `memory`.
pub const QUEUE_HEADER: &str = "x-timgate-queue";

/// The header on a 202 with `queue.wait_replicas`: how many Redis replicas acknowledged the
/// append (fewer than asked means only the master had it when the caller was answered).
pub const REPLICAS_HEADER: &str = "x-timgate-replicas";

/// Whether `headers` ask for an answer at once (RFC 7240 `Prefer: respond-async`).
pub(super) fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(super::names::PREFER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|pref| {
            let token = pref.split(';').next().unwrap_or("").trim();
            token.eq_ignore_ascii_case("respond-async")
        })
}

/// Whether `path` and `method` read a job.
pub fn is_job_request<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET && req.uri().path().starts_with(JOBS_PATH)
}

/// How a durable write went, before its answer is counted.
pub(super) enum Enqueued {
    /// Answered: 202, or the owner's answer.
    Answered(Verdict),
    /// Not accepted (Redis away, a bound, no answer in time).
    Refused(Error),
    /// Redis is away and `queue.fallback = "memory"`: the write takes today's path.
    Memory,
}

impl Gateway {
    /// The queue, when `route`'s writes go through it.
    pub(super) fn durable_queue(&self, route: &Route) -> Option<Arc<Queue>> {
        self.queue
            .as_ref()
            .filter(|_| route.kind.is_group_write())
            .cloned()
    }

    /// Appends a checked write to the queue, then answers 202 or waits for the owner's answer.
    pub(super) async fn enqueue(
        self: Arc<Self>,
        queue: Arc<Queue>,
        (live, route): (Arc<Live>, Route),
        checked: &Checked,
        request_id: String,
        respond_async: bool,
    ) -> Enqueued {
        let Some(group) = checked.group.clone() else {
            return Enqueued::Refused(Error::Internal("a group write without its group".into()));
        };
        let now = Instant::now();
        let wait = if respond_async {
            queue.config.max_age
        } else {
            checked.deadline.saturating_duration_since(now)
        };
        let entry = Entry {
            job: JobId {
                partition: 0,
                entry: String::new(),
            },
            api: route.name.to_string(),
            group: group.to_string(),
            body: checked.body.clone(),
            request_id: request_id.clone(),
            deadline_ms: unix_ms() + wait.as_millis() as u64,
            asynchronous: respond_async,
        };
        // With coalescing a queued write's wait cannot be told from the count alone.
        let spacing = if live.coalesce {
            Duration::ZERO
        } else {
            live.group_spacing
        };
        let (job, replicas) = match queue.append(&entry, spacing, wait).await {
            Ok(appended) => appended,
            Err(Error::QueueUnavailable(_)) if queue.config.fallback == QueueFallback::Memory => {
                queue.metrics.accepted.with_label_values(&["memory"]).inc();
                return Enqueued::Memory;
            }
            Err(e) => return Enqueued::Refused(e),
        };
        let mode = if respond_async { "async" } else { "sync" };
        queue.metrics.accepted.with_label_values(&[mode]).inc();
        self.owners.wake(job.partition);
        if respond_async {
            return Enqueued::Answered(accepted(route.metrics, &job, replicas));
        }
        let mut waiting = Waiters::wait(&queue, job.clone());
        let within = wait + live.send_time;
        tokio::select! {
            answered = tokio::time::timeout(within, waiting.answer()) => match answered {
                Ok(Some(stored)) => Enqueued::Answered(Verdict::stored(&self, route.metrics, &stored)),
                _ => Enqueued::Refused(Error::QueueNoAnswer(job.to_string())),
            },
            // A drain answers by its deadline; the write is kept all the same.
            () = queue.drained() => Enqueued::Refused(Error::QueueNoAnswer(job.to_string())),
        }
    }

    /// Answers `GET /timgate/jobs/<id>`: authorized as a write, read from Redis.
    pub async fn job<B>(self: Arc<Self>, req: Request<B>) -> Response<Body> {
        let live = self.live();
        let id = req.uri().path()[JOBS_PATH.len()..].to_string();
        let request_id = super::head::request_id(req.headers());
        let answer = if Self::authorize(&live, req.headers()).is_err() {
            Err(Error::Unauthorized)
        } else {
            self.read_job(&id).await
        };
        let mut response = answer.unwrap_or_else(|e| error_response(&e));
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(super::names::REQUEST_ID, value);
        }
        tracing::debug!(
            request_id,
            job = id,
            status = response.status().as_u16(),
            "Job read."
        );
        response
    }

    async fn read_job(&self, id: &str) -> Result<Response<Body>, Error> {
        let not_found = || Error::JobNotFound(id.chars().take(64).collect());
        let queue = self.queue.as_ref().ok_or_else(not_found)?;
        let job = queue.job_id(id).ok_or_else(not_found)?;
        let (state, answer) = match queue.state(&job).await?.ok_or_else(not_found)? {
            JobState::Queued => ("queued", serde_json::Value::Null),
            JobState::Sending => ("sending", serde_json::Value::Null),
            JobState::Ended(stored) => {
                let state = if stored.state == "done" {
                    "done"
                } else {
                    "failed"
                };
                (state, stored.answer())
            }
        };
        let mut body = serde_json::json!({"JobId": id, "State": state});
        if !answer.is_null() {
            body["Answer"] = answer;
        }
        Ok(json_response(StatusCode::OK, body.to_string()))
    }
}

/// The 202 of an async write.
fn accepted(api: Arc<ApiMetrics>, job: &JobId, replicas: Option<i64>) -> Verdict {
    let id = job.to_string();
    let body = serde_json::json!({
        "ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "JobId": id,
    });
    let mut response = json_response(StatusCode::ACCEPTED, Bytes::from(body.to_string()));
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("{JOBS_PATH}{id}")) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    if let Some(replicas) = replicas {
        headers.insert(REPLICAS_HEADER, HeaderValue::from(replicas));
    }
    Verdict {
        api,
        outcome: "accepted",
        code: 0,
        reason: "".into(),
        response,
    }
}

impl Verdict {
    /// The owner's answer of a durable write, as its caller gets it and the metrics count it.
    fn stored(gateway: &Gateway, api: Arc<ApiMetrics>, stored: &Stored) -> Verdict {
        let code = serde_json::from_str::<serde_json::Value>(&stored.body)
            .ok()
            .and_then(|v| v.get("ErrorCode").and_then(serde_json::Value::as_i64))
            .unwrap_or(-1);
        let outcome = match (&stored.reason, stored.state.as_str()) {
            (None, "done") => "ok",
            (None, _) => "fail",
            (Some(r), _) if r.starts_with("upstream_") => "error",
            (Some(_), _) => "rejected",
        };
        if outcome == "rejected"
            && let Some(reason) = stored.reason.as_deref()
            && let Some(known) = crate::error::REJECTION_REASONS
                .iter()
                .find(|r| **r == reason)
        {
            gateway.metrics.rejections.with_label_values(&[known]).inc();
        }
        if outcome == "fail" && code != 0 {
            gateway
                .metrics
                .tencent_errors
                .with_label_values(&[&*api.name, &code.to_string()])
                .inc();
        }
        Verdict {
            api,
            outcome,
            code,
            reason: stored.reason.clone().unwrap_or_default().into(),
            response: stored.response(),
        }
    }
}
