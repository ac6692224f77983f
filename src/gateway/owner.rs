//! Durable mode, the owner's side: this replica takes the leases of free partitions and renews
//! its own; for each partition it holds it first sends again what earlier owners had read and
//! not ended, then reads the stream in order. Each group's writes go one at a time (a merged run
//! of plain modifies counts as one, with `limits.coalesce`) through the same pacer, retries and
//! send path as every write; the answer is written back before the next write of the group.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Gateway;
use crate::queue::{Entry, Lease, Queue};

/// Entries a partition's owner holds in memory at most (read from the stream, not yet ended).
const HELD_AT_MOST: usize = 256;
/// How often an owner with nothing to send looks at its stream (an append on this replica wakes
/// it at once).
const IDLE_POLL: Duration = Duration::from_millis(50);
/// How long a Redis failure rests a partition's loop.
const REST: Duration = Duration::from_millis(100);

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One holding of a partition's lease, from its take to its loss.
#[derive(Debug)]
pub(super) struct Tenure {
    /// Until when the lease is surely this replica's: the start of its last renewal plus the
    /// lease (Redis counts from later).
    until: Mutex<Instant>,
    lost: AtomicBool,
    /// Wakes the partition's loop: an append here, or the loss.
    pub(super) wake: Notify,
}

impl Tenure {
    fn new(until: Instant) -> Arc<Tenure> {
        Arc::new(Tenure {
            until: Mutex::new(until),
            lost: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Whether a write may still be sent under it.
    pub(super) fn held(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && Instant::now() < *lock(&self.until)
    }

    fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }
}

/// The partitions this replica holds, by number.
#[derive(Debug, Default)]
pub(super) struct Owners {
    held: Mutex<HashMap<u32, Arc<Tenure>>>,
}

impl Owners {
    /// Wakes `partition`'s loop if this replica owns it: a write was just appended to it.
    pub(super) fn wake(&self, partition: u32) {
        if let Some(tenure) = lock(&self.held).get(&partition) {
            tenure.wake.notify_one();
        }
    }

    /// Ends every holding (a drain): nothing more is sent under them.
    fn lose_all(&self) -> Vec<u32> {
        let mut held = lock(&self.held);
        held.values().for_each(|t| t.lose());
        held.drain().map(|(p, _)| p).collect()
    }
}

/// What a partition's owner holds in memory: each group's entries in stream order.
struct Work {
    partition: u32,
    tenure: Arc<Tenure>,
    groups: Mutex<HashMap<String, VecDeque<Entry>>>,
    held: AtomicUsize,
    /// The entry ids dispatched and not yet ended: a second listing of the same pending entry
    /// (a claim, then a look at what is pending after a reconnect) sends it once.
    known: Mutex<HashSet<String>>,
}

impl Gateway {
    /// Starts durable mode's tasks: the leases and the answers' poller. Does nothing without
    /// `queue.durable`.
    pub fn start_queue(self: &Arc<Self>) {
        let Some(queue) = &self.queue else { return };
        tokio::spawn(crate::queue::waiters::poll(Arc::downgrade(queue)));
        tokio::spawn(leases(Arc::downgrade(self)));
    }
}

/// Takes and renews leases every third of `queue.lease_ms` until the gateway drains or is gone.
async fn leases(gateway: Weak<Gateway>) {
    loop {
        let Some(gw) = gateway.upgrade() else { return };
        let Some(queue) = gw.queue.clone() else {
            return;
        };
        let lease = queue.config.lease;
        if gw.draining.load(Ordering::SeqCst) {
            // Handed on at once: another replica need not wait for the leases to lapse.
            for partition in gw.owners.lose_all() {
                queue.metrics.lease_moves.inc();
                queue
                    .metrics
                    .depth
                    .remove_label_values(&[&partition.to_string()])
                    .ok();
                let _ = queue.release(partition).await;
            }
            queue.metrics.owned.set(0);
            return;
        }
        for partition in 0..queue.config.partitions {
            let started = Instant::now();
            let answer = queue.lease(partition).await;
            let mut held = lock(&gw.owners.held);
            // A holding that lapsed (Redis away longer than the lease) has stopped sending.
            if held.get(&partition).is_some_and(|t| !t.held()) {
                if let Some(t) = held.remove(&partition) {
                    t.lose();
                }
                queue.metrics.lease_moves.inc();
            }
            match answer {
                Ok(Lease::Renewed) if held.contains_key(&partition) => {
                    if let Some(t) = held.get(&partition) {
                        *lock(&t.until) = started + lease;
                    }
                }
                Ok(Lease::Renewed | Lease::Taken) => {
                    let tenure = Tenure::new(started + lease);
                    // Taken while held: Redis lost the lease (a restart without it); the old
                    // holding stops, and the new one claims what it had.
                    if let Some(old) = held.insert(partition, tenure.clone()) {
                        old.lose();
                    }
                    queue.metrics.lease_moves.inc();
                    tokio::spawn(own(gateway.clone(), partition, tenure));
                }
                Ok(Lease::Other) => {
                    if let Some(t) = held.remove(&partition) {
                        t.lose();
                        queue.metrics.lease_moves.inc();
                    }
                }
                Err(_) => {}
            }
        }
        queue.metrics.owned.set(lock(&gw.owners.held).len() as i64);
        drop(gw);
        tokio::time::sleep(lease / 3).await;
    }
}

/// Owns `partition` while `tenure` lasts: sends again what earlier owners left, then reads on.
async fn own(gateway: Weak<Gateway>, partition: u32, tenure: Arc<Tenure>) {
    let work = Arc::new(Work {
        partition,
        tenure: tenure.clone(),
        groups: Mutex::new(HashMap::new()),
        held: AtomicUsize::new(0),
        known: Mutex::new(HashSet::new()),
    });
    let queue = match gateway.upgrade().and_then(|gw| gw.queue.clone()) {
        Some(queue) => queue,
        None => return,
    };
    tracing::info!(partition, "Durable queue: partition taken.");
    while tenure.held() && queue.ensure_group(partition).await.is_err() {
        tokio::time::sleep(REST).await;
    }
    // Connections made before the claim need no second look: the claim lists everything pending.
    let mut looked = queue.connections_made();
    let mut start = Some("0-0".to_string());
    while let Some(from) = start.take() {
        if !tenure.held() {
            break;
        }
        match queue.claim(partition, &from).await {
            Ok((entries, next)) => {
                // Of what the previous owner had read, only what it had sent may have reached
                // Tencent; unknown (Redis away again) counts as sent.
                let jobs: Vec<_> = entries.iter().map(|e| &e.job).collect();
                let sent = match queue.were_sent(partition, &jobs).await {
                    Ok(sent) => sent.into_iter().filter(|s| *s).count(),
                    Err(_) => entries.len(),
                };
                queue.metrics.redelivered.inc_by(sent as u64);
                entries
                    .into_iter()
                    .for_each(|e| dispatch(&gateway, &work, e));
                start = next;
            }
            Err(_) => {
                start = Some(from);
                tokio::time::sleep(REST).await;
            }
        }
    }
    let mut shown = Instant::now() - Duration::from_secs(1);
    while tenure.held() {
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            show_depth(&queue, partition).await;
        }
        // A new connection since the last look: a read Redis ran may have lost its reply, its
        // entries pending here unseen. They are found before anything newer is read, so that
        // they keep their place in their groups' order.
        let made = queue.connections_made();
        if made != looked {
            if look_again(&gateway, &work, &queue).await {
                looked = made;
            } else {
                tokio::time::sleep(REST).await;
            }
            continue;
        }
        let room = HELD_AT_MOST.saturating_sub(work.held.load(Ordering::SeqCst));
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        match queue.read(partition, room).await {
            Ok(entries) if entries.is_empty() => {
                let _ = tokio::time::timeout(IDLE_POLL, tenure.wake.notified()).await;
            }
            Ok(entries) => entries
                .into_iter()
                .for_each(|e| dispatch(&gateway, &work, e)),
            Err(_) => tokio::time::sleep(REST).await,
        }
    }
    let label = partition.to_string();
    queue.metrics.depth.remove_label_values(&[&label]).ok();
    queue.metrics.oldest_age.remove_label_values(&[&label]).ok();
    tracing::info!(partition, "Durable queue: partition given up.");
}

/// Dispatches this replica's pending entries of the partition it has not seen (a lost reply's);
/// `false` when Redis failed on the way (it is tried again).
async fn look_again(gateway: &Weak<Gateway>, work: &Arc<Work>, queue: &Queue) -> bool {
    let mut after = "0".to_string();
    loop {
        match queue.pending(work.partition, &after).await {
            Ok((entries, Some(last))) => {
                entries.into_iter().for_each(|e| dispatch(gateway, work, e));
                after = last;
            }
            Ok((_, None)) => return true,
            Err(_) => return false,
        }
    }
}

/// Exports `partition`'s depth and oldest age.
async fn show_depth(queue: &Queue, partition: u32) {
    if let Ok((depth, age)) = queue.depth(partition).await {
        let label = partition.to_string();
        queue.metrics.depth.with_label_values(&[&label]).set(depth);
        queue
            .metrics
            .oldest_age
            .with_label_values(&[&label])
            .set(age.as_secs_f64());
    }
}

/// Puts `entry` behind its group's earlier ones; starts the group's sender if none runs.
fn dispatch(gateway: &Weak<Gateway>, work: &Arc<Work>, entry: Entry) {
    if !lock(&work.known).insert(entry.job.entry.clone()) {
        return;
    }
    let group = entry.group.clone();
    let start = {
        let mut groups = lock(&work.groups);
        let start = !groups.contains_key(&group);
        groups.entry(group.clone()).or_default().push_back(entry);
        start
    };
    work.held.fetch_add(1, Ordering::SeqCst);
    if start {
        tokio::spawn(drive(gateway.clone(), work.clone(), group));
    }
}

/// Sends `group`'s entries one at a time (or one merged run at a time), until none is left or the
/// tenure ends (what is left stays pending in Redis for the next owner).
async fn drive(gateway: Weak<Gateway>, work: Arc<Work>, group: String) {
    loop {
        let Some(gw) = gateway.upgrade() else { return };
        let taken = {
            let mut groups = lock(&work.groups);
            let taken = match groups.get_mut(&group) {
                Some(queue) if work.tenure.held() => gw.next_run(queue),
                _ => Vec::new(),
            };
            if taken.is_empty() {
                if let Some(left) = groups.remove(&group) {
                    work.held.fetch_sub(left.len(), Ordering::SeqCst);
                }
                return;
            }
            taken
        };
        let count = taken.len();
        let ids: Vec<String> = taken.iter().map(|e| e.job.entry.clone()).collect();
        gw.send_entries(work.partition, &work.tenure, taken).await;
        // Ended (acknowledged in Redis) or left for the next owner: either way no longer held.
        let mut known = lock(&work.known);
        ids.iter().for_each(|id| {
            known.remove(id);
        });
        drop(known);
        work.held.fetch_sub(count, Ordering::SeqCst);
    }
}
