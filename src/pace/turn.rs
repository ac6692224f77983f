//! A request's turn, from its place in line to the moment it is sent: its group's handover,
//! its slot (in the shared budget while it serves, else in the local lanes), the wait for the
//! slot, and the claim of the send against the send logs and the calls in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::bound::{Deadline, sleep_until};
use super::claim::Hold;
use super::follow::Grant;
use super::shared::Mode;
use super::ticket::{Phase, Ticket};
use super::{LANDING_POLL, Pacer, Permit};
use crate::error::Error;

impl Pacer {
    /// The second half of [`Pacer::acquire`]: waits for the admitted request's turn and slot.
    pub(super) async fn ready(
        &self,
        mut ticket: Ticket,
        handover: Option<tokio::sync::oneshot::Receiver<()>>,
        admitted_at: Instant,
        deadline: Deadline,
    ) -> Result<Permit, Error> {
        let (api, units, group) = (&ticket.api, ticket.units, ticket.group.as_ref());
        if let Some(handover) = handover {
            let handed = self
                .bounded(std::pin::pin!(handover), deadline)
                .await
                .map_err(|stop| stop.into_error(true))?;
            // The sender lives in the group's queue until it hands over; a lane with waiters is
            // never forgotten, so a closed channel would be a bug, answered rather than hung.
            handed.map_err(|_| Error::Internal("group lane handover lost".into()))?;
        }
        ticket.phase = Phase::Holding;
        let mut first = true;
        loop {
            let grant = self.take_slot(api, units, group, deadline, first).await?;
            if first {
                ticket.phase = Phase::Reserved;
                if group.is_some() {
                    self.observe_wait(true, admitted_at.elapsed());
                }
                first = false;
            }
            // Wait for the slot here, where a caller who hangs up still takes the request out of
            // line: the slot goes unused, but nothing is sent for a caller who is gone.
            if let Some(sent) = self.send_at(api, group, &grant, deadline).await? {
                return Ok(ticket.into_permit(&grant, sent));
            }
            // The grant was revoked (Redis came back, or its send was held): a new slot.
        }
    }

    /// Takes a new slot in both lanes for another attempt of a request that holds `permit`, and
    /// waits for it, keeping its group's lane (so no later write overtakes a retry).
    pub async fn reacquire(&self, permit: &mut Permit, deadline: Instant) -> Result<(), Error> {
        let (api, group) = (permit.api.clone(), permit.group.clone());
        let units = permit.units;
        let deadline = Deadline::At(deadline);
        loop {
            let grant = self
                .take_slot(&api, units, group.as_ref(), deadline, false)
                .await?;
            if let Some(sent) = self.send_at(&api, group.as_ref(), &grant, deadline).await? {
                permit.slot = grant.slot;
                permit.use_by = grant.use_by;
                permit.limiter = self.limiter(&grant);
                permit.sent = Some(sent);
                return Ok(());
            }
        }
    }

    /// Waits for the grant's slot and claims the send: its instant, or `None` when the grant was
    /// revoked on the way (ask for a new one).
    async fn send_at(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        grant: &Grant,
        deadline: Deadline,
    ) -> Result<Option<Instant>, Error> {
        if let Some(sent) = grant.claimed {
            return Ok(Some(sent));
        }
        if !self.wait_slot(grant, deadline).await? {
            return Ok(None);
        }
        self.claim(api, group, deadline, grant).await
    }

    /// The moment of sending: checks the lanes' send logs (a late timer must not bunch sends) and
    /// the calls in flight, and records this send, waiting first if they say so. Returns the
    /// instant it was recorded at, or `None` when the grant is void: Redis came back since it was
    /// given, or, while Redis serves, the send was held or its time has passed (a shared slot is
    /// used at its time or not at all, so it is asked for again).
    async fn claim(
        &self,
        api: &Arc<str>,
        group: Option<&Arc<str>>,
        deadline: Deadline,
        grant: &Grant,
    ) -> Result<Option<Instant>, Error> {
        loop {
            let now = Instant::now();
            let mode = self.follow();
            if mode.epoch != grant.epoch {
                return Ok(None);
            }
            let wait = {
                let mut lanes = self.lanes();
                let late = grant.use_by.is_some_and(|use_by| now > use_by);
                if mode.up && late {
                    // Sent now, this slot could share a second with the limit's worth of others.
                    return Ok(None);
                }
                // While the shared budget governs the totals, this replica may send all of it.
                lanes.claim_send_capped((api, grant.units), group, now, mode.up)
            };
            let until = match wait {
                Ok(sent) => return Ok(Some(sent)),
                Err(Hold::Until(until)) if mode.up => until,
                Err(Hold::Until(until)) => {
                    // Everything held with this request would leave at `until` at once: take a
                    // new slot from then instead, so that they leave spaced.
                    self.lanes().respace((api, grant.units), until, now)
                }
                Err(Hold::Landing) => {
                    // Wake at the next answer; the timer only covers a signal missed between
                    // the check and here.
                    let landed = self.inner.landed.notified();
                    let nap = tokio::time::sleep(LANDING_POLL);
                    let either = async {
                        tokio::select! {
                            () = landed => {}
                            () = nap => {}
                        }
                    };
                    self.bounded(std::pin::pin!(either), deadline)
                        .await
                        .map_err(|stop| stop.into_error(false))?;
                    if mode.up {
                        return Ok(None);
                    }
                    continue;
                }
            };
            tracing::debug!(
                api = &**api,
                wait_us = until.saturating_duration_since(Instant::now()).as_micros() as u64,
                "Send held back by the cap."
            );
            self.bounded(std::pin::pin!(sleep_until(until)), deadline)
                .await
                .map_err(|stop| stop.into_error(false))?;
            if mode.up {
                return Ok(None);
            }
        }
    }

    /// Waits out the group's spacing, then reserves the app slot and the group slot together:
    /// in Redis while it serves, else locally. The grant says when, and whether the send was
    /// already claimed (the slot had come).
    async fn take_slot(
        &self,
        api: &Arc<str>,
        units: u32,
        group: Option<&Arc<str>>,
        deadline: Deadline,
        first: bool,
    ) -> Result<Grant, Error> {
        loop {
            let mut mode = self.follow();
            // While the shared budget serves, Redis spaces the group; the local lane only orders it.
            if let Some(group) = group.filter(|_| !mode.up) {
                let ready = self.lanes().group_ready_at(group, Instant::now());
                if self.past(deadline, ready) {
                    let retry_after = ready.saturating_duration_since(Instant::now());
                    return Err(self.too_late(
                        deadline,
                        Error::GroupBusy {
                            retry_after,
                            full: false,
                        },
                    ));
                }
                self.bounded(std::pin::pin!(sleep_until(ready)), deadline)
                    .await
                    .map_err(|stop| stop.into_error(true))?;
                // Redis may have come back during the wait: a local slot taken now would lie
                // outside its fence.
                mode = self.follow();
            }
            if let Some(shared) = self.inner.budget.serving(mode) {
                // Boxed, and only while Redis serves: inline, the Redis call's state would sit
                // in every queued request's future, local backend or not.
                let shared =
                    Box::pin(self.shared_slot(shared, (api, units), group, deadline, first));
                if let Some(taken) = shared.await {
                    return taken;
                }
                // Redis went away on the way: the local share, from where it starts.
                mode = self.follow();
            }
            if let Some(grant) = self.local_slot((api, units), group, deadline, first, mode)? {
                return Ok(grant);
            }
        }
    }

    /// A slot in the local lanes (the local backend, or this replica's share while Redis is
    /// away), claimed at once when it has come. `None` when Redis came back since `mode` was
    /// read: the returning replica's fence covers the local sends claimed before its return,
    /// not after (measured: a write that had waited out its local group spacing across a return
    /// left 25 ms before the group's first shared slot, six writes in a second).
    fn local_slot(
        &self,
        api: (&Arc<str>, u32),
        group: Option<&Arc<str>>,
        deadline: Deadline,
        first: bool,
        mode: Mode,
    ) -> Result<Option<Grant>, Error> {
        let now = Instant::now();
        let (slot, rate, claimed) = {
            let mut lanes = self.lanes();
            if !self.inner.budget.current(mode) {
                return Ok(None);
            }
            let slot = lanes.reserve(api, group, self.cutoff(deadline), now, first);
            // A slot that has come is claimed under the same lock: the common case, lanes with
            // room, costs one lock per request.
            let claimed = slot
                .filter(|&slot| slot <= now)
                .and_then(|_| lanes.claim_send(api, group, now).ok());
            (slot, lanes.app_rate(api.0), claimed)
        };
        // Recovery is lazy, so the gauge follows the lane whenever it is used.
        if let (Some(rate), Some(gauge)) = (rate, self.inner.metrics.lane_rate.get(api.0)) {
            gauge.set(rate);
        }
        let busy = Error::AppBusy {
            retry_after: Duration::from_secs(1),
            full: false,
        };
        let slot = slot.ok_or_else(|| self.too_late(deadline, busy))?;
        self.observe_wait(false, slot.saturating_duration_since(now));
        Ok(Some(Grant {
            slot,
            claimed,
            epoch: mode.epoch,
            use_by: None,
            units: api.1,
        }))
    }
}
