//! `/log-level`: `GET` the filter in force; `PUT` a new one (the body, a tracing filter such as
//! `debug` or `info,timgate=debug`; `?for_secs=N` to have it revert by itself); `DELETE` to go
//! back to the configured `log.level`. No authentication, as Envoy's `/logging` and linkerd's
//! `/proxy-log-level`: the admin listener is for the cluster's own (README, Admin endpoints).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::json;

use super::{not_allowed, param, pretty};
use crate::server::{Body, RequestBody};
use crate::telemetry::LogLevel;

/// The longest filter taken, in bytes: enough for any sensible list of directives.
const MAX_BODY: usize = 4096;
/// How long the body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `for_secs` taken: a day.
const MOST_SECS: u64 = 86_400;

/// Answers one `/log-level` request.
pub(super) async fn handle(log: Option<&LogLevel>, req: Request<RequestBody>) -> Response<Body> {
    let Some(log) = log else {
        let why = json!({"error": "this process's log subscriber was not installed by timgate"});
        return pretty(StatusCode::SERVICE_UNAVAILABLE, &why);
    };
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => pretty(StatusCode::OK, &log.view()),
        Method::DELETE => pretty(StatusCode::OK, &log.revert()),
        Method::PUT => put(log, req).await,
        _ => not_allowed("GET, PUT, DELETE"),
    }
}

fn bad(why: impl Into<String>) -> Response<Body> {
    pretty(StatusCode::BAD_REQUEST, &json!({ "error": why.into() }))
}

async fn put(log: &LogLevel, req: Request<RequestBody>) -> Response<Body> {
    let lasting = match param(req.uri().query(), "for_secs").map(str::parse::<u64>) {
        None => None,
        Some(Ok(secs)) if (1..=MOST_SECS).contains(&secs) => Some(Duration::from_secs(secs)),
        Some(_) => {
            return bad(format!(
                "for_secs must be a whole number from 1 to {MOST_SECS}"
            ));
        }
    };
    let read = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            return bad(format!(
                "the body must be a filter of at most {MAX_BODY} bytes"
            ));
        }
        Err(_) => return bad("the body did not arrive in time"),
    };
    let Ok(level) = std::str::from_utf8(&body) else {
        return bad("the body must be UTF-8 text");
    };
    match log.override_with(level.trim(), lasting) {
        Ok(view) => pretty(StatusCode::OK, &view),
        Err(why) => bad(format!("not a log filter: {why}")),
    }
}
