//! The callers of this replica waiting for their durable writes' answers: a local owner hands an
//! answer over at once; for a job another replica owns, one task polls the answers' keys (one
//! MGET per partition) while anyone waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::entry::Stored;
use super::keys::JobId;

/// How often the answers of jobs owned elsewhere are looked for while someone waits.
const POLL: Duration = Duration::from_millis(20);

/// The waiting callers, by job.
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<JobId, oneshot::Sender<Stored>>>,
    /// Wakes the poller when the first caller starts waiting.
    pub(super) woken: Notify,
}

/// A caller's wait for its job's answer; dropping it (the caller hung up) stops the wait, not
/// the write.
pub struct Wait {
    queue: Arc<super::Queue>,
    job: JobId,
    answer: oneshot::Receiver<Stored>,
}

impl Wait {
    /// The answer, once its job has one (`None`: the queue stopped).
    pub async fn answer(&mut self) -> Option<Stored> {
        (&mut self.answer).await.ok()
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.queue.waiters.lock().remove(&self.job);
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, oneshot::Sender<Stored>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts waiting for `job`'s answer.
    pub fn wait(queue: &Arc<super::Queue>, job: JobId) -> Wait {
        let (tell, answer) = oneshot::channel();
        let first = {
            let mut waiting = queue.waiters.lock();
            waiting.insert(job.clone(), tell);
            waiting.len() == 1
        };
        if first {
            queue.waiters.woken.notify_one();
        }
        Wait {
            queue: queue.clone(),
            job,
            answer,
        }
    }

    /// Hands `stored` to `job`'s caller, if it waits here.
    pub fn finish(&self, job: &JobId, stored: &Stored) {
        if let Some(tell) = self.lock().remove(job) {
            let _ = tell.send(stored.clone());
        }
    }

    /// The jobs waited for, by partition.
    pub fn waited(&self) -> HashMap<u32, Vec<JobId>> {
        let mut by_partition: HashMap<u32, Vec<JobId>> = HashMap::new();
        for job in self.lock().keys() {
            by_partition
                .entry(job.partition)
                .or_default()
                .push(job.clone());
        }
        by_partition
    }

    /// Whether anyone waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Looks for the answers of the jobs waited for here, every [`POLL`] while anyone waits; ends
/// when the queue is gone.
pub async fn poll(queue: Weak<super::Queue>) {
    loop {
        let Some(q) = queue.upgrade() else { return };
        if q.waiters.is_empty() {
            let woken = q.waiters.woken.notified();
            // Checked again once the wake-up is armed: a caller may have come in between.
            if q.waiters.is_empty() {
                let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
                continue;
            }
        }
        for jobs in q.waiters.waited().into_values() {
            for chunk in jobs.chunks(100) {
                let Ok(results) = q.results(chunk).await else {
                    continue;
                };
                for (job, stored) in chunk.iter().zip(results) {
                    if let Some(stored) = stored {
                        q.waiters.finish(job, &stored);
                    }
                }
            }
        }
        drop(q);
        tokio::time::sleep(POLL).await;
    }
}
