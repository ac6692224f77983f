//! Settings: the embedded defaults, overlaid by a file and by `TIMGATE__SECTION__KEY` variables,
//! checked once and turned into typed values so that nothing downstream re-checks them.

mod check;
mod gather;
mod known;
mod limits;
pub mod log_filter;
mod queue;
mod raw;
pub mod redact;
mod redis;
pub mod reload;
mod source_error;
mod summary;
pub mod tokens;
mod traces;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tencent::apis::{self, Limit, Rate};
use config::{Environment, File, FileFormat};

pub use check::ConfigError;
pub use queue::{QueueConfig, QueueFallback};
pub use raw::RawConfig;
pub use redis::{RedisMode, RedisTarget};
pub use traces::TracingConfig;

/// The defaults, compiled into the binary so that `timgate` runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Checked settings for every part of the gateway.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listeners and caller-facing bounds.
    pub server: ServerConfig,
    /// Identity and destination.
    pub tencent: TencentConfig,
    /// Timeouts of one upstream attempt.
    pub upstream: UpstreamConfig,
    /// Pacing and queue bounds.
    pub limits: LimitsConfig,
    /// Retry policy.
    pub retry: RetryConfig,
    /// The `service/command` names callers may use, in configured order.
    pub allow: Vec<String>,
    /// Logging.
    pub log: LogConfig,
    /// The durable queue.
    pub queue: QueueConfig,
    /// Trace export.
    pub tracing: TracingConfig,
}

/// `[server]`, checked.
#[derive(Clone)]
pub struct ServerConfig {
    /// Proxy listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long draining may take.
    pub shutdown_grace: Duration,
    /// Accepted bearer tokens; empty means none are required.
    pub auth_tokens: Vec<String>,
    /// Time for a connection to send a complete request header (and for a TLS handshake).
    pub header_read_timeout: Duration,
    /// Time a connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// Time for a request body to arrive in full after its header.
    pub body_read_timeout: Duration,
    /// The proxy listener's connection cap, as configured (lowered at start to fit the
    /// open-file limit).
    pub max_connections: usize,
    /// The admin listener's connection cap, as configured.
    pub admin_max_connections: usize,
    /// The configured memory budget in bytes; 0 means the cgroup's limit, if any.
    pub memory_limit_bytes: u64,
    /// Mount point of the cgroup filesystem, where the container's memory limit is read.
    pub cgroup_root: PathBuf,
}

impl std::fmt::Debug for ServerConfig {
    // Never print a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field(
                "auth_tokens",
                &format_args!("<{} redacted>", self.auth_tokens.len()),
            )
            .finish()
    }
}

/// Where the SecretKey comes from. Compared (a reload tells a new key), never printed.
#[derive(Clone, PartialEq)]
pub enum SecretSource {
    /// Given in the configuration itself.
    Inline(String),
    /// Read from a file (a mounted Secret), again at every UserSig renewal.
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    // Never print the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// `[tencent]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TencentConfig {
    /// The app's SDKAppID (non-zero).
    pub sdkappid: u64,
    /// The App admin account (printable ASCII, at most 32 bytes).
    pub identifier: String,
    /// The SecretKey's source; a file source was readable and non-empty at load time.
    pub secret: SecretSource,
    /// Scheme, host and port of the upstream, without a trailing slash.
    pub base_url: String,
    /// Where requests go while `base_url`'s host cannot be resolved or reached: the region's
    /// backup domain, or `tencent.backup_url`.
    pub backup_url: Option<String>,
    /// The configured region, when Tencent's current pages no longer list it (a warning).
    pub legacy_region: Option<String>,
    /// Extra trusted CA for the upstream.
    pub ca_file: Option<PathBuf>,
    /// Lifetime of each generated UserSig.
    pub usersig_ttl: Duration,
}

/// `[upstream]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-attempt timeout.
    pub request_timeout: Duration,
}

/// The limiter backend.
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// Each replica paces alone.
    Local,
    /// Replicas share their budgets through this Redis.
    Redis(RedisTarget),
}

impl std::fmt::Debug for Backend {
    // Never print the Redis password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Local => f.write_str("Local"),
            Backend::Redis(target) => write!(f, "Redis({target:?})"),
        }
    }
}

/// `limits.fallback_share`: the share of each limit a replica keeps to while the shared (Redis)
/// budget is away, so that the replicas together stay within Tencent's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Share {
    /// `"auto"`: one over the replicas last seen alive in the shared budget
    /// (`timgate_limiter_replicas`), so that it follows the replica count without a config change.
    Auto,
    /// A fixed share, in (0, 1]: `1 / replicas` for a fixed replica count.
    Fixed(f64),
}

/// `[limits]`, checked.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Where budgets live.
    pub backend: Backend,
    /// Key prefix in Redis (the sdkappid follows it).
    pub redis_prefix: String,
    /// Share of each limit kept when Redis is down.
    pub fallback_share: Share,
    /// Upstream requests in flight at once per API at most; 0 means derived from the API's rate
    /// (`app_per_second`: one second's worth of calls).
    pub max_in_flight_per_api: u32,
    /// Calls per second per API.
    pub app_per_second: u32,
    /// Attribute writes per second per group.
    pub group_writes_per_second: u32,
    /// Spacing margin for send/arrival jitter.
    pub window_guard: Duration,
    /// Queue bound per group.
    pub max_queue_per_group: usize,
    /// Queue bound over all lanes.
    pub max_queued: usize,
    /// Default deadline of a queued request.
    pub max_wait: Duration,
    /// Merge the `modify_group_attr` writes waiting in one group's queue into one upstream
    /// call (README, "Coalescing hot groups"). Reloadable.
    pub coalesce: bool,
    /// Calls per second over every API together, the app's total (60011 beyond); 0: no cap.
    /// Reloadable.
    pub app_total_per_second: u32,
    /// `[limits.api]`: limits that replace the catalogue's (raised in the console) or give an
    /// API the catalogue does not list its own, by `service/command`. Reloadable.
    pub api: std::collections::BTreeMap<String, u32>,
    /// `[limits.api_daily]`: daily caps replacing the catalogue's (a push edition's 100 a day)
    /// or given to an API that has none, by `service/command`. Reloadable.
    pub api_daily: std::collections::BTreeMap<String, u32>,
}

impl LimitsConfig {
    /// The limit `api` is paced by: `[limits.api]`'s count in the catalogue's unit and period
    /// (calls a second for an API it does not list), else the catalogue's own limit, else for a
    /// standard API `app_per_second` calls a second. `None` for an API that is neither
    /// catalogued nor given a limit (config checks refuse to allow one).
    pub fn limit_of(&self, api: &str) -> Option<Limit> {
        let documented = apis::find(api).map(|row| match row.rate {
            Rate::Standard => Limit::calls_per_second(self.app_per_second),
            Rate::Own(limit) => limit,
        });
        let limit = match (self.api.get(api), documented) {
            (Some(&count), Some(limit)) => Some(limit.with_count(count)),
            (Some(&count), None) => Some(Limit::calls_per_second(count)),
            (None, documented) => documented,
        }?;
        let daily = self.api_daily.get(api).copied().or(limit.daily);
        Some(Limit { daily, ..limit })
    }
}

/// `[retry]`, checked.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Backoff cap.
    pub max_delay: Duration,
    /// Retries allowed on top of first attempts, as a share.
    pub budget_ratio: f64,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// `[log]`, checked.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter directive.
    pub level: String,
}

impl Config {
    /// Loads the defaults, then `file` if given, then the environment, and checks the result.
    /// The problems are every one found: values of the wrong type and unknown keys as well as
    /// values out of range, each with the variable or file its value came from.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let origins = gather::Origins::of(file, true);
        let (raw, mut problems) = Self::read(file, None, None)?;
        // A key whose value could not be read was checked at its default: its problem stands.
        let unread: Vec<String> = problems
            .iter()
            .filter_map(|p| p.split(": ").next().map(|key| format!("{key}: ")))
            .collect();
        match raw.check() {
            Ok(config) if problems.is_empty() => return Ok(config),
            Ok(_) => {}
            Err(checked) => problems.extend(
                (checked.problems.into_iter()).filter(|p| !unread.iter().any(|k| p.starts_with(k))),
            ),
        }
        let problems = problems.iter().map(|p| origins.annotate(p)).collect();
        Err(ConfigError { problems })
    }

    /// Like [`Config::load`] with an extra TOML layer on top of the file (tests use it instead of
    /// environment variables), unchecked.
    pub fn load_raw(file: Option<&Path>, overlay: Option<&str>) -> Result<RawConfig, ConfigError> {
        Self::load_raw_layers(None, file, overlay)
    }

    /// Like [`Config::load_raw`] with a TOML layer `under` the file: defaults of a mode of its
    /// own (`--demo` logs as text unless `[log]` says otherwise), which the file and the
    /// environment override.
    pub fn load_raw_under(under: &str, file: Option<&Path>) -> Result<RawConfig, ConfigError> {
        Self::load_raw_layers(Some(under), file, None)
    }

    fn load_raw_layers(
        under: Option<&str>,
        file: Option<&Path>,
        overlay: Option<&str>,
    ) -> Result<RawConfig, ConfigError> {
        let origins = gather::Origins::of(file, true);
        match Self::read(file, under, overlay)? {
            (raw, problems) if problems.is_empty() => Ok(raw),
            (_, problems) => Err(ConfigError {
                problems: problems.iter().map(|p| origins.annotate(p)).collect(),
            }),
        }
    }

    /// The configuration as written in every layer, with the problems met reading it (secrets
    /// scrubbed); an error only for a source that cannot be read at all.
    fn read(
        file: Option<&Path>,
        under: Option<&str>,
        overlay: Option<&str>,
    ) -> Result<(RawConfig, Vec<String>), ConfigError> {
        let mut builder =
            config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(toml) = under {
            builder = builder.add_source(File::from_str(toml, FileFormat::Toml));
        }
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::one(format!(
                    "--config {}: no such file",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        if let Some(toml) = overlay {
            builder = builder.add_source(File::from_str(toml, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("TIMGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.auth_tokens")
                .with_list_parse_key("apis.allow")
                .with_list_parse_key("limits.redis_sentinels")
                .with_list_parse_key("limits.redis_cluster_nodes"),
        );
        // Gathered only on error: the secrets every layer that parses holds.
        let secrets = || known::in_sources(file, overlay.as_slice(), true);
        let fail = |e| ConfigError::from_source(e, &secrets());
        let merged = builder.build().map_err(fail)?;
        let (raw, problems) = gather::read(merged).map_err(fail)?;
        if problems.is_empty() {
            return Ok((raw, problems));
        }
        let secrets = secrets();
        Ok((raw, problems.iter().map(|p| secrets.scrub(p)).collect()))
    }

    /// Builds settings from a TOML string laid over the defaults, ignoring the environment.
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Self::from_toml_layers(&[toml])
    }

    /// Builds settings from TOML strings laid over the defaults in order, ignoring the
    /// environment (tests build their configuration this way, never with `set_var`).
    pub fn from_toml_layers(layers: &[&str]) -> Result<Config, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        for layer in layers {
            builder = builder.add_source(File::from_str(layer, FileFormat::Toml));
        }
        let fail = |e| ConfigError::from_source(e, &known::in_sources(None, layers, false));
        let merged = builder.build().map_err(fail)?;
        merged.try_deserialize::<RawConfig>().map_err(fail)?.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: &str = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";

    #[test]
    fn the_connection_and_memory_keys_have_their_documented_defaults() {
        let config = Config::from_toml(IDENTITY).expect("defaults load");
        let s = &config.server;
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.body_read_timeout, Duration::from_secs(10));
        assert_eq!((s.max_connections, s.admin_max_connections), (10_000, 64));
        assert_eq!(s.memory_limit_bytes, 0);
        assert_eq!(s.cgroup_root, Path::new("/sys/fs/cgroup"));
    }

    #[test]
    fn zero_timeouts_and_caps_and_padded_tokens_are_refused_by_name() {
        let bad = "[server]\nheader_read_timeout_ms = 0\nidle_timeout_ms = 0\n\
                   body_read_timeout_ms = 0\nmax_connections = 0\nadmin_max_connections = 0\n\
                   auth_tokens = [\" padded \"]\n";
        let problems = Config::from_toml_layers(&[IDENTITY, bad])
            .expect_err("refused")
            .problems;
        for key in [
            "server.header_read_timeout_ms",
            "server.idle_timeout_ms",
            "server.body_read_timeout_ms",
            "server.max_connections",
            "server.admin_max_connections",
            "server.auth_tokens",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} in {problems:?}"
            );
        }
        assert!(
            problems.iter().all(|p| !p.contains("padded")),
            "a token is never quoted: {problems:?}"
        );
    }
}
