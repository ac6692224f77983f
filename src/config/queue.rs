//! Checks `[queue]`: the durable write queue on Redis Streams, which needs the Redis backend.

use std::time::Duration;

use super::check::Problems;
use super::raw::RawQueue;
use super::{Backend, LimitsConfig};

/// Partitions at most: each is a stream, a lease and a reader on its owner.
pub(super) const MAX_PARTITIONS: u32 = 1024;

/// What a durable gateway does with a group write while Redis is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFallback {
    /// Refuse it with 503 (`queue_unavailable`): nothing is accepted that cannot be kept.
    Refuse,
    /// Queue it in this replica's memory, as without durable mode, and say so in a header.
    Memory,
}

/// `[queue]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Group writes go through the Redis Streams queue.
    pub durable: bool,
    /// Streams the groups are spread over.
    pub partitions: u32,
    /// How long a job's answer is kept.
    pub result_ttl: Duration,
    /// How long an async write may wait for its send.
    pub max_age: Duration,
    /// What happens while Redis is away.
    pub fallback: QueueFallback,
    /// How long a partition's lease lasts without renewal.
    pub lease: Duration,
    /// Redis replicas an append must reach before it is acknowledged (0: none).
    pub wait_replicas: u32,
    /// How long `WAIT` waits for them.
    pub wait_timeout: Duration,
}

/// Checks `[queue]` against the checked `[limits]`.
pub(super) fn check(q: &RawQueue, limits: &LimitsConfig, p: &mut Problems) -> QueueConfig {
    if q.durable && !matches!(limits.backend, Backend::Redis(_)) {
        p.add(
            "queue.durable",
            "needs limits.backend = \"redis\": the queue is kept in the budget's Redis",
        );
    }
    if !(1..=MAX_PARTITIONS).contains(&q.partitions) {
        p.add(
            "queue.partitions",
            format!("{} is outside 1..={MAX_PARTITIONS}", q.partitions),
        );
    }
    let fallback = match q.fallback.as_str() {
        "refuse" => QueueFallback::Refuse,
        "memory" => QueueFallback::Memory,
        other => {
            p.add(
                "queue.fallback",
                format!("{other:?} is not one of \"refuse\", \"memory\""),
            );
            QueueFallback::Refuse
        }
    };
    if !(300..=60_000).contains(&q.lease_ms) {
        p.add(
            "queue.lease_ms",
            format!(
                "{} is outside 300..=60000 (a takeover waits about this long)",
                q.lease_ms
            ),
        );
    }
    if q.wait_replicas > 0 && q.wait_timeout_ms == 0 {
        // WAIT with timeout 0 blocks for ever: the append would never be acknowledged.
        p.add(
            "queue.wait_timeout_ms",
            "must be greater than 0 when queue.wait_replicas is set",
        );
    }
    if let Backend::Redis(target) = &limits.backend
        && q.wait_replicas > 0
        && Duration::from_millis(q.wait_timeout_ms) >= target.timeout
    {
        p.add(
            "queue.wait_timeout_ms",
            "must be below limits.redis_timeout_ms, which bounds every Redis command",
        );
    }
    QueueConfig {
        durable: q.durable,
        partitions: q.partitions.clamp(1, MAX_PARTITIONS),
        result_ttl: Duration::from_secs(p.positive("queue.result_ttl_secs", q.result_ttl_secs)),
        max_age: Duration::from_secs(p.positive("queue.max_age_secs", q.max_age_secs)),
        fallback,
        lease: Duration::from_millis(q.lease_ms),
        wait_replicas: q.wait_replicas,
        wait_timeout: Duration::from_millis(q.wait_timeout_ms),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, QueueFallback};

    const IDENTITY: &str = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";
    const REDIS: &str = "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n";

    fn problems(layers: &[&str]) -> Vec<String> {
        let mut all = vec![IDENTITY];
        all.extend_from_slice(layers);
        Config::from_toml_layers(&all)
            .expect_err("refused")
            .problems
    }

    #[test]
    fn durable_needs_the_redis_backend_and_defaults_are_sane() {
        let off = Config::from_toml_layers(&[IDENTITY]).expect("defaults");
        assert!(!off.queue.durable);
        assert_eq!(off.queue.partitions, 16);
        assert_eq!(off.queue.fallback, QueueFallback::Refuse);
        assert_eq!(
            problems(&["[queue]\ndurable = true\n"]),
            [
                "queue.durable: needs limits.backend = \"redis\": the queue is kept in the budget's Redis"
            ]
        );
        let on = Config::from_toml_layers(&[
            IDENTITY,
            REDIS,
            "[queue]\ndurable = true\nfallback = \"memory\"\n",
        ])
        .expect("durable on Redis");
        assert!(on.queue.durable);
        assert_eq!(on.queue.fallback, QueueFallback::Memory);
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let bad = "[queue]\npartitions = 0\nfallback = \"disk\"\nlease_ms = 100\nresult_ttl_secs = 0\n\
                   max_age_secs = 0\nwait_replicas = 1\nwait_timeout_ms = 0\n";
        let found = problems(&[REDIS, bad]);
        for key in [
            "queue.partitions",
            "queue.fallback",
            "queue.lease_ms",
            "queue.result_ttl_secs",
            "queue.max_age_secs",
            "queue.wait_timeout_ms",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(key)),
                "{key} in {found:?}"
            );
        }
        let slow_wait = "[queue]\nwait_replicas = 1\nwait_timeout_ms = 500\n";
        assert!(
            problems(&[REDIS, slow_wait])
                .iter()
                .any(|p| p.contains("below limits.redis_timeout_ms")),
            "WAIT must answer within the command timeout"
        );
    }
}
