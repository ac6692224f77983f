//! Durable mode, one send of an owner: the next run of a group's entries (one write, or with
//! `limits.coalesce` consecutive plain modifies merged under the same rules as in memory), its
//! slot, its upstream call through the one send path, and its answer written back to Redis and
//! handed to a caller waiting here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Gateway;
use super::answer::{error_response, reply_response};
use super::coalesce::merges;
use super::owner::Tenure;
use crate::error::Error;
use crate::pace::batch;
use crate::queue::{Entry, Stored, unix_ms};
use crate::retry::send::Job;
use crate::tencent::catalogue::ApiKind;
use crate::tencent::codes;
use crate::upstream::Reply;
use crate::validate;

impl Gateway {
    /// Takes the next run of `queue`: its first entry, and with coalescing the plain modifies
    /// right behind it whose union stays within Tencent's rules and the batch cap.
    pub(super) fn next_run(&self, queue: &mut VecDeque<Entry>) -> Vec<Entry> {
        let Some(first) = queue.pop_front() else {
            return Vec::new();
        };
        let live = self.live();
        let kind = ApiKind::of(&first.api);
        if !live.coalesce || !merges(kind, &first.body) {
            return vec![first];
        }
        let mut run = vec![first];
        while run.len() < live.batch_cap
            && let Some(next) = queue.front()
            && next.api == run[0].api
            && merges(kind, &next.body)
        {
            let mut candidate: Vec<&Entry> = run.iter().collect();
            candidate.push(next);
            if merged_body(&candidate).is_err() {
                break;
            }
            if let Some(next) = queue.pop_front() {
                run.push(next);
            }
        }
        run
    }

    /// Sends `run` (entries of one group, in stream order) and ends its jobs.
    pub(super) async fn send_entries(&self, partition: u32, tenure: &Tenure, run: Vec<Entry>) {
        let Some(queue) = self.queue.clone() else {
            return;
        };
        let result = self.send_run(tenure, &run).await;
        let Some(result) = result else {
            // The tenure ended before the slot: the next owner sends it.
            return;
        };
        let ok = matches!(&result, Ok(reply) if reply.code == Some(0));
        let (response, body) = match &result {
            Ok(reply) => (reply_response(reply), reply.body.to_vec()),
            Err(e) => (
                error_response(e),
                codes::fail_body(e.error_code(), &e.to_string()),
            ),
        };
        let stored = Stored::of(&response, &body, ok);
        if run.len() > 1 || self.live().coalesce {
            self.metrics.coalesce_batch_size.observe(run.len() as f64);
            if run.len() > 1 {
                self.metrics.coalesced_requests.inc_by(run.len() as u64);
            }
        }
        let jobs: Vec<_> = run
            .iter()
            .map(|e| (e.job.clone(), stored.clone()))
            .collect();
        let group = run[0].group.as_str();
        // While the tenure lasts the answer is written back, however long Redis takes: an entry
        // left pending under a live owner would read `sending` and be counted queued for ever.
        // Once the tenure ends, the next owner sends it again.
        let mut attempt = 0u32;
        while let Err(e) = queue.complete(partition, group, &jobs).await {
            if !tenure.held() {
                tracing::warn!(partition, error = %e, "Durable queue: an answer could not be written back; the partition's next owner sends the write again.");
                break;
            }
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(4))).await;
        }
        for entry in &run {
            queue.waiters.finish(&entry.job, &stored);
            if entry.asynchronous {
                queue
                    .metrics
                    .async_results
                    .with_label_values(&[stored.state.as_str()])
                    .inc();
            }
            tracing::info!(
                request_id = entry.request_id,
                job = %entry.job,
                api = entry.api,
                state = stored.state,
                status = stored.status,
                merged = run.len(),
                "Durable write ended."
            );
        }
    }

    /// The run's upstream call, or the reason it was not made; `None` when the tenure ended
    /// before its slot.
    async fn send_run(&self, tenure: &Tenure, run: &[Entry]) -> Option<Result<Reply, Error>> {
        let first = &run[0];
        let now_ms = unix_ms();
        let deadline_ms = run.iter().map(|e| e.deadline_ms).max().unwrap_or(0);
        if deadline_ms <= now_ms {
            let waited = now_ms.saturating_sub(first.job.added_ms());
            return Some(Err(Error::JobExpired(Duration::from_millis(waited))));
        }
        let deadline = Instant::now() + Duration::from_millis(deadline_ms - now_ms);
        let live = self.live();
        let Some(route) = live.routes.get(&first.api).cloned() else {
            return Some(Err(Error::NotAllowed {
                api: first.api.clone(),
            }));
        };
        let body = if run.len() == 1 {
            first.body.clone()
        } else {
            match merged_body(&run.iter().collect::<Vec<_>>()) {
                Ok(body) => body,
                Err(e) => return Some(Err(e)),
            }
        };
        // Marked before its slot is asked for, never between the slot and the send (a Redis
        // round trip there would send late, into a later second's budget): a next owner then
        // knows this run may have reached Tencent. A mark Redis did not take costs only that
        // count; the run is sent all the same.
        let partition = first.job.partition;
        let jobs: Vec<_> = run.iter().map(|e| &e.job).collect();
        if let Some(queue) = &self.queue
            && let Err(e) = queue.mark_sent(partition, &jobs).await
        {
            tracing::debug!(partition, error = %e, "Durable queue: a send could not be marked.");
        }
        let group: Arc<str> = Arc::from(first.group.as_str());
        let admission = match self
            .pacer
            .admit_units((&route.name, 1), Some(&group), deadline)
        {
            Ok(admission) => admission,
            Err(e) => return Some(Err(e)),
        };
        let permit = match self.pacer.wait(admission, deadline).await {
            Ok(permit) => permit,
            Err(e) => return Some(Err(e)),
        };
        // The fence: past the lease, another owner may have taken the partition over.
        if !tenure.held() {
            return None;
        }
        let job = Job {
            api: route.name.clone(),
            idempotent: route.idempotent || run.len() > 1,
            group: Some(group),
            body,
            deadline,
            request_id: first.request_id.clone(),
            traced: false,
        };
        Some(self.forwarder.clone().send(job, permit).await.result)
    }
}

/// The one modify of `run`'s plain modifies merged, checked against Tencent's rules.
fn merged_body(run: &[&Entry]) -> Result<bytes::Bytes, Error> {
    let mut writes = Vec::with_capacity(run.len());
    for entry in run {
        writes.push(validate::validate(ApiKind::ModifyGroupAttr, &entry.body)?.attrs);
    }
    let attrs = batch::union(writes.iter().map(Vec::as_slice));
    let body = batch::body(&run[0].group, &attrs)?;
    validate::validate(ApiKind::ModifyGroupAttr, &body)?;
    Ok(body)
}
