//! The pacer's metric handles, resolved once from the one `Metrics` registry.

use std::sync::Arc;

use prometheus::{Gauge, Histogram, IntCounter, IntGauge};

use crate::metrics::Metrics;

/// The pacer's metric handles, resolved once: a label lookup per request would cost more than
/// the pacing itself.
#[derive(Debug)]
pub(super) struct PaceMetrics {
    pub(super) all: Metrics,
    pub(super) queued_app: IntGauge,
    pub(super) queued_group: IntGauge,
    pub(super) wait_app: Histogram,
    pub(super) wait_group: Histogram,
    pub(super) admitted: crate::FastMap<Arc<str>, IntCounter>,
    pub(super) lane_rate: crate::FastMap<Arc<str>, Gauge>,
}

impl PaceMetrics {
    pub(super) fn new(all: Metrics, apis: &[Arc<str>], app_rate: f64) -> PaceMetrics {
        PaceMetrics {
            queued_app: all.queued_requests.with_label_values(&["app"]),
            queued_group: all.queued_requests.with_label_values(&["group"]),
            wait_app: all.queue_wait.with_label_values(&["app"]),
            wait_group: all.queue_wait.with_label_values(&["group"]),
            admitted: apis
                .iter()
                .map(|api| (api.clone(), all.admitted.with_label_values(&[&**api])))
                .collect(),
            lane_rate: apis
                .iter()
                .map(|api| {
                    let gauge = all.lane_rate.with_label_values(&["app", api]);
                    gauge.set(app_rate);
                    (api.clone(), gauge)
                })
                .collect(),
            all,
        }
    }
}
