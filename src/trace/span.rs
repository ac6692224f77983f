//! The spans of one traced request, made from what the gateway recorded of it: the request's own
//! span (the caller's span its parent), and under it its admission, its queue wait, each
//! upstream attempt, each retry's wait, and its answer.

use std::borrow::Cow;

use tokio::time::Instant;

use super::context::{Context, new_span_id};
use crate::retry::tally::Attempt;

/// A span's kind, as OTLP numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A step inside the gateway.
    Internal,
    /// The request the caller made.
    Server,
    /// A call to Tencent.
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    Str(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A flag.
    Bool(bool),
}

/// A span's status: unset (fine), or an error with its message.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Nothing went wrong.
    Unset,
    /// Something went wrong, as said.
    Error(String),
}

/// One finished span, ready to export.
#[derive(Debug, Clone)]
pub struct SpanData {
    /// The trace it belongs to.
    pub trace_id: [u8; 16],
    /// Its own id.
    pub span_id: [u8; 8],
    /// Its parent's id (the caller's span for the request's own; none at a trace's root).
    pub parent: Option<[u8; 8]>,
    /// The caller's `tracestate` (on the request's own span only).
    pub state: String,
    /// What it was.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: Kind,
    /// Its start, in nanoseconds since the Unix epoch.
    pub start: u64,
    /// Its end, likewise.
    pub end: u64,
    /// Its attributes.
    pub attrs: Vec<(&'static str, Value)>,
    /// Whether it failed.
    pub status: Status,
}

/// What the gateway recorded of a request, for its spans.
#[derive(Debug)]
pub struct Steps<'a> {
    /// The API (the metrics' `api` label), the request span's name.
    pub api: &'a str,
    /// When its head arrived.
    pub started: Instant,
    /// When it was checked and joined its queue (none if refused before).
    pub admitted: Option<Instant>,
    /// When its slot came (none if it never did).
    pub permitted: Option<Instant>,
    /// Its upstream attempts, in order.
    pub attempts: &'a [Attempt],
    /// When its answer was made.
    pub answered: Instant,
    /// The request span's attributes.
    pub attrs: Vec<(&'static str, Value)>,
    /// The request's failure, if it failed.
    pub status: Status,
}

/// The spans of a request in `ctx` that went through `steps`.
pub fn spans(ctx: &Context, steps: Steps<'_>) -> Vec<SpanData> {
    let at = |i: Instant| ctx.unix_nanos(i);
    let child = |name: &'static str, kind, (start, end): (Instant, Instant)| SpanData {
        trace_id: ctx.trace_id,
        span_id: new_span_id(),
        parent: Some(ctx.span_id),
        state: String::new(),
        name: Cow::Borrowed(name),
        kind,
        start: at(start),
        end: at(end.max(start)),
        attrs: Vec::new(),
        status: Status::Unset,
    };
    let mut out = Vec::with_capacity(4 + 2 * steps.attempts.len());
    out.push(SpanData {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent: ctx.parent,
        state: ctx.state.clone(),
        name: Cow::Owned(steps.api.to_string()),
        kind: Kind::Server,
        start: at(steps.started),
        end: at(steps.answered),
        attrs: steps.attrs,
        status: steps.status,
    });
    // Each step runs until the next one began: admission until the queue, the queue until the
    // slot, attempts with the retries' waits between them, then the answer.
    let admitted = steps.admitted.unwrap_or(steps.answered);
    out.push(child(
        "admission",
        Kind::Internal,
        (steps.started, admitted),
    ));
    let mut last = admitted;
    if let Some(admitted) = steps.admitted {
        let left = steps.permitted.unwrap_or(steps.answered);
        out.push(child("queue_wait", Kind::Internal, (admitted, left)));
        last = left;
    }
    for (n, attempt) in steps.attempts.iter().enumerate() {
        if n > 0 {
            out.push(child("retry_wait", Kind::Internal, (last, attempt.start)));
        }
        let mut span = child("attempt", Kind::Client, (attempt.start, attempt.end));
        span.attrs = vec![
            ("timgate.attempt", Value::Int(n as i64 + 1)),
            ("timgate.code", Value::Int(attempt.code)),
        ];
        if !attempt.reason.is_empty() {
            span.attrs
                .push(("timgate.reason", Value::Str(Cow::Borrowed(attempt.reason))));
            span.status = Status::Error(attempt.reason.to_string());
        } else if attempt.code != 0 {
            span.status = Status::Error(format!("ErrorCode {}", attempt.code));
        }
        out.push(span);
        last = attempt.end;
    }
    out.push(child("answer", Kind::Internal, (last, steps.answered)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn steps_become_a_request_span_with_its_children_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let ctx = Context {
            trace_id: [7; 16],
            parent: Some([9; 8]),
            span_id: [3; 8],
            sampled: true,
            state: "v=1".into(),
            began: (1_000_000_000, t0),
        };
        let attempts = [
            Attempt {
                start: ms(10),
                end: ms(20),
                code: 10004,
                reason: "",
            },
            Attempt {
                start: ms(50),
                end: ms(60),
                code: 0,
                reason: "",
            },
        ];
        let spans = spans(
            &ctx,
            Steps {
                api: "group_open_http_svc/modify_group_attr",
                started: t0,
                admitted: Some(ms(1)),
                permitted: Some(ms(10)),
                attempts: &attempts,
                answered: ms(61),
                attrs: vec![("timgate.outcome", Value::Str("ok".into()))],
                status: Status::Unset,
            },
        );
        let names: Vec<&str> = spans.iter().map(|s| &*s.name).collect();
        assert_eq!(
            names,
            [
                "group_open_http_svc/modify_group_attr",
                "admission",
                "queue_wait",
                "attempt",
                "retry_wait",
                "attempt",
                "answer"
            ]
        );
        assert_eq!(spans[0].parent, Some([9; 8]));
        assert!(spans[1..].iter().all(|s| s.parent == Some([3; 8])));
        let times: Vec<(u64, u64)> = spans
            .iter()
            .map(|s| {
                (
                    (s.start - 1_000_000_000) / 1_000_000,
                    (s.end - 1_000_000_000) / 1_000_000,
                )
            })
            .collect();
        assert_eq!(
            times,
            [
                (0, 61),
                (0, 1),
                (1, 10),
                (10, 20),
                (20, 50),
                (50, 60),
                (60, 61)
            ]
        );
        assert_eq!(spans[3].status, Status::Error("ErrorCode 10004".into()));
        assert_eq!(spans[5].status, Status::Unset);
    }

    /// The bytes `spans` hold: each span and what its fields point to.
    fn footprint(spans: &[SpanData]) -> usize {
        let entry = std::mem::size_of::<(&'static str, Value)>();
        spans
            .iter()
            .map(|s| {
                let strings: usize = s
                    .attrs
                    .iter()
                    .map(|(_, v)| match v {
                        Value::Str(Cow::Owned(text)) => text.capacity(),
                        _ => 0,
                    })
                    .sum();
                let name = match &s.name {
                    Cow::Owned(name) => name.capacity(),
                    Cow::Borrowed(_) => 0,
                };
                std::mem::size_of::<SpanData>()
                    + s.attrs.capacity() * entry
                    + strings
                    + name
                    + s.state.capacity()
            })
            .sum()
    }

    #[test]
    fn a_requests_spans_fit_the_bytes_the_buffer_bound_assumes() {
        let t0 = Instant::now();
        let ctx = Context {
            trace_id: [1; 16],
            parent: None,
            span_id: [2; 8],
            sampled: true,
            state: String::new(),
            began: (0, t0),
        };
        let attempt = [Attempt {
            start: t0,
            end: t0,
            code: 0,
            reason: "",
        }];
        // The request span's attributes as the gateway sets them for a named caller's write.
        let attrs = vec![
            (
                "timgate.api",
                Value::Str(String::from("group_open_http_svc/modify_group_attr").into()),
            ),
            ("timgate.outcome", Value::Str("ok".into())),
            ("timgate.code", Value::Int(0)),
            ("http.response.status_code", Value::Int(200)),
            (
                "timgate.request_id",
                Value::Str(String::from("0123456789abcdef").into()),
            ),
            ("timgate.caller", Value::Str(String::from("billing").into())),
            ("timgate.attempts", Value::Int(1)),
            ("timgate.limiter", Value::Str("local".into())),
        ];
        let spans = spans(
            &ctx,
            Steps {
                api: "group_open_http_svc/modify_group_attr",
                started: t0,
                admitted: Some(t0),
                permitted: Some(t0),
                attempts: &attempt,
                answered: t0,
                attrs,
                status: Status::Unset,
            },
        );
        let per_span = footprint(&spans) / spans.len();
        eprintln!("{} spans, {per_span} bytes each", spans.len());
        // config/default.toml says about 250 bytes each for tracing.max_queued_spans.
        assert!((150..=300).contains(&per_span), "{per_span}");
    }
}
