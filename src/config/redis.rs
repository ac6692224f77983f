//! Checks where the shared budget's Redis is and how it is reached: one server (over TCP or
//! TLS), the master a set of Sentinels names, or a Cluster; the CA, client certificate and
//! password files, and the per-command timeout. URLs are only ever shown redacted.

use std::path::PathBuf;
use std::time::Duration;

use super::check::Problems;
use super::raw::RawLimits;
use super::redact;

/// What the refusal of a URL's scheme lists as accepted.
const ACCEPTED: &str =
    "redis://host[:port][/db], rediss://host[:port][/db], unix:///path or redis+unix:///path";

/// The longest `limits.redis_timeout_ms` taken: a reservation waits for its answer, so a longer
/// one would hold every request that long before a frozen Redis is noticed.
const MOST_TIMEOUT_MS: u64 = 5000;

/// Where the Redis of the shared budget is.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One server at this URL (`redis://`, `rediss://` for TLS, or a Unix socket).
    Standalone(String),
    /// The master that these Sentinels name `master`; followed through failovers.
    Sentinel {
        /// The Sentinels' URLs (each `redis://` or `rediss://`, with their own credentials).
        sentinels: Vec<String>,
        /// The name the Sentinels monitor the master by.
        master: String,
    },
    /// A Redis Cluster, found from these seed nodes.
    Cluster(Vec<String>),
}

/// How the shared budget reaches Redis: `limits.redis_*`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// Standalone, Sentinel or Cluster, with its URLs.
    pub mode: RedisMode,
    /// `limits.redis_ca_file`: the PEM CA that signs the servers' certificates (the public
    /// roots when unset). Read at each connection.
    pub ca_file: Option<PathBuf>,
    /// `limits.redis_cert_file`: this client's PEM certificate chain, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// `limits.redis_key_file`: the private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `limits.redis_password_file`: the password (of the URL's ACL user, or `default`), read
    /// again at each connection so that a rotated Secret is used at the next one.
    pub password_file: Option<PathBuf>,
    /// `limits.redis_timeout_ms`: how long a command may take before Redis counts as away.
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisTarget {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl RedisTarget {
    /// A plain server at `url`, with the default timeout and no files.
    pub fn standalone(url: &str) -> RedisTarget {
        RedisTarget {
            mode: RedisMode::Standalone(url.to_string()),
            ca_file: None,
            cert_file: None,
            key_file: None,
            password_file: None,
            timeout: Duration::from_millis(200),
        }
    }

    /// Every URL it names.
    pub fn urls(&self) -> &[String] {
        match &self.mode {
            RedisMode::Standalone(url) => std::slice::from_ref(url),
            RedisMode::Sentinel { sentinels, .. } => sentinels,
            RedisMode::Cluster(nodes) => nodes,
        }
    }

    /// Whether it is reached over TLS (every URL is `rediss://` then).
    pub fn tls(&self) -> bool {
        self.urls().first().is_some_and(|url| is_tls(url))
    }

    /// The mode and its URLs as `check-config` and the logs say them, passwords masked.
    pub fn describe(&self) -> String {
        let urls = self
            .urls()
            .iter()
            .map(|url| redact::redis_url(url))
            .collect::<Vec<_>>()
            .join(", ");
        let tls = match (self.tls(), self.cert_file.is_some()) {
            (false, _) => "",
            (true, false) => " over TLS",
            (true, true) => " over mutual TLS",
        };
        match &self.mode {
            RedisMode::Standalone(_) if self.tls() => {
                format!("{} {urls}", tls.trim_start_matches(" over "))
            }
            RedisMode::Standalone(_) => format!("standalone {urls}"),
            RedisMode::Sentinel { master, .. } => {
                format!("Sentinel{tls} master {master:?} via {urls}")
            }
            RedisMode::Cluster(_) => format!("Cluster{tls} seeds {urls}"),
        }
    }
}

fn is_tls(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// `limits.redis_*` as written: `None` when no URL is set in any mode. Every URL set is checked
/// whichever the backend, so that a mistake is said at once, not on the day someone switches the
/// backend on.
pub(super) fn check(l: &RawLimits, p: &mut Problems) -> Option<RedisTarget> {
    let set = [
        !l.redis_url.is_empty(),
        !l.redis_sentinels.is_empty(),
        !l.redis_cluster_nodes.is_empty(),
    ];
    if set.iter().filter(|&&set| set).count() > 1 {
        p.add(
            "limits.redis_url",
            "set one of redis_url (one server), redis_sentinels (Sentinel) or \
             redis_cluster_nodes (Cluster), not several",
        );
    }
    if l.redis_sentinels.is_empty() != l.redis_sentinel_master.is_empty() {
        p.add(
            "limits.redis_sentinel_master",
            "redis_sentinels and redis_sentinel_master go together: the Sentinels' URLs and \
             the name they monitor the master by",
        );
    }
    let mode = if set[1] {
        urls("limits.redis_sentinels", &l.redis_sentinels, false, p);
        RedisMode::Sentinel {
            sentinels: l.redis_sentinels.clone(),
            master: l.redis_sentinel_master.clone(),
        }
    } else if set[2] {
        urls(
            "limits.redis_cluster_nodes",
            &l.redis_cluster_nodes,
            false,
            p,
        );
        RedisMode::Cluster(l.redis_cluster_nodes.clone())
    } else if set[0] {
        urls(
            "limits.redis_url",
            std::slice::from_ref(&l.redis_url),
            true,
            p,
        );
        RedisMode::Standalone(l.redis_url.clone())
    } else {
        files_without_tls(l, false, p);
        return None;
    };
    let target = RedisTarget {
        mode,
        ca_file: file("limits.redis_ca_file", &l.redis_ca_file, true, p),
        cert_file: file("limits.redis_cert_file", &l.redis_cert_file, true, p),
        key_file: file("limits.redis_key_file", &l.redis_key_file, false, p),
        password_file: file(
            "limits.redis_password_file",
            &l.redis_password_file,
            false,
            p,
        ),
        timeout: Duration::from_millis(l.redis_timeout_ms),
    };
    files_without_tls(l, target.tls(), p);
    if target.cert_file.is_some() != target.key_file.is_some() {
        p.add(
            "limits.redis_cert_file",
            "redis_cert_file and redis_key_file go together (mutual TLS)",
        );
    }
    if !(1..=MOST_TIMEOUT_MS).contains(&l.redis_timeout_ms) {
        p.add(
            "limits.redis_timeout_ms",
            format!("{} is outside 1..={MOST_TIMEOUT_MS}", l.redis_timeout_ms),
        );
    }
    Some(target)
}

/// The TLS files mean nothing without `rediss://`: set anyway, they are a sign of a URL that
/// lost its `s`.
fn files_without_tls(l: &RawLimits, tls: bool, p: &mut Problems) {
    for (key, value) in [
        ("limits.redis_ca_file", &l.redis_ca_file),
        ("limits.redis_cert_file", &l.redis_cert_file),
        ("limits.redis_key_file", &l.redis_key_file),
    ] {
        if !tls && !value.is_empty() {
            p.add(key, "only used with rediss:// URLs (Redis over TLS)");
        }
    }
}

/// A file key: unset, or a file readable now (it is read again at each connection), holding PEM
/// certificates where `certs`.
fn file(key: &str, path: &str, certs: bool, p: &mut Problems) -> Option<PathBuf> {
    if path.is_empty() {
        return None;
    }
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
            p.add(key, format!("{path} is empty"));
        }
        Ok(bytes) if certs => {
            if let Err(why) = crate::tls::parse_certs(&bytes) {
                p.add(key, format!("{path}: {why}"));
            }
        }
        Ok(_) => {}
        Err(e) => p.add(key, format!("cannot read {path}: {e}")),
    }
    Some(PathBuf::from(path))
}

/// Checks each URL of `key`: a Redis scheme (Unix sockets only where `unix_ok`), one scheme for
/// all (TLS for all or none), and what the redis crate can parse.
fn urls(key: &str, urls: &[String], unix_ok: bool, p: &mut Problems) {
    let tls = urls.first().is_some_and(|url| is_tls(url));
    for url in urls {
        let shown = redact::redis_url(url);
        let scheme = url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "rediss") => {}
            Some("unix" | "redis+unix") if unix_ok => {}
            Some(scheme) => {
                let accepted = if unix_ok {
                    ACCEPTED
                } else {
                    "redis://host:port or rediss://host:port"
                };
                p.add(
                    key,
                    format!("{shown:?} is not a Redis URL (scheme {scheme:?}); use {accepted}"),
                );
                continue;
            }
            None => {
                p.add(
                    key,
                    format!("{shown:?} is not a Redis URL (no scheme); use {ACCEPTED}"),
                );
                continue;
            }
        }
        if is_tls(url) != tls {
            p.add(
                key,
                format!("{shown:?}: every URL is rediss:// (TLS) or none is"),
            );
        }
        if let Err(e) = redis::IntoConnectionInfo::into_connection_info(url.as_str()) {
            p.add(key, format!("{shown:?} cannot be used: {e}"));
        }
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;
