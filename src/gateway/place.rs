//! The synchronous steps between a request's body and its wait: the body's checks (memory,
//! payload rules, deadline, group), and the request's place, in its group's open batch or in
//! line on its own. Kept apart from the request's future so that the future stays short to
//! read and holds only what the wait needs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::live::{Live, Route};
use super::{Gateway, coalesce};
use crate::error::Error;
use crate::memory::Charge;
use crate::pace::batch::Write;
use crate::pace::{Admission, message_lane};
use crate::tencent::catalogue::ApiKind;
use crate::validate;

/// A request whose body passed its checks.
pub(super) struct Checked {
    pub(super) body: Bytes,
    /// The body's memory charge beyond what its head declared, held until the answer.
    pub(super) _held: Charge,
    /// When the caller stops waiting for its slot.
    pub(super) deadline: Instant,
    /// The group written, for group writes: the lane the request waits in.
    pub(super) group: Option<Arc<str>>,
    /// The attributes written, in payload order (a coalesced write merges them).
    attrs: Vec<(String, String)>,
    /// What it counts against its API's limit: 1, or its recipients.
    units: u32,
}

/// Where a checked request waits.
pub(super) enum Place {
    /// In its group's open batch, sent with the batch.
    Batch(Write),
    /// In line on its own (a barrier goes behind its group's open batch).
    Alone(Result<Admission, Error>),
}

impl Gateway {
    /// Checks a read body: charges what it holds beyond its declared length (a body sent in
    /// chunks declared nothing), applies the API's payload rules, and sets the deadline.
    pub(super) fn check(
        &self,
        route: &Route,
        body: Bytes,
        declared: u64,
        max_wait: Result<Duration, Error>,
    ) -> Result<Checked, Error> {
        let held = self
            .memory
            .charge((body.len() as u64).saturating_sub(declared));
        let validated = validate::validate(route.kind, &body)?;
        let deadline = Instant::now() + max_wait?;
        let group = match (route.kind, validated.group_id) {
            (kind, Some(id)) if kind.is_group_write() => Some(Arc::<str>::from(id)),
            // A group's messages wait in a lane of their own, 40 a second (10023 beyond).
            (ApiKind::SendGroupMsg, Some(id)) => Some(message_lane(&id)),
            _ => None,
        };
        Ok(Checked {
            body,
            _held: held,
            deadline,
            group,
            attrs: validated.attrs,
            units: validated.units,
        })
    }

    /// Takes the request's place now: a plain modify goes to its group's open batch when
    /// coalescing is on; any other write to the group is a barrier: admitted to the group's
    /// lane, it closes the batch and queues behind it; the rest queue in their lanes.
    pub(super) fn place(
        &self,
        live: &Live,
        route: &Route,
        checked: &mut Checked,
        trail: &super::Trail,
    ) -> Place {
        let Checked {
            body,
            deadline,
            group,
            attrs,
            units,
            ..
        } = checked;
        // Each place keeps one copy of the payload while it waits, never two: a batch member
        // its attributes (the merged body is built from them), a request alone its body.
        match (live.coalesce, &*group) {
            (true, Some(group)) if coalesce::merges(route.kind, body) => {
                *body = Bytes::new();
                Place::Batch(Write {
                    api: route.name.clone(),
                    group: group.clone(),
                    attrs: std::mem::take(attrs),
                    deadline: *deadline,
                    request_id: trail.request_id.clone(),
                    traced: trail.traced(),
                })
            }
            // Any other write to the group closes its open batch as it is admitted.
            _ => {
                *attrs = Vec::new();
                let api = (&route.name, *units);
                Place::Alone(self.pacer.admit_units(api, group.as_ref(), *deadline))
            }
        }
    }
}
