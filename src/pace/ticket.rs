//! A request's place in line (a ticket, handed out as an [`Admission`]), and the permit it
//! becomes: both give their place back when dropped, so a caller who hangs up, a deadline that
//! passes, or a panic never leaves a lane held.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Pacer;

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Admitted, waiting behind earlier writes of its group.
    Waiting,
    /// Holding its group lane (or it has none), waiting for a slot.
    Holding,
    /// Holding its group lane with a slot reserved, waiting for the slot to come.
    Reserved,
    /// Turned into a permit: the permit cleans up.
    Done,
}

/// Which budget gave a slot: this replica's own lanes with the local backend, the shared budget
/// in Redis, or this replica's fallback share while a configured Redis is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// `limits.backend = "local"`.
    Local,
    /// A slot reserved in Redis, shared by every replica.
    Redis,
    /// Redis is configured but was away: paced at this replica's share.
    Fallback,
}

impl Limiter {
    /// The name the access log and the trace give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limiter::Local => "local",
            Limiter::Redis => "redis",
            Limiter::Fallback => "fallback",
        }
    }
}

impl Pacer {
    /// Which budget gave `grant`: a slot reserved in Redis carries its use-by instant; any
    /// other slot of a Redis-backed pacer was given at the fallback share.
    pub(super) fn limiter(&self, grant: &super::Grant) -> Limiter {
        match (grant.use_by, self.inner.budget.shared()) {
            (Some(_), _) => Limiter::Redis,
            (None, Some(_)) => Limiter::Fallback,
            (None, None) => Limiter::Local,
        }
    }
}

/// An admitted request without a slot yet.
pub(super) struct Ticket {
    pacer: Pacer,
    pub(super) api: Arc<str>,
    pub(super) group: Option<Arc<str>>,
    id: u64,
    pub(super) phase: Phase,
    /// What it counts against its API's limit: 1, or its recipients.
    pub(super) units: u32,
}

impl Ticket {
    pub(super) fn new(
        pacer: Pacer,
        (api, units): (Arc<str>, u32),
        group: Option<Arc<str>>,
        id: u64,
    ) -> Ticket {
        Ticket {
            pacer,
            api,
            group,
            id,
            phase: Phase::Holding,
            units,
        }
    }

    /// The slot has come: the request leaves the queue and holds its group until answered.
    pub(super) fn into_permit(mut self, grant: &super::Grant, sent: Instant) -> Permit {
        self.phase = Phase::Done;
        {
            let mut lanes = self.pacer.lanes();
            lanes.unqueue();
            self.pacer.publish(&lanes);
        }
        Permit {
            pacer: self.pacer.clone(),
            api: self.api.clone(),
            group: self.group.take(),
            slot: grant.slot,
            use_by: grant.use_by,
            limiter: self.pacer.limiter(grant),
            sent: Some(sent),
            units: self.units,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        let mut lanes = self.pacer.lanes();
        lanes.unqueue();
        if self.phase != Phase::Reserved {
            lanes.unpend(&self.api, self.units);
        }
        if let Some(group) = &self.group {
            // A waiter that is no longer in the queue was handed the lane as it gave up.
            let handed_over = self.phase != Phase::Waiting || !lanes.leave_queue(group, self.id);
            if handed_over {
                lanes.release(group);
            }
        }
        self.pacer.publish(&lanes);
    }
}

/// A request with its place in line and no slot yet ([`Pacer::admit`]). Dropping it gives the
/// place back; [`Pacer::wait`] waits for the turn and the slot.
pub struct Admission {
    pub(super) ticket: Ticket,
    /// Fires when the group's earlier writes are done (`None`: the request holds its lane).
    pub(super) handover: Option<oneshot::Receiver<()>>,
    pub(super) admitted_at: Instant,
    pub(super) estimate: Instant,
}

impl Admission {
    /// When the request joined its lanes.
    pub fn admitted_at(&self) -> Instant {
        self.admitted_at
    }

    /// When the request was expected to leave at admission: its place in line times the lanes'
    /// spacing (a later slowdown may move it).
    pub fn estimate(&self) -> Instant {
        self.estimate
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("api", &self.ticket.api)
            .field("group", &self.ticket.group)
            .field("estimate", &self.estimate)
            .finish_non_exhaustive()
    }
}

/// Leave to send now. Holds the group's lane until dropped (after the answer, retries
/// included), so the group's next write waits for it.
#[derive(Debug)]
pub struct Permit {
    pacer: Pacer,
    pub(super) api: Arc<str>,
    pub(super) group: Option<Arc<str>>,
    pub(super) slot: Instant,
    /// For a shared slot, the last instant its attempt may go out.
    pub(super) use_by: Option<Instant>,
    /// Which budget gave the attempt's slot.
    pub(super) limiter: Limiter,
    /// When its attempt was claimed, until it is answered.
    pub(super) sent: Option<Instant>,
    /// What each attempt counts against its API's limit: 1, or its recipients.
    pub(super) units: u32,
}

impl Permit {
    /// The slot this attempt was given (it has come: send now).
    pub fn slot(&self) -> Instant {
        self.slot
    }

    /// Which budget gave this attempt's slot (for the access log and the trace).
    pub fn limiter(&self) -> Limiter {
        self.limiter
    }

    /// When this attempt's send was claimed (its slot came), until it is answered.
    pub fn claimed(&self) -> Option<Instant> {
        self.sent
    }

    /// Whether the attempt's shared slot has passed by more than the tolerance: it must not go
    /// out now (a starved runtime between the claim and the call would otherwise send it late,
    /// into a second that may hold the limit already). Give it up and take a new slot.
    pub fn expired(&self) -> bool {
        self.use_by.is_some_and(|use_by| Instant::now() > use_by)
    }

    /// The attempt was answered (or given up on): it no longer flies, and an answer that came
    /// late counts as the call's arrival. Call it once per attempt, when its outcome is known.
    pub fn landed(&mut self) {
        if let Some(sent) = self.sent.take() {
            self.pacer
                .land((&self.api, self.units), self.group.as_ref(), sent);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // An attempt not landed (its task ended first) is given up on now.
        self.landed();
        if let Some(group) = &self.group {
            let mut lanes = self.pacer.lanes();
            lanes.release(group);
            self.pacer.publish(&lanes);
        }
    }
}
