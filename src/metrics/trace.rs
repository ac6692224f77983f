//! The trace exporter's metrics: spans exported and spans dropped, by why. Registered only when
//! `tracing.enabled`, so that a gateway that exports no traces shows none of them.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why spans were dropped instead of exported: the `reason` label's values.
pub(super) const DROP_REASONS: [&str; 2] = ["queue_full", "export_failed"];

/// The exporter's handles, a part of [`super::Metrics`].
#[derive(Clone, Debug)]
pub struct TraceMetrics {
    /// Spans the collector accepted.
    pub exported: IntCounter,
    /// Spans dropped, by reason: `queue_full` (`tracing.max_queued_spans` waiting already) or
    /// `export_failed` (the collector could not be reached or refused the batch).
    pub dropped: IntCounterVec,
}

impl TraceMetrics {
    /// Makes the handles; [`TraceMetrics::register`] exports them.
    pub fn new() -> TraceMetrics {
        let metrics = TraceMetrics {
            exported: IntCounter::with_opts(Opts::new(
                "trace_spans_exported_total",
                "Spans the OTLP collector accepted.",
            ))
            .expect("static"),
            dropped: IntCounterVec::new(
                Opts::new(
                    "trace_spans_dropped_total",
                    "Spans dropped instead of exported, by reason: queue_full (tracing.max_queued_spans were waiting) or export_failed (the collector could not be reached or refused them).",
                ),
                &["reason"],
            )
            .expect("static"),
        };
        for reason in DROP_REASONS {
            metrics.dropped.with_label_values(&[reason]);
        }
        metrics
    }

    /// Exports the exporter's metrics in `registry`; again does nothing.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 2] = [
            Box::new(self.exported.clone()),
            Box::new(self.dropped.clone()),
        ];
        super::register_once(registry, collectors);
    }
}

impl Default for TraceMetrics {
    fn default() -> Self {
        TraceMetrics::new()
    }
}
