//! What the durable queue tells about its jobs and partitions: a job's state and answer, the
//! marks of the writes being sent (so that a next owner knows which may have reached Tencent),
//! and a partition's depth and oldest age.

use std::time::Duration;

use redis::Value;

use super::keys::TOTAL_FIELD;
use super::{Entry, JobId, JobState, Queue, Stored, unix_ms};
use crate::error::Error;

impl Queue {
    /// `partition`'s queued writes and the age of its oldest.
    pub async fn depth(&self, partition: u32) -> Result<(i64, Duration), Error> {
        let mut count = redis::cmd("HGET");
        count.arg(self.keys.counts(partition)).arg(TOTAL_FIELD);
        let queued: Option<i64> = self.conn.query(&count).await?;
        let mut first = redis::cmd("XRANGE");
        first
            .arg(self.keys.stream(partition))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        let first: Value = self.conn.query(&first).await?;
        let oldest = match &first {
            Value::Array(entries) => entries
                .first()
                .and_then(|e| Entry::from_value(partition, e))
                .map(|e| e.job.added_ms()),
            _ => None,
        };
        let age = oldest.map_or(Duration::ZERO, |at| {
            Duration::from_millis(unix_ms().saturating_sub(at))
        });
        Ok((queued.unwrap_or(0).max(0), age))
    }

    /// Where `job` stands; `None` when it is unknown or its answer has expired.
    pub async fn state(&self, job: &JobId) -> Result<Option<JobState>, Error> {
        let mut call = self.scripts.state.prepare_invoke();
        call.key(self.keys.result(job))
            .key(self.keys.sent(job.partition))
            .key(self.keys.stream(job.partition))
            .arg(&job.entry);
        let found: Vec<Value> = self.conn.invoke(&call).await?;
        let code = found
            .first()
            .and_then(|v| redis::from_redis_value::<i64>(v.clone()).ok());
        Ok(match code {
            Some(3) => {
                let text = found
                    .get(1)
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                    .unwrap_or_default();
                let stored = serde_json::from_str(&text)
                    .map_err(|e| Error::Internal(format!("a job's answer: {e}")))?;
                Some(JobState::Ended(stored))
            }
            Some(2) => Some(JobState::Sending),
            Some(1) => Some(JobState::Queued),
            _ => None,
        })
    }

    /// Notes that `jobs` (of one partition) are being sent to Tencent: their slot is asked for.
    pub async fn mark_sent(&self, partition: u32, jobs: &[&JobId]) -> Result<(), Error> {
        let mut mark = redis::cmd("HSET");
        mark.arg(self.keys.sent(partition));
        for job in jobs {
            mark.arg(&job.entry).arg(1);
        }
        self.conn.query::<i64>(&mark).await.map(|_| ())
    }

    /// Which of `jobs` (claimed from a previous owner) it had sent: those may have reached Tencent.
    pub async fn were_sent(&self, partition: u32, jobs: &[&JobId]) -> Result<Vec<bool>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("HMGET");
        get.arg(self.keys.sent(partition));
        for job in jobs {
            get.arg(&job.entry);
        }
        let marks: Vec<Option<String>> = self.conn.query(&get).await?;
        Ok(marks.into_iter().map(|m| m.is_some()).collect())
    }

    /// The answers of `jobs` (all of one partition) that have one.
    pub async fn results(&self, jobs: &[JobId]) -> Result<Vec<Option<Stored>>, Error> {
        let mut get = redis::cmd("MGET");
        for job in jobs {
            get.arg(self.keys.result(job));
        }
        let texts: Vec<Option<String>> = self.conn.query(&get).await?;
        Ok(texts
            .into_iter()
            .map(|t| t.and_then(|t| serde_json::from_str(&t).ok()))
            .collect())
    }
}
