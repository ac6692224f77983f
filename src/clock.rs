//! The wall clock, read in one place. Everything that paces, waits or times out uses tokio's
//! `Instant` (which tests pause and advance); only what must carry the calendar time reads the
//! system clock, here: UserSigs are stamped in Unix seconds, HTTP answers carry a `Date`, and the
//! durable queue's deadlines cross replicas in Unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// The wall clock now.
#[allow(clippy::disallowed_methods)] // the one place the system clock is read
pub fn system_now() -> SystemTime {
    SystemTime::now()
}

/// The wall clock in Unix seconds; UserSigs are stamped with wall time, not monotonic time.
pub fn unix_now() -> i64 {
    system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The wall clock in Unix milliseconds: a durable write's deadline, read by whichever replica
/// sends it.
pub fn unix_ms() -> u64 {
    system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
