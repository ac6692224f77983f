//! When each idle group may be forgotten. Nearly every group goes idle about one send window after
//! its last write, so the times arrive almost in order: those go to a FIFO (O(1) each way), a
//! time a little earlier than the last one queued being moved up to it (a group forgotten a few
//! milliseconds late costs nothing). Only times far ahead (a slowed-down group) go to a heap, so
//! that they do not hold the FIFO back. A single heap cost a tenth of the gateway's CPU at 18,000
//! writes per second over 10,000 groups.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use std::time::Duration;

use tokio::time::Instant;

/// Times further ahead than this go to the heap (a send window is about one second).
const HORIZON: Duration = Duration::from_secs(2);

/// Groups by the instant from which they may be forgotten, earliest first.
#[derive(Debug, Default)]
pub(super) struct IdleQueue {
    in_order: VecDeque<(Instant, Arc<str>)>,
    out_of_order: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
}

impl IdleQueue {
    /// Adds `group`, forgettable from `at` (or a little later), as of `now`.
    pub(super) fn push(&mut self, at: Instant, group: Arc<str>, now: Instant) {
        if at > now + HORIZON {
            self.out_of_order.push(Reverse((at, group)));
            return;
        }
        let at = self.in_order.back().map_or(at, |(last, _)| at.max(*last));
        self.in_order.push_back((at, group));
    }

    /// Takes the earliest group whose instant is at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Arc<str>> {
        let fifo = self.in_order.front().map(|(at, _)| *at);
        let heap = self.out_of_order.peek().map(|Reverse((at, _))| *at);
        match (fifo, heap) {
            (Some(f), h) if f <= now && h.is_none_or(|h| f <= h) => {
                self.in_order.pop_front().map(|(_, group)| group)
            }
            (_, Some(h)) if h <= now => self.out_of_order.pop().map(|Reverse((_, group))| group),
            _ => None,
        }
    }

    /// Entries held (a group may appear more than once).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    /// True when nothing is held.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_groups_once_due_never_before() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut queue = IdleQueue::default();
        // "c" and "e" come a little early and wait for those before them; "far" is slowed down,
        // seconds ahead, and must not hold back the ones after it.
        for (ms, name) in [
            (10, "a"),
            (20, "b"),
            (5, "c"),
            (9_000, "far"),
            (30, "d"),
            (25, "e"),
        ] {
            queue.push(at(ms), name.into(), t0);
        }
        assert_eq!(queue.len(), 6);
        assert_eq!(queue.pop_due(at(9)), None);
        let mut due = Vec::new();
        while let Some(group) = queue.pop_due(at(20)) {
            due.push(group.to_string());
        }
        assert_eq!(due, ["a", "b", "c"]);
        let mut due = Vec::new();
        while let Some(group) = queue.pop_due(at(8_999)) {
            due.push(group.to_string());
        }
        assert_eq!(due, ["d", "e"]);
        assert_eq!(queue.pop_due(at(9_000)).as_deref(), Some("far"));
        assert!(queue.is_empty());
    }
}
