//! The durable queue's metrics: depth and oldest age per partition (exported by its owner),
//! lease moves, redeliveries, how writes were accepted and how async jobs ended. Registered only
//! in durable mode, so that a gateway without the queue exports none of them.

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The queue's handles, a part of [`super::Metrics`].
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    /// Writes queued in Redis now, by partition; each partition's owner exports its own.
    pub depth: IntGaugeVec,
    /// Age of the oldest queued write, by partition, in seconds (0 when empty).
    pub oldest_age: GaugeVec,
    /// Partitions this replica took over or gave up.
    pub lease_moves: IntCounter,
    /// Writes sent again because their owner died or lost its lease while they were in flight.
    pub redelivered: IntCounter,
    /// Writes accepted, by how (`async`, `sync`, `memory` for the fallback).
    pub accepted: IntCounterVec,
    /// Async jobs ended, by state (`done`, `failed`).
    pub async_results: IntCounterVec,
    /// Partitions this replica owns now.
    pub owned: prometheus::IntGauge,
}

impl QueueMetrics {
    /// Makes the handles; [`QueueMetrics::register`] exports them.
    pub fn new() -> QueueMetrics {
        let opts = Opts::new;
        let metrics = QueueMetrics {
            depth: IntGaugeVec::new(
                opts("queue_depth", "Writes queued in the durable queue, by partition (exported by the partition's owner)."),
                &["partition"],
            )
            .expect("static"),
            oldest_age: GaugeVec::new(
                opts("queue_oldest_age_seconds", "Age of the oldest write queued in a partition, in seconds (exported by its owner; 0 when empty)."),
                &["partition"],
            )
            .expect("static"),
            lease_moves: IntCounter::with_opts(opts(
                "queue_lease_moves_total",
                "Partitions this replica took over or gave up.",
            ))
            .expect("static"),
            redelivered: IntCounter::with_opts(opts(
                "queue_redelivered_total",
                "Writes sent again because the owner that had them in flight died or lost its lease.",
            ))
            .expect("static"),
            accepted: IntCounterVec::new(
                opts("queue_accepted_total", "Group writes accepted in durable mode, by how: async, sync, or memory (Redis away, queue.fallback = \"memory\")."),
                &["mode"],
            )
            .expect("static"),
            async_results: IntCounterVec::new(
                opts("queue_async_results_total", "Async jobs ended, by state (done, failed)."),
                &["state"],
            )
            .expect("static"),
            owned: prometheus::IntGauge::new(
                "queue_partitions_owned",
                "Partitions of the durable queue this replica owns now.",
            )
            .expect("static"),
        };
        for mode in ["async", "sync", "memory"] {
            metrics.accepted.with_label_values(&[mode]);
        }
        for state in ["done", "failed"] {
            metrics.async_results.with_label_values(&[state]);
        }
        metrics
    }

    /// Exports the queue's metrics in `registry`; again does nothing.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(self.depth.clone()),
            Box::new(self.oldest_age.clone()),
            Box::new(self.lease_moves.clone()),
            Box::new(self.redelivered.clone()),
            Box::new(self.accepted.clone()),
            Box::new(self.async_results.clone()),
            Box::new(self.owned.clone()),
        ];
        super::register_once(registry, collectors);
    }
}

impl Default for QueueMetrics {
    fn default() -> Self {
        QueueMetrics::new()
    }
}
