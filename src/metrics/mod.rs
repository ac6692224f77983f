//! The one `Metrics` struct: its own registry and every metric handle, so that names, HELP texts,
//! labels and buckets live in one place. Labels are bounded (API names come from the allow-list);
//! a GroupId is never a label.

mod pressure;

pub use pressure::{ListenerMetrics, PressureMetrics};

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Upstream latency buckets, 5 ms to 10 s.
const UPSTREAM_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Queue wait buckets, 1 ms to 60 s, fine near the 30 s default deadline so that a p99 there is read,
/// not guessed.
const QUEUE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0,
    60.0,
];
/// Coalesced batch sizes: one request alone, a few merged, up to a full group queue (64).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 10.0, 16.0, 32.0, 64.0];
/// Caller-seen latency buckets: from under a millisecond (local refusals) to a full queue wait.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every metric timgate exports, under the `timgate_` prefix.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
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
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric =
        IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let metric =
        prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("static metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    /// Creates the registry and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("timgate".into()), None).expect("valid prefix");
        let r = &registry;
        let upstream_in_flight =
            IntGauge::new("upstream_in_flight", "Upstream attempts in flight now.")
                .expect("static");
        r.register(Box::new(upstream_in_flight.clone()))
            .expect("unique");
        let usersig_expiry = Gauge::new(
            "usersig_expiry_timestamp_seconds",
            "When the current UserSig expires, in Unix seconds.",
        )
        .expect("static");
        r.register(Box::new(usersig_expiry.clone()))
            .expect("unique");
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; labelled with the version."),
            &["version"],
        )
        .expect("static");
        r.register(Box::new(build_info.clone())).expect("unique");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let queued_requests = IntGaugeVec::new(
            Opts::new("queued_requests", "Requests waiting now, by lane."),
            &["lane"],
        )
        .expect("static");
        r.register(Box::new(queued_requests.clone()))
            .expect("unique");
        let active_groups =
            IntGauge::new("active_groups", "Groups whose pacing state is in memory.")
                .expect("static");
        r.register(Box::new(active_groups.clone())).expect("unique");
        // Made here but registered by `register_limiter`: with the local backend there is no
        // shared limiter to be up or down, and a constant 1 would only look like one.
        let limiter_backend_up = IntGauge::new(
            "limiter_backend_up",
            "1 while the shared (Redis) limiter serves; 0 while this replica paces on its fallback share.",
        )
        .expect("static");
        // The Redis backend lowers this until its first connection, and while Redis is away.
        limiter_backend_up.set(1);
        let limiter_fallback = prometheus::IntCounter::new(
            "limiter_fallback_total",
            "Times the shared limiter backend failed and local shares took over.",
        )
        .expect("static");
        let limiter_replicas = IntGauge::new(
            "limiter_replicas",
            "Replicas last seen alive in the shared Redis budget; the fallback share is 1/this.",
        )
        .expect("static");
        // This replica, until others are seen: "auto" then keeps the whole limit.
        limiter_replicas.set(1);
        let rejections = counter(
            r,
            "rejections_total",
            "Requests the gateway answered itself instead of forwarding, by reason.",
            &["reason"],
        );
        for reason in crate::error::REJECTION_REASONS {
            rejections.with_label_values(&[reason]);
        }
        let coalesced_requests = prometheus::IntCounter::new(
            "coalesced_requests_total",
            "Requests answered with an upstream call they shared with at least one other request \
             (limits.coalesce): every member of a batch of two or more.",
        )
        .expect("static");
        r.register(Box::new(coalesced_requests.clone()))
            .expect("unique");
        let coalesce_batch_size = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "coalesce_batch_size",
                "Requests per coalesced upstream modify_group_attr call, batches of one included.",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
        )
        .expect("static");
        r.register(Box::new(coalesce_batch_size.clone()))
            .expect("unique");
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique");
        let metrics = Metrics {
            requests: counter(
                r,
                "requests_total",
                "Requests answered, by API and outcome.",
                &["api", "outcome"],
            ),
            tencent_errors: counter(
                r,
                "tencent_errors_total",
                "Non-zero ErrorCodes answered by Tencent, by API and code.",
                &["api", "code"],
            ),
            request_duration: histogram(
                r,
                "request_duration_seconds",
                "Time from request to answer as the caller sees it.",
                &["api"],
                REQUEST_BUCKETS,
            ),
            upstream_duration: histogram(
                r,
                "upstream_duration_seconds",
                "Time of one upstream attempt.",
                &["api"],
                UPSTREAM_BUCKETS,
            ),
            upstream_attempts: counter(
                r,
                "upstream_attempts_total",
                "Upstream attempts made, retries included.",
                &["api"],
            ),
            upstream_in_flight,
            rejections,
            usersig_expiry,
            queue_wait: histogram(
                r,
                "queue_wait_seconds",
                "Time spent waiting in a lane before the send slot.",
                &["lane"],
                QUEUE_BUCKETS,
            ),
            admitted: counter(
                r,
                "admitted_total",
                "Requests admitted to the pacer.",
                &["api"],
            ),
            retries: counter(
                r,
                "retries_total",
                "Retries made, by API and reason.",
                &["api", "reason"],
            ),
            retry_budget_exhausted: counter(
                r,
                "retry_budget_exhausted_total",
                "Retries refused because the API's retry budget was spent.",
                &["api"],
            ),
            throttles: counter(
                r,
                "throttles_total",
                "Times Tencent answered too fast and a lane was slowed, by lane.",
                &["lane"],
            ),
            lane_rate: gauge(
                r,
                "lane_rate_per_second",
                "Each API lane's sending rate now, after any throttling answers.",
                &["lane", "api"],
            ),
            limit: gauge(
                r,
                "limit_per_second",
                "The configured limit, by lane: app per API, group per group.",
                &["lane"],
            ),
            queued_requests,
            active_groups,
            limiter_backend_up,
            limiter_fallback,
            limiter_replicas,
            coalesced_requests,
            coalesce_batch_size,
            build_info,
            pressure: PressureMetrics::new(r),
            registry,
        };
        // Series that exist from the start, so that rate() sees their first increment.
        for lane in ["group", "app"] {
            metrics.throttles.with_label_values(&[lane]);
        }
        metrics
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
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
