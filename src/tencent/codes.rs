//! Tencent's answer codes and what each means for the gateway: success, worth retrying, a sign of
//! sending too fast, an expired signature, or final. The one place that reads `ErrorCode`.

use serde::Deserialize;

/// What to do about an answer, decided from its `ErrorCode` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `ErrorCode` 0.
    Success,
    /// A transient server fault: retry with backoff (10002, 60008, 60014, 70169, 70202, 70500).
    Retryable,
    /// Tencent says "too fast" (10049, 60007, 60011, 60018, 60019): slow the lane, then retry.
    Throttled,
    /// 70050: signature check failed and was rate limited; wait a minute before trying again.
    ThrottledLong,
    /// 70001: the UserSig expired; regenerate it and retry once.
    SigExpired,
    /// Anything else, including unknown codes: the caller's or the operator's to fix.
    Final,
}

/// Classifies an `ErrorCode` (tencent-im-api.md §2.4).
pub fn classify(code: i64) -> Class {
    match code {
        0 => Class::Success,
        10002 | 60008 | 60014 | 70169 | 70202 | 70500 => Class::Retryable,
        10049 | 60007 | 60011 | 60018 | 60019 => Class::Throttled,
        70050 => Class::ThrottledLong,
        70001 => Class::SigExpired,
        _ => Class::Final,
    }
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
        }
        for code in [10049, 60007, 60011, 60018, 60019] {
            assert_eq!(classify(code), Class::Throttled, "{code}");
        }
        assert_eq!(classify(70050), Class::ThrottledLong);
        assert_eq!(classify(70001), Class::SigExpired);
        for code in [
            10004, 10007, 10010, 10015, 10045, 10048, 10050, 60003, 70009, 123456,
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
