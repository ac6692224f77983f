//! The per-API retry budget: retries earned by first attempts, so that a failing upstream does
//! not turn into a retry storm.

use std::sync::Mutex;

use tokio::time::Instant;

/// One API's retry budget: every first attempt deposits `ratio` of a retry, every retry withdraws
/// one, and a floor of `FLOOR_PER_SECOND` retries a second lets a quiet API retry at all.
#[derive(Debug)]
pub struct RetryBudget {
    /// The ratio as f64 bits, so that a reload can change it without a lock.
    ratio: std::sync::atomic::AtomicU64,
    state: Mutex<(f64, Instant)>,
}

/// Retries a second any API may make whatever its traffic (and the balance a new budget starts
/// with), so that a quiet API can still retry a few failures.
pub const FLOOR_PER_SECOND: f64 = 10.0;
/// Most retries saved up: a burst of failures after a long quiet spell is still bounded.
const MAX_BALANCE: f64 = 100.0;

impl RetryBudget {
    /// A budget allowing `ratio` retries per first attempt on top of the floor.
    pub fn new(ratio: f64) -> RetryBudget {
        RetryBudget {
            ratio: std::sync::atomic::AtomicU64::new(ratio.to_bits()),
            state: Mutex::new((FLOOR_PER_SECOND, Instant::now())),
        }
    }

    /// A reloaded `budget_ratio`; the balance saved so far is kept.
    pub fn set_ratio(&self, ratio: f64) {
        self.ratio
            .store(ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    fn with<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (balance, last) = &mut *guard;
        let now = Instant::now();
        *balance = (*balance + (now - *last).as_secs_f64() * FLOOR_PER_SECOND).min(MAX_BALANCE);
        *last = now;
        f(balance)
    }

    /// A first attempt was made.
    pub fn deposit(&self) {
        let ratio = f64::from_bits(self.ratio.load(std::sync::atomic::Ordering::Relaxed));
        self.with(|balance| *balance = (*balance + ratio).min(MAX_BALANCE));
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        self.with(|balance| {
            // The epsilon forgives float sums: ten deposits of 0.2 make two whole retries.
            if *balance >= 1.0 - 1e-9 {
                *balance -= 1.0;
                true
            } else {
                false
            }
        })
    }
}
