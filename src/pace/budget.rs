//! Where the totals are kept: in this replica's lanes alone, or in Redis, shared by every
//! replica. The pacer asks its budget, never whether Redis is configured or up: a local budget is
//! a shared one that is never up and never changes epoch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::shared::{self, Mode, Shared};
use crate::config::{LimitsConfig, RedisTarget};
use crate::metrics::Metrics;

/// The local budget's mode, for ever: the lanes govern, and no return ever voids a grant.
const LOCAL: Mode = Mode {
    up: false,
    epoch: 0,
    down_at: None,
};

/// The pacer's budget.
#[derive(Debug)]
pub(super) enum Budget {
    /// `limits.backend = "local"`: each replica paces alone.
    Local,
    /// `limits.backend = "redis"`: slots are reserved in Redis while it serves, and on the local
    /// share of the limits while it is away.
    Shared(Arc<Shared>),
}

impl Budget {
    /// A Redis budget at `target`, followed by a task for as long as it lives (so it must be made
    /// within a tokio runtime); `window` is the send window its fences are a window of.
    pub(super) fn redis(
        target: &RedisTarget,
        limits: &LimitsConfig,
        sdkappid: u64,
        window: Duration,
        metrics: &Metrics,
    ) -> Budget {
        metrics.register_limiter();
        let shared = Shared::new(
            target,
            &limits.redis_prefix,
            sdkappid,
            window,
            metrics.clone(),
        );
        tokio::spawn(Shared::run(Arc::downgrade(&shared)));
        Budget::Shared(shared)
    }

    /// Where the budget stands now.
    pub(super) fn mode(&self) -> Mode {
        match self {
            Budget::Local => LOCAL,
            Budget::Shared(shared) => shared.mode(),
        }
    }

    /// The shared budget, when `mode` says it serves: where the next slot is reserved.
    pub(super) fn serving(&self, mode: Mode) -> Option<&Arc<Shared>> {
        match self {
            Budget::Shared(shared) if mode.up => Some(shared),
            _ => None,
        }
    }

    /// The shared budget, up or away (the local lanes follow it).
    pub(super) fn shared(&self) -> Option<&Arc<Shared>> {
        match self {
            Budget::Local => None,
            Budget::Shared(shared) => Some(shared),
        }
    }

    /// Whether a grant made in `mode` still holds: Redis has not come back since.
    pub(super) fn current(&self, mode: Mode) -> bool {
        self.mode().epoch == mode.epoch
    }

    /// Changes of mode as they happen, or `None` for the local budget, whose mode never changes.
    pub(super) fn subscribe(&self) -> Option<watch::Receiver<Mode>> {
        self.shared().map(|shared| shared.subscribe())
    }

    /// A reload changed the send window: the fences that follow a stall or a return are a
    /// window long.
    pub(super) fn set_window(&self, window: Duration) {
        if let Some(shared) = self.shared() {
            shared.set_window(window);
        }
    }

    /// A call sent at `sent` was answered at `now`: when the upstream held it (it may release
    /// every replica's held calls at once), no shared slot may be used for a window from now.
    pub(super) fn landed(&self, sent: Instant, now: Instant) {
        if let Some(shared) = self.shared()
            && now.saturating_duration_since(sent) >= shared::STALLED
        {
            shared.stalled(sent);
        }
    }
}
