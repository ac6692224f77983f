//! Write coalescing for hot groups (`limits.coalesce`): the `modify_group_attr` writes waiting in
//! one group's line merge into one upstream call, so a group can take more writes than Tencent's
//! 5 a second. This module owns each group's open batch: it decides, in accept order, whether a
//! write joins it, opens a new one, or (a set, delete or clear) closes it as a barrier; and it
//! drives each batch from its place in line to the one answer its members share.

mod batch;
mod merge;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::pace::{Admission, Pacer};
use crate::retry::send::{Forwarder, Job};
use crate::tencent::catalogue::ApiKind;
use batch::{Batch, Join, Member};
pub(crate) use batch::{Shared, Write};

/// How long a batch may wait for its slot as far as the pacer is concerned: it has no deadline
/// of its own. Each member keeps its own and leaves when it passes; the batch leaves line when
/// its last member has gone, and drain still cuts it short.
const BATCH_WAIT: Duration = Duration::from_secs(24 * 3600);

/// Each group's open batch, and what a batch needs to be sent.
#[derive(Debug)]
pub(crate) struct Coalescer {
    pacer: Pacer,
    forwarder: Arc<Forwarder>,
    metrics: Metrics,
    /// The batch a group's next modify may join: the newest write in the group's line, not yet
    /// sent. One lock, so that joining, opening and closing follow accept order; the pacer's lock
    /// is taken inside it (admission), never the other way round.
    open: Mutex<HashMap<Arc<str>, Arc<Batch>>>,
}

impl Coalescer {
    /// A coalescer sending through `forwarder` at the slots `pacer` gives.
    pub(crate) fn new(pacer: Pacer, forwarder: Arc<Forwarder>, metrics: Metrics) -> Coalescer {
        Coalescer {
            pacer,
            forwarder,
            metrics,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Batch>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A mergeable modify while coalescing is on: joins its group's open batch (at most `cap`
    /// members), or opens a new batch that takes the write's place in the group's line. Returns
    /// the answer the caller shares with the rest of its batch.
    pub(super) async fn modify(self: &Arc<Self>, write: Write, cap: usize) -> Shared {
        let api = write.api.clone();
        let seat = {
            let mut open = self.open();
            let joined = match open.get(&write.group).cloned() {
                Some(batch) => match batch.join(write, cap) {
                    Join::Joined(seat) => Ok(seat),
                    Join::TooLate(retry_after) => {
                        return Shared::refused(Error::GroupBusy {
                            retry_after,
                            full: false,
                        });
                    }
                    Join::NoRoom(write) => Err(write),
                },
                None => Err(write),
            };
            match joined {
                Ok(seat) => {
                    // Counted as the pacer counts the write that opened the batch: every
                    // admitted request is answered exactly once.
                    self.metrics.admitted.with_label_values(&[&*api]).inc();
                    seat
                }
                Err(write) => match self.begin(&mut open, write) {
                    Ok(seat) => seat,
                    Err(err) => return Shared::refused(err),
                },
            }
        };
        seat.answer().await
    }

    /// Opens a batch with `write`: admits it to the pacer (refused at once as any write would
    /// be), makes it the group's open batch (the previous one, if any, stops taking writes), and
    /// starts its driver.
    fn begin(
        self: &Arc<Self>,
        open: &mut HashMap<Arc<str>, Arc<Batch>>,
        write: Write,
    ) -> Result<batch::Seat, Error> {
        let admission = self
            .pacer
            .admit(&write.api, Some(&write.group), write.deadline)?;
        let (api, group) = (write.api.clone(), write.group.clone());
        let (batch, seat) = Batch::open(write, admission.estimate());
        if let Some(previous) = open.insert(group, batch.clone()) {
            previous.close();
        }
        // Its own task: the first caller hanging up must not cancel the others' call.
        tokio::spawn(self.clone().drive(batch, admission, api));
        Ok(seat)
    }

    /// A set, delete or clear (or a modify that cannot merge) while coalescing is on: closes the
    /// group's open batch, so nothing merges across it, and takes its place in line behind it.
    pub(super) fn barrier(
        &self,
        api: &Arc<str>,
        group: &Arc<str>,
        deadline: Instant,
    ) -> Result<Admission, Error> {
        let mut open = self.open();
        if let Some(batch) = open.remove(group) {
            batch.close();
        }
        self.pacer.admit(api, Some(group), deadline)
    }

    /// A reload: open batches take no more writes (they are still sent). Switching coalescing
    /// off and on again can then never let a write join a batch ahead of writes accepted while
    /// it was off.
    pub(crate) fn close_all(&self) {
        for (_, batch) in self.open().drain() {
            batch.close();
        }
    }

    /// Drives a batch: waits for its slot (leaving line if every member leaves first), takes
    /// the members still in it, sends their merged write, and answers them all alike.
    async fn drive(self: Arc<Self>, batch: Arc<Batch>, admission: Admission, api: Arc<str>) {
        let ready = self.pacer.wait(admission, Instant::now() + BATCH_WAIT);
        tokio::pin!(ready);
        let permit = loop {
            tokio::select! {
                permit = &mut ready => break permit,
                () = batch.changed.notified() => {
                    let mut open = self.open();
                    if batch.abandon_if_empty() {
                        forget(&mut open, &batch);
                        // Dropping `ready` takes the batch out of line: nothing is sent.
                        return;
                    }
                }
            }
        };
        let members = {
            let mut open = self.open();
            forget(&mut open, &batch);
            batch.take()
        };
        if members.is_empty() {
            return;
        }
        let shared = match permit {
            Ok(permit) => self.send(&batch, api, &members, permit).await,
            Err(err) => Shared::refused(err),
        };
        for member in members {
            member.answer(shared.clone());
        }
    }

    /// One upstream modify with the union of the members' writes, through the forwarder and its
    /// retries like any write.
    async fn send(
        &self,
        batch: &Batch,
        api: Arc<str>,
        members: &[Member],
        permit: crate::pace::Permit,
    ) -> Shared {
        let size = members.len();
        let attrs = merge::union(members.iter().map(|m| m.attrs.as_slice()));
        let body = match merge::body(&batch.group, &attrs) {
            Ok(body) => body,
            Err(err) => return Shared::refused(err),
        };
        // Retries serve whoever can still use an answer.
        let deadline = members
            .iter()
            .map(|m| m.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        let ids: Vec<&str> = members.iter().map(|m| m.request_id.as_str()).collect();
        tracing::debug!(
            api = &*api,
            size,
            keys = attrs.len(),
            request_ids = ids.join(","),
            "Sending a coalesced write."
        );
        let job = Job {
            api,
            idempotent: true,
            group: Some(batch.group.clone()),
            body,
            deadline,
            request_id: ids.first().map_or_else(String::new, |id| (*id).to_string()),
        };
        let result = self.forwarder.clone().send(job, permit).await;
        self.metrics.coalesce_batch_size.observe(size as f64);
        if size > 1 {
            self.metrics.coalesced_requests.inc_by(size as u64);
        }
        Shared {
            result,
            size: Some(size),
        }
    }
}

/// Whether a group write of `kind` with `body` goes into its group's batch while coalescing is
/// on: a plain modify does; any other write is a barrier, sent alone behind the open batch.
pub(super) fn merges(kind: ApiKind, body: &[u8]) -> bool {
    kind == ApiKind::ModifyGroupAttr && merge::is_plain(body)
}

/// Removes `batch` from the open map if it is still its group's open batch.
fn forget(open: &mut HashMap<Arc<str>, Arc<Batch>>, batch: &Arc<Batch>) {
    if open
        .get(&batch.group)
        .is_some_and(|current| Arc::ptr_eq(current, batch))
    {
        open.remove(&batch.group);
    }
}

#[cfg(test)]
mod tests;
