//! Reads `ErrorCode` from an answer body in one pass over its bytes, for the flat object Tencent
//! answers writes with; anything the pass does not fully understand goes to serde_json, so the
//! result is always serde_json's.

use serde::Deserialize;

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "ErrorCode")]
    error_code: Option<i64>,
}

/// `ErrorCode` from `body`: `None` when the body is not a JSON object with an integer
/// `ErrorCode` (as serde_json reads it into `Option<i64>`).
pub(super) fn error_code(body: &[u8]) -> Option<i64> {
    match flat(body) {
        Some(read) => read,
        None => serde_json::from_slice::<Envelope>(body).ok()?.error_code,
    }
}

/// The fast pass: `Some(answer)` for a UTF-8 object whose values are strings without escapes,
/// plain integers, `true`, `false` or `null`, each key once; `None` (ask serde_json) for
/// anything else, valid or not. Reading about a tenth of serde_json's instructions on Tencent's
/// answers is the point: the upstream answer of every request passes here.
fn flat(body: &[u8]) -> Option<Option<i64>> {
    std::str::from_utf8(body).ok()?;
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_ws(body, at + 1);
    let mut code = None;
    let mut seen_code = false;
    if body.get(at) == Some(&b'}') {
        return (skip_ws(body, at + 1) == body.len()).then_some(None);
    }
    loop {
        let (key, after) = string(body, at)?;
        at = skip_ws(body, after);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(body, at + 1);
        let end = value(body, at)?;
        if key == b"ErrorCode" {
            if seen_code {
                return None;
            }
            seen_code = true;
            code = match &body[at..end] {
                b"null" => None,
                digits if digits[0] == b'-' || digits[0].is_ascii_digit() => {
                    Some(std::str::from_utf8(digits).ok()?.parse::<i64>().ok()?)
                }
                _ => return None,
            };
        }
        at = skip_ws(body, end);
        match body.get(at) {
            Some(b',') => at = skip_ws(body, at + 1),
            Some(b'}') => break,
            _ => return None,
        }
    }
    (skip_ws(body, at + 1) == body.len()).then_some(code)
}

fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while matches!(body.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// A string without escapes or control characters at `at`: its contents and the index after
/// its closing quote.
fn string(body: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let rest = &body[at + 1..];
    let len = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    (rest[len] == b'"').then(|| (&rest[..len], at + 1 + len + 1))
}

/// The end of the value at `at`, for the kinds the fast pass reads.
fn value(body: &[u8], at: usize) -> Option<usize> {
    match body.get(at)? {
        b'"' => string(body, at).map(|(_, end)| end),
        b't' => literal(body, at, b"true"),
        b'f' => literal(body, at, b"false"),
        b'n' => literal(body, at, b"null"),
        b'-' | b'0'..=b'9' => integer(body, at),
        _ => None,
    }
}

fn literal(body: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    body[at..].starts_with(word).then_some(at + word.len())
}

/// JSON's integer grammar: `-?(0|[1-9][0-9]*)`, not followed by a fraction or an exponent.
fn integer(body: &[u8], at: usize) -> Option<usize> {
    let mut end = at + usize::from(body[at] == b'-');
    match body.get(end)? {
        b'0' => end += 1,
        b'1'..=b'9' => {
            while body.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
        }
        _ => return None,
    }
    (!matches!(body.get(end), Some(b'.' | b'e' | b'E'))).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast pass must agree with serde_json wherever it answers.
    fn agrees(body: &str) {
        let serde = serde_json::from_slice::<Envelope>(body.as_bytes())
            .ok()
            .and_then(|e| e.error_code);
        assert_eq!(error_code(body.as_bytes()), serde, "{body}");
    }

    #[test]
    fn reads_tencents_answers_in_the_fast_pass() {
        let ok = r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#;
        assert_eq!(flat(ok.as_bytes()), Some(Some(0)));
        let fail = "{ \"ActionStatus\" : \"FAIL\",\n\"ErrorCode\": -10049 , \"x\": true}";
        assert_eq!(flat(fail.as_bytes()), Some(Some(-10049)));
        assert_eq!(flat(br#"{"ErrorCode":null,"a":false}"#), Some(None));
        assert_eq!(flat(br#"{}"#), Some(None));
    }

    #[test]
    fn leaves_what_it_does_not_read_to_serde_json() {
        for body in [
            r#"{"ErrorCode":1.0}"#,
            r#"{"ErrorCode":1e3}"#,
            r#"{"ErrorCode":"7"}"#,
            r#"{"ErrorInfo":"a\"b","ErrorCode":5}"#,
            r#"{"GroupAttrAry":[{"key":"k"}],"ErrorCode":0}"#,
            r#"{"ErrorCode":0,"ErrorCode":1}"#,
            r#"{"ErrorCode":01}"#,
            r#"{"ErrorCode":99999999999999999999}"#,
            r#"{"ErrorCode":0,}"#,
            r#"{"ErrorCode":0} x"#,
            r#"[{"ErrorCode":0}]"#,
            "{\"ErrorInfo\":\"caf\u{e9}\",\"ErrorCode\":3}",
            r#"{"ErrorCode":-}"#,
            r#"{"ErrorCode":tru}"#,
            "",
            "<html>502</html>",
        ] {
            agrees(body);
        }
        assert_eq!(flat(br#"{"ErrorInfo":"a\"b","ErrorCode":5}"#), None);
        assert_eq!(
            error_code(br#"{"ErrorInfo":"a\"b","ErrorCode":5}"#),
            Some(5)
        );
        assert_eq!(error_code(br#"{"ErrorCode":0,"ErrorCode":1}"#), None);
    }

    #[test]
    fn agrees_with_serde_json_on_every_cut_of_an_answer() {
        let body = r#" {"ActionStatus":"FAIL","ErrorCode":10049,"ErrorInfo":"too fast","n":null} "#;
        for end in 0..=body.len() {
            agrees(&body[..end]);
        }
        for (i, _) in body.char_indices() {
            let mut bad = body.to_string();
            bad.insert(i, '"');
            agrees(&bad);
        }
    }
}
