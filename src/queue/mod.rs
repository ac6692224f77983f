//! The durable write queue on Redis Streams (`queue.durable`): the Redis side. An accepted group
//! write is appended to its partition's stream within the cluster-wide bounds; one replica at a
//! time owns a partition under a lease and reads its stream as the `owners` consumer group
//! (what a dead owner had in flight is claimed with XAUTOCLAIM and sent again); a job's answer
//! is kept under its own key for `GET /timgate/jobs/<id>` and for the replica whose caller waits.
//! The sending itself is the gateway's (`gateway::owner`): the same pacer, retries and send path
//! as every write.

mod conn;
pub mod entry;
mod jobs;
pub mod keys;
mod scripts;
pub mod waiters;

use std::time::Duration;

use redis::Value;

use crate::config::{QueueConfig, RedisTarget};
use crate::error::Error;
use crate::metrics::QueueMetrics;
pub use entry::{Entry, Stored};
pub use keys::JobId;
use keys::{CONSUMERS, Keys, partition_of};

/// Entries read from a stream at once.
const READ_COUNT: usize = 64;

/// Where a job stands, as `GET /timgate/jobs/<id>` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// In its stream, not yet taken by its partition's owner.
    Queued,
    /// Being sent by its partition's owner: waiting for its slot, on the wire or being retried
    /// (or begun by an owner that died, and waiting to be sent again); no answer yet.
    Sending,
    /// Ended: its answer.
    Ended(Stored),
}

/// What a lease call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This replica held it and renewed it.
    Renewed,
    /// It was free and this replica took it.
    Taken,
    /// Another replica holds it.
    Other,
}

/// The durable queue of one gateway: its Redis, its keys and its bounds.
#[derive(Debug)]
pub struct Queue {
    conn: conn::QueueConn,
    keys: Keys,
    /// `[queue]`.
    pub config: QueueConfig,
    /// This replica's name as a lease holder and consumer.
    id: String,
    /// Queued writes of one group at most, across the cluster.
    max_per_group: usize,
    /// Queued writes of one partition at most: `limits.max_queued` over the partitions, so that
    /// the partitions together never hold more than it.
    max_per_partition: usize,
    scripts: Scripts,
    /// The callers of this replica waiting for their jobs' answers.
    pub waiters: waiters::Waiters,
    /// The queue's metrics.
    pub metrics: QueueMetrics,
    /// When a drain must have answered every caller waiting here (`None`: not draining).
    drain_by: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
}

#[derive(Debug)]
struct Scripts {
    append: redis::Script,
    complete: redis::Script,
    lease: redis::Script,
    release: redis::Script,
    state: redis::Script,
}

pub use crate::clock::unix_ms;

impl Queue {
    /// The queue of SDKAppID `sdkappid` on `target`, its keys under `prefix`.
    pub fn new(
        target: &RedisTarget,
        config: &QueueConfig,
        prefix: &str,
        sdkappid: u64,
        (max_per_group, max_queued): (usize, usize),
        metrics: QueueMetrics,
    ) -> Queue {
        let partitions = config.partitions.max(1) as usize;
        Queue {
            conn: conn::QueueConn::new(target),
            keys: Keys::new(prefix, sdkappid),
            config: config.clone(),
            id: format!("{:016x}", rand::random::<u64>()),
            max_per_group,
            max_per_partition: (max_queued / partitions).max(1),
            scripts: Scripts {
                append: redis::Script::new(scripts::APPEND),
                complete: redis::Script::new(scripts::COMPLETE),
                lease: redis::Script::new(scripts::LEASE),
                release: redis::Script::new(scripts::RELEASE),
                state: redis::Script::new(scripts::STATE),
            },
            waiters: waiters::Waiters::default(),
            metrics,
            drain_by: tokio::sync::watch::channel(None).0,
        }
    }

    /// Starts a drain: callers still waiting here at `by` are answered then (their writes are
    /// kept, and sent by whichever replica owns their partitions).
    pub fn drain(&self, by: tokio::time::Instant) {
        self.drain_by.send_replace(Some(by));
    }

    /// Resolves when a drain's deadline has come.
    pub async fn drained(&self) {
        let mut by = self.drain_by.subscribe();
        let Ok(by) = by.wait_for(Option::is_some).await.map(|by| *by) else {
            return std::future::pending().await;
        };
        if let Some(by) = by {
            tokio::time::sleep_until(by).await;
        }
    }

    /// The partition a group's writes go to.
    pub fn partition_of(&self, group: &str) -> u32 {
        partition_of(group, self.config.partitions)
    }

    /// Reads a job id of this queue.
    pub fn job_id(&self, text: &str) -> Option<JobId> {
        JobId::parse(text, self.config.partitions)
    }

    /// Appends `entry` (its `job.entry` is ignored) to its partition's stream within the bounds:
    /// `spacing` per write already queued for its group must fit in `wait` (zero spacing: no
    /// estimate, as with coalescing). Returns its job, and with `queue.wait_replicas` how many
    /// Redis replicas acknowledged it.
    pub async fn append(
        &self,
        entry: &Entry,
        spacing: Duration,
        wait: Duration,
    ) -> Result<(JobId, Option<i64>), Error> {
        let partition = self.partition_of(&entry.group);
        let mut call = self.scripts.append.prepare_invoke();
        call.key(self.keys.stream(partition))
            .key(self.keys.counts(partition))
            .arg(&entry.group)
            .arg(self.max_per_group)
            .arg(self.max_per_partition)
            .arg(spacing.as_micros() as u64)
            .arg(wait.as_micros() as u64);
        for (name, value) in entry.fields() {
            call.arg(name).arg(value);
        }
        let (code, value): (i64, Value) = self.conn.invoke(&call).await?;
        let busy = |micros: u64| Duration::from_micros(micros).max(Duration::from_secs(1));
        match code {
            0 => {}
            1 => {
                return Err(Error::GroupBusy {
                    retry_after: busy(0),
                    full: true,
                });
            }
            2 => {
                return Err(Error::AppBusy {
                    retry_after: busy(0),
                    full: true,
                });
            }
            _ => {
                let need = redis::from_redis_value::<u64>(value).unwrap_or(0);
                return Err(Error::GroupBusy {
                    retry_after: busy(need.saturating_sub(wait.as_micros() as u64)),
                    full: false,
                });
            }
        }
        let id = redis::from_redis_value::<String>(value)
            .map_err(|e| Error::QueueUnavailable(format!("an append's id: {e}")))?;
        let job = JobId {
            partition,
            entry: id,
        };
        let replicas = if self.config.wait_replicas > 0 {
            let mut wait = redis::cmd("WAIT");
            wait.arg(self.config.wait_replicas)
                .arg(self.config.wait_timeout.as_millis() as u64);
            Some(self.conn.query::<i64>(&wait).await?)
        } else {
            None
        };
        Ok((job, replicas))
    }

    /// Makes `partition`'s consumer group (and stream) unless it exists.
    pub async fn ensure_group(&self, partition: u32) -> Result<(), Error> {
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(self.keys.stream(partition))
            .arg(CONSUMERS)
            .arg("0")
            .arg("MKSTREAM");
        match self.conn.query::<Value>(&create).await {
            Err(Error::QueueUnavailable(e)) if e.contains("BUSYGROUP") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Takes over what earlier owners of `partition` read and did not end, from `start`:
    /// the entries, and where to go on from (`None`: all taken).
    pub async fn claim(
        &self,
        partition: u32,
        start: &str,
    ) -> Result<(Vec<Entry>, Option<String>), Error> {
        let mut claim = redis::cmd("XAUTOCLAIM");
        claim
            .arg(self.keys.stream(partition))
            .arg(CONSUMERS)
            .arg(&self.id)
            .arg(0)
            .arg(start)
            .arg("COUNT")
            .arg(READ_COUNT);
        let value: Value = self.conn.query(&claim).await?;
        let Value::Array(parts) = value else {
            return Ok((Vec::new(), None));
        };
        let next = parts
            .first()
            .and_then(entry::bulk)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .filter(|next| next != "0-0");
        let entries = match parts.get(1) {
            Some(Value::Array(entries)) => entries
                .iter()
                .filter_map(|e| Entry::from_value(partition, e))
                .collect(),
            _ => Vec::new(),
        };
        Ok((entries, next))
    }

    /// The next entries of `partition` no owner has read yet, at most `count`.
    pub async fn read(&self, partition: u32, count: usize) -> Result<Vec<Entry>, Error> {
        Ok(self.read_from(partition, count, ">").await?.0)
    }

    /// This replica's own pending entries of `partition` after `after` (`0` for all): what it
    /// read and has not ended, a lost reply's entries among them. Returns them and the last id
    /// listed (`None`: none left), deleted entries included so that paging goes on past them.
    pub async fn pending(
        &self,
        partition: u32,
        after: &str,
    ) -> Result<(Vec<Entry>, Option<String>), Error> {
        self.read_from(partition, READ_COUNT, after).await
    }

    /// How many connections the queue made so far (see [`conn::QueueConn::made`]).
    pub fn connections_made(&self) -> u64 {
        self.conn.made()
    }

    async fn read_from(
        &self,
        partition: u32,
        count: usize,
        from: &str,
    ) -> Result<(Vec<Entry>, Option<String>), Error> {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(CONSUMERS)
            .arg(&self.id)
            .arg("COUNT")
            .arg(count.clamp(1, READ_COUNT))
            .arg("STREAMS")
            .arg(self.keys.stream(partition))
            .arg(from);
        let value: Value = self.conn.query(&read).await?;
        // [[stream, [entry, ...]]], or nil when there is nothing new.
        let Value::Array(streams) = value else {
            return Ok((Vec::new(), None));
        };
        let mut entries = Vec::new();
        let mut last = None;
        for stream in &streams {
            if let Value::Array(parts) = stream
                && let Some(Value::Array(list)) = parts.get(1)
            {
                last = list.last().and_then(entry::id_of).or(last);
                entries.extend(list.iter().filter_map(|e| Entry::from_value(partition, e)));
            }
        }
        Ok((entries, last))
    }

    /// Ends `jobs` of `group` in `partition` with their answers: acknowledged, deleted, uncounted,
    /// the answers kept for `queue.result_ttl_secs`. Returns how many were still queued.
    pub async fn complete(
        &self,
        partition: u32,
        group: &str,
        jobs: &[(JobId, Stored)],
    ) -> Result<i64, Error> {
        let mut call = self.scripts.complete.prepare_invoke();
        call.key(self.keys.stream(partition))
            .key(self.keys.counts(partition))
            .key(self.keys.sent(partition));
        call.arg(CONSUMERS)
            .arg(self.config.result_ttl.as_secs().max(1))
            .arg(group);
        for (job, stored) in jobs {
            let answer = serde_json::to_string(stored)
                .map_err(|e| Error::Internal(format!("a job's answer: {e}")))?;
            call.key(self.keys.result(job)).arg(&job.entry).arg(answer);
        }
        self.conn.invoke(&call).await
    }

    /// Takes or renews `partition`'s lease for `queue.lease_ms`.
    pub async fn lease(&self, partition: u32) -> Result<Lease, Error> {
        let mut call = self.scripts.lease.prepare_invoke();
        call.key(self.keys.lease(partition))
            .arg(&self.id)
            .arg(self.config.lease.as_millis() as u64);
        Ok(match self.conn.invoke::<i64>(&call).await? {
            1 => Lease::Renewed,
            2 => Lease::Taken,
            _ => Lease::Other,
        })
    }

    /// Gives `partition`'s lease up, if this replica holds it (a drain hands it on at once).
    pub async fn release(&self, partition: u32) -> Result<(), Error> {
        let mut call = self.scripts.release.prepare_invoke();
        call.key(self.keys.lease(partition)).arg(&self.id);
        self.conn.invoke::<i64>(&call).await.map(|_| ())
    }
}
