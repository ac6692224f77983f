//! What a load run's callers saw: every latency, and answers counted by HTTP status and by
//! Tencent `ErrorCode`, reduced to percentiles for the tables and the JSON summary.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Outcomes recorded by one or more callers.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    latencies_us: Vec<u32>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Answers by `ErrorCode` (-1: the body had none).
    pub codes: BTreeMap<i64, u64>,
    /// Requests that got no answer (connection refused, reset or closed mid-answer).
    pub errors: u64,
}

impl Recorder {
    /// Records an answer.
    pub fn answer(&mut self, latency: Duration, status: u16, code: i64) {
        self.latencies_us.push(micros(latency));
        *self.statuses.entry(status).or_default() += 1;
        *self.codes.entry(code).or_default() += 1;
    }

    /// Records a request that got no answer.
    pub fn error(&mut self, latency: Duration) {
        self.latencies_us.push(micros(latency));
        self.errors += 1;
    }

    /// Adds another caller's outcomes.
    pub fn merge(&mut self, other: Recorder) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
        self.errors += other.errors;
    }

    /// Answers and errors in all.
    pub fn total(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Answers with HTTP 200 and `ErrorCode` 0.
    pub fn ok(&self) -> u64 {
        self.codes.get(&0).copied().unwrap_or(0)
    }

    /// The figures of this record over a run that lasted `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            f64::from(sorted[rank - 1]) / 1000.0
        };
        Summary {
            requests: self.total(),
            ok: self.ok(),
            errors: self.errors,
            seconds: elapsed.as_secs_f64(),
            per_second: self.total() as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
            statuses: self
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

fn micros(latency: Duration) -> u32 {
    latency.as_micros().try_into().unwrap_or(u32::MAX)
}

/// A run's figures, as printed and as the JSON summary line carries them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Requests made (answered or not).
    pub requests: u64,
    /// Answers with `ErrorCode` 0.
    pub ok: u64,
    /// Requests without an answer.
    pub errors: u64,
    /// How long the run lasted.
    pub seconds: f64,
    /// Requests completed per second.
    pub per_second: f64,
    /// Latency percentiles as the caller saw them, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// The slowest.
    pub max_ms: f64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<String, u64>,
}

/// The most of `times` (instants, or offsets from a start) within any half-open window of
/// `span`: how close a run came to a sliding-window limit.
pub fn max_in_window<T: Ord + Copy + std::ops::Sub<Output = Duration>>(
    mut times: Vec<T>,
    span: Duration,
) -> usize {
    times.sort();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= span {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut record = Recorder::default();
        for ms in 1..=1000u64 {
            record.answer(Duration::from_millis(ms), 200, 0);
        }
        record.error(Duration::from_millis(2000));
        let summary = record.summary(Duration::from_secs(1));
        assert_eq!(summary.requests, 1001);
        assert_eq!((summary.ok, summary.errors), (1000, 1));
        assert_eq!(summary.p50_ms, 501.0);
        assert_eq!(summary.p99_ms, 991.0);
        assert_eq!(summary.max_ms, 2000.0);
    }
}
