//! One API's handles of the per-request metrics, resolved once per API (at start and at each
//! reload) instead of by label values at every request: `with_label_values` hashes the labels
//! and takes a lock each time, about a thousand instructions per request for four metrics.

use std::sync::{Arc, OnceLock};

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// The outcomes a request is counted under in `timgate_requests_total`.
pub const OUTCOMES: [&str; 6] = ["ok", "fail", "invalid", "rejected", "error", "accepted"];

/// One API's handles. Each series is made at its first use, as `with_label_values` would make
/// it, so the exposition shows the same series as before.
#[derive(Debug)]
pub struct ApiMetrics {
    /// The API label: `service/command`, or `other` for requests that matched no route.
    pub name: Arc<str>,
    requests_vec: IntCounterVec,
    requests: [OnceLock<IntCounter>; OUTCOMES.len()],
    request_duration_vec: HistogramVec,
    request_duration: OnceLock<Histogram>,
    upstream_duration_vec: HistogramVec,
    upstream_duration: OnceLock<Histogram>,
    upstream_attempts_vec: IntCounterVec,
    upstream_attempts: OnceLock<IntCounter>,
}

impl ApiMetrics {
    /// The handles of `name`, from the registry's vectors.
    pub(super) fn new(metrics: &super::Metrics, name: Arc<str>) -> ApiMetrics {
        ApiMetrics {
            name,
            requests_vec: metrics.requests.clone(),
            requests: Default::default(),
            request_duration_vec: metrics.request_duration.clone(),
            request_duration: OnceLock::new(),
            upstream_duration_vec: metrics.upstream_duration.clone(),
            upstream_duration: OnceLock::new(),
            upstream_attempts_vec: metrics.upstream_attempts.clone(),
            upstream_attempts: OnceLock::new(),
        }
    }

    /// Counts one answer in `timgate_requests_total{api,outcome}`; an outcome not among
    /// [`OUTCOMES`] is counted by label values, as before.
    pub fn count_request(&self, outcome: &str) {
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(i) => self.requests[i]
                .get_or_init(|| self.requests_vec.with_label_values(&[&*self.name, outcome]))
                .inc(),
            None => self
                .requests_vec
                .with_label_values(&[&*self.name, outcome])
                .inc(),
        }
    }

    /// `timgate_request_duration_seconds{api}`.
    pub fn request_duration(&self) -> &Histogram {
        self.request_duration
            .get_or_init(|| self.request_duration_vec.with_label_values(&[&*self.name]))
    }

    /// `timgate_upstream_duration_seconds{api}`.
    pub fn upstream_duration(&self) -> &Histogram {
        self.upstream_duration
            .get_or_init(|| self.upstream_duration_vec.with_label_values(&[&*self.name]))
    }

    /// `timgate_upstream_attempts_total{api}`.
    pub fn upstream_attempts(&self) -> &IntCounter {
        self.upstream_attempts
            .get_or_init(|| self.upstream_attempts_vec.with_label_values(&[&*self.name]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn handles_count_the_same_series_as_label_values() {
        let metrics = Metrics::new();
        let api = metrics.api(Arc::from("svc/cmd"));
        api.count_request("ok");
        api.count_request("ok");
        api.count_request("unknown");
        api.upstream_attempts().inc();
        api.request_duration().observe(0.5);
        let ok = metrics.requests.with_label_values(&["svc/cmd", "ok"]).get();
        assert_eq!(ok, 2);
        let unknown = metrics.requests.with_label_values(&["svc/cmd", "unknown"]);
        assert_eq!(unknown.get(), 1);
        let attempts = metrics.upstream_attempts.with_label_values(&["svc/cmd"]);
        assert_eq!(attempts.get(), 1);
        let seconds = metrics.request_duration.with_label_values(&["svc/cmd"]);
        assert_eq!(seconds.get_sample_count(), 1);
        // A series not yet used is not exported.
        let text = String::from_utf8(metrics.render()).expect("text exposition");
        assert!(!text.contains("upstream_duration_seconds_count{api=\"svc/cmd\"}"));
        assert!(!text.contains("outcome=\"fail\""));
    }
}
