//! The admin listener: `/metrics` for Prometheus, `/healthz` (the process is alive) and `/readyz`
//! (the UserSig exists and the listeners are bound; false again while draining; with the Redis
//! limiter, whether the shared budget or the local fallback share paces this replica).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::server::RequestBody;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::metrics::Metrics;
use crate::server::Body;
use crate::server::json_response;

/// State the admin endpoints report.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shared_limiter: bool,
}

impl Admin {
    /// An admin service over `metrics`, ready when `ready` is set; `shared_limiter` when
    /// `limits.backend = "redis"`, so that `/readyz` says whether Redis or the fallback paces.
    pub(crate) fn new(metrics: Metrics, ready: Arc<AtomicBool>, shared_limiter: bool) -> Admin {
        Admin {
            metrics,
            ready,
            shared_limiter,
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
        match req.uri().path() {
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
            _ => json_response(
                StatusCode::NOT_FOUND,
                r#"{"error":"try /metrics, /healthz or /readyz"}"#,
            ),
        }
    }
}
