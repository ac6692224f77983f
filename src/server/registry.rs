//! A listener's open connections: the cap (a semaphore of permits), the oldest-idle-first
//! eviction that makes room at the cap, and the wait for all of them to close on shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::conn::ConnState;
use crate::metrics::ListenerMetrics;

/// The open connections of one listener.
#[derive(Debug)]
pub(super) struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    all_closed: Notify,
    metrics: Option<ListenerMetrics>,
}

/// A connection's place in its registry; dropping it frees the place.
#[derive(Debug)]
pub(super) struct Place {
    registry: Arc<Registry>,
    id: u64,
    _permit: OwnedSemaphorePermit,
}

impl Registry {
    /// A registry holding at most `cap` connections (at least 1).
    pub(super) fn new(cap: usize, metrics: Option<ListenerMetrics>) -> Arc<Registry> {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        if let Some(m) = &metrics {
            m.max.set(cap as i64);
        }
        Arc::new(Registry {
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(cap)),
            all_closed: Notify::new(),
            metrics,
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A permit for one more connection now, if the cap allows.
    pub(super) fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Waits for a permit (another connection closes).
    pub(super) async fn permit(&self) -> OwnedSemaphorePermit {
        match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed; should it be, wait forever rather than over-admit.
            Err(_) => std::future::pending().await,
        }
    }

    /// Picks the oldest connection with nothing in flight to be closed, making room at the cap.
    /// False when every connection is busy: the new one then waits for a place.
    pub(super) fn evict_oldest_idle(&self) -> bool {
        self.conns().values().any(|conn| conn.evict())
    }

    /// Enters a new connection, holding `permit` until it closes.
    pub(super) fn enter(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> (Arc<ConnState>, Place) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(ConnState::new());
        self.conns().insert(id, conn.clone());
        if let Some(m) = &self.metrics {
            m.open.inc();
        }
        let place = Place {
            registry: self.clone(),
            id,
            _permit: permit,
        };
        (conn, place)
    }

    /// Counts a connection the listener closed itself.
    pub(super) fn closed_by_us(&self, reason: &'static str) {
        if let Some(m) = &self.metrics {
            m.closed(reason);
        }
    }

    /// Connections open now.
    pub(super) fn open(&self) -> usize {
        self.conns().len()
    }

    /// Resolves once no connection is open.
    pub(super) async fn all_closed(&self) {
        loop {
            let notified = self.all_closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.conns().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let empty = {
            let mut conns = self.registry.conns();
            conns.remove(&self.id);
            conns.is_empty()
        };
        if let Some(m) = &self.registry.metrics {
            m.open.dec();
        }
        if empty {
            self.registry.all_closed.notify_waiters();
        }
    }
}
