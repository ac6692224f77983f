//! `GET /config`: the configuration in force as JSON, section by section under the names of
//! `config/default.toml`, with every secret masked (the SecretKey, each bearer token, a Redis
//! password) and the parts derived from others shown as they ended up (the endpoint a region
//! gave, the Redis mode).

use serde_json::{Value, json};

use crate::config::redact::{self, MASK};
use crate::config::{Backend, Config, LogFormat, QueueFallback, RedisMode, SecretSource, Share};

/// Milliseconds of a duration, as the `_ms` keys hold them.
fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

/// A path setting as written: `""` when unset.
fn path(p: Option<&std::path::PathBuf>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

/// The sections of `config`.
pub(crate) fn sections(config: &Config) -> Value {
    json!({
        "server": server(config),
        "tencent": tencent(config),
        "upstream": {
            "connect_timeout_ms": ms(config.upstream.connect_timeout),
            "request_timeout_ms": ms(config.upstream.request_timeout),
        },
        "limits": limits(config),
        "retry": {
            "max_attempts": config.retry.max_attempts,
            "base_delay_ms": ms(config.retry.base_delay),
            "max_delay_ms": ms(config.retry.max_delay),
            "budget_ratio": config.retry.budget_ratio,
        },
        "apis": { "allow": config.allow },
        "log": {
            "format": match config.log.format { LogFormat::Json => "json", LogFormat::Text => "text" },
            "level": config.log.level,
        },
        "queue": queue(config),
        "tracing": tracing(config),
    })
}

fn server(config: &Config) -> Value {
    let s = &config.server;
    json!({
        "listen": s.listen.to_string(),
        "admin_listen": s.admin_listen.to_string(),
        "max_body_bytes": s.max_body_bytes,
        "shutdown_grace_ms": ms(s.shutdown_grace),
        // Each caller's name, never its token.
        "auth_tokens": s.auth_tokens.iter().map(|entry| match crate::config::tokens::split(entry).0 {
            Some(name) => format!("{name}:{MASK}"),
            None => MASK.to_string(),
        }).collect::<Vec<_>>(),
        "header_read_timeout_ms": ms(s.header_read_timeout),
        "idle_timeout_ms": ms(s.idle_timeout),
        "body_read_timeout_ms": ms(s.body_read_timeout),
        "max_connections": s.max_connections,
        "admin_max_connections": s.admin_max_connections,
        "memory_limit_bytes": s.memory_limit_bytes,
        "cgroup_root": s.cgroup_root.display().to_string(),
    })
}

fn tencent(config: &Config) -> Value {
    let t = &config.tencent;
    let (key, key_file) = match &t.secret {
        SecretSource::Inline(_) => (MASK.to_string(), String::new()),
        SecretSource::File(file) => (String::new(), file.display().to_string()),
    };
    json!({
        "sdkappid": t.sdkappid,
        "identifier": t.identifier,
        "secret_key": key,
        "secret_key_file": key_file,
        // The region is in force through the endpoint it gave: none when base_url was set.
        "region": crate::tencent::catalogue::REGIONS
            .iter()
            .find(|region| region.url == t.base_url)
            .map(|region| region.name),
        "base_url": redact::credentials(&t.base_url),
        "backup_url": t.backup_url.as_deref().map(redact::credentials),
        "ca_file": path(t.ca_file.as_ref()),
        "usersig_ttl_secs": t.usersig_ttl.as_secs(),
    })
}

fn limits(config: &Config) -> Value {
    let l = &config.limits;
    let mut out = json!({
        "backend": match l.backend { Backend::Local => "local", Backend::Redis(_) => "redis" },
        "redis_prefix": l.redis_prefix,
        "fallback_share": match l.fallback_share {
            Share::Auto => json!("auto"),
            Share::Fixed(share) => json!(share),
        },
        "app_per_second": l.app_per_second,
        "app_total_per_second": l.app_total_per_second,
        "group_writes_per_second": l.group_writes_per_second,
        "window_guard_ms": ms(l.window_guard),
        "max_queue_per_group": l.max_queue_per_group,
        "max_queued": l.max_queued,
        "max_wait_ms": ms(l.max_wait),
        "max_in_flight_per_api": l.max_in_flight_per_api,
        "coalesce": l.coalesce,
        "api": l.api,
        "api_daily": l.api_daily,
    });
    let redis = redis(&l.backend);
    if let (Some(out), Value::Object(redis)) = (out.as_object_mut(), redis) {
        out.extend(redis);
    }
    out
}

/// `limits.redis_*` in force: the shared budget's Redis, URLs without their passwords; all null
/// with the local backend, which reaches no Redis.
fn redis(backend: &Backend) -> Value {
    let Backend::Redis(target) = backend else {
        return json!({
            "redis_url": null, "redis_sentinels": null, "redis_sentinel_master": null,
            "redis_cluster_nodes": null, "redis_ca_file": null, "redis_cert_file": null,
            "redis_key_file": null, "redis_password_file": null, "redis_timeout_ms": null,
        });
    };
    let urls = |urls: &[String]| {
        urls.iter()
            .map(|u| redact::redis_url(u))
            .collect::<Vec<_>>()
    };
    let (url, sentinels, master, nodes) = match &target.mode {
        RedisMode::Standalone(url) => (redact::redis_url(url), vec![], String::new(), vec![]),
        RedisMode::Sentinel { sentinels, master } => {
            (String::new(), urls(sentinels), master.clone(), vec![])
        }
        RedisMode::Cluster(nodes) => (String::new(), vec![], String::new(), urls(nodes)),
    };
    json!({
        "redis_url": url,
        "redis_sentinels": sentinels,
        "redis_sentinel_master": master,
        "redis_cluster_nodes": nodes,
        "redis_ca_file": path(target.ca_file.as_ref()),
        "redis_cert_file": path(target.cert_file.as_ref()),
        "redis_key_file": path(target.key_file.as_ref()),
        "redis_password_file": path(target.password_file.as_ref()),
        "redis_timeout_ms": ms(target.timeout),
    })
}

fn queue(config: &Config) -> Value {
    let q = &config.queue;
    json!({
        "durable": q.durable,
        "partitions": q.partitions,
        "result_ttl_secs": q.result_ttl.as_secs(),
        "max_age_secs": q.max_age.as_secs(),
        "fallback": match q.fallback { QueueFallback::Refuse => "refuse", QueueFallback::Memory => "memory" },
        "lease_ms": ms(q.lease),
        "wait_replicas": q.wait_replicas,
        "wait_timeout_ms": ms(q.wait_timeout),
    })
}

fn tracing(config: &Config) -> Value {
    let t = &config.tracing;
    json!({
        "enabled": t.enabled,
        // Refused by the checks if it holds credentials; masked all the same.
        "otlp_endpoint": redact::credentials(&t.otlp_endpoint),
        "sample_ratio": t.sample_ratio,
        "service_name": t.service_name,
        "max_queued_spans": t.max_queued_spans,
        "export_interval_ms": ms(t.export_interval),
        "export_timeout_ms": ms(t.export_timeout),
        "ca_file": path(t.ca_file.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of `config/default.toml`, as `section.key`.
    fn default_keys() -> Vec<String> {
        use config::{File, FileFormat, Map, Value as ConfigValue};
        let defaults = File::from_str(crate::config::DEFAULT_TOML, FileFormat::Toml);
        let table = config::Config::builder()
            .add_source(defaults)
            .build()
            .and_then(|c| c.try_deserialize::<Map<String, Map<String, ConfigValue>>>())
            .expect("default.toml");
        let mut keys = Vec::new();
        for (section, values) in table {
            keys.extend(values.keys().map(|key| format!("{section}.{key}")));
        }
        keys
    }

    #[test]
    fn shows_every_key_of_the_defaults_and_no_secret() {
        let toml = "[tencent]\nsdkappid = 1\nsecret_key = \"5bd2aa11cafe0000\"\n\
                    [server]\nauth_tokens = [\"tok-alpha-1\", \"tok-beta-2\"]\n\
                    [limits]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter22@10.0.0.1:6379\"\n";
        let config = Config::from_toml(toml).expect("config");
        let shown = sections(&config);
        for key in default_keys() {
            let (section, name) = key.split_once('.').expect("dotted");
            assert!(shown[section].get(name).is_some(), "{key} not shown");
        }
        let text = shown.to_string();
        for secret in ["5bd2aa11cafe0000", "tok-alpha-1", "tok-beta-2", "hunter22"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["server"]["auth_tokens"], json!([MASK, MASK]));
        assert_eq!(shown["tencent"]["secret_key"], MASK);
        assert_eq!(shown["limits"]["redis_url"], "redis://u:***@10.0.0.1:6379");
        assert_eq!(shown["limits"]["backend"], "redis");
        assert_eq!(shown["tencent"]["region"], "singapore");
    }
}
