//! The shared budget on Redis: one Lua script, atomic and on Redis's own clock, reserves the next
//! send time of an API lane and a group lane together and returns how long to wait for it. Every
//! replica asks the same keys, so all of them together keep to Tencent's limits. When Redis does
//! not answer, the replica paces alone at its share and probes Redis in the background until it
//! answers again; each return starts a new epoch, and grants of an earlier one are void.

mod clock;
mod connect;
pub(crate) use connect::{Conn, connect};
mod daily;
pub use daily::Daily;
mod probe;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::RedisTarget;
use crate::config::redact::Secrets;
use crate::metrics::Metrics;

/// How long a lane's key outlives its last reservation.
const IDLE_MS: u64 = 2000;
/// No slot is reserved further ahead than this: when Redis goes away, every slot any replica
/// holds comes within it, so the replicas' local shares start after it (plus a window).
pub const HORIZON: Duration = Duration::from_millis(100);

/// An answer this much later than its call means the upstream stalled (see [`Shared::stalled`]).
pub const STALLED: Duration = Duration::from_millis(500);

/// Where the shared budget stands, as the pacer follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Reservations go to Redis.
    pub up: bool,
    /// Returns so far: a grant made before the latest is void (Redis may have lost it, or it
    /// was made on the local share).
    pub epoch: u32,
    /// When Redis was last found away.
    pub down_at: Option<Instant>,
}

/// A slot reserved in Redis, placed on this replica's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Where its Redis time falls on this replica's clock, as closely as it is known.
    pub at: Instant,
    /// How far from `at` it may be, at most (half the best recent round trip to Redis).
    pub within: Duration,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// A slot.
    At(Slot),
    /// Nothing reserved: the group's next slot is this far off (ask again then).
    GroupLater(Duration),
    /// Nothing reserved: the API's next slot lies beyond the horizon by this much.
    AppLater(Duration),
}

/// The Redis-backed budget of one replica.
pub struct Shared {
    /// Where Redis is and how it is reached.
    target: RedisTarget,
    /// The mode and URLs as logs show them, passwords masked.
    shown: String,
    /// The URLs' passwords and the password file's, masked in the redis crate's errors too.
    secrets: Mutex<Secrets>,
    prefix: String,
    /// This replica's name in the announcements.
    id: String,
    reserve: redis::Script,
    daily: redis::Script,
    fence: redis::Script,
    announce: redis::Script,
    /// One send window (1 s + guard) in microseconds: how long the fence holds shared slots back.
    window: AtomicU64,
    /// The lanes of APIs whose limit counts over a longer window than that (a minute) that this
    /// replica's own calls still hold, each with how long from now: the fence raises each one's
    /// lane key by that much too. Asked of the pacer when a fence goes up.
    long: std::sync::OnceLock<LongFences>,
    /// The connection while Redis is up; dropped when it goes away, so that the next probe
    /// connects afresh (to the master the Sentinels name now, to the Cluster's current slots).
    conn: Mutex<Option<connect::Conn>>,
    mode: watch::Sender<Mode>,
    /// Replicas alive at the last announcement (this one included); 0 before the first.
    replicas: AtomicUsize,
    /// Readings of Redis's clock, which slots are placed by.
    clock: Mutex<clock::Clock>,
    /// One line per API: only its head asks Redis, so a backlog costs one call per slot.
    heads: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
    /// Closed while a returning replica raises the fence: no reservation goes out before it.
    gate: tokio::sync::RwLock<()>,
    /// When a stall last raised the fence; this replica keeps that fence itself too, a window
    /// from then, so that a slot it asks for before the fence reaches Redis is not used either.
    stall_fenced: Mutex<Option<Instant>>,
    metrics: Metrics,
}

/// The long-window lanes this replica's calls still hold, each with how long from now (see
/// `Shared::long_windows`).
pub type LongFences = Arc<dyn Fn() -> Vec<(Arc<str>, Duration)> + Send + Sync>;

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("redis", &self.shown)
            .field("prefix", &self.prefix)
            .field("mode", &*self.mode.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// A budget on the Redis of `target`, its keys named `{prefix}:{<sdkappid>}:...` (one hash tag,
    /// so that a script's keys share a Redis Cluster slot). Starts in fallback until the first
    /// connection; `run` keeps connecting.
    pub fn new(
        target: &RedisTarget,
        prefix: &str,
        sdkappid: u64,
        window: Duration,
        metrics: Metrics,
    ) -> Arc<Shared> {
        metrics.limiter_backend_up.set(0);
        let mut secrets = Secrets::default();
        target.urls().iter().for_each(|url| secrets.add_url(url));
        let mode = Mode {
            up: false,
            epoch: 0,
            down_at: Some(Instant::now()),
        };
        Arc::new(Shared {
            target: target.clone(),
            shown: target.describe(),
            secrets: Mutex::new(secrets),
            prefix: format!("{prefix}:{{{sdkappid}}}"),
            id: format!("{:016x}", rand::random::<u64>()),
            reserve: redis::Script::new(scripts::RESERVE),
            daily: redis::Script::new(scripts::DAILY),
            fence: redis::Script::new(scripts::FENCE),
            announce: redis::Script::new(scripts::ANNOUNCE),
            window: AtomicU64::new(window.as_micros() as u64),
            long: std::sync::OnceLock::new(),
            conn: Mutex::new(None),
            mode: watch::channel(mode).0,
            replicas: AtomicUsize::new(0),
            clock: Mutex::new(clock::Clock::new()),
            heads: Mutex::new(HashMap::new()),
            gate: tokio::sync::RwLock::new(()),
            stall_fenced: Mutex::new(None),
            metrics,
        })
    }

    /// Whether reservations go to Redis now.
    pub fn is_up(&self) -> bool {
        self.mode.borrow().up
    }

    /// The fence holds shared slots back `window` from now on (a reload may change it).
    pub fn set_window(&self, window: Duration) {
        self.window
            .store(window.as_micros() as u64, Ordering::SeqCst);
    }

    /// Where the fence finds the long-window lanes this replica's calls still hold (set once, by
    /// the pacer that owns this budget).
    pub fn set_long_fences(&self, fences: LongFences) {
        let _ = self.long.set(fences);
    }

    /// The long-window lanes to fence now, and for how long.
    pub(super) fn long_windows(&self) -> Vec<(Arc<str>, Duration)> {
        self.long.get().map(|fences| fences()).unwrap_or_default()
    }

    /// Until when a stall holds this replica's shared slots of an API whose window is `window`
    /// back, if it does now (never less than the send window).
    pub fn held_until(&self, window: Duration) -> Option<Instant> {
        let fenced = *self
            .stall_fenced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = Duration::from_micros(self.window.load(Ordering::SeqCst)).max(window);
        fenced
            .map(|at| at + window)
            .filter(|&until| until > Instant::now())
    }

    /// Where the budget stands now.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Signals every change of [`Shared::mode`].
    pub fn subscribe(&self) -> watch::Receiver<Mode> {
        self.mode.subscribe()
    }

    /// Replicas alive at the last announcement, this one included (0: none made yet).
    pub fn replicas(&self) -> usize {
        self.replicas.load(Ordering::SeqCst)
    }

    fn connection(&self) -> Option<connect::Conn> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits for this replica's turn to reserve on `api`: its earlier requests first.
    pub async fn head(&self, api: &Arc<str>) -> tokio::sync::OwnedMutexGuard<()> {
        let line = self
            .heads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(api.clone())
            .or_default()
            .clone();
        line.lock_owned().await
    }

    /// Reserves the next slot of `api` (and `group`), or says how long until one may be asked
    /// for; `None` when Redis is away (the caller paces locally).
    pub async fn reserve(
        &self,
        api: &str,
        group: Option<&str>,
        app_interval: Duration,
        group_interval: Duration,
        total_interval: Option<Duration>,
    ) -> Option<Reserved> {
        if !self.is_up() {
            return None;
        }
        // A return may be raising the fence: wait for it, then see whether it went through.
        let _open = self.gate.read().await;
        if !self.is_up() {
            return None;
        }
        let mut conn = self.connection()?;
        let mut call = self.reserve.prepare_invoke();
        call.key(format!("{}:fence", self.prefix));
        call.key(format!("{}:app:{api}", self.prefix));
        call.key(format!("{}:total", self.prefix));
        if let Some(group) = group {
            call.key(format!("{}:group:{group}", self.prefix));
        }
        call.arg(app_interval.as_micros() as u64)
            .arg(group_interval.as_micros() as u64)
            .arg(IDLE_MS)
            .arg(HORIZON.as_micros() as u64)
            .arg(total_interval.map_or(0, |t| t.as_micros() as u64));
        let asked = Instant::now();
        let answer = call.invoke_async::<(i64, i64, i64)>(&mut conn);
        let answer = tokio::time::timeout(self.target.timeout, answer).await;
        let (code, value, redis_now) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return self.down(&self.scrub(&e.to_string())),
            Err(_) => return self.down("no answer in time"),
        };
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        clock.read(asked, Instant::now(), redis_now);
        let micros = |us: i64| Duration::from_micros(us.max(0) as u64);
        Some(match code {
            0 => {
                let (at, within) = clock.local(value)?;
                Reserved::At(Slot { at, within })
            }
            1 => Reserved::GroupLater(micros(value)),
            _ => Reserved::AppLater(micros(value)),
        })
    }

    /// A call came back [`STALLED`] late: the upstream held it and may be releasing everything
    /// it held, from every replica, at once. Raises the fence a window from now, so no replica
    /// reserves a slot within it, and voids this replica's grants not yet sent (a new epoch), so
    /// none uses a slot reserved before the fence. The other replicas' calls were held too and
    /// do the same as theirs come back.
    ///
    /// Calls sent before the last such fence are of the stall it answered: they raise nothing.
    pub fn stalled(self: &Arc<Self>, sent: Instant) {
        if !self.is_up() {
            return;
        }
        {
            let mut fenced = self
                .stall_fenced
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if fenced.is_some_and(|at| sent <= at) {
                return;
            }
            *fenced = Some(Instant::now());
        }
        self.mode
            .send_modify(|mode| mode.epoch = mode.epoch.wrapping_add(1));
        let this = self.clone();
        tokio::spawn(async move {
            let _ = this.raise_fence().await;
        });
    }

    /// `text` with every known password masked.
    fn scrub(&self, text: &str) -> String {
        self.secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .scrub(text)
    }

    fn down<T>(&self, why: &str) -> Option<T> {
        let went_down = self.mode.send_if_modified(|mode| {
            let was_up = mode.up;
            if was_up {
                mode.up = false;
                mode.down_at = Some(Instant::now());
            }
            was_up
        });
        if went_down {
            // The next probe connects afresh: a Sentinel may name another master by then.
            *self
                .conn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
            self.metrics.limiter_backend_up.set(0);
            self.metrics.limiter_fallback.inc();
            tracing::warn!(
                redis = self.shown.as_str(),
                error = why,
                replicas = self.replicas(),
                "Redis limiter unreachable: pacing locally at this replica's share."
            );
        }
        None
    }
}
