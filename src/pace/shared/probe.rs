//! Keeping in touch with Redis: connecting (afresh at each probe), probing while it is away and coming back (fence
//! first, then a new epoch), announcing this replica while it is there, and saying so in the log
//! when it cannot be reached.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{Shared, connect};

/// How often a replica in fallback asks whether Redis is back: the spread between replicas
/// coming back, which the fence covers.
const PROBE: Duration = Duration::from_millis(100);
/// How often a replica renews its announcement while Redis is there.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long an announcement lives: a replica gone this long no longer counts.
const ANNOUNCEMENT_TTL: Duration = Duration::from_secs(5);
/// How long connecting may take, whichever the mode (a Sentinel asked, then its master; a
/// Cluster's slots read): a probe that takes longer tries again.
const CONNECT_WITHIN: Duration = Duration::from_secs(2);
/// How often an unreachable Redis is said again in the log.
const WARN_EVERY: Duration = Duration::from_secs(5);

impl Shared {
    /// Connects, probes Redis while it is away (every [`PROBE`]) and announces this replica
    /// while it is there, for as long as the pacer lives.
    pub async fn run(this: Weak<Self>) {
        let mut tick = tokio::time::interval(PROBE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut announced, mut warned): (Option<Instant>, Option<Instant>) = (None, None);
        loop {
            tick.tick().await;
            let Some(this) = this.upgrade() else { return };
            if this.is_up() {
                warned = None;
                if announced.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
                    // An idle replica learns here that Redis went away (a busy one learns it
                    // from its reservations): otherwise it would report sharing against a
                    // dead Redis until its next request.
                    if let Err(why) = this.announce().await {
                        let _: Option<()> = this.down(&why);
                    }
                    announced = Some(Instant::now());
                }
                continue;
            }
            match this.probe().await {
                Ok(()) => announced = Some(Instant::now()),
                Err(why) if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) => {
                    warned = Some(Instant::now());
                    tracing::warn!(
                        redis = this.shown.as_str(),
                        error = why.as_str(),
                        "Redis limiter unreachable: pacing locally at this replica's share until it answers."
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Raises the fence one window from now, and the lane of each API whose limit counts over a
    /// longer window by that window: no shared slot of it shares its window with a local send.
    pub(super) async fn raise_fence(&self) -> Result<(), String> {
        let window = Duration::from_micros(self.window.load(Ordering::SeqCst));
        let fences = std::iter::once((format!("{}:fence", self.prefix), window)).chain(
            self.long_windows()
                .into_iter()
                .map(|(api, window)| (format!("{}:app:{api}", self.prefix), window)),
        );
        for (key, window) in fences {
            let mut conn = self.connection().ok_or("no connection")?;
            let mut fence = self.fence.prepare_invoke();
            fence.key(key).arg(window.as_micros() as u64);
            let raised = fence.invoke_async::<i64>(&mut conn);
            match tokio::time::timeout(self.target.timeout, raised).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.scrub(&e.to_string())),
                Err(_) => return Err("no answer in time".into()),
            }
        }
        Ok(())
    }

    /// Renews this replica's announcement and reads how many are alive.
    async fn announce(&self) -> Result<(), String> {
        let mut conn = self.connection().ok_or("no connection")?;
        let mut call = self.announce.prepare_invoke();
        call.key(format!("{}:replicas", self.prefix))
            .arg(&self.id)
            .arg(ANNOUNCEMENT_TTL.as_millis() as u64);
        let counted = call.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(self.target.timeout, counted).await {
            Ok(Ok(alive)) if alive > 0 => {
                self.replicas.store(alive as usize, Ordering::SeqCst);
                self.metrics.limiter_replicas.set(alive);
                Ok(())
            }
            Ok(Ok(alive)) => Err(format!("{alive} replicas announced")),
            Ok(Err(e)) => Err(self.scrub(&e.to_string())),
            Err(_) => Err("no answer in time".into()),
        }
    }

    /// One attempt to come back: connect if need be, end the local share (a new epoch), raise
    /// the fence, and only then take shared slots again.
    async fn probe(&self) -> Result<(), String> {
        // Always a new connection: the last one may be to a master a failover demoted, or to a
        // server that restarted (a multiplexed connection does not reconnect by itself).
        let conn = tokio::time::timeout(
            CONNECT_WITHIN,
            connect::connect(&self.target, &self.secrets),
        )
        .await
        .map_err(|_| "no connection in time".to_string())?
        .map_err(|e| self.scrub(&e))?;
        *self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn);
        // Only a Redis that answers begins a return (a failed one would count a fallback).
        self.raise_fence().await?;
        // Local sends stop first (the new epoch voids every local grant), then the fence goes
        // up again, and only then are shared slots reserved (`reserve` waits at the gate): a
        // local send claimed after the fence was raised would share a window with the first
        // shared slots.
        let closed = self.gate.write().await;
        self.mode.send_modify(|mode| {
            mode.up = true;
            mode.epoch = mode.epoch.wrapping_add(1);
        });
        if let Err(why) = self.raise_fence().await {
            drop(closed);
            let _: Option<()> = self.down(&why);
            return Err(why);
        }
        drop(closed);
        // Failing, it is tried again within a second (`run`), and says then that Redis is away.
        let _ = self.announce().await;
        self.metrics.limiter_backend_up.set(1);
        tracing::info!(
            redis = self.shown.as_str(),
            replicas = self.replicas(),
            "Redis limiter reachable: sharing the budget with the other replicas."
        );
        Ok(())
    }
}
