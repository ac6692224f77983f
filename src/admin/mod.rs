//! The admin listener: `/metrics` for Prometheus, `/healthz` (the process is alive), `/readyz`
//! (the UserSig exists and the listeners are bound; false again while draining; with the Redis
//! limiter, whether the shared budget or the local fallback share paces this replica), and the
//! operator's views: `/config` (the configuration in force), `/queues` (the lanes and the
//! deepest group lines) and `/log-level` (read, and changed at run time).

mod config_json;
mod log_level;
mod running;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::server::RequestBody;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::metrics::Metrics;
use crate::pace::Pacer;
use crate::server::Body;
use crate::server::json_response;
use crate::telemetry::LogLevel;
pub(crate) use running::Running;

/// Groups `/queues` lists unless `?top=` says otherwise, and the most it lists.
const TOP_GROUPS: usize = 10;
const MOST_GROUPS: usize = 1000;

/// What the 404 answer lists.
const PATHS: &str =
    r#"{"error":"try /metrics, /healthz, /readyz, /config, /queues or /log-level"}"#;

/// State the admin endpoints report.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shared_limiter: bool,
    running: Arc<Running>,
    pacer: Pacer,
    log: Option<LogLevel>,
}

impl Admin {
    /// An admin service over `metrics`, ready when `ready` is set; `shared_limiter` when
    /// `limits.backend = "redis"`, so that `/readyz` says whether Redis or the fallback paces.
    /// `running` and `pacer` are what `/config` and `/queues` show; `log` what `/log-level`
    /// changes (none when timgate did not install the subscriber: tests in one process).
    pub(crate) fn new(
        metrics: Metrics,
        ready: Arc<AtomicBool>,
        shared_limiter: bool,
        (running, pacer, log): (Arc<Running>, Pacer, Option<LogLevel>),
    ) -> Admin {
        Admin {
            metrics,
            ready,
            shared_limiter,
            running,
            pacer,
            log,
        }
    }

    /// The body of a ready answer. Ready either way with Redis: the local fallback share keeps
    /// serving within limits, and a replica taken out of rotation for a Redis outage would only
    /// move its callers' load to replicas equally without Redis. The body says which it is.
    fn ready_body(&self) -> &'static str {
        if !self.shared_limiter {
            r#"{"status":"ready"}"#
        } else if self.metrics.limiter_backend_up.get() == 1 {
            r#"{"status":"ready","limiter":"shared"}"#
        } else {
            r#"{"status":"ready","limiter":"degraded"}"#
        }
    }

    /// Answers one admin request.
    pub(crate) async fn handle(&self, req: Request<RequestBody>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/log-level" {
            return log_level::handle(self.log.as_ref(), req).await;
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return not_allowed("GET");
        }
        match path {
            "/healthz" => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
            "/readyz" if self.ready.load(Ordering::SeqCst) => {
                json_response(StatusCode::OK, self.ready_body())
            }
            "/readyz" => {
                json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#)
            }
            "/metrics" => {
                let mut response = json_response(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/config" => self.config(),
            "/queues" => self.queues(req.uri().query()),
            _ => json_response(StatusCode::NOT_FOUND, PATHS),
        }
    }

    fn config(&self) -> Response<Body> {
        let sections = config_json::sections(&self.running.config());
        let body = json!({
            "started_at": self.running.started_at,
            "last_reload": self.running.last_reload(),
            "config": sections,
        });
        pretty(StatusCode::OK, &body)
    }

    fn queues(&self, query: Option<&str>) -> Response<Body> {
        let top = match param(query, "top").map(str::parse::<usize>) {
            None => TOP_GROUPS,
            Some(Ok(top)) => top.min(MOST_GROUPS),
            Some(Err(_)) => {
                let why = json!({"error": "top must be a whole number"});
                return pretty(StatusCode::BAD_REQUEST, &why);
            }
        };
        pretty(StatusCode::OK, &self.pacer.view(top))
    }
}

/// The value of `name` in a query string (`a=1&top=5`), as written.
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// A JSON answer, indented for a person with curl.
fn pretty(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    json_response(status, body)
}

/// 405 with the methods `path` takes.
fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(r#"{{"error":"this path takes {allow}"}}"#),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
