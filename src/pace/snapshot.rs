//! A read-only look at the lanes for `GET /queues`: each API lane's configured and current
//! rate, slowdown, queued units and calls in flight, and the groups with the deepest lines.
//! Taken under the pacer's lock like any admission; nothing is changed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::Pacer;
use super::lane::AppLane;

/// One API lane (or the app's total, `limits.app_total_per_second`).
#[derive(Debug, Clone, Serialize)]
pub struct LaneView {
    /// `service/command`, or `*` for the total over every API.
    pub api: String,
    /// Sends (units: recipients for a recipient-counted API) a second this replica keeps to
    /// with no slowdown: its limit, or its share of it while a shared budget is away.
    pub configured_per_second: f64,
    /// The full limit a shared (Redis) budget spaces by, in the same units.
    pub full_per_second: f64,
    /// The rate now: below the configured one while slowed after Tencent said "too fast".
    pub current_per_second: f64,
    /// Whether the lane is slowed or held under a ceiling after a throttling answer.
    pub slowed: bool,
    /// Units of admitted requests that have no send slot yet.
    pub queued: usize,
    /// Units sent and not yet answered.
    pub in_flight: usize,
}

/// One group's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    /// The GroupId (shown to operators here, never a metrics label).
    pub group: String,
    /// Writes in its line: the one holding the lane (waiting for its slot or its answer) and
    /// those waiting behind it.
    pub depth: usize,
    /// How long the oldest of them has been in line, in milliseconds.
    pub oldest_wait_ms: u64,
}

/// The pacer's state, as `GET /queues` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PacerView {
    /// Admitted requests without a send slot, over every lane.
    pub queued: usize,
    /// Group writes waiting behind another write of their group.
    pub group_waiting: usize,
    /// Groups with pacing state in memory.
    pub active_groups: usize,
    /// Whether a shared (Redis) budget paces this replica now.
    pub shared: bool,
    /// Every API lane, by name, then the total's when there is one.
    pub lanes: Vec<LaneView>,
    /// The deepest group lines, deepest first (then the oldest wait); at most the `top` asked.
    pub deepest_groups: Vec<GroupView>,
}

fn lane_view(api: &str, lane: &AppLane) -> LaneView {
    let per_second = |interval: Duration| 1.0 / interval.as_secs_f64().max(f64::MIN_POSITIVE);
    LaneView {
        api: api.to_string(),
        configured_per_second: per_second(lane.paces.local.interval),
        full_per_second: per_second(lane.paces.full.interval),
        current_per_second: lane.rate.per_second(),
        slowed: lane.rate.is_slowed(),
        queued: lane.pending,
        in_flight: lane.flying.len(),
    }
}

impl Pacer {
    /// The lanes now, with the `top` deepest groups. Costs one pass over the groups in memory
    /// under the pacer's lock (they are bounded by queued work: idle groups are forgotten).
    pub fn view(&self, top: usize) -> PacerView {
        let now = Instant::now();
        let lanes = self.lanes();
        let mut apps: Vec<LaneView> = lanes
            .apps
            .iter()
            .map(|(api, lane)| lane_view(api, lane))
            .collect();
        apps.sort_by(|a, b| a.api.cmp(&b.api));
        apps.extend(lanes.total.as_ref().map(|total| lane_view("*", total)));
        // A min-heap of the `top` deepest so far: one pass, `top` entries kept.
        let mut deepest = BinaryHeap::with_capacity(top + 1);
        for (group, lane) in &lanes.groups {
            let depth = lane.waiters.len() + usize::from(lane.busy);
            if depth == 0 || top == 0 {
                continue;
            }
            let waited = now.saturating_duration_since(lane.held_since);
            deepest.push(Reverse((depth, waited, group.clone())));
            if deepest.len() > top {
                deepest.pop();
            }
        }
        let view = PacerView {
            queued: lanes.queued,
            group_waiting: lanes.group_waiting,
            active_groups: lanes.groups.len(),
            shared: lanes.seen.up(),
            lanes: apps,
            deepest_groups: Vec::new(),
        };
        drop(lanes);
        let mut groups: Vec<_> = deepest.into_iter().map(|Reverse(g)| g).collect();
        groups.sort_by(|a, b| b.cmp(a));
        let deepest_groups = groups
            .into_iter()
            .map(|(depth, waited, group)| GroupView {
                group: group.to_string(),
                depth,
                oldest_wait_ms: waited.as_millis() as u64,
            })
            .collect();
        PacerView {
            deepest_groups,
            ..view
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test(start_paused = true)]
    async fn shows_each_lane_and_the_deepest_groups_with_their_oldest_wait() {
        let toml = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";
        let limits = crate::config::Config::from_toml(toml)
            .expect("config")
            .limits;
        let modify: Arc<str> = "group_open_http_svc/modify_group_attr".into();
        let get: Arc<str> = "group_open_attr_http_svc/get_group_attr".into();
        let pacer = Pacer::new(&limits, 1, &[modify.clone(), get.clone()], Metrics::new());
        let deadline = Instant::now() + Duration::from_secs(30);
        let (hot, warm): (Arc<str>, Arc<str>) = ("@TGS#hot".into(), "@TGS#warm".into());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(
                pacer
                    .admit(&modify, Some(&hot), deadline)
                    .expect("admitted"),
            );
        }
        tokio::time::advance(Duration::from_millis(700)).await;
        for _ in 0..2 {
            held.push(
                pacer
                    .admit(&modify, Some(&warm), deadline)
                    .expect("admitted"),
            );
        }
        tokio::time::advance(Duration::from_millis(300)).await;
        let view = pacer.view(1);
        assert_eq!(
            view.deepest_groups,
            [GroupView {
                group: "@TGS#hot".into(),
                depth: 4,
                oldest_wait_ms: 1000,
            }]
        );
        let both = pacer.view(10).deepest_groups;
        assert_eq!(both.len(), 2);
        assert_eq!((both[1].depth, both[1].oldest_wait_ms), (2, 300));
        assert_eq!(
            (view.queued, view.group_waiting, view.active_groups),
            (6, 4, 2)
        );
        let lane = |api: &str| {
            view.lanes
                .iter()
                .find(|l| l.api == api)
                .cloned()
                .expect("lane")
        };
        let writes = lane(&modify);
        assert_eq!(writes.queued, 6);
        assert!(
            (writes.configured_per_second - 1000.0 / 5.1).abs() < 0.01,
            "{writes:?}"
        );
        assert_eq!(writes.current_per_second, writes.configured_per_second);
        assert!(!writes.slowed);
        assert_eq!((lane(&get).queued, lane(&get).in_flight), (0, 0));
        drop(held);
        assert!(
            pacer.view(5).deepest_groups.is_empty(),
            "callers gone, lines empty"
        );
    }
}
