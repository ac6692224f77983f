//! The memory budget: what the gateway holds for requests and connections, the resident set
//! sampled every 20 ms, and the two thresholds that keep the process under its budget (README,
//! "Memory budget"): past the first new requests are refused at once with 503 and
//! `Retry-After`; past the second new connections wait in the kernel's backlog.

pub mod cgroup;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Error;
use crate::metrics::PressureMetrics;

/// Share of the budget past which new requests are refused.
pub const REFUSE_AT: f64 = 0.85;
/// Share of the budget past which new connections are not accepted.
pub const STOP_ACCEPTING_AT: f64 = 0.95;
/// How often the resident set is read from `/proc/self/statm`.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// What a refused caller is told to wait before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Accounted for each open connection: its task (1.6 KB for HTTP/1.1), its socket, and the
/// head buffer while a head is read. A waiting HTTP/1.1 caller was measured at 4.8-4.9 KiB with
/// its connection (`cargo bench --bench load -- memory`); the two charges together keep a
/// margin over that.
pub const CONNECTION_BYTES: u64 = 4 * 1024;
/// Accounted for each request being handled, its body aside (the body is charged at its
/// length): the request's future (1.6 KB), its pacing ticket and its answer.
pub const REQUEST_BYTES: u64 = 4 * 1024;

/// The budget and what is held against it. Cheap to clone; without a budget every check passes
/// and nothing is sampled.
#[derive(Debug, Clone, Default)]
pub struct MemoryGuard {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    budget: u64,
    /// The resident set when the guard started: what the process holds with nothing accounted.
    baseline: u64,
    accounted: AtomicU64,
    rss: AtomicU64,
    accounted_at_sample: AtomicU64,
    metrics: PressureMetrics,
}

/// Bytes held against the budget until dropped.
#[derive(Debug)]
pub struct Charge {
    inner: Option<Arc<Inner>>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.accounted.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// The resident set size of this process in bytes, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The budget in force: `configured` when non-zero, else the cgroup's limit under `cgroup_root`.
pub fn budget(configured: u64, cgroup_root: &Path) -> Option<u64> {
    if configured > 0 {
        Some(configured)
    } else {
        cgroup::own_limit(cgroup_root)
    }
}

impl MemoryGuard {
    /// A guard over `budget` bytes (None: no budget), reporting to `metrics`.
    pub fn new(budget: Option<u64>, metrics: &PressureMetrics) -> MemoryGuard {
        metrics.memory_budget.set(budget.unwrap_or(0) as i64);
        let Some(budget) = budget else {
            return MemoryGuard { inner: None };
        };
        let rss = resident_bytes().unwrap_or(0);
        metrics.memory_resident.set(rss as i64);
        MemoryGuard {
            inner: Some(Arc::new(Inner {
                budget,
                baseline: rss,
                accounted: AtomicU64::new(0),
                rss: AtomicU64::new(rss),
                accounted_at_sample: AtomicU64::new(0),
                metrics: metrics.clone(),
            })),
        }
    }

    /// The budget, if there is one.
    pub fn budget(&self) -> Option<u64> {
        self.inner.as_ref().map(|i| i.budget)
    }

    /// Samples the resident set every [`SAMPLE_EVERY`] until the runtime ends (nothing without a
    /// budget).
    pub fn spawn_sampler(&self) -> Option<tokio::task::JoinHandle<()>> {
        let inner = self.inner.clone()?;
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let accounted = inner.accounted.load(Ordering::Relaxed);
                if let Some(rss) = resident_bytes() {
                    inner.rss.store(rss, Ordering::Relaxed);
                    inner
                        .accounted_at_sample
                        .store(accounted, Ordering::Relaxed);
                    inner.metrics.memory_resident.set(rss as i64);
                }
                inner.metrics.memory_accounted.set(accounted as i64);
            }
        }))
    }

    /// The memory in use as the guard reckons it: the last resident sample plus what was
    /// accounted since, or the baseline plus all that is accounted, whichever is more.
    pub fn used(&self) -> u64 {
        let Some(i) = &self.inner else { return 0 };
        let accounted = i.accounted.load(Ordering::Relaxed);
        let since = accounted.saturating_sub(i.accounted_at_sample.load(Ordering::Relaxed));
        (i.rss.load(Ordering::Relaxed) + since).max(i.baseline + accounted)
    }

    fn charge_unchecked(&self, bytes: u64) -> Charge {
        if let Some(i) = &self.inner {
            i.accounted.fetch_add(bytes, Ordering::Relaxed);
        }
        Charge {
            inner: self.inner.clone(),
            bytes,
        }
    }

    /// Accounts `bytes` for a new request, or refuses it at once when that would pass
    /// [`REFUSE_AT`] of the budget.
    pub fn admit(&self, bytes: u64) -> Result<Charge, Error> {
        if let Some(i) = &self.inner
            && (self.used() + bytes) as f64 > i.budget as f64 * REFUSE_AT
        {
            return Err(Error::Overloaded {
                retry_after: RETRY_AFTER,
            });
        }
        Ok(self.charge_unchecked(bytes))
    }

    /// Accounts `bytes` already taken (a connection accepted, a body that came in chunks).
    pub fn charge(&self, bytes: u64) -> Charge {
        self.charge_unchecked(bytes)
    }

    /// False while use is past [`STOP_ACCEPTING_AT`] of the budget: new connections wait.
    pub fn accepting(&self) -> bool {
        match &self.inner {
            None => true,
            Some(i) => (self.used() as f64) < i.budget as f64 * STOP_ACCEPTING_AT,
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
