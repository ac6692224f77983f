//! What a request's access log line and trace say beyond its answer: who sent it, when it joined
//! its queue, what carried it upstream (its send's tally, the batch it went in), and its trace
//! context; and the spans made of them when the request is traced.

use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderMap;
use tokio::time::Instant;

use crate::retry::tally::Tally;
use crate::trace::{Context, Status, Steps, Tracer, Value};

/// A request's record while it is handled. Kept small: it sits in every waiting request's
/// future (the trace context is boxed, and only a traced request has one).
#[derive(Debug)]
pub(super) struct Trail {
    /// When its head was read.
    pub(super) started: Instant,
    /// Its id: the caller's, or one made for it.
    pub(super) request_id: String,
    /// The caller's name, from its bearer token (none without tokens, or before the check).
    pub(super) caller: Option<Arc<str>>,
    /// When it was checked and joined its queue.
    pub(super) admitted: Option<Instant>,
    /// Its trace, when traced or continued from the caller.
    pub(super) trace: Option<Box<Context>>,
}

impl Trail {
    /// The trail of a request whose head is `headers`, begun now.
    pub(super) fn begin(headers: &HeaderMap, tracer: Option<&Tracer>) -> Trail {
        let started = Instant::now();
        Trail {
            started,
            request_id: super::head::request_id(headers),
            caller: None,
            admitted: None,
            trace: tracer.and_then(|t| t.context(headers, started)),
        }
    }

    /// Whether the request's spans are kept (each attempt's among them).
    pub(super) fn traced(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.sampled)
    }
}

/// What carried a request upstream: the tally of the send it went in, and the size of its
/// coalesced batch, when it joined one.
#[derive(Debug, Default)]
pub(super) struct Carried {
    /// The send's tally (its batch's, for a coalesced write).
    pub(super) tally: Tally,
    /// How many requests shared the send.
    pub(super) coalesced: Option<usize>,
}

impl Carried {
    /// Carried by its own send.
    pub(super) fn alone(tally: Tally) -> Option<Carried> {
        Some(Carried {
            tally,
            coalesced: None,
        })
    }
}

/// The access log's and the trace's view of an answer.
pub(super) struct Answered<'a> {
    /// The API's metric label.
    pub(super) api: &'a str,
    /// `ok`, `fail`, `invalid`, `rejected`, `error` or `accepted`.
    pub(super) outcome: &'static str,
    /// Tencent's `ErrorCode`, or the gateway's.
    pub(super) code: i64,
    /// The gateway's reason (empty for Tencent's answers).
    pub(super) reason: &'a str,
    /// The HTTP status.
    pub(super) status: u16,
    /// When the answer was made.
    pub(super) at: Instant,
}

impl Trail {
    /// Queues the request's spans with `tracer`, when it is traced.
    pub(super) fn export(
        &self,
        tracer: &Tracer,
        answered: &Answered<'_>,
        carried: Option<&Carried>,
    ) {
        let Some(ctx) = self.trace.as_deref().filter(|t| t.sampled) else {
            return;
        };
        let mut attrs = vec![
            ("timgate.api", Value::Str(answered.api.to_string().into())),
            (
                "timgate.outcome",
                Value::Str(Cow::Borrowed(answered.outcome)),
            ),
            ("timgate.code", Value::Int(answered.code)),
            (
                "http.response.status_code",
                Value::Int(answered.status.into()),
            ),
            (
                "timgate.request_id",
                Value::Str(self.request_id.clone().into()),
            ),
        ];
        if !answered.reason.is_empty() {
            attrs.push((
                "timgate.reason",
                Value::Str(answered.reason.to_string().into()),
            ));
        }
        if let Some(caller) = &self.caller {
            attrs.push(("timgate.caller", Value::Str(caller.to_string().into())));
        }
        let empty = Tally::default();
        let tally = carried.map_or(&empty, |c| &c.tally);
        if let Some(carried) = carried {
            attrs.push(("timgate.attempts", Value::Int(tally.attempts.into())));
            if let Some(size) = carried.coalesced {
                attrs.push(("timgate.coalesced", Value::Int(size as i64)));
            }
        }
        if let Some(limiter) = tally.limiter {
            attrs.push((
                "timgate.limiter",
                Value::Str(Cow::Borrowed(limiter.as_str())),
            ));
        }
        // A server span is in error for a 5xx (the gateway's or the upstream's failure) and for
        // Tencent's refusal; a 4xx refusal of the caller's request is not the server's error.
        let status = if answered.status >= 500 || answered.outcome == "fail" {
            Status::Error(match answered.reason {
                "" => format!("ErrorCode {}", answered.code),
                reason => reason.to_string(),
            })
        } else {
            Status::Unset
        };
        let spans = crate::trace::spans(
            ctx,
            Steps {
                api: answered.api,
                started: self.started,
                admitted: self.admitted,
                permitted: tally.permitted,
                attempts: &tally.spans,
                answered: answered.at,
                attrs,
                status,
            },
        );
        tracer.record(spans);
    }
}
