//! Keeps secrets out of text meant for people: the credentials of every URL in a message shown as
//! `***` (a Redis URL's password above all), and every secret value known masked wherever it
//! appears, so that no error, log line or answer quotes one.

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Known values shorter than this are not masked: searching for them would mangle the words of a
/// message, and each place that could quote a value is closed on its own anyway.
const MIN_LEN: usize = 4;

/// `text` with the credentials of every URL in it masked: the password of `user:password@`, a
/// whole `userinfo@` without a colon (some clients take it as the password), and the value of a
/// `pass=` or `password=` query parameter (Redis unix-socket URLs).
pub fn credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find(ends_url).unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        out.push_str(&mask_url(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A Redis URL as it may be shown: `redis://user:***@host:6379/0`.
pub fn redis_url(url: &str) -> String {
    credentials(url)
}

fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>')
}

/// Splits a URL after its `scheme://` at the last `@`, which ends the userinfo even where a
/// password holds an unescaped `/`, `?` or `#`: masking too much beats showing part of one.
fn userinfo(url: &str) -> (Option<&str>, &str) {
    match url.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, url),
    }
}

/// The `pass=` and `password=` values of a URL's query.
fn query_secrets(rest: &str) -> impl Iterator<Item = &str> {
    let query = rest.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .filter_map(|pair| match pair.split_once('=') {
            Some(("pass" | "password", value)) => Some(value),
            _ => None,
        })
}

/// Masks one URL after its `scheme://`.
fn mask_url(url: &str) -> String {
    let (info, rest) = userinfo(url);
    let mut shown = match info.map(|info| info.split_once(':')) {
        Some(Some((user, _))) if !user.contains(['/', '?', '#']) => format!("{user}:{MASK}@"),
        Some(_) => format!("{MASK}@"),
        None => String::new(),
    };
    let values: Vec<&str> = query_secrets(rest).filter(|v| !v.is_empty()).collect();
    let rest = values.iter().fold(rest.to_string(), |rest, value| {
        rest.replace(&format!("={value}"), &format!("={MASK}"))
    });
    shown.push_str(&rest);
    shown
}

/// The secret parts of a URL, as written and percent-decoded: what [`credentials`] masks.
fn url_secrets(url: &str) -> Vec<String> {
    let Some((_, tail)) = url.split_once("://") else {
        return Vec::new();
    };
    let (info, rest) = userinfo(tail);
    let password = info.map(|info| info.split_once(':').map_or(info, |(_, pw)| pw));
    let found: Vec<&str> = password.into_iter().chain(query_secrets(rest)).collect();
    let decoded = found.iter().filter_map(|s| percent_decode(s));
    decoded.chain(found.iter().map(|s| s.to_string())).collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex.map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(byte)) if b == b'%' => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok().filter(|decoded| decoded != s)
}

/// Secret values known at the place a message is made, to be masked in it.
#[derive(Default, Clone)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// Adds one secret value.
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_LEN && !self.0.iter().any(|known| known == value) {
            self.0.push(value.to_string());
            // Longest first, so that a secret holding another is masked whole.
            self.0.sort_by_key(|known| std::cmp::Reverse(known.len()));
        }
    }

    /// Adds the password (or userinfo, or `pass=`) of a Redis URL, as written and decoded.
    pub fn add_url(&mut self, url: &str) {
        for secret in url_secrets(url) {
            self.add(&secret);
        }
    }

    /// `text` with every known secret and every URL's credentials masked.
    pub fn scrub(&self, text: &str) -> String {
        let masked = self
            .0
            .iter()
            .fold(text.to_string(), |text, secret| text.replace(secret, MASK));
        credentials(&masked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_of_redis_urls() {
        for (url, shown) in [
            ("redis://:hunter2@host:6379", "redis://:***@host:6379"),
            ("redis://user:hunter2@host/0", "redis://user:***@host/0"),
            ("redis://hunter2@host", "redis://***@host"),
            (
                "rediss://u:p@ss:w@rd@host:1?x=1",
                "rediss://u:***@host:1?x=1",
            ),
            (
                "redis+unix:///run/r.sock?db=1&pass=hunter2",
                "redis+unix:///run/r.sock?db=1&pass=***",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redis_url(url), shown, "{url}");
        }
    }

    #[test]
    fn masks_urls_inside_a_message() {
        let text = "cannot reach \"redis://:hunter2@h:1\" or `redis://u:pw@h`, nor https://a@b/c";
        assert_eq!(
            credentials(text),
            "cannot reach \"redis://:***@h:1\" or `redis://u:***@h`, nor https://***@b/c"
        );
    }

    #[test]
    fn scrubs_known_secrets_written_or_decoded() {
        let mut secrets = Secrets::default();
        secrets.add("5bd2aa11");
        secrets.add("k");
        secrets.add_url("redis://:hun%40ter2@host");
        let text = "key 5bd2aa11 or 5bd2aa11x, password hun@ter2 or hun%40ter2; k stays";
        assert_eq!(
            secrets.scrub(text),
            "key *** or ***x, password *** or ***; k stays"
        );
        assert_eq!(format!("{secrets:?}"), "Secrets(3 redacted)");
    }

    #[test]
    fn a_secret_holding_another_is_masked_whole() {
        let mut secrets = Secrets::default();
        secrets.add("abcd");
        secrets.add("abcdefgh");
        assert_eq!(secrets.scrub("abcdefgh abcd"), "*** ***");
    }
}
