//! What `timgate check-config` prints for a configuration that passes: the settings an operator
//! wants to confirm at a glance (listeners, endpoint, limiter backend, coalescing, durability,
//! how many bearer tokens, tracing), never a secret's value.

use super::{Backend, Config, QueueFallback, SecretSource, Share, redact};

impl Config {
    /// The lines of `check-config`'s summary, each starting with two spaces.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "  listen {}  admin {}",
            self.server.listen, self.server.admin_listen
        )];
        let t = &self.tencent;
        let key = match &t.secret {
            SecretSource::Inline(_) => "secret_key (inline)".to_string(),
            SecretSource::File(path) => format!("secret_key_file {}", path.display()),
        };
        lines.push(format!(
            "  upstream {}  backup {}  sdkappid {}  identifier {}  {key}",
            redact::credentials(&t.base_url),
            t.backup_url
                .as_deref()
                .map_or("none".into(), redact::credentials),
            t.sdkappid,
            t.identifier
        ));
        if let Some(region) = &t.legacy_region {
            lines.push(format!(
                "  warning: Tencent's current pages no longer list region {region:?}; check that the app is still served there"
            ));
        }
        let l = &self.limits;
        // Said here so that an operator sees which form of each the layers ended with.
        lines.push(format!(
            "  limits backend {}  fallback_share {}  max_in_flight_per_api {}",
            backend(&l.backend),
            match l.fallback_share {
                Share::Auto => "auto".to_string(),
                Share::Fixed(share) => share.to_string(),
            },
            l.max_in_flight_per_api
        ));
        lines.push(format!(
            "  coalescing {}",
            match l.coalesce {
                true => "on (modify_group_attr writes queued for one group merge)",
                false => "off",
            }
        ));
        lines.push(self.queue_line());
        let tokens = &self.server.auth_tokens;
        let names: Vec<&str> = tokens
            .iter()
            .map(|entry| {
                super::tokens::split(entry)
                    .0
                    .unwrap_or(super::tokens::UNNAMED)
            })
            .collect();
        lines.push(match tokens.len() {
            0 => "  auth tokens: none (callers are not asked for a bearer token)".to_string(),
            n => format!("  auth tokens: {n} ({})", names.join(", ")),
        });
        lines.push(format!(
            "  log {} at {:?}",
            match self.log.format {
                super::LogFormat::Json => "json",
                super::LogFormat::Text => "text",
            },
            self.log.level
        ));
        let t = &self.tracing;
        lines.push(match t.enabled {
            true => format!(
                "  tracing OTLP/HTTP to {}  sample_ratio {} (a caller's traceparent decides for its own)",
                redact::credentials(&t.otlp_endpoint),
                t.sample_ratio
            ),
            false => "  tracing off".to_string(),
        });
        lines.push(format!("  allowed APIs: {}", self.allow.join(", ")));
        lines
    }

    fn queue_line(&self) -> String {
        let q = &self.queue;
        if !q.durable {
            return "  queue in memory (queue.durable = false)".to_string();
        }
        format!(
            "  queue durable: {} partitions  lease {} ms  fallback {}  wait_replicas {}  result_ttl {} s  max_age {} s",
            q.partitions,
            q.lease.as_millis(),
            match q.fallback {
                QueueFallback::Refuse => "refuse (503 while Redis is away)",
                QueueFallback::Memory => "memory (in this replica while Redis is away)",
            },
            q.wait_replicas,
            q.result_ttl.as_secs(),
            q.max_age.as_secs()
        )
    }
}

/// The limiter backend as shown: `local`, or the Redis target without its password.
pub(crate) fn backend(backend: &Backend) -> String {
    match backend {
        Backend::Local => "local".to_string(),
        Backend::Redis(target) => format!(
            "redis {} (timeout {} ms{})",
            target.describe(),
            target.timeout.as_millis(),
            if target.password_file.is_some() {
                ", password from redis_password_file"
            } else {
                ""
            }
        ),
    }
}
