//! Every metric's name, HELP text, labels and buckets: the table the registry is made from, one
//! row per metric, so that a new metric is a row here and a field of `Metrics`.

use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// One metric: its name (under the registry's `timgate_` prefix), HELP text and labels, and its
/// buckets when it is a histogram.
pub(super) struct Def {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
}

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

/// A row of the table.
const fn def(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        name,
        help,
        labels,
        buckets: &[],
    }
}

/// A histogram's row.
const fn histogram(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
) -> Def {
    Def {
        name,
        help,
        labels,
        buckets,
    }
}

pub(super) const REQUESTS: Def = def(
    "requests_total",
    "Requests answered, by API and outcome.",
    &["api", "outcome"],
);
pub(super) const TENCENT_ERRORS: Def = def(
    "tencent_errors_total",
    "Non-zero ErrorCodes answered by Tencent, by API and code.",
    &["api", "code"],
);
pub(super) const REQUEST_DURATION: Def = histogram(
    "request_duration_seconds",
    "Time from request to answer as the caller sees it.",
    &["api"],
    REQUEST_BUCKETS,
);
pub(super) const UPSTREAM_DURATION: Def = histogram(
    "upstream_duration_seconds",
    "Time of one upstream attempt.",
    &["api"],
    UPSTREAM_BUCKETS,
);
pub(super) const UPSTREAM_ATTEMPTS: Def = def(
    "upstream_attempts_total",
    "Upstream attempts made, retries included.",
    &["api"],
);
pub(super) const UPSTREAM_IN_FLIGHT: Def = def(
    "upstream_in_flight",
    "Upstream attempts in flight now.",
    &[],
);
pub(super) const REJECTIONS: Def = def(
    "rejections_total",
    "Requests the gateway answered itself instead of forwarding, by reason.",
    &["reason"],
);
pub(super) const USERSIG_EXPIRY: Def = def(
    "usersig_expiry_timestamp_seconds",
    "When the current UserSig expires, in Unix seconds.",
    &[],
);
pub(super) const QUEUE_WAIT: Def = histogram(
    "queue_wait_seconds",
    "Time spent waiting in a lane before the send slot.",
    &["lane"],
    QUEUE_BUCKETS,
);
pub(super) const ADMITTED: Def = def(
    "admitted_total",
    "Requests admitted to the pacer.",
    &["api"],
);
pub(super) const RETRIES: Def = def(
    "retries_total",
    "Retries made, by API and reason.",
    &["api", "reason"],
);
pub(super) const RETRY_BUDGET_EXHAUSTED: Def = def(
    "retry_budget_exhausted_total",
    "Retries refused because the API's retry budget was spent.",
    &["api"],
);
pub(super) const THROTTLES: Def = def(
    "throttles_total",
    "Times Tencent answered too fast and a lane was slowed, by lane.",
    &["lane"],
);
pub(super) const LANE_RATE: Def = def(
    "lane_rate_per_second",
    "Each API lane's sending rate now, after any throttling answers (recipients for batchsendmsg).",
    &["lane", "api"],
);
pub(super) const LIMIT: Def = def(
    "limit_per_second",
    "The configured limit, by lane: app per API, group per group.",
    &["lane"],
);
pub(super) const QUEUED_REQUESTS: Def = def(
    "queued_requests",
    "Requests waiting now, by lane.",
    &["lane"],
);
pub(super) const CALLER_REQUESTS: Def = def(
    "caller_requests_total",
    "Requests that presented a caller's bearer token, by the name server.auth_tokens gives it (unnamed for a plain token).",
    &["caller"],
);
pub(super) const ACTIVE_GROUPS: Def = def(
    "active_groups",
    "Groups whose pacing state is in memory.",
    &[],
);
pub(super) const LIMITER_BACKEND_UP: Def = def(
    "limiter_backend_up",
    "1 while the shared (Redis) limiter serves; 0 while this replica paces on its fallback share.",
    &[],
);
pub(super) const LIMITER_FALLBACK: Def = def(
    "limiter_fallback_total",
    "Times the shared limiter backend failed and local shares took over.",
    &[],
);
pub(super) const LIMITER_REPLICAS: Def = def(
    "limiter_replicas",
    "Replicas last seen alive in the shared Redis budget; the fallback share is 1/this.",
    &[],
);
pub(super) const COALESCED_REQUESTS: Def = def(
    "coalesced_requests_total",
    "Requests answered with an upstream call they shared with at least one other request \
     (limits.coalesce): every member of a batch of two or more.",
    &[],
);
pub(super) const COALESCE_BATCH_SIZE: Def = histogram(
    "coalesce_batch_size",
    "Requests per coalesced upstream modify_group_attr call, batches of one included.",
    &[],
    BATCH_BUCKETS,
);
pub(super) const UPSTREAM_BACKUP: Def = def(
    "upstream_backup",
    "1 while attempts go to Tencent's backup domain (the main one could not be resolved or reached), else 0.",
    &[],
);
pub(super) const BUILD_INFO: Def = def(
    "build_info",
    "Always 1; labelled with the version.",
    &["version"],
);

// The definitions are static and checked by the tests, so making one cannot fail at run time.
impl Def {
    fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }

    fn histogram_opts(&self) -> HistogramOpts {
        HistogramOpts::new(self.name, self.help).buckets(self.buckets.to_vec())
    }

    pub(super) fn counter_vec(&self) -> IntCounterVec {
        IntCounterVec::new(self.opts(), self.labels).expect("static metric definition")
    }

    pub(super) fn counter(&self) -> IntCounter {
        IntCounter::with_opts(self.opts()).expect("static metric definition")
    }

    pub(super) fn gauge(&self) -> Gauge {
        Gauge::with_opts(self.opts()).expect("static metric definition")
    }

    pub(super) fn gauge_vec(&self) -> GaugeVec {
        GaugeVec::new(self.opts(), self.labels).expect("static metric definition")
    }

    pub(super) fn int_gauge(&self) -> IntGauge {
        IntGauge::with_opts(self.opts()).expect("static metric definition")
    }

    pub(super) fn int_gauge_vec(&self) -> IntGaugeVec {
        IntGaugeVec::new(self.opts(), self.labels).expect("static metric definition")
    }

    pub(super) fn histogram(&self) -> Histogram {
        Histogram::with_opts(self.histogram_opts()).expect("static metric definition")
    }

    pub(super) fn histogram_vec(&self) -> HistogramVec {
        HistogramVec::new(self.histogram_opts(), self.labels).expect("static metric definition")
    }
}

/// Registers `metric` in `registry` and gives it back.
pub(super) fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}
