//! The HTTP service callers talk to: authenticate, route against the allow-list, read the body
//! within its cap, validate, sign, forward, and answer exactly once, with Tencent's answer or the
//! gateway's own.

pub mod answer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};

use crate::config::Config;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::server::Body;
use crate::tencent::catalogue::{ApiKind, split_api};
use crate::tencent::signer::Signer;
use crate::upstream::{Reply, Upstream};
use crate::validate::{self, Validated};

pub use answer::error_response;

/// An allow-listed API.
#[derive(Debug, Clone)]
struct Route {
    /// `service/command`: the upstream path and the `api` metric label.
    name: Arc<str>,
    kind: ApiKind,
}

/// The label used for requests that matched no allowed API, so labels stay bounded.
const UNROUTED: &str = "other";

/// The gateway service, shared by every connection.
#[derive(Debug)]
pub struct Gateway {
    routes: HashMap<String, Route>,
    auth_tokens: Vec<String>,
    max_body_bytes: usize,
    signer: Arc<Signer>,
    upstream: Upstream,
    metrics: Metrics,
    draining: AtomicBool,
}

impl Gateway {
    /// Wires the service from checked settings and its collaborators.
    pub fn new(
        config: &Config,
        signer: Arc<Signer>,
        upstream: Upstream,
        metrics: Metrics,
    ) -> Gateway {
        let routes = config
            .allow
            .iter()
            .map(|name| {
                (
                    name.clone(),
                    Route {
                        name: Arc::from(name.as_str()),
                        kind: ApiKind::of(name),
                    },
                )
            })
            .collect();
        Gateway {
            routes,
            auth_tokens: config.server.auth_tokens.clone(),
            max_body_bytes: config.server.max_body_bytes,
            signer,
            upstream,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    /// From now on, new requests are answered 503 (requests already inside go on).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Answers one request. Never fails: every error becomes an answer here. Generic over the
    /// body so that tests can call it without a socket.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let (api, outcome, code, response) = match self.process(req).await {
            Ok((route, reply)) => {
                let code = reply.code.unwrap_or(-1);
                let outcome = match reply.code {
                    Some(0) => "ok",
                    _ => "fail",
                };
                if code != 0 {
                    self.metrics
                        .tencent_errors
                        .with_label_values(&[&*route.name, &code.to_string()])
                        .inc();
                }
                (route.name, outcome, code, answer::reply_response(&reply))
            }
            Err((route, err)) => {
                let outcome = match err {
                    Error::Invalid(_) => "invalid",
                    Error::UpstreamUnreachable(_) | Error::UpstreamTimeout(_) => "error",
                    _ => "rejected",
                };
                if outcome != "error" {
                    self.metrics
                        .rejections
                        .with_label_values(&[err.reason()])
                        .inc();
                }
                let api = route.map_or_else(|| Arc::from(UNROUTED), |r| r.name);
                (api, outcome, err.error_code(), error_response(&err))
            }
        };
        let elapsed = started.elapsed();
        self.metrics
            .requests
            .with_label_values(&[&*api, outcome])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[&*api])
            .observe(elapsed.as_secs_f64());
        tracing::info!(
            api = &*api,
            outcome,
            code,
            status = response.status().as_u16(),
            latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            "Answered."
        );
        response
    }

    async fn process<B>(&self, req: Request<B>) -> Result<(Route, Reply), (Option<Route>, Error)>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if self.draining.load(Ordering::SeqCst) {
            return Err((None, Error::ShuttingDown));
        }
        let (parts, body) = req.into_parts();
        self.authorize(&parts.headers).map_err(|e| (None, e))?;
        let route = self.route(&parts).map_err(|e| (None, e))?;
        let fail = |e| (Some(route.clone()), e);
        let body = self.read_body(&parts.headers, body).await.map_err(fail)?;
        let validated = validate::validate(route.kind, &body).map_err(|e| fail(e.into()))?;
        self.forward(&route, &validated, body)
            .await
            .map(|r| (route.clone(), r))
            .map_err(fail)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Error> {
        if self.auth_tokens.is_empty() {
            return Ok(());
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Unauthorized)?;
        // Compare every token in full so that timing does not tell how much of one matched.
        let matched = self.auth_tokens.iter().fold(false, |found, token| {
            found | constant_time_eq(token.as_bytes(), presented.as_bytes())
        });
        if matched {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }

    fn route(&self, parts: &Parts) -> Result<Route, Error> {
        let path = parts.uri.path();
        let Some(api) = path
            .strip_prefix("/v4/")
            .filter(|api| split_api(api).is_some())
        else {
            return Err(Error::NotFound {
                path: truncate(path, 200),
            });
        };
        if parts.method != Method::POST {
            return Err(Error::MethodNotAllowed {
                method: parts.method.to_string(),
            });
        }
        self.routes
            .get(api)
            .cloned()
            .ok_or_else(|| Error::NotAllowed {
                api: truncate(api, 200),
            })
    }

    async fn read_body<B>(&self, headers: &HeaderMap, body: B) -> Result<Bytes, Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Refuse a declared oversize body before reading a byte of it.
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(Error::BodyTooLarge { limit });
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Error::BodyTooLarge { limit })
            }
            Err(e) => Err(Error::BodyRead(e.to_string())),
        }
    }

    async fn forward(
        &self,
        route: &Route,
        _validated: &Validated,
        body: Bytes,
    ) -> Result<Reply, Error> {
        let query = self.signer.query();
        let timer = self
            .metrics
            .upstream_duration
            .with_label_values(&[&*route.name])
            .start_timer();
        self.metrics
            .upstream_attempts
            .with_label_values(&[&*route.name])
            .inc();
        self.metrics.upstream_in_flight.inc();
        let result = self.upstream.send(&route.name, &query, body).await;
        self.metrics.upstream_in_flight.dec();
        timer.observe_duration();
        self.metrics
            .usersig_expiry
            .set(self.signer.expires_at() as f64);
        result
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
