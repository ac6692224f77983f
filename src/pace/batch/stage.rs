//! The pacer's side of coalescing: a mergeable write joins its group lane's open batch, or opens
//! one that takes the write's place in the group's line; any other write admitted to the group
//! closes it (see `Lanes::admit`); at the batch's slot the members still in it are handed over,
//! with the permit, for the one upstream call the gateway makes for them all.

use std::sync::Arc;

use super::{Batch, Join, Member, Seat, Write};
use crate::error::Error;
use crate::pace::bound::Deadline;
use crate::pace::lanes::Lanes;
use crate::pace::{Admission, Pacer, Permit};

/// Where a mergeable write went.
#[derive(Debug)]
pub(crate) enum Merged {
    /// Into its group's open batch: its answer comes on the seat.
    Joined(Seat),
    /// Into a new batch that holds the write's place in line: the caller waits on the seat, and
    /// the batch must be driven to its slot ([`Pacer::batch_turn`]) in a task of its own, so
    /// that the first caller hanging up does not cancel the others' call.
    Opened {
        /// The opener's side of the batch.
        seat: Seat,
        /// The batch.
        batch: Arc<Batch>,
        /// The batch's place in line.
        admission: Admission,
    },
}

/// A batch at its slot: the members still in it, in accept order, and the permit for the call
/// that carries them (or why there is none).
#[derive(Debug)]
pub(crate) struct Taken {
    /// The members to answer.
    pub(crate) members: Vec<Member>,
    /// The slot to send at.
    pub(crate) permit: Result<Permit, Error>,
}

impl Pacer {
    /// A mergeable modify while coalescing is on: joins its group's open batch (at most `cap`
    /// members), or opens a new batch, admitted as any write would be (and refused at once as any
    /// write would be). Under the lanes' lock, so that joining, opening and closing follow accept
    /// order. Every write is counted admitted once, here or in the admission.
    pub(crate) fn merge(&self, write: Write, cap: usize) -> Result<Merged, Error> {
        let api = write.api.clone();
        self.follow();
        let mut lanes = self.lanes();
        let write = match lanes.open_batch(&write.group) {
            Some(batch) => match batch.join(write, cap) {
                Join::Joined(seat) => {
                    drop(lanes);
                    self.count_admitted(&api);
                    return Ok(Merged::Joined(seat));
                }
                Join::TooLate(retry_after) => {
                    return Err(Error::GroupBusy {
                        retry_after,
                        full: false,
                    });
                }
                Join::NoRoom(write) => write,
            },
            None => write,
        };
        let group = write.group.clone();
        let admission = self.admit_in(&mut lanes, (&api, 1), Some(&group), write.deadline)?;
        let (batch, seat) = Batch::open(write, admission.estimate());
        lanes.set_open_batch(&group, batch.clone());
        Ok(Merged::Opened {
            seat,
            batch,
            admission,
        })
    }

    /// Drives an opened batch to its slot: waits in line with no deadline of its own (its
    /// members keep theirs, and leave at them), leaves line when its last member has gone
    /// (`None`: nothing is sent), else takes the members still in it.
    pub(crate) async fn batch_turn(
        &self,
        batch: &Arc<Batch>,
        admission: Admission,
    ) -> Option<Taken> {
        let ready = self.wait_for(admission, Deadline::Members);
        tokio::pin!(ready);
        let permit = loop {
            tokio::select! {
                permit = &mut ready => break permit,
                () = batch.changed.notified() => {
                    let mut lanes = self.lanes();
                    if batch.abandon_if_empty() {
                        lanes.forget_batch(batch);
                        // The lock first: dropping `ready` takes the batch out of line, which
                        // takes the lock again.
                        drop(lanes);
                        return None;
                    }
                }
            }
        };
        let members = {
            let mut lanes = self.lanes();
            lanes.forget_batch(batch);
            batch.take()
        };
        if members.is_empty() {
            return None;
        }
        Some(Taken { members, permit })
    }
}

/// A group lane's open batch: the newest write in the lane while it takes more.
impl Lanes {
    /// The group's open batch, if any.
    pub(crate) fn open_batch(&self, group: &Arc<str>) -> Option<Arc<Batch>> {
        self.groups.get(group).and_then(|lane| lane.open.clone())
    }

    /// Makes `batch` its group's open batch (its first write was just admitted to the lane).
    pub(crate) fn set_open_batch(&mut self, group: &Arc<str>, batch: Arc<Batch>) {
        if let Some(lane) = self.groups.get_mut(group) {
            lane.open = Some(batch);
        }
    }

    /// Stops offering `batch` to new writes, if it is still its group's open batch.
    pub(crate) fn forget_batch(&mut self, batch: &Arc<Batch>) {
        if let Some(lane) = self.groups.get_mut(&batch.group)
            && lane
                .open
                .as_ref()
                .is_some_and(|open| Arc::ptr_eq(open, batch))
        {
            lane.open = None;
        }
    }

    /// Closes every open batch (a reload): switching coalescing off and on again can then
    /// never let a write join a batch ahead of writes accepted while it was off.
    pub(crate) fn close_batches(&mut self) {
        for lane in self.groups.values_mut() {
            if let Some(batch) = lane.open.take() {
                batch.close();
            }
        }
    }
}
