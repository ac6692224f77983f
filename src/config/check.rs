//! Turns the configuration as written into checked settings, collecting every problem at once so
//! that `timgate check-config` can list them all, each naming its key and saying what to fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawConfig, RawTencent};
use super::redact::Secrets;
use super::*;
use super::{known, limits};
use crate::tencent::catalogue;

/// What is wrong with a configuration: one line per problem, each starting with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order the keys appear in `default.toml`.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// A configuration with one problem.
    pub fn one(problem: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![problem.into()],
        }
    }

    /// Wraps a problem reported while reading or merging the sources (unknown key, wrong type,
    /// TOML syntax), with no line of the source and none of the `secrets` in it.
    pub(super) fn from_source(err: config::ConfigError, secrets: &Secrets) -> ConfigError {
        ConfigError::one(secrets.scrub(&source_error::describe(&err)))
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while checking.
#[derive(Default)]
pub(super) struct Problems(Vec<String>);

impl Problems {
    /// Whether no problem was found.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found.
    #[cfg(test)]
    pub(super) fn into_inner(self) -> Vec<String> {
        self.0
    }

    /// Adds a problem with `key`.
    pub(super) fn add(&mut self, key: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{key}: {why}"));
    }

    /// An `IP:port`, or a problem with `key`.
    fn addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.add(
                key,
                format!("{value:?} is not an IP:port address (e.g. \"127.0.0.1:4470\")"),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// `value`, with a problem with `key` when it is 0.
    pub(super) fn positive(&mut self, key: &str, value: u64) -> u64 {
        if value == 0 {
            self.add(key, "must be greater than 0");
        }
        value
    }

    /// `value`, with a problem with `key` when it is outside (0, 1] (or [0, 1] when `zero_ok`).
    pub(super) fn share(&mut self, key: &str, value: f64, zero_ok: bool) -> f64 {
        let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
        if !(low_ok && value <= 1.0) {
            let range = if zero_ok { "[0, 1]" } else { "(0, 1]" };
            self.add(key, format!("{value} is outside {range}"));
        }
        value
    }
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

impl RawConfig {
    /// Checks every value and returns typed settings, or every problem found.
    pub fn check(self) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let s = &self.server;
        let server = ServerConfig {
            listen: p.addr("server.listen", &s.listen),
            admin_listen: p.addr("server.admin_listen", &s.admin_listen),
            max_body_bytes: p.positive("server.max_body_bytes", s.max_body_bytes) as usize,
            shutdown_grace: ms(s.shutdown_grace_ms),
            auth_tokens: s.auth_tokens.clone(),
            header_read_timeout: ms(
                p.positive("server.header_read_timeout_ms", s.header_read_timeout_ms)
            ),
            idle_timeout: ms(p.positive("server.idle_timeout_ms", s.idle_timeout_ms)),
            body_read_timeout: ms(p.positive("server.body_read_timeout_ms", s.body_read_timeout_ms)),
            max_connections: p.positive("server.max_connections", s.max_connections) as usize,
            admin_max_connections: p
                .positive("server.admin_max_connections", s.admin_max_connections)
                as usize,
            memory_limit_bytes: s.memory_limit_bytes,
            cgroup_root: PathBuf::from(&s.cgroup_root),
        };
        if s.auth_tokens.iter().any(|t| t.trim().is_empty()) {
            p.add("server.auth_tokens", "an empty token would let anyone in");
        } else if s.auth_tokens.iter().any(|t| t.trim() != t) {
            // The presented token is trimmed, so such a token could never match.
            p.add(
                "server.auth_tokens",
                "a token has leading or trailing spaces and could never match",
            );
        }
        super::tokens::check(&s.auth_tokens, &mut p);
        let tencent = check_tencent(&self.tencent, &mut p);
        let upstream = UpstreamConfig {
            connect_timeout: ms(p.positive(
                "upstream.connect_timeout_ms",
                self.upstream.connect_timeout_ms,
            )),
            request_timeout: ms(p.positive(
                "upstream.request_timeout_ms",
                self.upstream.request_timeout_ms,
            )),
        };
        let limits = limits::check(&self.limits, &mut p);
        let r = &self.retry;
        let retry = RetryConfig {
            max_attempts: p.positive("retry.max_attempts", r.max_attempts.into()) as u32,
            base_delay: ms(p.positive("retry.base_delay_ms", r.base_delay_ms)),
            max_delay: ms(r.max_delay_ms),
            budget_ratio: p.share("retry.budget_ratio", r.budget_ratio, true),
        };
        if r.max_delay_ms < r.base_delay_ms {
            p.add(
                "retry.max_delay_ms",
                "must not be below retry.base_delay_ms",
            );
        }
        let queue = super::queue::check(&self.queue, &limits, &mut p);
        let tracing = super::traces::check(&self.tracing, &mut p);
        let allow = check_allow(&self.apis.allow, &mut p);
        super::limits::check_api_limits(&self.limits, &allow, &mut p);
        let format = match self.log.format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                p.add(
                    "log.format",
                    format!("{other:?} is not one of \"json\", \"text\""),
                );
                LogFormat::Json
            }
        };
        if let Err(why) = super::log_filter::check(&self.log.level) {
            p.add("log.level", why);
        }
        let log = LogConfig {
            format,
            level: self.log.level.clone(),
        };
        if !p.0.is_empty() {
            // A secret pasted into the wrong key would be quoted by that key's problem.
            let secrets = known::of_raw(&self);
            let problems = p.0.iter().map(|problem| secrets.scrub(problem)).collect();
            return Err(ConfigError { problems });
        }
        Ok(Config {
            server,
            tencent,
            upstream,
            limits,
            retry,
            allow,
            log,
            queue,
            tracing,
        })
    }
}

fn check_tencent(t: &RawTencent, p: &mut Problems) -> TencentConfig {
    if t.sdkappid == 0 {
        p.add("tencent.sdkappid", "required: set it to your app's SDKAppID (IM console), e.g. TIMGATE__TENCENT__SDKAPPID=1400000000");
    }
    if let Err(why) = catalogue::check_identifier(&t.identifier) {
        p.add("tencent.identifier", why);
    }
    let secret = match (t.secret_key.is_empty(), t.secret_key_file.is_empty()) {
        (false, false) => {
            p.add(
                "tencent.secret_key",
                "set either secret_key or secret_key_file, not both",
            );
            SecretSource::Inline(String::new())
        }
        (false, true) => SecretSource::Inline(t.secret_key.clone()),
        (true, false) => {
            let path = PathBuf::from(&t.secret_key_file);
            match std::fs::read_to_string(&path) {
                Ok(key) if !key.trim().is_empty() => {}
                Ok(_) => p.add(
                    "tencent.secret_key_file",
                    format!("{} is empty", path.display()),
                ),
                Err(e) => p.add(
                    "tencent.secret_key_file",
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
            SecretSource::File(path)
        }
        (true, true) => {
            p.add("tencent.secret_key", "required: set secret_key (TIMGATE__TENCENT__SECRET_KEY) or secret_key_file to the app's SecretKey");
            SecretSource::Inline(String::new())
        }
    };
    let region = catalogue::region(&t.region);
    let base_url = if t.base_url.is_empty() {
        match region {
            Some(region) => region.url.to_string(),
            None => {
                let known = catalogue::REGIONS
                    .iter()
                    .map(|region| region.name)
                    .collect::<Vec<_>>();
                p.add(
                    "tencent.region",
                    format!("{:?} is not one of {}", t.region, known.join(", ")),
                );
                String::new()
            }
        }
    } else {
        check_url("tencent.base_url", &t.base_url, p)
    };
    // The region's backup domain comes with its main one; an explicit base URL has none unless
    // `backup_url` names one.
    let backup_url = match (t.backup_url.is_empty(), region) {
        (false, _) => Some(check_url("tencent.backup_url", &t.backup_url, p)),
        (true, Some(region)) if t.base_url.is_empty() => Some(region.backup.to_string()),
        (true, _) => None,
    };
    let legacy_region = region
        .filter(|region| !region.listed && t.base_url.is_empty())
        .map(|region| region.name.to_string());
    let ca_file = (!t.ca_file.is_empty()).then(|| PathBuf::from(&t.ca_file));
    if let Some(path) = ca_file.as_ref().filter(|path| !path.is_file()) {
        p.add(
            "tencent.ca_file",
            format!("{} is not a readable file", path.display()),
        );
    }
    if t.usersig_ttl_secs < 300 {
        p.add(
            "tencent.usersig_ttl_secs",
            "must be at least 300 (Tencent recommends 86400 or more)",
        );
    }
    TencentConfig {
        sdkappid: t.sdkappid,
        identifier: t.identifier.clone(),
        secret,
        base_url,
        backup_url,
        legacy_region,
        ca_file,
        usersig_ttl: Duration::from_secs(t.usersig_ttl_secs),
    }
}

/// A base URL as `key` must hold it: `http(s)://host[:port]`, no path or query; without a
/// trailing slash.
fn check_url(key: &str, url: &str, p: &mut Problems) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some()
                && uri.path().trim_end_matches('/').is_empty()
                && uri.query().is_none() =>
        {
            url.trim_end_matches('/').to_string()
        }
        _ => {
            p.add(
                key,
                format!("{url:?} is not a URL like https://host[:port] (no path)"),
            );
            String::new()
        }
    }
}

fn check_allow(allow: &[String], p: &mut Problems) -> Vec<String> {
    for name in allow {
        if catalogue::split_api(name).is_none() {
            p.add(
                "apis.allow",
                format!("{name:?} is not \"service/command\" (letters, digits, _)"),
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    allow
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .cloned()
        .collect()
}
