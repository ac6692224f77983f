//! The shared budget on Redis: one Lua script, atomic and on Redis's own clock, reserves the next
//! send time of an API lane and a group lane together and returns how long to wait for it. Every
//! replica asks the same keys, so all of them together keep to Tencent's limits. When Redis does
//! not answer, the replica paces alone at its `fallback_share` and probes Redis in the background
//! until it answers again.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::redact::{self, Secrets};
use crate::metrics::Metrics;

/// Reserves the slot: KEYS[1] the fence, KEYS[2] the API lane, KEYS[3] (optional) the group
/// lane; ARGV[1] and ARGV[2] the lanes' spacing in microseconds, ARGV[3] how long an idle key
/// lives, in milliseconds. Returns the wait in microseconds; or, when the group's next slot is
/// still to come, minus the time until it, having reserved nothing (so that a write waiting for
/// its group never holds the API lane against other groups). Times are Redis's `TIME`, so the
/// replicas' clocks never matter.
const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if #KEYS > 2 then
  -- The group's next slot is later: reserve nothing, so that the API lane is not held for it.
  local group_at = tonumber(redis.call('GET', KEYS[3]) or '0')
  if group_at > now then
    return -(group_at - now)
  end
end
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
slot = math.max(slot, tonumber(redis.call('GET', KEYS[2]) or '0'))
local idle = tonumber(ARGV[3])
local app_next = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[2], string.format('%.0f', app_next), 'PX', math.floor((app_next - now) / 1000) + idle)
if #KEYS > 2 then
  local group_next = slot + tonumber(ARGV[2])
  redis.call('SET', KEYS[3], string.format('%.0f', group_next), 'PX', math.floor((group_next - now) / 1000) + idle)
end
return slot - now
";

/// Raises the fence (KEYS[1]) to one window (ARGV[1], microseconds) from now. A replica coming
/// back from its local share raises it before it reserves again: no shared slot is given before
/// the local sends of every replica have left the window (each comes back within one probe of
/// the others and raises it again).
const FENCE: &str = r"
local t = redis.call('TIME')
local fence = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[1])
if fence > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.0f', fence), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 1000)
end
return 1
";

/// How long a lane's key outlives its last reservation.
const IDLE_MS: u64 = 2000;
/// How often a replica in fallback asks whether Redis is back: the spread between replicas
/// coming back, which the fence covers.
const PROBE: Duration = Duration::from_millis(100);
/// A reservation slower than this counts as Redis being away.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(200);

/// The Redis-backed budget of one replica.
pub struct Shared {
    url: String,
    /// The URL as logs show it, its password masked.
    shown_url: String,
    /// The URL's password, masked in the redis crate's errors too.
    secrets: Secrets,
    prefix: String,
    script: redis::Script,
    fence: redis::Script,
    /// One send window (1 s + guard): how long the fence holds shared slots back.
    window: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("url", &self.shown_url)
            .field("prefix", &self.prefix)
            .field("up", &self.up)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A budget on the Redis at `url`, its keys named `{prefix}:{<sdkappid>}:...` (one hash tag,
    /// so that a script's keys share a Redis Cluster slot). Starts in fallback until the first
    /// connection; `run` keeps connecting.
    pub fn new(
        url: &str,
        prefix: &str,
        sdkappid: u64,
        window: Duration,
        metrics: Metrics,
    ) -> Arc<Shared> {
        metrics.limiter_backend_up.set(0);
        let mut secrets = Secrets::default();
        secrets.add_url(url);
        Arc::new(Shared {
            url: url.to_string(),
            shown_url: redact::redis_url(url),
            secrets,
            prefix: format!("{prefix}:{{{sdkappid}}}"),
            script: redis::Script::new(RESERVE),
            fence: redis::Script::new(FENCE),
            window,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            metrics,
        })
    }

    /// Whether reservations go to Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reserves the next slot of `api` (and `group`): `Some(Ok(wait))` for a reserved slot,
    /// `Some(Err(wait))` when the group's next slot is that far off and nothing was reserved
    /// (ask again then), `None` when Redis is away (the caller paces locally).
    pub async fn reserve(
        &self,
        api: &str,
        group: Option<&str>,
        app_interval: Duration,
        group_interval: Duration,
    ) -> Option<Result<Duration, Duration>> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.connection()?;
        let mut call = self.script.prepare_invoke();
        call.key(format!("{}:fence", self.prefix));
        call.key(format!("{}:app:{api}", self.prefix));
        if let Some(group) = group {
            call.key(format!("{}:group:{group}", self.prefix));
        }
        call.arg(app_interval.as_micros() as u64)
            .arg(group_interval.as_micros() as u64)
            .arg(IDLE_MS);
        match tokio::time::timeout(RESPONSE_TIMEOUT, call.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(wait)) if wait < 0 => Some(Err(Duration::from_micros(wait.unsigned_abs()))),
            Ok(Ok(wait)) => Some(Ok(Duration::from_micros(wait as u64))),
            Ok(Err(e)) => self.down(&self.secrets.scrub(&e.to_string())),
            Err(_) => self.down("no answer in time"),
        }
    }

    fn down<T>(&self, why: &str) -> Option<T> {
        if self.up.swap(false, Ordering::SeqCst) {
            self.metrics.limiter_backend_up.set(0);
            self.metrics.limiter_fallback.inc();
            tracing::warn!(
                url = self.shown_url.as_str(),
                error = why,
                "Redis limiter unreachable: pacing locally at fallback_share."
            );
        }
        None
    }

    /// Connects, and probes Redis while it is away, every [`PROBE`], for as long as the pacer lives.
    pub async fn run(this: std::sync::Weak<Self>) {
        let mut tick = tokio::time::interval(PROBE);
        loop {
            tick.tick().await;
            let Some(this) = this.upgrade() else { return };
            this.probe().await;
        }
    }

    async fn probe(&self) {
        if self.is_up() {
            return;
        }
        if self.connection().is_none() {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1);
            let Ok(client) = redis::Client::open(self.url.as_str()) else {
                return;
            };
            if let Ok(Ok(manager)) = tokio::time::timeout(
                Duration::from_secs(1),
                ConnectionManager::new_with_config(client, config),
            )
            .await
            {
                *self
                    .conn
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(manager);
            }
        }
        let Some(mut conn) = self.connection() else {
            return;
        };
        // Raise the fence before taking shared slots again (see FENCE).
        let mut fence = self.fence.prepare_invoke();
        fence
            .key(format!("{}:fence", self.prefix))
            .arg(self.window.as_micros() as u64);
        let raised = fence.invoke_async::<i64>(&mut conn);
        if let Ok(Ok(_)) = tokio::time::timeout(RESPONSE_TIMEOUT, raised).await {
            self.up.store(true, Ordering::SeqCst);
            self.metrics.limiter_backend_up.set(1);
            tracing::info!(
                url = self.shown_url.as_str(),
                "Redis limiter reachable: sharing the budget with the other replicas."
            );
        }
    }
}
