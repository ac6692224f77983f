//! Sending a paced request: one signed attempt at its slot, with the metrics of the attempt. Runs
//! in its own task, so a caller who hangs up after the slot was reserved wastes no slot and never
//! leaves its group held mid-answer.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::pace::Permit;
use crate::tencent::signer::Signer;
use crate::upstream::{Reply, Upstream};

/// What an attempt needs: the signer, the client and the metrics.
#[derive(Debug)]
pub struct Forwarder {
    signer: Arc<Signer>,
    upstream: Upstream,
    metrics: Metrics,
}

impl Forwarder {
    /// Bundles the collaborators of an attempt.
    pub fn new(signer: Arc<Signer>, upstream: Upstream, metrics: Metrics) -> Forwarder {
        Forwarder {
            signer,
            upstream,
            metrics,
        }
    }

    /// Sends `body` to `api` now (the permit's slot has come) and returns Tencent's answer. The
    /// permit, and with it the group's lane, is released when the answer is in.
    pub async fn send(
        self: Arc<Self>,
        api: Arc<str>,
        body: Bytes,
        permit: Permit,
    ) -> Result<Reply, Error> {
        let task = tokio::spawn(async move {
            let reply = self.attempt(&api, body).await;
            drop(permit);
            reply
        });
        task.await
            .map_err(|e| Error::Internal(format!("the send task failed: {e}")))?
    }

    /// One signed attempt, now.
    pub async fn attempt(&self, api: &str, body: Bytes) -> Result<Reply, Error> {
        let query = self.signer.query();
        let metrics = &self.metrics;
        let timer = metrics
            .upstream_duration
            .with_label_values(&[api])
            .start_timer();
        metrics.upstream_attempts.with_label_values(&[api]).inc();
        metrics.upstream_in_flight.inc();
        let result = self.upstream.send(api, &query, body).await;
        metrics.upstream_in_flight.dec();
        timer.observe_duration();
        metrics.usersig_expiry.set(self.signer.expires_at() as f64);
        result
    }
}
