//! The admin listener: `/metrics` for Prometheus, `/healthz` (the process is alive) and `/readyz`
//! (the UserSig exists and the listeners are bound; false again while draining).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::server::RequestBody;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::gateway::answer::plain_json;
use crate::metrics::Metrics;
use crate::server::Body;

/// State the admin endpoints report.
#[derive(Debug, Clone)]
pub struct Admin {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
}

impl Admin {
    /// An admin service over `metrics`, ready when `ready` is set.
    pub fn new(metrics: Metrics, ready: Arc<AtomicBool>) -> Admin {
        Admin { metrics, ready }
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: Request<RequestBody>) -> Response<Body> {
        match req.uri().path() {
            "/healthz" => plain_json(StatusCode::OK, r#"{"status":"ok"}"#),
            "/readyz" if self.ready.load(Ordering::SeqCst) => {
                plain_json(StatusCode::OK, r#"{"status":"ready"}"#)
            }
            "/readyz" => plain_json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"not ready"}"#),
            "/metrics" => {
                let mut response = plain_json(StatusCode::OK, self.metrics.render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            _ => plain_json(
                StatusCode::NOT_FOUND,
                r#"{"error":"try /metrics, /healthz or /readyz"}"#,
            ),
        }
    }
}
