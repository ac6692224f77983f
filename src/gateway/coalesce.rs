//! Write coalescing for hot groups (`limits.coalesce`), the gateway's side: which writes merge,
//! and the one upstream call a batch makes. The batch itself is a stage of its group's lane
//! (`pace::batch`): the pacer decides in accept order whether a write joins the group's open
//! batch or opens one, and hands the batch's members over at its slot; the call goes through
//! the forwarder and its retries like any write.

use std::sync::Arc;

use tokio::time::Instant;

use super::Gateway;
use crate::pace::Permit;
use crate::pace::batch::{self, Batch, Merged, Shared, Taken, Write};
use crate::retry::send::Job;
use crate::tencent::catalogue::ApiKind;

/// Whether a group write of `kind` with `body` goes into its group's batch while coalescing is
/// on: a plain modify does; any other write is a barrier, sent alone behind the open batch.
pub(super) fn merges(kind: ApiKind, body: &[u8]) -> bool {
    kind == ApiKind::ModifyGroupAttr && batch::is_plain(body)
}

impl Gateway {
    /// A mergeable modify while coalescing is on: joins its group's open batch (at most `cap`
    /// members) or opens one, and returns the answer it shares with the rest of its batch.
    pub(super) async fn coalesce(self: Arc<Self>, write: Write, cap: usize) -> Shared {
        match self.pacer.merge(write, cap) {
            Ok(Merged::Joined(seat)) => seat.answer().await,
            Ok(Merged::Opened {
                seat,
                batch,
                admission,
            }) => {
                // Its own task: the first caller hanging up must not cancel the others' call.
                let gateway = self.clone();
                tokio::spawn(async move {
                    if let Some(taken) = gateway.pacer.batch_turn(&batch, admission).await {
                        gateway.send_batch(&batch, taken).await;
                    }
                });
                seat.answer().await
            }
            Err(err) => Shared::refused(err),
        }
    }

    /// Sends a batch taken at its slot: one modify with the union of its members' writes, and
    /// the same answer for each of them.
    async fn send_batch(&self, batch: &Batch, taken: Taken) {
        let Taken { members, permit } = taken;
        let shared = match permit {
            Ok(permit) => self.send_merged(batch, &members, permit).await,
            Err(err) => Shared::refused(err),
        };
        for member in members {
            member.answer(shared.clone());
        }
    }

    async fn send_merged(
        &self,
        batch: &Batch,
        members: &[batch::Member],
        permit: Permit,
    ) -> Shared {
        let size = members.len();
        let attrs = batch::union(members.iter().map(|m| m.attrs.as_slice()));
        let body = match batch::body(&batch.group, &attrs) {
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
            api = &*batch.api,
            size,
            keys = attrs.len(),
            request_ids = ids.join(","),
            "Sending a coalesced write."
        );
        let job = Job {
            api: batch.api.clone(),
            idempotent: true,
            group: Some(batch.group.clone()),
            body,
            deadline,
            request_id: ids.first().map_or_else(String::new, |id| (*id).to_string()),
            traced: members.iter().any(|m| m.traced),
        };
        let sent = self.forwarder.clone().send(job, permit).await;
        self.metrics.coalesce_batch_size.observe(size as f64);
        if size > 1 {
            self.metrics.coalesced_requests.inc_by(size as u64);
        }
        Shared {
            result: sent.result,
            size: Some(size),
            tally: sent.tally,
        }
    }
}
