//! A request's trace context: the caller's W3C `traceparent` continued (its trace id, its span
//! as the parent, its sampled flag) or a new trace, sampled at `tracing.sample_ratio`.

use std::time::UNIX_EPOCH;

use http::HeaderMap;
use http::header::HeaderName;
use tokio::time::Instant;

/// The W3C Trace Context header that carries a caller's trace.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Vendor trace state passed along with it.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The longest `tracestate` kept (the W3C limit is 32 members; longer is cut by the spec too).
const MAX_TRACESTATE: usize = 512;

/// Where a request sits in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The trace's id: the caller's, or a new one.
    pub trace_id: [u8; 16],
    /// The caller's span, the parent of this request's (none for a new trace).
    pub parent: Option<[u8; 8]>,
    /// This request's own span.
    pub span_id: [u8; 8],
    /// Whether its spans are exported.
    pub sampled: bool,
    /// The caller's `tracestate`, kept on this request's spans.
    pub state: String,
    /// The wall clock when the request began, in nanoseconds since the Unix epoch, and the
    /// monotonic instant it was read at: span times are this plus the monotonic time since.
    pub began: (u64, Instant),
}

impl Context {
    /// The context of a request that began at `started`: continued from a valid
    /// `traceparent`, else a new trace sampled with probability `ratio`. `None` for a new trace
    /// not sampled: nothing would use it.
    pub fn of(headers: &HeaderMap, ratio: f64, started: Instant) -> Option<Box<Context>> {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let (trace_id, parent, sampled) = match parent {
            Some((trace_id, span, flags)) => (trace_id, Some(span), flags & 1 == 1),
            None => {
                if rand::random::<f64>() >= ratio {
                    return None;
                }
                (nonzero(rand::random::<u128>().to_be_bytes()), None, true)
            }
        };
        let state = match parent {
            Some(_) => headers
                .get(TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= MAX_TRACESTATE)
                .unwrap_or("")
                .to_string(),
            None => String::new(),
        };
        let wall = crate::clock::system_now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Some(Box::new(Context {
            trace_id,
            parent,
            span_id: new_span_id(),
            sampled,
            state,
            began: (wall, started),
        }))
    }

    /// `at` on the wall clock, in nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self, at: Instant) -> u64 {
        let (wall, began) = self.began;
        wall + at.saturating_duration_since(began).as_nanos() as u64
    }

    /// The trace id as 32 lower-case hex digits (the access log's `trace_id`).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// A new span id: random, never all zeros (which W3C reserves for "none").
pub(super) fn new_span_id() -> [u8; 8] {
    nonzero(rand::random::<u64>().to_be_bytes())
}

fn nonzero<const N: usize>(mut id: [u8; N]) -> [u8; N] {
    if id.iter().all(|&b| b == 0) {
        id[N - 1] = 1;
    }
    id
}

/// Lower-case hex of `bytes` (trace and span ids, a new request id), without core::fmt's
/// machinery.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    // Always ASCII: the default is never taken.
    String::from_utf8(out).unwrap_or_default()
}

/// `version-traceid-parentid-flags` (W3C Trace Context level 1): the trace id, the caller's
/// span id and the flags, or `None` when malformed or either id is all zeros. A future version
/// is read by its first four fields, as the spec asks; version `ff` is invalid.
fn parse_traceparent(value: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let value = value.trim();
    let mut fields = value.split('-');
    let (version, trace, span, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let version = unhex::<1>(version)?[0];
    if version == 0xff || (version == 0 && fields.next().is_some()) {
        return None;
    }
    let trace_id = unhex::<16>(trace)?;
    let span_id = unhex::<8>(span)?;
    let flags = unhex::<1>(flags)?[0];
    let zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    if zero(&trace_id) || zero(&span_id) {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// `N` bytes from exactly `2N` lower-case hex digits (upper case is invalid in traceparent).
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = value(digits[2 * i])? << 4 | value(digits[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_spec_example_parses_and_malformed_ones_do_not() {
        let (trace, span, flags) = parse_traceparent(VALID).expect("valid");
        assert_eq!(hex(&trace), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&span), "00f067aa0ba902b7");
        assert_eq!(flags, 1);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
        // A later version may add fields after the flags.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert!(parse_traceparent(future).is_some());
    }

    #[test]
    fn a_callers_trace_is_continued_with_its_sampled_flag() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, VALID.parse().expect("header"));
        headers.insert(TRACESTATE, "vendor=abc".parse().expect("header"));
        let now = Instant::now();
        let ctx = Context::of(&headers, 0.0, now).expect("continued even at ratio 0");
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.parent.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(ctx.span_id, ctx.parent.unwrap_or_default());
        assert!(ctx.sampled);
        assert_eq!(ctx.state, "vendor=abc");

        let unsampled = VALID.replace("-01", "-00");
        headers.insert(TRACEPARENT, unsampled.parse().expect("header"));
        let ctx = Context::of(&headers, 1.0, now).expect("continued");
        assert!(!ctx.sampled, "the caller's decision wins over the ratio");
    }

    #[test]
    fn a_new_trace_is_sampled_at_the_ratio() {
        let headers = HeaderMap::new();
        let now = Instant::now();
        assert!(Context::of(&headers, 0.0, now).is_none());
        let ctx = Context::of(&headers, 1.0, now).expect("sampled");
        assert!(ctx.sampled && ctx.parent.is_none() && ctx.state.is_empty());
        let sampled = (0..2000)
            .filter(|_| Context::of(&headers, 0.25, now).is_some())
            .count();
        // 500 expected; 6 standard deviations (about 116) either side.
        assert!((384..=616).contains(&sampled), "{sampled}");
    }
}
