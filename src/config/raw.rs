//! The configuration as written: serde structs that mirror `config/default.toml` key for key.
//!
//! Every struct denies unknown fields, so a misspelt key is an error that names it rather than a
//! setting silently ignored. Turning these into checked, typed settings is `check.rs`'s job.

use serde::Deserialize;

/// The whole file, section by section (the names are the public interface of DESIGN.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    pub server: RawServer,
    /// `[tencent]`
    pub tencent: RawTencent,
    /// `[upstream]`
    pub upstream: RawUpstream,
    /// `[limits]`
    pub limits: RawLimits,
    /// `[retry]`
    pub retry: RawRetry,
    /// `[apis]`
    pub apis: RawApis,
    /// `[log]`
    pub log: RawLog,
    /// `[queue]`
    pub queue: RawQueue,
    /// `[tracing]`
    pub tracing: RawTracing,
}

/// `[server]`: the listeners and what callers may send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Proxy listener, `IP:port`.
    pub listen: String,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`), `IP:port`.
    pub admin_listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How long draining may take on SIGTERM, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Bearer tokens callers must present, each `token` or `name:token` (the caller's name in a
    /// metric label and the log); empty means no authentication.
    pub auth_tokens: Vec<String>,
    /// Time for a connection to send a complete request header, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time a connection with no request in flight stays open, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Time for a request body to arrive in full, in milliseconds.
    pub body_read_timeout_ms: u64,
    /// Open connections on the proxy listener at most.
    pub max_connections: u64,
    /// Open connections on the admin listener at most.
    pub admin_max_connections: u64,
    /// The memory budget in bytes; 0 for the cgroup's limit, if any.
    pub memory_limit_bytes: u64,
    /// Mount point of the cgroup filesystem.
    pub cgroup_root: String,
}

/// `[tencent]`: the identity requests are signed with and where they go.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTencent {
    /// The app's SDKAppID.
    pub sdkappid: u64,
    /// The App admin account.
    pub identifier: String,
    /// The SecretKey itself.
    pub secret_key: String,
    /// A file holding the SecretKey.
    pub secret_key_file: String,
    /// A region name from the catalogue.
    pub region: String,
    /// An explicit base URL that overrides the region.
    pub base_url: String,
    /// The backup base URL, for an explicit `base_url` (a region brings its own).
    pub backup_url: String,
    /// An extra trusted CA, PEM.
    pub ca_file: String,
    /// Lifetime of each generated UserSig, in seconds.
    pub usersig_ttl_secs: u64,
}

impl std::fmt::Debug for RawTencent {
    // Hand-written so that the secret key can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTencent")
            .field("sdkappid", &self.sdkappid)
            .field("identifier", &self.identifier)
            .field("secret_key", &"<redacted>")
            .field("secret_key_file", &self.secret_key_file)
            .field("region", &self.region)
            .field("base_url", &self.base_url)
            .field("backup_url", &self.backup_url)
            .finish_non_exhaustive()
    }
}

/// `[upstream]`: timeouts of one attempt.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// TCP + TLS connect timeout, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Whole-attempt timeout, in milliseconds.
    pub request_timeout_ms: u64,
}

/// `[limits]`: pacing and queue bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// `local` or `redis`.
    pub backend: String,
    /// Redis URL when the backend is `redis`.
    pub redis_url: String,
    /// Key prefix in Redis.
    pub redis_prefix: String,
    /// Sentinel URLs (Sentinel mode).
    pub redis_sentinels: Vec<String>,
    /// The master's name at the Sentinels.
    pub redis_sentinel_master: String,
    /// Seed nodes of a Redis Cluster (Cluster mode).
    pub redis_cluster_nodes: Vec<String>,
    /// PEM CA for rediss:// ("": the public roots).
    pub redis_ca_file: String,
    /// PEM client certificate for mutual TLS.
    pub redis_cert_file: String,
    /// PEM key of the client certificate.
    pub redis_key_file: String,
    /// File holding the Redis password, read at each connection.
    pub redis_password_file: String,
    /// Per-command timeout, in milliseconds.
    pub redis_timeout_ms: u64,
    /// Share of each limit a replica keeps when Redis is down: a number, or `"auto"`.
    pub fallback_share: RawShare,
    /// Upstream requests in flight at once per API; 0 derives it from `app_per_second`.
    pub max_in_flight_per_api: u32,
    /// Calls per second per API.
    pub app_per_second: u32,
    /// Attribute writes per second per group.
    pub group_writes_per_second: u32,
    /// Extra spacing allowed for send/arrival jitter, in milliseconds.
    pub window_guard_ms: u64,
    /// Queue bound per group.
    pub max_queue_per_group: u32,
    /// Queue bound over all lanes.
    pub max_queued: u32,
    /// Default deadline of a queued request, in milliseconds.
    pub max_wait_ms: u64,
    /// Merge queued `modify_group_attr` writes of one group into one upstream call.
    pub coalesce: bool,
    /// Calls per second over every API together; 0: no cap.
    #[serde(default)]
    pub app_total_per_second: u32,
    /// Per-API limits: `service/command` = the count, in the catalogue's unit and period (calls
    /// a second for an API the catalogue does not list).
    #[serde(default)]
    pub api: std::collections::BTreeMap<String, u32>,
    /// Daily caps: `service/command` = calls allowed in any 24 hours.
    #[serde(default)]
    pub api_daily: std::collections::BTreeMap<String, u32>,
}

/// `limits.fallback_share` as written: a number (TOML, or a variable the config crate parsed), or
/// text (`"auto"`, a number in quotes, or a mistake). Whether it is usable is `check`'s to say,
/// so that a mistake is reported naming the key and the accepted forms.
#[derive(Debug, Clone, PartialEq)]
pub enum RawShare {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
}

impl<'de> Deserialize<'de> for RawShare {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShareVisitor;

        impl serde::de::Visitor<'_> for ShareVisitor {
            type Value = RawShare;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number in (0, 1] or \"auto\"")
            }

            fn visit_f64<E>(self, v: f64) -> Result<RawShare, E> {
                Ok(RawShare::Number(v))
            }

            fn visit_i64<E>(self, v: i64) -> Result<RawShare, E> {
                Ok(RawShare::Number(v as f64))
            }

            fn visit_u64<E>(self, v: u64) -> Result<RawShare, E> {
                Ok(RawShare::Number(v as f64))
            }

            fn visit_str<E>(self, v: &str) -> Result<RawShare, E> {
                Ok(RawShare::Text(v.to_string()))
            }
        }

        deserializer.deserialize_any(ShareVisitor)
    }
}

/// `[retry]`: how failed attempts are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff, in milliseconds.
    pub base_delay_ms: u64,
    /// Backoff cap, in milliseconds.
    pub max_delay_ms: u64,
    /// Retries allowed on top of first attempts, as a share.
    pub budget_ratio: f64,
}

/// `[apis]`: the allow-list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApis {
    /// `service/command` names callers may use.
    pub allow: Vec<String>,
}

/// `[log]`: how the gateway logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `json` or `text`.
    pub format: String,
    /// A tracing filter directive.
    pub level: String,
}

/// `[queue]`: the durable write queue on Redis Streams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// Append every accepted group write to a Redis Stream before answering or queueing it.
    pub durable: bool,
    /// Streams the groups are spread over (by a hash of the GroupId).
    pub partitions: u32,
    /// How long a job's answer is kept for `GET /timgate/jobs/<id>`, in seconds.
    pub result_ttl_secs: u64,
    /// How long an async write may wait for its send, in seconds.
    pub max_age_secs: u64,
    /// `"refuse"` (503 while Redis is away) or `"memory"` (today's in-memory queue, said in a
    /// header).
    pub fallback: String,
    /// How long a partition's lease lasts without renewal, in milliseconds.
    pub lease_ms: u64,
    /// Replicas of Redis that must hold an append before it is acknowledged (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// How long `WAIT` waits for them, in milliseconds.
    pub wait_timeout_ms: u64,
}

/// `[tracing]`: OpenTelemetry traces over OTLP/HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Export traces at all.
    pub enabled: bool,
    /// The collector's OTLP/HTTP traces URL.
    pub otlp_endpoint: String,
    /// The share of requests traced when the caller sent no `traceparent`.
    pub sample_ratio: f64,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Spans waiting for export at most.
    pub max_queued_spans: u64,
    /// How often waiting spans are sent, in milliseconds.
    pub export_interval_ms: u64,
    /// How long one export may take, in milliseconds.
    pub export_timeout_ms: u64,
    /// An extra CA (PEM) trusted for an `https://` endpoint.
    pub ca_file: String,
}
