//! Building answers: the one function that turns an [`Error`] into a response, and the one that
//! passes Tencent's own answer through.

use http::{HeaderValue, Response, StatusCode, header};

use crate::error::Error;
use crate::server::{Body, json_response};
use crate::tencent::codes;
use crate::upstream::Reply;

/// The header that marks an answer as the gateway's own, with the reason.
pub const ERROR_HEADER: &str = "x-timgate-error";

/// Turns any error into the caller's answer: Tencent's body shape, the status and code of the
/// DESIGN answer table, `x-timgate-error`, and `Retry-After` on 429s. Nothing else builds error
/// bodies. Upstream causes are logged here; the body carries only the error's own message.
pub fn error_response(err: &Error) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(reason = err.reason(), error = %err, "Gateway answered with an error.");
    }
    let mut response = json_response(status, codes::fail_body(err.error_code(), &err.to_string()));
    let headers = response.headers_mut();
    headers.insert(ERROR_HEADER, HeaderValue::from_static(err.reason()));
    if let Some(after) = err.retry_after() {
        // Whole seconds, rounded up so that a caller who obeys never comes back too early.
        let secs = after.as_millis().div_ceil(1000).max(1);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs as u64));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// Passes Tencent's answer to the caller with its status and body unchanged.
pub fn reply_response(reply: &Reply) -> Response<Body> {
    json_response(reply.status, reply.body.clone())
}
