//! Bearer tokens: the accepted ones kept only as SHA-256 digests, made once per live
//! configuration, and a check whose time depends neither on how much of a token matched nor on
//! the lengths of the configured tokens. A token's entry may name its caller (`name:token`):
//! the check says who it was and counts the request under that name.

use std::sync::Arc;

use http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// The scheme of `Authorization: Bearer <token>` (RFC 6750), matched without case (RFC 7235).
const SCHEME: &str = "bearer";

type Sha = [u8; 32];

/// One accepted token: its digest, its caller's name and that caller's request counter.
#[derive(Clone)]
struct Token {
    digest: Sha,
    caller: Arc<str>,
    requests: prometheus::IntCounter,
}

/// The accepted tokens, as digests.
#[derive(Clone, Default)]
pub(super) struct Tokens(Vec<Token>);

impl std::fmt::Debug for Token {
    // Neither the digest nor anything that would find the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", self.caller)
    }
}

impl std::fmt::Debug for Tokens {
    // Not even a digest: a short token could be found from it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.0.len())
    }
}

fn digest(token: &[u8]) -> Sha {
    Sha256::digest(token).into()
}

impl Tokens {
    /// The tokens of `server.auth_tokens` entries, each counted in `metrics` under its name.
    pub(super) fn new(entries: &[String], metrics: &crate::metrics::Metrics) -> Tokens {
        let token = |entry: &String| {
            let (name, token) = crate::config::tokens::split(entry);
            let caller = name.unwrap_or(crate::config::tokens::UNNAMED);
            Token {
                digest: digest(token.as_bytes()),
                caller: caller.into(),
                requests: metrics.caller_requests.with_label_values(&[caller]),
            }
        };
        Tokens(entries.iter().map(token).collect())
    }

    /// No token is required.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The caller whose token the request presents, counted; `None` when it presents none of
    /// them.
    pub(super) fn admit(&self, headers: &HeaderMap) -> Option<Arc<str>> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)?;
        let presented = digest(presented.as_bytes());
        // Every digest is compared in full, with no early exit, so that timing tells nothing
        // of the tokens (at most where in the list the match was).
        let found = self.0.iter().fold(None, |found, token| {
            let equal = constant_time_eq(&token.digest, &presented);
            found.or(equal.then_some(token))
        })?;
        found.requests.inc();
        Some(found.caller.clone())
    }
}

/// The token of a `Bearer` credential: the scheme in any case, then one or more spaces; spaces
/// around the token are not part of it.
fn bearer(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case(SCHEME) && !token.is_empty()).then_some(token)
}

/// Compares two digests in a time that does not depend on their contents.
fn constant_time_eq(a: &Sha, b: &Sha) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn admits(tokens: &Tokens, authorization: &str) -> bool {
        let mut headers = HeaderMap::new();
        let value = http::HeaderValue::from_str(authorization).expect("a header value");
        headers.insert(header::AUTHORIZATION, value);
        tokens.admit(&headers).is_some()
    }

    #[test]
    fn the_scheme_is_matched_without_case_and_spaces_are_not_the_token() {
        let tokens = Tokens::new(
            &["s3cret".to_string(), "other".to_string()],
            &Metrics::new(),
        );
        for (authorization, admitted) in [
            ("Bearer s3cret", true),
            ("bearer s3cret", true),
            ("BEARER other", true),
            ("bEaReR s3cret", true),
            ("Bearer   s3cret  ", true),
            ("  Bearer\ts3cret", true),
            ("Bearer s3cre", false),
            ("Bearer s3cret2", false),
            ("Bearer", false),
            ("Bearer    ", false),
            ("Bearers3cret", false),
            ("Basic s3cret", false),
            ("s3cret", false),
            ("Bearer s3 cret", false),
        ] {
            assert_eq!(
                admits(&tokens, authorization),
                admitted,
                "{authorization:?}"
            );
        }
        assert!(tokens.admit(&HeaderMap::new()).is_none(), "no header");
    }

    #[test]
    fn digests_have_one_length_whatever_the_token() {
        // The comparison runs over 32 bytes for any pair: a presented token's length changes
        // only the hashing of it, never how much of a configured token is compared.
        for token in ["", "a", &"x".repeat(10_000)] {
            assert_eq!(digest(token.as_bytes()).len(), 32);
        }
        let (a, b) = (digest(b"s3cret"), digest(b"s3cret"));
        assert!(constant_time_eq(&a, &b));
        let mut c = a;
        c[31] ^= 1;
        assert!(!constant_time_eq(&a, &c));
        c = a;
        c[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &c));
    }

    #[test]
    fn every_token_is_compared_and_no_digest_is_printed() {
        let tokens = Tokens::new(&["first".to_string(), "last".to_string()], &Metrics::new());
        assert!(admits(&tokens, "Bearer last"), "the last token counts too");
        assert_eq!(format!("{tokens:?}"), "Tokens(2 redacted)");
        assert!(Tokens::default().is_empty() && !tokens.is_empty());
    }

    #[test]
    fn a_named_token_says_its_caller_and_counts_under_that_name() {
        let metrics = Metrics::new();
        let entries = ["billing:tok-b".to_string(), "tok-plain".to_string()];
        let tokens = Tokens::new(&entries, &metrics);
        let caller = |authorization: &str| {
            let mut headers = HeaderMap::new();
            let value = http::HeaderValue::from_str(authorization).expect("a header value");
            headers.insert(header::AUTHORIZATION, value);
            tokens.admit(&headers).map(|c| c.to_string())
        };
        assert_eq!(caller("Bearer tok-b").as_deref(), Some("billing"));
        assert_eq!(caller("Bearer tok-b").as_deref(), Some("billing"));
        assert_eq!(caller("Bearer tok-plain").as_deref(), Some("unnamed"));
        assert_eq!(
            caller("Bearer billing:tok-b"),
            None,
            "the name is not part of the token"
        );
        let count = |name: &str| metrics.caller_requests.with_label_values(&[name]).get();
        assert_eq!((count("billing"), count("unnamed")), (2, 1));
    }
}
