//! A request's head, checked before its future is made: draining, the memory budget, the
//! bearer token, the route, a declared body over the cap, the wait it asks for; and the body,
//! read within its cap and timeout. What the wait needs is kept in a [`Begun`]; the head is
//! dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Limited};

use super::live::{Live, Route};
use super::{Failed, Gateway, MAX_WAIT_HEADER};
use crate::error::Error;
use crate::memory;
use crate::tencent::catalogue::split_api;

/// The caller's request id when it is a sane one (1 to 128 visible ASCII characters), else a new
/// random one, so that a log line can always be matched to an answer.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(super::names::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| hex16(rand::random::<u64>()), str::to_string)
}

/// `n` as 16 lower-case hex digits (a new request id).
fn hex16(n: u64) -> String {
    crate::trace::hex(&n.to_be_bytes())
}

/// What a request takes into its wait once its head is checked (the head itself is dropped).
pub(super) struct Begun<B> {
    pub(super) live: Arc<Live>,
    pub(super) route: Route,
    pub(super) body: B,
    /// The body length accounted against the memory budget before the body came.
    pub(super) declared: u64,
    /// How long it may wait, or why the header asking for it is wrong.
    pub(super) max_wait: Result<Duration, Error>,
    /// The caller asked for `202 Accepted` at once (`Prefer: respond-async`, durable mode).
    pub(super) respond_async: bool,
    pub(super) held: memory::Charge,
}

impl Gateway {
    /// The checks of a request's head, made before its future: draining, the memory budget,
    /// the bearer token, the route, a declared body over the cap, and the wait it asks for
    /// (kept, to be answered after the body's own checks as before); the caller's name goes in
    /// `trail`.
    pub(super) fn begin<B>(
        &self,
        req: Request<B>,
        trail: &mut super::Trail,
    ) -> Result<Begun<B>, Failed> {
        if self.draining.load(Ordering::SeqCst) {
            return Err((None, Error::ShuttingDown));
        }
        let (parts, body) = req.into_parts();
        let live = self.live();
        let length = content_length(&parts.headers);
        // Near the memory budget a request is refused before its body is read: what it would
        // hold is its own state and the body it declares.
        let declared = length.unwrap_or(0).min(live.max_body_bytes as u64);
        let held = self
            .memory
            .admit(memory::REQUEST_BYTES + declared)
            .map_err(|e| (None, e))?;
        // Named in the trail at once: a request refused after this point still says who sent it.
        trail.caller = Self::authorize(&live, &parts.headers).map_err(|e| (None, e))?;
        let route = Self::route(&live, &parts).map_err(|e| (None, e))?;
        // Refuse a declared oversize body before reading a byte of it.
        let limit = live.max_body_bytes;
        if length.is_some_and(|n| n > limit as u64) {
            return Err((Some(route), Error::BodyTooLarge { limit }));
        }
        let max_wait = Self::max_wait(&live, &parts.headers);
        let respond_async = super::durable::prefers_async(&parts.headers);
        Ok(Begun {
            live,
            route,
            body,
            declared,
            max_wait,
            respond_async,
            held,
        })
    }

    /// How long the request may wait for its slot: `limits.max_wait_ms`, or less when the
    /// caller asks with `x-timgate-max-wait-ms`.
    fn max_wait(live: &Live, headers: &HeaderMap) -> Result<Duration, Error> {
        let Some(value) = headers.get(super::names::MAX_WAIT) else {
            return Ok(live.max_wait);
        };
        let millis = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::BadHeader(format!(
                    "{MAX_WAIT_HEADER} must be a whole number of milliseconds"
                ))
            })?;
        Ok(live.max_wait.min(Duration::from_millis(millis)))
    }

    /// Checks the bearer token when tokens are configured; returns the caller's name (its
    /// `server.auth_tokens` entry's, `unnamed` for a plain token), `None` when none is asked.
    pub(super) fn authorize(live: &Live, headers: &HeaderMap) -> Result<Option<Arc<str>>, Error> {
        if live.auth_tokens.is_empty() {
            return Ok(None);
        }
        live.auth_tokens
            .admit(headers)
            .map(Some)
            .ok_or(Error::Unauthorized)
    }

    fn route(live: &Live, parts: &Parts) -> Result<Route, Error> {
        let path = parts.uri.path();
        // An allowed API first: one lookup, and its name is known to be well formed.
        if let Some(route) = path
            .strip_prefix("/v4/")
            .and_then(|api| live.routes.get(api))
            && parts.method == Method::POST
        {
            return Ok(route.clone());
        }
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
        live.routes
            .get(api)
            .cloned()
            .ok_or_else(|| Error::NotAllowed {
                api: truncate(api, 200),
            })
    }

    pub(super) async fn read_body<B>(live: &Live, body: B) -> Result<Bytes, Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = live.max_body_bytes;
        let collect = Limited::new(body, limit).collect();
        let Ok(collected) = tokio::time::timeout(live.body_read_timeout, collect).await else {
            return Err(Error::BodyTimeout(live.body_read_timeout));
        };
        match collected {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Error::BodyTooLarge { limit })
            }
            Err(e) => Err(Error::BodyRead(e.to_string())),
        }
    }
}

/// The body length a request declares, if it does.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_request_ids_are_sixteen_hex_digits() {
        assert_eq!(super::hex16(0), "0000000000000000");
        assert_eq!(super::hex16(0x0123_4567_89ab_cdef), "0123456789abcdef");
        assert_eq!(super::hex16(u64::MAX), "ffffffffffffffff");
    }
}
