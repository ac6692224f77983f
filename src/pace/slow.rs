//! Tencent said "too fast": the lane it names is slowed for a cool-down and recovers step by
//! step (see `rate.rs`). 10049 names a group's lane, 60007 and kin one API's, and 60011 the
//! SDKAppID's total, which every API of the app counts towards.

use std::sync::Arc;

use tokio::time::Instant;

use super::Pacer;

impl Pacer {
    /// Slows the group's lane (10049), or the API's (60007 and kin) when `group` is `None`.
    pub fn slow_down(&self, api: &Arc<str>, group: Option<&Arc<str>>) {
        let rate = self.lanes().slow_down(api, group, Instant::now());
        let Some(rate) = rate else { return };
        let lane = if group.is_some() { "group" } else { "app" };
        self.inner
            .metrics
            .all
            .throttles
            .with_label_values(&[lane])
            .inc();
        if group.is_none() {
            self.show_rate(api, rate);
        }
        tracing::warn!(
            api = &**api,
            lane,
            group = group.map(|g| &**g),
            rate_per_second = rate,
            "Tencent answered too fast: lane slowed."
        );
    }

    /// Slows every API's lane and the app's total lane if there is one (60011: the SDKAppID's
    /// request rate over its limit): slowing only the API that got the answer would leave the
    /// others filling the app's total.
    pub fn slow_down_app(&self, api: &Arc<str>) {
        let now = Instant::now();
        let rates: Vec<(Arc<str>, f64)> = {
            let mut lanes = self.lanes();
            lanes.slow_total(now);
            let apis: Vec<Arc<str>> = lanes.apps.keys().cloned().collect();
            apis.into_iter()
                .filter_map(|each| {
                    let rate = lanes.slow_down(&each, None, now)?;
                    Some((each, rate))
                })
                .collect()
        };
        for (each, rate) in &rates {
            self.show_rate(each, *rate);
        }
        self.inner
            .metrics
            .all
            .throttles
            .with_label_values(&["app"])
            .inc();
        tracing::warn!(
            api = &**api,
            lane = "sdkappid",
            apis = rates.len(),
            "Tencent answered the app's total too fast: every API's lane slowed."
        );
    }

    pub(super) fn show_rate(&self, api: &Arc<str>, rate: f64) {
        if let Some(gauge) = self.inner.metrics.lane_rate.get(api) {
            gauge.set(rate);
        }
    }
}
