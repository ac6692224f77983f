//! The one `Metrics` struct: its own registry and every metric handle, so that names, HELP texts,
//! labels and buckets live in one place. Labels are bounded (API names come from the allow-list);
//! a GroupId is never a label.

mod api;
mod pressure;
#[cfg(target_os = "linux")]
mod process;
mod queue;
mod table;
mod trace;

pub use api::{ApiMetrics, OUTCOMES};
pub use pressure::{ListenerMetrics, PressureMetrics};
pub use queue::QueueMetrics;
pub use trace::TraceMetrics;

use prometheus::{
    Encoder, Gauge, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry, TextEncoder,
};
use table::register;

/// Every metric timgate exports, under the `timgate_` prefix.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// The standard `process_*` metrics, which take no `timgate_` prefix: stock dashboards and
    /// alerts look for `process_cpu_seconds_total` and its kin by these names.
    process: Registry,
    /// Requests answered, by API and outcome (`ok`, `fail`, `invalid`, `rejected`, `error`).
    pub requests: IntCounterVec,
    /// Non-zero `ErrorCode`s Tencent answered, by API and code.
    pub tencent_errors: IntCounterVec,
    /// Time from request to answer as the caller sees it, by API.
    pub request_duration: HistogramVec,
    /// Time of one upstream attempt, by API.
    pub upstream_duration: HistogramVec,
    /// Upstream attempts made, retries included, by API.
    pub upstream_attempts: IntCounterVec,
    /// Upstream attempts in flight now.
    pub upstream_in_flight: IntGauge,
    /// Requests the gateway answered itself instead of forwarding, by reason.
    pub rejections: IntCounterVec,
    /// When the current UserSig expires, in Unix seconds.
    pub usersig_expiry: Gauge,
    /// Retries made, by API and reason (`code_10002`, `connect`, `timeout`, ...).
    pub retries: IntCounterVec,
    /// Retries refused because the API's retry budget was spent, by API.
    pub retry_budget_exhausted: IntCounterVec,
    /// Times Tencent said "too fast" and a lane was slowed, by lane (`group`, `app`).
    pub throttles: IntCounterVec,
    /// Each API lane's sending rate now (below the configured limit after throttling answers).
    pub lane_rate: prometheus::GaugeVec,
    /// The configured limits, by lane: `app` per API, `group` per group (sends per second).
    pub limit: prometheus::GaugeVec,
    /// Requests admitted to the pacer, by API (each is sent or answered by the gateway once).
    pub admitted: IntCounterVec,
    /// Time spent waiting in a lane before the send slot, by lane (`group`, `app`).
    pub queue_wait: HistogramVec,
    /// Requests waiting now, by lane: `app` counts every request without a slot yet, `group` the
    /// writes waiting behind another write of their group.
    pub queued_requests: IntGaugeVec,
    /// Groups whose pacing state is in memory.
    pub active_groups: IntGauge,
    /// Requests that presented a caller's bearer token, by its name (`server.auth_tokens`
    /// entries `name:token`; `unnamed` for a plain token). Bounded: names come from the config.
    pub caller_requests: IntCounterVec,
    /// 1 while attempts go to the backup domain (`timgate_upstream_backup`).
    pub upstream_backup: IntGauge,
    /// 1 while the shared (Redis) limiter serves, 0 while this replica paces on its fallback
    /// share. Exported only once [`Metrics::register_limiter`] is called (the Redis backend).
    pub limiter_backend_up: IntGauge,
    /// Times a replica fell back from the shared backend to its local share of the limits.
    /// Exported only with the Redis backend.
    pub limiter_fallback: prometheus::IntCounter,
    /// Replicas last seen alive in the shared Redis budget; `limits.fallback_share = "auto"` is
    /// one over this. Exported only with the Redis backend.
    pub limiter_replicas: IntGauge,
    /// Requests answered with an upstream call they shared with at least one other request
    /// (coalescing): every member of a batch of two or more.
    pub coalesced_requests: prometheus::IntCounter,
    /// Requests per coalesced upstream call, batches of one included (coalescing on).
    pub coalesce_batch_size: prometheus::Histogram,
    /// Always 1, labelled with the version.
    pub build_info: IntGaugeVec,
    /// Connections per listener and the memory budget.
    pub pressure: PressureMetrics,
    /// The durable queue's; exported once [`Metrics::register_queue`] is called.
    pub queue: QueueMetrics,
    /// The trace exporter's; exported once [`Metrics::register_tracing`] is called.
    pub trace: TraceMetrics,
}

impl Metrics {
    /// Creates the registry and registers every metric, each made from its row of the table
    /// in `table.rs`.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("timgate".into()), None).expect("valid prefix");
        let r = &registry;
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(process::ProcessCollector::new()))
            .expect("metric names are unique");
        let metrics = Metrics {
            requests: register(r, table::REQUESTS.counter_vec()),
            tencent_errors: register(r, table::TENCENT_ERRORS.counter_vec()),
            request_duration: register(r, table::REQUEST_DURATION.histogram_vec()),
            upstream_duration: register(r, table::UPSTREAM_DURATION.histogram_vec()),
            upstream_attempts: register(r, table::UPSTREAM_ATTEMPTS.counter_vec()),
            upstream_in_flight: register(r, table::UPSTREAM_IN_FLIGHT.int_gauge()),
            rejections: register(r, table::REJECTIONS.counter_vec()),
            usersig_expiry: register(r, table::USERSIG_EXPIRY.gauge()),
            retries: register(r, table::RETRIES.counter_vec()),
            retry_budget_exhausted: register(r, table::RETRY_BUDGET_EXHAUSTED.counter_vec()),
            throttles: register(r, table::THROTTLES.counter_vec()),
            lane_rate: register(r, table::LANE_RATE.gauge_vec()),
            limit: register(r, table::LIMIT.gauge_vec()),
            admitted: register(r, table::ADMITTED.counter_vec()),
            queue_wait: register(r, table::QUEUE_WAIT.histogram_vec()),
            queued_requests: register(r, table::QUEUED_REQUESTS.int_gauge_vec()),
            active_groups: register(r, table::ACTIVE_GROUPS.int_gauge()),
            caller_requests: register(r, table::CALLER_REQUESTS.counter_vec()),
            // Made here but registered by `register_limiter`: with the local backend there is
            // no shared limiter to be up or down, and a constant 1 would only look like one.
            limiter_backend_up: table::LIMITER_BACKEND_UP.int_gauge(),
            limiter_fallback: table::LIMITER_FALLBACK.counter(),
            limiter_replicas: table::LIMITER_REPLICAS.int_gauge(),
            coalesced_requests: register(r, table::COALESCED_REQUESTS.counter()),
            coalesce_batch_size: register(r, table::COALESCE_BATCH_SIZE.histogram()),
            build_info: register(r, table::BUILD_INFO.int_gauge_vec()),
            upstream_backup: register(r, table::UPSTREAM_BACKUP.int_gauge()),
            pressure: PressureMetrics::new(r),
            queue: QueueMetrics::new(),
            trace: TraceMetrics::new(),
            registry,
            process,
        };
        metrics.start();
        metrics
    }

    /// The values series start with: series that exist from the start, so that `rate()` sees
    /// their first increment, and the gauges' values before anything moves them.
    fn start(&self) {
        for reason in crate::error::REJECTION_REASONS {
            self.rejections.with_label_values(&[reason]);
        }
        for lane in ["group", "app"] {
            self.throttles.with_label_values(&[lane]);
        }
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // The Redis backend lowers this until its first connection, and while Redis is away.
        self.limiter_backend_up.set(1);
        // This replica, until others are seen: "auto" then keeps the whole limit.
        self.limiter_replicas.set(1);
    }

    /// Exports the shared limiter's metrics (`timgate_limiter_backend_up`,
    /// `timgate_limiter_fallback_total`, `timgate_limiter_replicas`): called by the pacer when
    /// `limits.backend = "redis"`, so that a local gateway has none. Calling it again does nothing.
    pub fn register_limiter(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(self.limiter_backend_up.clone()),
            Box::new(self.limiter_fallback.clone()),
            Box::new(self.limiter_replicas.clone()),
        ];
        for collector in collectors {
            let registered = self.registry.register(collector);
            if !matches!(registered, Err(prometheus::Error::AlreadyReg)) {
                registered.expect("static metric definitions with unique names");
            }
        }
    }

    /// The per-request metrics' handles of the API `name`, resolved once rather than at every
    /// request.
    pub fn api(&self, name: std::sync::Arc<str>) -> std::sync::Arc<ApiMetrics> {
        std::sync::Arc::new(ApiMetrics::new(self, name))
    }

    /// Exports the durable queue's metrics (`queue.durable = true`). Again does nothing.
    pub fn register_queue(&self) {
        self.queue.register(&self.registry);
    }

    /// Exports the trace exporter's metrics (`tracing.enabled = true`). Again does nothing.
    pub fn register_tracing(&self) {
        self.trace.register(&self.registry);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "Could not encode metrics.");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Registers `collectors` in `registry`; those registered already are left as they are, so that
/// a part registered on demand (the durable queue's, the exporter's) may be asked twice.
fn register_once<const N: usize>(
    registry: &Registry,
    collectors: [Box<dyn prometheus::core::Collector>; N],
) {
    for collector in collectors {
        let registered = registry.register(collector);
        if !matches!(registered, Err(prometheus::Error::AlreadyReg)) {
            registered.expect("static metric definitions with unique names");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled sample `name` in an exposition.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_have_their_standard_names_and_count_cpu_in_fractions_of_a_second() {
        let metrics = Metrics::new();
        // Spend some CPU on this thread, well under a second (whole seconds would still read 0):
        // counted on the thread's own clock, since on a loaded machine it gets a fraction of
        // the wall time it spins.
        let thread_cpu = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
            let boot = std::fs::read_to_string("/proc/stat").expect("stat");
            let ticks = rustix::param::clock_ticks_per_second() as f64;
            process::parse_stat(&stat, &boot, ticks, 4096)
                .expect("parses")
                .cpu_seconds
        };
        let started = tokio::time::Instant::now();
        let mut spin = 0u64;
        while thread_cpu() < 0.15 {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(60));
        }
        let text = String::from_utf8(metrics.render()).expect("utf-8");
        assert!(!text.contains("timgate_process_"), "{text}");
        let cpu = sample(&text, "process_cpu_seconds_total").expect("exported");
        assert!(
            cpu >= 0.15,
            "this thread alone spent 150 ms, {cpu} s counted"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
        ] {
            assert!(sample(&text, name).is_some_and(|v| v > 0.0), "{name}");
        }
        let start = sample(&text, "process_start_time_seconds").expect("exported");
        let now = crate::clock::unix_now() as f64;
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(text.contains("timgate_requests_total") || text.contains("timgate_build_info"));
    }
}
