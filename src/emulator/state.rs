//! What the emulator remembers: groups and their attributes, the limit windows, and a record of
//! every call it received, so that tests can assert what reached "Tencent" and in what order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

use super::window::Window;

/// Records kept at most by default; counters go on after that, records stop (long load runs).
pub const MAX_RECORDS: usize = 2_000_000;

/// One call as the emulator received it.
#[derive(Debug, Clone)]
pub struct Record {
    /// `service/command`.
    pub api: String,
    /// The GroupId of the payload, when it had one.
    pub group_id: Option<String>,
    /// The `identifier` query parameter.
    pub identifier: Option<String>,
    /// The `usersig` query parameter.
    pub usersig: Option<String>,
    /// The `random` query parameter, when it was a u32.
    pub random: Option<u32>,
    /// The body as received.
    pub body: Bytes,
    /// The `ErrorCode` answered.
    pub code: i64,
    /// When it arrived.
    pub at: Instant,
}

/// A fault to inject into the next calls for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this `ErrorCode` (HTTP 200, Tencent's shape).
    Code(i64),
    /// Drop the connection without answering.
    Close,
    /// Never answer (the caller's timeout ends it).
    Stall,
    /// Answer with this HTTP status and no Tencent body, as a load balancer in front of Tencent
    /// does (a 502 after the call may have reached Tencent).
    Status(u16),
    /// Carry out the call, then answer with this HTTP status instead of Tencent's answer: the
    /// call reached Tencent and its answer was lost on the way back.
    StatusAfter(u16),
}

/// What a lane (an API, or a group's attribute writes) received: the load benchmark's view of
/// how close the gateway came to each limit, kept for every lane ever seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    /// Calls that reached the lane's window, refused ones included.
    pub calls: u64,
    /// Calls refused for crossing the lane's limit (10049 or 60007).
    pub over: u64,
    /// The most calls in any sliding second (the limit is crossed when this exceeds it).
    pub peak: u32,
}

impl Tally {
    /// Counts one arrival, with `in_window` arrivals in the second up to it (this one included);
    /// `allowed` is false when it was refused for the limit.
    pub fn count(&mut self, in_window: usize, allowed: bool) {
        self.calls += 1;
        self.over += u64::from(!allowed);
        self.peak = self.peak.max(in_window.try_into().unwrap_or(u32::MAX));
    }
}

/// The `ErrorCode` recorded for a call that got no answer.
pub const NO_ANSWER: i64 = -1;

/// A group's attributes, in key order.
pub type Attrs = BTreeMap<String, String>;

/// Everything behind the emulator's lock.
#[derive(Debug, Default)]
pub struct Inner {
    /// Groups by GroupId.
    pub groups: HashMap<String, Attrs>,
    /// The type each group was created with by `create_group` (groups made on first use have
    /// none, and allow every operation).
    pub group_types: HashMap<String, String>,
    /// Attribute-write windows by GroupId.
    pub group_windows: HashMap<String, Window>,
    /// Call windows by API.
    pub api_windows: HashMap<String, Window>,
    /// Every call, in arrival order.
    pub records: Vec<Record>,
    /// Calls answered with each non-zero code.
    pub refused: BTreeMap<i64, u64>,
    /// Calls received in all.
    pub received: u64,
    /// Calls and peaks by API.
    pub api_tally: HashMap<String, Tally>,
    /// Attribute writes and peaks by GroupId.
    pub group_tally: HashMap<String, Tally>,
    /// Next number for generated GroupIds.
    pub next_group: u64,
    /// The SecretKeys accepted now, when a test rotates them (else the configured one).
    pub keys: Option<Vec<String>>,
    /// Faults waiting for the next calls naming a group, in order.
    pub faults: HashMap<String, std::collections::VecDeque<Fault>>,
    /// Calls arriving before this are held until then, then processed together (a stall).
    pub stall_until: Option<Instant>,
}

/// The emulator's shared state.
#[derive(Debug, Default)]
pub struct State {
    inner: Mutex<Inner>,
}

impl State {
    /// Runs `f` with the state locked. The lock is never held across an await.
    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Every call received so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        self.with(|s| s.records.clone())
    }

    /// How many calls were answered with `code`.
    pub fn refused(&self, code: i64) -> u64 {
        self.with(|s| s.refused.get(&code).copied().unwrap_or(0))
    }

    /// Refusals for going over a rate limit (10049 and 10023 per group, 60007 per API): a correct
    /// gateway causes none.
    pub fn limit_refusals(&self) -> u64 {
        self.refused(10049) + self.refused(60007) + self.refused(10023)
    }

    /// How many calls arrived in all.
    pub fn received(&self) -> u64 {
        self.with(|s| s.received)
    }

    /// A group's attributes, if the group exists.
    pub fn group(&self, group_id: &str) -> Option<Attrs> {
        self.with(|s| s.groups.get(group_id).cloned())
    }

    /// Makes the next `times` calls naming `group_id` meet `fault` (tests of retries).
    pub fn inject(&self, group_id: &str, fault: Fault, times: usize) {
        self.with(|s| {
            s.faults
                .entry(group_id.to_string())
                .or_default()
                .extend(std::iter::repeat_n(fault, times))
        });
    }

    /// Stalls like an overloaded upstream: every call arriving in the next `hold` is held until
    /// it has passed, then all are processed at once (each counted in the limit windows then).
    pub fn stall(&self, hold: Duration) {
        self.with(|s| s.stall_until = Some(Instant::now() + hold));
    }

    /// When a call arriving `now` is to be processed, if a stall holds it.
    pub fn stalled_until(&self, now: Instant) -> Option<Instant> {
        self.with(|s| s.stall_until.filter(|&until| until > now))
    }

    /// Accepts exactly these SecretKeys from now on (a key rotation, as the console does it).
    pub fn set_keys(&self, keys: &[&str]) {
        self.with(|s| s.keys = Some(keys.iter().map(|k| k.to_string()).collect()));
    }

    /// Counters as JSON, for `GET /_emulator/stats`: calls, refusals by code, and each API's
    /// calls and peak per sliding second; the busiest group's peak; with `per_group`, every
    /// group's writes and peak too (`?groups=1`: large when many groups were seen).
    pub fn stats_json(&self, per_group: bool) -> String {
        self.with(|s| {
            let refused: BTreeMap<String, u64> =
                s.refused.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let apis: BTreeMap<&String, &Tally> = s.api_tally.iter().collect();
            let group_peak = s.group_tally.values().map(|t| t.peak).max().unwrap_or(0);
            let mut stats = json!({
                "received": s.received,
                "refused": refused,
                "groups": s.groups.len(),
                "apis": apis,
                "group_peak": group_peak,
            });
            if per_group {
                stats["group_writes"] = json!(s.group_tally);
            }
            stats.to_string()
        })
    }
}

impl Inner {
    /// Takes the next fault for the group a body names, if one is waiting.
    pub fn take_fault(&mut self, body: &[u8]) -> Option<(String, Fault)> {
        if self.faults.is_empty() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let group = value.get("GroupId")?.as_str()?;
        let queue = self.faults.get_mut(group)?;
        let fault = queue.pop_front()?;
        if queue.is_empty() {
            self.faults.remove(group);
        }
        Some((group.to_string(), fault))
    }

    /// Forgets windows that have been idle for `span` (an API's for a minute, the longest any
    /// API's rate counts over; a daily cap's, `day:<api>`, for a day), so that a long run does
    /// not grow them.
    pub fn prune(&mut self, now: Instant, span: Duration) {
        self.group_windows.retain(|_, w| !w.is_idle(now, span));
        let api_span = span.max(Duration::from_secs(60));
        let day = Duration::from_secs(24 * 60 * 60);
        self.api_windows.retain(|key, w| {
            let span = if key.starts_with("day:") {
                day
            } else {
                api_span
            };
            !w.is_idle(now, span)
        });
    }

    /// Counts a call's code, and stores its record while fewer than `max_records` are held.
    pub fn record(&mut self, record: Record, max_records: usize) {
        self.received += 1;
        if record.code != 0 {
            *self.refused.entry(record.code).or_default() += 1;
        }
        if self.records.len() < max_records {
            self.records.push(record);
        }
    }
}
