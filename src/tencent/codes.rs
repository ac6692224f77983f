//! Tencent's answer codes and what each means for the gateway: success, worth retrying, a sign of
//! sending too fast, an expired signature, or final. The one place that reads `ErrorCode`.

/// Which lane a throttling answer slows down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// 10049: the group's write budget; 10023: the group's message budget (the lane of the
    /// request that got it, either way).
    Group,
    /// 60007, 60018, 60019 and kin: the API's budget.
    App,
    /// 60011: the SDKAppID's total, which every API counts towards.
    Sdkappid,
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

/// One row of [`CODES`]: `code_<code>` is its `reason` label in `timgate_retries_total`; the
/// last field names where Tencent says so (sections of tencent-im-api.md, which cite the pages).
macro_rules! row {
    ($code:literal, $class:expr, $source:literal) => {
        ($code, $class, concat!("code_", stringify!($code)), $source)
    };
}

/// Every code the gateway acts on, with what it means, the label its retries are counted
/// under, and its source; any code not here is final. The one list of codes.
#[rustfmt::skip] // one row a line: a table to read down
const CODES: &[(i64, Class, &str, &str)] = &[
    (0, Class::Success, "ok", "§1.2"),
    row!(10002, Class::Retryable, "§2.3 internal error, retry"),
    row!(60008, Class::Retryable, "§2.1 service request timed out"),
    row!(60014, Class::Retryable, "§2.1 account swap timed out"),
    row!(70169, Class::Retryable, "§2.2 server timeout"),
    row!(70202, Class::Retryable, "§2.2 server timeout"),
    row!(70500, Class::Retryable, "§2.2 internal server error"),
    row!(20004, Class::Retryable, "§8.2 message service network exception"),
    row!(20005, Class::Retryable, "§8.2 message service internal error"),
    row!(30006, Class::Retryable, "§8.2 relationship chain internal error"),
    row!(30007, Class::Retryable, "§8.2 relationship chain timeout"),
    row!(40006, Class::Retryable, "§8.1 profile internal error, try later"),
    row!(50004, Class::Retryable, "§8.2 recent contacts internal error"),
    row!(50005, Class::Retryable, "§8.2 recent contacts timeout"),
    row!(90992, Class::Retryable, "§8.2 message service internal error"),
    row!(90994, Class::Retryable, "§8.2 message service internal error"),
    row!(90995, Class::Retryable, "§8.2 message service internal error"),
    row!(91000, Class::Retryable, "§8.2 message service internal error"),
    row!(10049, Class::Throttled(Slow::Group), "§1.3 group attribute writes over 5/s"),
    row!(10023, Class::Throttled(Slow::Group), "§8.2 group messages over 40/s per group"),
    row!(10006, Class::Throttled(Slow::App), "§8.2 group operation frequency over limit"),
    row!(60007, Class::Throttled(Slow::App), "§2.1 REST API call rate over its limit"),
    row!(60011, Class::Throttled(Slow::Sdkappid), "§8.2 SDKAppID request frequency over limit"),
    row!(60018, Class::Throttled(Slow::App), "§2.1 too many requests"),
    row!(60019, Class::Throttled(Slow::App), "§2.1 too many requests"),
    row!(90024, Class::Throttled(Slow::App), "§8.2 push interval under 1 s"),
    row!(70050, Class::ThrottledLong, "§2.2 too many failed sig checks, 1 min"),
    row!(70001, Class::SigExpired, "§2.2 UserSig expired"),
    row!(70052, Class::SigExpired, "§8.1 UserSig expired (TIMCloudDef.h)"),
    row!(20002, Class::SigExpired, "§8.1 UserSig or A2 expired"),
    (70009, Class::BadSignature, "key_rotated", "§2.2 UserSig verification failed"),
];

/// 10050, "deleting an attribute that does not exist" (§1.3): final, except that a delete re-sent
/// after an attempt whose answer was lost (§8.2) gets it because that attempt did delete.
pub const NO_SUCH_ATTRIBUTE: i64 = 10050;

/// What `code` means and the label its retries are counted under, in one look at the table:
/// final and `code_other` for a code not in it (never retried).
pub fn lookup(code: i64) -> (Class, &'static str) {
    CODES
        .iter()
        .find(|(c, ..)| *c == code)
        .map_or((Class::Final, "code_other"), |&(_, class, label, _)| {
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

/// Reads `ErrorCode` from an answer body; `None` when the body is not Tencent's shape.
pub fn error_code(body: &[u8]) -> Option<i64> {
    super::envelope::error_code(body)
}

/// Tencent's success body, for an answer the gateway knows to be a success.
pub fn ok_body() -> Vec<u8> {
    serde_json::json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
        .to_string()
        .into_bytes()
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
        assert_eq!(classify(10023), Class::Throttled(Slow::Group));
        for code in [60007, 60018, 60019, 10006, 90024] {
            assert_eq!(classify(code), Class::Throttled(Slow::App), "{code}");
        }
        assert_eq!(classify(60011), Class::Throttled(Slow::Sdkappid));
        for code in [
            20004, 20005, 30006, 30007, 40006, 50004, 50005, 90992, 90994, 90995, 91000,
        ] {
            assert_eq!(classify(code), Class::Retryable, "{code}");
        }
        for code in [70052, 20002] {
            assert_eq!(classify(code), Class::SigExpired, "{code}");
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
    fn every_row_names_its_source_and_each_code_is_listed_once() {
        for (code, _, label, source) in CODES {
            assert!(source.starts_with('§'), "{code}: {source}");
            assert!(
                CODES.iter().filter(|(c, ..)| c == code).count() == 1,
                "{code} twice"
            );
            assert!(label == &"ok" || label == &"key_rotated" || label.starts_with("code_"));
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
