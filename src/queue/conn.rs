//! The queue's own connection to Redis (apart from the budget's, so that a backlog of appends
//! never delays a reservation): made on first use, dropped when Redis fails, and not tried again
//! for a moment after a failed connect, so that a durable gateway refuses at once while Redis is
//! away instead of making every caller wait for its own connect timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::FromRedisValue;
use tokio::time::Instant;

use crate::config::RedisTarget;
use crate::config::redact::Secrets;
use crate::error::Error;
use crate::pace::shared::{Conn, connect};

/// How long a connect may take, TLS and AUTH included.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// After a failed connect, commands are refused for this long without trying.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// A connection to the queue's Redis, shared by every task of the queue.
pub(super) struct QueueConn {
    target: RedisTarget,
    secrets: Mutex<Secrets>,
    conn: Mutex<Option<Conn>>,
    /// Until when a failed connect keeps commands from trying again.
    resting: Mutex<Option<Instant>>,
    /// One connect at a time.
    connecting: tokio::sync::Mutex<()>,
    /// How many connections were made: a change means replies may have been lost in between.
    made: AtomicU64,
}

impl std::fmt::Debug for QueueConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConn")
            .field("redis", &self.target.describe())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl QueueConn {
    pub(super) fn new(target: &RedisTarget) -> QueueConn {
        let mut secrets = Secrets::default();
        target.urls().iter().for_each(|url| secrets.add_url(url));
        QueueConn {
            target: target.clone(),
            secrets: Mutex::new(secrets),
            conn: Mutex::new(None),
            resting: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            made: AtomicU64::new(0),
        }
    }

    /// How many connections were made so far. Redis may have run a command whose reply a broken
    /// connection lost (an XREADGROUP's entries then sit pending, unseen); a reader that sees this
    /// change looks again at what it has pending.
    pub(super) fn made(&self) -> u64 {
        self.made.load(Ordering::SeqCst)
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::QueueUnavailable(lock(&self.secrets).scrub(why))
    }

    async fn get(&self) -> Result<Conn, Error> {
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        let resting = || lock(&self.resting).is_some_and(|until| Instant::now() < until);
        if resting() {
            return Err(self.unavailable("Redis did not answer a moment ago"));
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        if resting() {
            return Err(self.unavailable("Redis did not answer a moment ago"));
        }
        let connected = tokio::time::timeout(CONNECT_WITHIN, connect(&self.target, &self.secrets));
        let why = match connected.await {
            Ok(Ok(conn)) => {
                self.made.fetch_add(1, Ordering::SeqCst);
                *lock(&self.conn) = Some(conn.clone());
                return Ok(conn);
            }
            Ok(Err(e)) => e,
            Err(_) => "no connection in time".to_string(),
        };
        *lock(&self.resting) = Some(Instant::now() + RETRY_AFTER);
        Err(self.unavailable(&why))
    }

    /// Runs `cmd`; a failure that is not Redis refusing the command itself drops the connection.
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        let mut conn = self.get().await?;
        let answer = tokio::time::timeout(self.target.timeout, cmd.query_async::<T>(&mut conn));
        self.settle(answer.await)
    }

    /// Runs a script invocation, as [`QueueConn::query`].
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, Error> {
        let mut conn = self.get().await?;
        let answer = tokio::time::timeout(self.target.timeout, call.invoke_async::<T>(&mut conn));
        self.settle(answer.await)
    }

    fn settle<T>(
        &self,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Error> {
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                // A consumer group that exists already or not yet is an answer about the
                // stream; anything else (I/O, READONLY from a demoted master, a script's error)
                // ends the connection: the next one finds the master again.
                if !matches!(e.code(), Some("BUSYGROUP" | "NOGROUP")) {
                    *lock(&self.conn) = None;
                }
                Err(self.unavailable(&e.to_string()))
            }
            Err(_) => {
                *lock(&self.conn) = None;
                Err(self.unavailable("no answer in time"))
            }
        }
    }
}
