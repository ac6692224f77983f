//! Says what the config crate found wrong with a source (a TOML syntax error, a value of the wrong
//! type) without quoting the source: the parser's own text shows the offending line, which may
//! hold a secret, so only the position, the parser's message, the key and the file are kept.

use std::num::{ParseFloatError, ParseIntError};

use config::ConfigError as SourceError;

use super::known::SECRET_KEYS;

/// How the config crate says that a variable is not UTF-8, before it quotes the variable's value.
const NOT_UTF8: &str = "contains non-Unicode data";

/// One line saying what is wrong, with no value of a secret key and no line of the source.
pub(super) fn describe(err: &SourceError) -> String {
    describe_in(err, false)
}

/// What is wrong with the value at `key`, without the key or the source it came from (the caller
/// says both); values quoted only where `key` does not hold a secret.
pub(super) fn describe_value(err: &SourceError, key: &str) -> String {
    let secret = holds_secret(key);
    match err {
        SourceError::Type {
            unexpected,
            expected,
            ..
        } => {
            let found = unexpected.to_string();
            let found = if secret {
                without_values(&found)
            } else {
                found
            };
            format!("invalid type: {found}, expected {expected}")
        }
        SourceError::At { error, .. } => describe_value(error, key),
        other => describe_in(other, secret),
    }
}

/// `secret`: the error is about a value under a secret key, so values quoted in it are dropped.
fn describe_in(err: &SourceError, secret: bool) -> String {
    match err {
        SourceError::FileParse { uri, cause } => {
            format!("{}{}", syntax(cause.as_ref()), origin(uri.as_deref()))
        }
        SourceError::Type {
            origin: from,
            unexpected,
            expected,
            key,
        } => {
            // `string "..."` quotes the value: under a secret key, or one unknown, say only
            // what kind it was.
            let found = unexpected.to_string();
            let found = if secret || key.as_deref().is_none_or(holds_secret) {
                without_values(&found)
            } else {
                found
            };
            format!(
                "invalid type: {found}, expected {expected}{}{}",
                for_key(key.as_deref()),
                origin(from.as_deref())
            )
        }
        SourceError::At {
            error,
            origin: from,
            key,
        } => {
            let secret = secret || key.as_deref().is_some_and(holds_secret);
            format!(
                "{}{}{}",
                describe_in(error, secret),
                for_key(key.as_deref()),
                origin(from.as_deref())
            )
        }
        // serde's own messages (`invalid type: string "..."`) quote values too.
        SourceError::Message(message) if secret => without_values(message),
        // The environment's message about a value that is not UTF-8 quotes the value whole.
        SourceError::Message(message) if message.contains(NOT_UTF8) => {
            let end = message.find(NOT_UTF8).map_or(0, |at| at + NOT_UTF8.len());
            message[..end].to_string()
        }
        other => other.to_string(),
    }
}

/// `text` without its `"quoted"` and `` `quoted` `` parts (and the space before each).
fn without_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' && c != '`' {
            out.push(c);
            continue;
        }
        if out.ends_with(' ') {
            out.pop();
        }
        let mut escaped = false;
        for inner in chars.by_ref() {
            match inner {
                '\\' if c == '"' && !escaped => escaped = true,
                end if end == c && !escaped => break,
                _ => escaped = false,
            }
        }
    }
    out
}

/// A syntax error as `TOML parse error at line L, column C: <message>`, never the line itself.
fn syntax(cause: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    if let Some(toml) = cause.downcast_ref::<toml::de::Error>() {
        // The first line of the parser's own text is its position; the lines after it quote the
        // source, so they are dropped.
        let full = toml.to_string();
        let at = full
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("TOML parse error at "))
            .filter(|at| is_position(at));
        let message = toml.message().lines().next().unwrap_or("");
        return match at {
            Some(at) => format!("TOML parse error at {at}: {message}"),
            None => format!("TOML parse error: {message}"),
        };
    }
    if cause.is::<ParseIntError>() || cause.is::<ParseFloatError>() {
        return format!("TOML parse error: a number cannot be read ({cause})");
    }
    // Of an unknown kind, a cause might quote the source: say only that it is not TOML.
    "TOML parse error: not valid TOML".to_string()
}

/// `line 3, column 15`
fn is_position(at: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    at.strip_prefix("line ")
        .and_then(|rest| rest.split_once(", column "))
        .is_some_and(|(line, column)| number(line) && number(column))
}

fn for_key(key: Option<&str>) -> String {
    key.map(|key| format!(" for key `{key}`"))
        .unwrap_or_default()
}

fn origin(origin: Option<&str>) -> String {
    origin
        .map(|origin| format!(" in {origin}"))
        .unwrap_or_default()
}

/// Whether a value at `key` (or under it: `server.auth_tokens[0]`) is a secret.
fn holds_secret(key: &str) -> bool {
    SECRET_KEYS.iter().any(|secret| {
        key.strip_prefix(secret)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::{File, FileFormat};

    const KEY: &str = "5bd2aa11cafe0000deadbeef5bd2aa11";

    fn problem(toml: &str) -> String {
        let err = config::Config::builder()
            .add_source(File::from_str(toml, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<super::super::RawConfig>())
            .expect_err("a bad source");
        describe(&err)
    }

    #[test]
    fn a_syntax_error_keeps_the_position_and_message_not_the_line() {
        for (toml, want) in [
            (
                format!("[tencent]\nsecret_key = \"{KEY}\n"),
                "TOML parse error at line 2, column 47: invalid basic string, expected `\"`",
            ),
            (
                format!("[tencent]\nsecret_key = {KEY}\n"),
                "TOML parse error at line 2, column 15: ",
            ),
        ] {
            let text = problem(&toml);
            assert!(text.starts_with(want), "{text}");
            assert!(!text.contains(KEY) && !text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn a_wrong_type_names_the_key_but_not_a_secret_value() {
        for (toml, want) in [
            (
                format!("[server]\nauth_tokens = \"{KEY}\""),
                "invalid type: string, expected a sequence for key `server.auth_tokens`",
            ),
            (
                format!("[tencent]\nsecret_key = [\"{KEY}\"]"),
                "invalid type: sequence, expected a string for key `tencent.secret_key`",
            ),
            (
                "[server]\nmax_body_bytes = \"lots\"".to_string(),
                "invalid type: string \"lots\", expected an integer for key `server.max_body_bytes`",
            ),
        ] {
            assert_eq!(problem(&toml), want);
        }
    }

    #[test]
    fn drops_quoted_values_escapes_included() {
        assert_eq!(
            without_values(r#"invalid type: string "a\"b`c", expected `x` here"#),
            "invalid type: string, expected here"
        );
    }
}
