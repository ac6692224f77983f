//! `server.auth_tokens` entries: a plain `token`, or `name:token`, the name saying which caller
//! it is in the `timgate_caller_requests_total{caller}` metric (a bounded label: the names come
//! from the configuration) and to the access log.

use super::check::Problems;

/// The caller name of a plain token's requests.
pub const UNNAMED: &str = "unnamed";

/// Longest caller name.
const MAX_NAME: usize = 32;

/// An entry's name (when it has one) and its token.
pub fn split(entry: &str) -> (Option<&str>, &str) {
    match entry.split_once(':') {
        Some((name, token)) => (Some(name), token),
        None => (None, entry),
    }
}

fn is_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks every entry's name: a metric label value and a log field, so short and plain, each
/// name once. Never quotes an entry: the token is a secret.
pub(super) fn check(entries: &[String], p: &mut Problems) {
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let (Some(name), token) = split(entry) else {
            continue;
        };
        if !is_name(name) || name == UNNAMED {
            p.add(
                "server.auth_tokens",
                format!(
                    "entry {i}: a name before ':' must be 1 to {MAX_NAME} letters, digits, '_', '-' or '.' (and not {UNNAMED:?})"
                ),
            );
        } else if !seen.insert(name) {
            p.add(
                "server.auth_tokens",
                format!("entry {i}: the name {name:?} is given twice"),
            );
        }
        if token.trim().is_empty() || token.trim() != token {
            p.add(
                "server.auth_tokens",
                format!("entry {i}: the token after {name:?}: is empty or has spaces around it"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_and_unique_and_no_token_is_quoted() {
        let entries = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut p = Problems::default();
        check(
            &entries(&["billing:tok-a-secret", "chat-2:tok-b", "plain-token"]),
            &mut p,
        );
        assert!(p.is_empty());
        let mut p = Problems::default();
        check(
            &entries(&[
                "bad name:tok-c-secret",
                "x:tok-d",
                "x:tok-e",
                "unnamed:tok-f",
                "y: tok-g",
            ]),
            &mut p,
        );
        let problems = p.into_inner();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems.iter().all(|p| !p.contains("tok-")),
            "{problems:#?}"
        );
        assert_eq!(split("billing:a:b"), (Some("billing"), "a:b"));
    }
}
