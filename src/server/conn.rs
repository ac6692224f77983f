//! One connection's life as the listener sees it: requests in flight, when it went idle, when
//! the bytes of an unfinished request header started to arrive, and so when it must be closed.
//!
//! The rules (README, "Connections"): a connection with a request in flight is never closed by a
//! timer. Otherwise an HTTP/1.1 connection must complete a request header within the header
//! timeout, counted from its first byte (or from the accept, for a connection that never sent
//! one); between requests it may sit idle for the idle timeout. An HTTP/2 connection with no
//! stream open may sit idle for the idle timeout; its pings do not keep it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// "No such instant" in the millisecond fields.
const NONE: u64 = u64::MAX;

/// The timeouts a listener applies to its connections.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request header must be complete this long after its first byte (or after the accept).
    pub header: Option<Duration>,
    /// A connection with nothing in flight is closed after this long.
    pub idle: Option<Duration>,
}

impl Timeouts {
    /// No timeouts (the emulator, whose callers are the load benchmark's own).
    pub const NONE: Timeouts = Timeouts {
        header: None,
        idle: None,
    };
}

/// Why the listener closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// No complete request header within the header timeout.
    HeaderTimeout,
    /// Nothing in flight for the idle timeout.
    IdleTimeout,
    /// Closed to make room for a new connection at the listener's cap.
    Evicted,
}

impl Close {
    /// The `reason` label of `timgate_connections_closed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Close::HeaderTimeout => "header_timeout",
            Close::IdleTimeout => "idle_timeout",
            Close::Evicted => "evicted",
        }
    }
}

/// What the listener knows of one open connection. Shared by the connection's task, its IO
/// wrapper (which notes bytes read) and its service (which counts requests).
#[derive(Debug)]
pub(super) struct ConnState {
    opened: Instant,
    in_flight: AtomicU32,
    served: AtomicBool,
    h2: AtomicBool,
    evicted: AtomicBool,
    /// Milliseconds after `opened` when the last request in flight finished (0: the accept).
    idle_since: AtomicU64,
    /// Milliseconds after `opened` of the first byte read while nothing was in flight: the start
    /// of a request header still unfinished. NONE when no such byte came.
    pending_since: AtomicU64,
    /// Wakes the connection's task: a request finished, or it was picked for eviction.
    pub(super) kick: Notify,
}

impl ConnState {
    /// A connection accepted now.
    pub(super) fn new() -> ConnState {
        ConnState {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            pending_since: AtomicU64::new(NONE),
            kick: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// Notes `n` bytes read, `first` being the very first read of the connection.
    pub(super) fn read(&self, bytes: &[u8], first: bool) {
        if first && bytes.starts_with(b"PRI * HTTP/2") {
            self.h2.store(true, Ordering::Relaxed);
        }
        if !bytes.is_empty() && self.in_flight.load(Ordering::Relaxed) == 0 {
            let now = self.now_ms();
            let _ = self.pending_since.compare_exchange(
                NONE,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// A request's header is complete and its handler starts.
    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.pending_since.store(NONE, Ordering::Relaxed);
    }

    /// A request's handler has its answer (or was dropped).
    pub(super) fn end(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
            self.pending_since.store(NONE, Ordering::Relaxed);
            self.served.store(true, Ordering::Relaxed);
            self.kick.notify_one();
        }
    }

    /// True while a request is in flight: such a connection is never closed by a timer or an
    /// eviction.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// True for an HTTP/2 (prior knowledge) connection.
    pub(super) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// Picks this connection for eviction; false if it is busy or already picked.
    pub(super) fn evict(&self) -> bool {
        if self.busy() || self.evicted.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.kick.notify_one();
        true
    }

    /// True once picked for eviction.
    pub(super) fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// When the connection must be closed under `timeouts` and why, if nothing happens first;
    /// None while a request is in flight or when no timeout applies.
    pub(super) fn deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Close)> {
        if self.busy() {
            return None;
        }
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        let pending = self.pending_since.load(Ordering::Relaxed);
        let header = |from: u64| {
            timeouts
                .header
                .map(|t| (self.at(from) + t, Close::HeaderTimeout))
        };
        let idle = || {
            timeouts
                .idle
                .map(|t| (self.at(idle_since) + t, Close::IdleTimeout))
        };
        if self.is_h2() {
            idle()
        } else if pending != NONE {
            header(pending)
        } else if self.served.load(Ordering::Relaxed) {
            idle()
        } else {
            header(0)
        }
    }
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState::new()
    }
}

/// Counts a request in flight on its connection for as long as it lives.
#[derive(Debug)]
pub(super) struct InFlight(std::sync::Arc<ConnState>);

impl InFlight {
    /// Starts counting a request on `conn`.
    pub(super) fn new(conn: std::sync::Arc<ConnState>) -> InFlight {
        conn.begin();
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
