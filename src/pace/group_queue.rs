//! A group's line: which admitted write holds the group lane, who waits behind it and in what
//! order the lane is handed over, and the forgetting of groups gone idle.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::lane::GroupLane;
use super::lanes::{Admitted, Lanes};
use super::rate::Rate;
use super::send_log::SendLog;

impl Lanes {
    /// Puts admitted request `id` in its group's lane: it holds the lane when the lane is free,
    /// else waits behind the lane's holder and waiters.
    pub(super) fn join_group(&mut self, key: &Arc<str>, id: u64, now: Instant) -> Admitted {
        let (interval, _) = self.settings.group(key);
        let lane = self.groups.entry(key.clone()).or_insert_with(|| GroupLane {
            tat: now,
            rate: Rate::new(interval, now),
            sent: SendLog::default(),
            busy: false,
            waiters: VecDeque::new(),
            held_since: now,
            open: None,
        });
        // Nothing merges across a write: a batch opened for it sets itself open afterwards.
        if let Some(batch) = lane.open.take() {
            batch.close();
        }
        if !lane.busy {
            lane.busy = true;
            lane.held_since = now;
            return Admitted::Go;
        }
        let (tx, rx) = oneshot::channel();
        lane.waiters.push_back((id, now, tx));
        self.group_waiting += 1;
        Admitted::Wait(rx)
    }

    /// When the group's next write may leave (now for a new or rested group).
    pub(crate) fn group_ready_at(&self, group: &Arc<str>, now: Instant) -> Instant {
        self.groups.get(group).map_or(now, |lane| lane.tat.max(now))
    }

    /// Removes a waiter from its group's queue. False if it was no longer there: it had already
    /// been handed the lane.
    pub(crate) fn leave_queue(&mut self, group: &Arc<str>, id: u64) -> bool {
        let Some(lane) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(at) = lane.waiters.iter().position(|(waiter, _, _)| *waiter == id) else {
            return false;
        };
        lane.waiters.remove(at);
        self.group_waiting -= 1;
        true
    }

    /// The write holding the group is done: hand the lane to the next live waiter, in order.
    pub(crate) fn release(&mut self, group: &Arc<str>) {
        let Some(lane) = self.groups.get_mut(group) else {
            return;
        };
        while let Some((_, since, handover)) = lane.waiters.pop_front() {
            self.group_waiting -= 1;
            // A waiter whose caller just hung up has dropped its receiver: skip it. Its own
            // cleanup will find itself gone from the queue and do nothing more.
            if handover.send(()).is_ok() {
                lane.held_since = since;
                return;
            }
        }
        lane.busy = false;
        let forgettable = lane
            .sent
            .quiet_at(self.settings.send_window)
            .map_or(lane.tat, |quiet| quiet.max(lane.tat));
        self.idle.push(forgettable, group.clone(), Instant::now());
    }

    /// Forgets groups whose last write's spacing has passed with nothing waiting: memory follows
    /// queued work, not the number of groups ever seen.
    pub(crate) fn forget_idle(&mut self, now: Instant) {
        while let Some(group) = self.idle.pop_due(now) {
            let Some(lane) = self.groups.get_mut(&group) else {
                continue;
            };
            if lane.is_idle(now, self.settings.send_window) {
                self.groups.remove(&group);
            } else if !lane.busy && lane.waiters.is_empty() {
                // Quiet but still slowed down: look again when the window has passed once more.
                // (A busy lane is looked at again when it is released.)
                self.idle.push(now + self.settings.send_window, group, now);
            }
        }
    }
}
