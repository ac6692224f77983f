//! Tencent's answer codes and what each means for the gateway: success, worth retrying, a sign of
//! sending too fast, an expired signature, or final. The one place that reads `ErrorCode`.

use serde::Deserialize;

/// Which lane a throttling answer slows down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// 10049: the group's write budget.
    Group,
    /// 60007, 60011, 60018, 60019: the API's budget.
    App,
}

/// What to do about an answer, decided from its `ErrorCode` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `ErrorCode` 0.
    Success,
    /// A transient server fault: retry with backoff.
    Retryable,
    /// Tencent says "too fast": slow this lane, then retry.
    Throttled(Slow),
    /// Signature check failed and was rate limited; wait a minute before trying again.
    ThrottledLong,
    /// The UserSig expired; regenerate it and retry once.
    SigExpired,
    /// The signature did not match: right after a Secret rotation, the key it was signed with
    /// is retired; retry once if the key has changed since.
    BadSignature,
    /// Anything else, including unknown codes: the caller's or the operator's to fix.
    Final,
}

/// One row of [`CODES`]: `code_<code>` is its `reason` label in `timgate_retries_total`.
macro_rules! row {
    ($code:literal, $class:expr) => {
        ($code, $class, concat!("code_", stringify!($code)))
    };
}

/// Every code the gateway acts on (tencent-im-api.md §2.4), with what it means and the label
/// its retries are counted under; any code not here is final. The one list of codes.
const CODES: &[(i64, Class, &str)] = &[
    (0, Class::Success, "ok"),
    row!(10002, Class::Retryable),
    row!(60008, Class::Retryable),
    row!(60014, Class::Retryable),
    row!(70169, Class::Retryable),
    row!(70202, Class::Retryable),
    row!(70500, Class::Retryable),
    row!(10049, Class::Throttled(Slow::Group)),
    row!(60007, Class::Throttled(Slow::App)),
    row!(60011, Class::Throttled(Slow::App)),
    row!(60018, Class::Throttled(Slow::App)),
    row!(60019, Class::Throttled(Slow::App)),
    row!(70050, Class::ThrottledLong),
    row!(70001, Class::SigExpired),
    (70009, Class::BadSignature, "key_rotated"),
];

/// What `code` means and the label its retries are counted under, in one look at the table:
/// final and `code_other` for a code not in it (never retried).
pub fn lookup(code: i64) -> (Class, &'static str) {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or((Class::Final, "code_other"), |&(_, class, label)| {
            (class, label)
        })
}

/// Classifies an `ErrorCode`.
pub fn classify(code: i64) -> Class {
    lookup(code).0
}

/// The `reason` label a retry after `code` is counted under.
pub fn reason(code: i64) -> &'static str {
    lookup(code).1
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "ErrorCode")]
    error_code: Option<i64>,
}

/// Reads `ErrorCode` from an answer body; `None` when the body is not Tencent's shape.
pub fn error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Envelope>(body).ok()?.error_code
}

/// Tencent's failure body: `{"ActionStatus":"FAIL","ErrorCode":N,"ErrorInfo":"..."}`.
pub fn fail_body(code: i64, info: &str) -> Vec<u8> {
    serde_json::json!({"ActionStatus": "FAIL", "ErrorCode": code, "ErrorInfo": info})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_documented_codes() {
        assert_eq!(classify(0), Class::Success);
        for code in [10002, 60008, 60014, 70169, 70202, 70500] {
            assert_eq!(classify(code), Class::Retryable, "{code}");
            assert_eq!(reason(code), format!("code_{code}"));
        }
        assert_eq!(classify(10049), Class::Throttled(Slow::Group));
        for code in [60007, 60011, 60018, 60019] {
            assert_eq!(classify(code), Class::Throttled(Slow::App), "{code}");
        }
        assert_eq!(classify(70050), Class::ThrottledLong);
        assert_eq!(classify(70001), Class::SigExpired);
        assert_eq!(classify(70009), Class::BadSignature);
        assert_eq!(reason(70009), "key_rotated");
        for code in [
            10004, 10007, 10010, 10015, 10045, 10048, 10050, 60003, 123456,
        ] {
            assert_eq!(classify(code), Class::Final, "{code}");
        }
    }

    #[test]
    fn reads_error_code_from_tencent_bodies_only() {
        assert_eq!(
            error_code(br#"{"ActionStatus":"OK","ErrorCode":0}"#),
            Some(0)
        );
        assert_eq!(error_code(&fail_body(10049, "too fast")), Some(10049));
        assert_eq!(error_code(b"<html>502</html>"), None);
        assert_eq!(error_code(br#"{"ErrorCode":"x"}"#), None);
    }
}
