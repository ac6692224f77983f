//! Coalescing as a stage of a group's lane (`limits.coalesce`): a batch is the `modify_group_attr`
//! writes of one group that share one place in the group's line and one upstream call. The lane
//! holds its open batch; its members join while it waits, each may leave (deadline, hang-up)
//! until the batch is taken at its slot, and every member left then gets the same answer.

mod merge;
mod stage;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::Error;
use crate::upstream::Reply;
use merge::{Attrs, Envelope};
pub(crate) use merge::{body, is_plain, union};
pub(crate) use stage::{Merged, Taken};

/// A write that asks to be merged.
#[derive(Debug)]
pub(crate) struct Write {
    /// `service/command` (modify_group_attr).
    pub(crate) api: Arc<str>,
    /// The group written.
    pub(crate) group: Arc<str>,
    /// The attributes it sets, in payload order.
    pub(crate) attrs: Attrs,
    /// The caller's deadline: it leaves the batch if the batch is not sent by then.
    pub(crate) deadline: Instant,
    /// The caller's request id, for log lines.
    pub(crate) request_id: String,
    /// Whether the caller's request is traced (the batch's attempts are kept if any is).
    pub(crate) traced: bool,
}

/// What every member of a batch is answered: the outcome of the one upstream call (after its
/// retries), how many requests shared it (`None` when no call was made for this member), and
/// the call's tally.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Tencent's answer, or the gateway's error.
    pub(crate) result: Result<Reply, Error>,
    /// The batch size, for `x-timgate-coalesced`.
    pub(crate) size: Option<usize>,
    /// What the call did (empty when none was made).
    pub(crate) tally: crate::retry::tally::Tally,
}

impl Shared {
    /// An answer for one member alone: no upstream call carried it.
    pub(crate) fn refused(err: Error) -> Shared {
        Shared {
            result: Err(err),
            size: None,
            tally: Default::default(),
        }
    }
}

/// A member in the batch, until the batch is taken.
#[derive(Debug)]
pub(crate) struct Member {
    id: u64,
    /// The attributes it sets.
    pub(crate) attrs: Attrs,
    /// Its deadline.
    pub(crate) deadline: Instant,
    /// Its request id.
    pub(crate) request_id: String,
    /// Whether its request is traced.
    pub(crate) traced: bool,
    answer: oneshot::Sender<Shared>,
}

impl Member {
    /// Gives the member its answer (a caller who hung up at the last moment is not missed).
    pub(crate) fn answer(self, shared: Shared) {
        let _ = self.answer.send(shared);
    }
}

#[derive(Debug)]
struct State {
    /// Later writes may still join (false after a barrier, at its slot, or when abandoned).
    joinable: bool,
    /// Taken at its slot (or abandoned): members can no longer leave.
    taken: bool,
    members: Vec<Member>,
    envelope: Envelope,
    next_id: u64,
}

/// Why a write did not join.
#[derive(Debug)]
pub(crate) enum Join {
    /// It is in: wait on the seat.
    Joined(Seat),
    /// Closed, full, or the merge would not pass validation: the write opens a new batch.
    NoRoom(Write),
    /// The batch is expected to leave after the write's deadline: refuse at once, as the pacer
    /// would refuse a write that cannot leave in time.
    TooLate(Duration),
}

/// One batch of one group.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The API all members call (modify_group_attr).
    pub(crate) api: Arc<str>,
    /// The group all members write.
    pub(crate) group: Arc<str>,
    /// When the pacer expected the batch to leave when it was admitted.
    estimate: Instant,
    state: Mutex<State>,
    /// Signalled when a member leaves, so the driver can leave line once nobody is left.
    pub(crate) changed: Notify,
}

impl Batch {
    /// A batch holding `first`, admitted to the pacer with `estimate`.
    pub(crate) fn open(first: Write, estimate: Instant) -> (Arc<Batch>, Seat) {
        let batch = Arc::new(Batch {
            api: first.api.clone(),
            group: first.group.clone(),
            estimate,
            state: Mutex::new(State {
                joinable: true,
                taken: false,
                members: Vec::new(),
                envelope: Envelope::default(),
                next_id: 0,
            }),
            changed: Notify::new(),
        });
        let seat = match batch.join(first, usize::MAX) {
            Join::Joined(seat) => seat,
            // The first write was validated alone and the estimate met its deadline: an empty
            // batch takes it. Should that ever change, the caller is answered, not left hanging.
            Join::NoRoom(_) | Join::TooLate(_) => Seat::refused(
                batch.clone(),
                Error::Internal("a new batch refused its first write".into()),
            ),
        };
        (batch, seat)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `write` if the batch is joinable, holds fewer than `cap` members, and the merge
    /// still passes validation (see [`Envelope`]).
    pub(crate) fn join(self: &Arc<Self>, write: Write, cap: usize) -> Join {
        let mut state = self.state();
        if !state.joinable || state.members.len() >= cap {
            return Join::NoRoom(write);
        }
        let Some(envelope) = state.envelope.with(&self.group, &write.attrs) else {
            return Join::NoRoom(write);
        };
        if write.deadline < self.estimate {
            let after = self.estimate.saturating_duration_since(Instant::now());
            return Join::TooLate(after.max(Duration::from_secs(1)));
        }
        state.envelope = envelope;
        state.next_id += 1;
        let id = state.next_id;
        let (tx, rx) = oneshot::channel();
        state.members.push(Member {
            id,
            attrs: write.attrs,
            deadline: write.deadline,
            request_id: write.request_id,
            traced: write.traced,
            answer: tx,
        });
        Join::Joined(Seat {
            batch: self.clone(),
            id,
            deadline: write.deadline,
            answer: Some(rx),
            early: None,
        })
    }

    /// A barrier (set, delete or clear) was accepted behind it: nothing joins any more.
    pub(crate) fn close(&self) {
        self.state().joinable = false;
    }

    /// Takes a member out if the batch has not been taken; false if it had (it is being sent).
    fn leave(&self, id: u64) -> bool {
        let mut state = self.state();
        if state.taken {
            return false;
        }
        let Some(at) = state.members.iter().position(|m| m.id == id) else {
            return false;
        };
        state.members.remove(at);
        self.changed.notify_one();
        true
    }

    /// At the slot: closes the batch and hands over the members still in it, in accept order.
    pub(crate) fn take(&self) -> Vec<Member> {
        let mut state = self.state();
        state.joinable = false;
        state.taken = true;
        std::mem::take(&mut state.members)
    }

    /// Closes the batch if nobody is left in it: true when the driver should leave line.
    pub(crate) fn abandon_if_empty(&self) -> bool {
        let mut state = self.state();
        if !state.members.is_empty() {
            return false;
        }
        state.joinable = false;
        state.taken = true;
        true
    }
}

/// A member's side: waits for the batch's answer or its own deadline, and leaves the batch if
/// it is dropped first (the caller hung up).
#[derive(Debug)]
pub(crate) struct Seat {
    batch: Arc<Batch>,
    id: u64,
    deadline: Instant,
    /// `None` once answered or gone: nothing to leave then.
    answer: Option<oneshot::Receiver<Shared>>,
    /// An answer known before waiting (a refusal).
    early: Option<Error>,
}

impl Seat {
    fn refused(batch: Arc<Batch>, err: Error) -> Seat {
        Seat {
            batch,
            id: 0,
            deadline: Instant::now(),
            answer: None,
            early: Some(err),
        }
    }

    /// The member's answer: the batch's, or a 429 if its deadline passes before the batch is
    /// sent (its attributes are then left out of the merged body).
    pub(crate) async fn answer(mut self) -> Shared {
        if let Some(err) = self.early.take() {
            return Shared::refused(err);
        }
        let lost = || Shared::refused(Error::Internal("the batch ended without an answer".into()));
        let deadline = self.deadline;
        // The receiver stays in the seat while it waits, so that a caller who hangs up (this
        // future dropped) still takes its write out of the batch.
        let first = match self.answer.as_mut() {
            Some(rx) => tokio::select! {
                biased;
                shared = rx => Some(shared),
                () = tokio::time::sleep_until(deadline) => None,
            },
            None => Some(Ok(lost())),
        };
        if let Some(shared) = first {
            self.answer = None;
            return shared.unwrap_or_else(|_| lost());
        }
        if self.batch.leave(self.id) {
            self.answer = None;
            // As the pacer answers a group write whose deadline passes while it waits.
            return Shared::refused(Error::GroupBusy {
                retry_after: Duration::from_secs(1),
                full: false,
            });
        }
        // Already taken for sending: like an unbatched request past its deadline at its slot,
        // it gets the answer of the call that carries it.
        let shared = match self.answer.as_mut() {
            Some(rx) => rx.await.unwrap_or_else(|_| lost()),
            None => lost(),
        };
        self.answer = None;
        shared
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        // Dropped while waiting: the caller hung up. Its attributes must not be sent.
        if self.answer.is_some() {
            self.batch.leave(self.id);
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stage_tests.rs"]
mod stage_tests;
