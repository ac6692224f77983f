//! The numbers lanes are made with: each API's and each group's spacing, caps and queue bounds,
//! and the lane key of a group's messages.

use std::sync::Arc;
use std::time::Duration;

use crate::tencent::apis::GROUP_MESSAGES_PER_SECOND;

/// The settings lanes are made with.
#[derive(Debug, Clone, Copy)]
pub struct LaneSettings {
    /// Spacing of one API's sends (an API lane without a limit of its own: see `ApiPace`).
    pub app_interval: Duration,
    /// Spacing of one group's writes.
    pub group_interval: Duration,
    /// Most writes waiting in one group's queue.
    pub max_queue_per_group: usize,
    /// Most requests waiting over all lanes.
    pub max_queued: usize,
    /// Most actual sends of one API within `send_window` (0: no check).
    pub app_cap: usize,
    /// Most actual sends of one group within `send_window` (0: no check).
    pub group_cap: usize,
    /// Most calls of one API in flight (sent, not yet answered); 0: no bound beyond `app_cap`.
    pub max_in_flight: usize,
    /// One second plus the guard: the window the caps hold in.
    pub send_window: Duration,
    /// Spacing of one group's messages (`send_group_msg`, in its own lane: see [`message_lane`]).
    pub message_interval: Duration,
    /// Most messages of one group within `send_window`.
    pub message_cap: usize,
}

/// What starts the lane key of a group's messages: a GroupId is printable ASCII, so no GroupId
/// (whose attribute writes have the lane named by it alone) can start so.
const MESSAGE_LANE: &str = "\u{2709} ";

/// The lane a group's messages (`send_group_msg`) wait in: apart from its attribute writes,
/// which have a budget of their own (5 a second against 40).
pub fn message_lane(group_id: &str) -> Arc<str> {
    format!("{MESSAGE_LANE}{group_id}").into()
}

impl LaneSettings {
    /// The spacing and cap of the group lane `key`: a group's messages or its attribute writes.
    pub(crate) fn group(&self, key: &str) -> (Duration, usize) {
        match key.starts_with(MESSAGE_LANE) {
            true => (self.message_interval, self.message_cap),
            false => (self.group_interval, self.group_cap),
        }
    }

    /// The same settings with `per_second` messages a second per group.
    pub fn with_messages(mut self, per_second: u32, guard: Duration) -> LaneSettings {
        self.message_interval = super::interval(per_second, guard);
        self.message_cap = per_second as usize;
        self
    }
}

impl LaneSettings {
    /// Settings for `app_per_second` per API and `group_per_second` per group, spaced so that
    /// any second plus `guard` holds at most that many sends, and capped so at the send instant.
    pub fn new(
        app_per_second: u32,
        group_per_second: u32,
        guard: Duration,
        max_queue_per_group: usize,
        max_queued: usize,
    ) -> LaneSettings {
        LaneSettings {
            max_in_flight: app_per_second as usize,
            app_interval: super::interval(app_per_second, guard),
            group_interval: super::interval(group_per_second, guard),
            max_queue_per_group,
            max_queued,
            app_cap: app_per_second as usize,
            group_cap: group_per_second as usize,
            send_window: Duration::from_secs(1) + guard,
            message_interval: super::interval(GROUP_MESSAGES_PER_SECOND, guard),
            message_cap: GROUP_MESSAGES_PER_SECOND as usize,
        }
    }
}
