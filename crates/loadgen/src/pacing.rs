//! The pacing-accuracy scenario: 1,000 cold groups and 5 hot ones, steady load with bursts, in
//! two halves. The first is app-bound (205 writes per second plus bursts against the 200 per
//! second API limit); the second is group-bound (each hot group offered 8 writes per second plus
//! bursts against its 5, the API with room to spare). The emulator's tallies give the peaks in
//! any sliding second and the utilization of each limit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::client::{Conn, Target, modify};
use super::procs::Workdir;
use super::stack::{EmulatorProc, EmulatorStats, Limits, Proxy, ProxyProc, emulator_stats};
use super::stats::{Recorder, Summary};

/// Hot groups: `hot-0` to `hot-4`.
pub const HOT: usize = 5;
/// Cold groups: `cold-0000` to `cold-0999`.
pub const COLD: usize = 1000;
/// The API every call goes to.
pub const API: &str = "group_open_http_svc/modify_group_attr";
/// Tencent's limits, which the utilization is measured against.
pub const APP_LIMIT: f64 = 200.0;
/// Attribute writes per group per second.
pub const GROUP_LIMIT: f64 = 5.0;

/// One planned call: when (from the start) and to which group.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Offset from the start of the run.
    pub at: Duration,
    /// Group index: below `HOT` a hot group, else a cold one.
    pub group: usize,
}

/// A group's id by index.
pub fn group_name(index: usize) -> String {
    if index < HOT {
        format!("hot-{index}")
    } else {
        format!("cold-{:04}", index - HOT)
    }
}

/// The arrivals of a run lasting `total`, in time order; the same for the same `seed`.
pub fn schedule(total: Duration, seed: u64) -> Vec<Arrival> {
    let mut rng = StdRng::seed_from_u64(seed);
    let half = total / 2;
    let scale = half.as_secs_f64() / 30.0;
    let mut out = Vec::new();
    let mut steady = |from: Duration, rate: f64, group: &mut dyn FnMut() -> usize| {
        let n = (rate * half.as_secs_f64()) as u32;
        for k in 0..n {
            out.push(Arrival {
                at: from + Duration::from_secs_f64(f64::from(k) / rate),
                group: group(),
            });
        }
    };
    let mut cold = {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        move || HOT + rng.random_range(0..COLD)
    };
    steady(Duration::ZERO, 200.0, &mut cold);
    steady(half, 60.0, &mut cold);
    for hot in 0..HOT {
        let offset = Duration::from_millis(37 * hot as u64);
        steady(offset, 1.0, &mut || hot);
        steady(half + offset, 8.0, &mut || hot);
    }
    for fraction in [1.0 / 6.0, 0.5, 5.0 / 6.0] {
        let at = half.mul_f64(fraction);
        for _ in 0..(150.0 * scale).round() as u32 {
            let jitter = Duration::from_micros(rng.random_range(0..50_000));
            out.push(Arrival {
                at: at + jitter,
                group: HOT + rng.random_range(0..COLD),
            });
        }
        for hot in 0..HOT {
            for _ in 0..(10.0 * scale).round().max(1.0) as u32 {
                let jitter = Duration::from_micros(rng.random_range(0..50_000));
                out.push(Arrival {
                    at: half + at + jitter,
                    group: hot,
                });
            }
        }
    }
    out.sort_by_key(|a| a.at);
    out
}

/// What a pacing run showed.
#[derive(Debug, Clone, Serialize)]
pub struct PacingReport {
    /// Calls planned.
    pub offered: usize,
    /// The callers' view.
    pub callers: Summary,
    /// The API's most calls in any sliding second (limit 200).
    pub app_peak: u32,
    /// Any group's most writes in any sliding second (limit 5).
    pub group_peak: u32,
    /// Calls the emulator refused for crossing a limit (10049, 60007).
    pub limit_refusals: u64,
    /// Accepted calls per second over the app-bound half, over the app limit.
    pub app_utilization: f64,
    /// The least-served hot group's accepted writes per second over the group-bound half (after
    /// the first half's backlog has drained), over the group limit.
    pub hot_utilization_min: f64,
    /// The same, averaged over the hot groups.
    pub hot_utilization_mean: f64,
}

impl PacingReport {
    /// Sliding-window violations seen at the emulator: peaks over a limit, plus refusals.
    pub fn violations(&self) -> u64 {
        u64::from(self.app_peak.saturating_sub(APP_LIMIT as u32))
            + u64::from(self.group_peak.saturating_sub(GROUP_LIMIT as u32))
            + self.limit_refusals
    }

    /// What the CI guard fails on: any violation, any caller without an answer, or a limit
    /// used below `min_utilization`. Empty when the run passes.
    pub fn problems(&self, min_utilization: f64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.violations() > 0 {
            problems.push(format!(
                "{} violations (API peak {}, group peak {}, {} refusals at the emulator)",
                self.violations(),
                self.app_peak,
                self.group_peak,
                self.limit_refusals
            ));
        }
        if self.callers.errors > 0 || self.callers.requests != self.offered as u64 {
            problems.push(format!(
                "{} of {} calls answered ({} without an answer)",
                self.callers.requests - self.callers.errors,
                self.offered,
                self.callers.errors
            ));
        }
        for (what, value) in [
            ("app limit utilization", self.app_utilization),
            ("hot group utilization", self.hot_utilization_min),
        ] {
            if value < min_utilization {
                problems.push(format!("{what} {value:.3} below {min_utilization}"));
            }
        }
        problems
    }
}

/// A `total`-long run through `proxy` (at Tencent's limits) with a fresh emulator enforcing them
/// and answering after 5 ms, all started from the timgate binary at `bin`.
pub async fn run_fresh(bin: &Path, proxy: Proxy, total: Duration) -> Result<PacingReport, String> {
    let dir = Workdir::new("pacing")?;
    let emulator = EmulatorProc::start(bin, &dir, Duration::from_millis(5), true).await?;
    let under_test = ProxyProc::start(proxy, bin, &dir, emulator.addr, Limits::Tencent, "").await?;
    run(&emulator, &under_test.target, total).await
}

/// Plays the schedule of a `total`-long run against `target` and reads the emulator.
pub async fn run(
    emulator: &EmulatorProc,
    target: &Target,
    total: Duration,
) -> Result<PacingReport, String> {
    let arrivals = schedule(total, 7);
    let names: Vec<Arc<str>> = (0..HOT + COLD).map(|i| group_name(i).into()).collect();
    let before = emulator.stats(false).await?;
    let start = Instant::now() + Duration::from_millis(100);
    let half = total / 2;
    let app_window = (start + Duration::from_secs(1), start + half);
    let hot_window = (start + half + half.mul_f64(0.3), start + total);
    let record = Arc::new(Mutex::new(Recorder::default()));
    let pool = Arc::new(Mutex::new(Vec::<Conn>::new()));
    let times = [app_window.0, app_window.1, hot_window.0, hot_window.1];
    let snapshots = tokio::spawn(snapshots(emulator.addr, times));
    let mut tasks = Vec::with_capacity(arrivals.len());
    for (n, arrival) in arrivals.iter().enumerate() {
        let at = start + arrival.at;
        tokio::time::sleep_until(at).await;
        let call = modify(&names[arrival.group], n as u64);
        let (target, record, pool) = (target.clone(), record.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let taken = pool.lock().map(|mut p| p.pop()).unwrap_or(None);
            let mut conn = match taken {
                Some(conn) => Some(conn),
                None => Conn::open(target.addr).await.ok(),
            };
            let outcome = match conn.as_mut() {
                Some(open) => open.call(&target, &call).await.ok(),
                None => None,
            };
            let elapsed = at.elapsed();
            if let Ok(mut record) = record.lock() {
                match outcome {
                    Some((status, code)) => record.answer(elapsed, status, code),
                    None => record.error(elapsed),
                }
            }
            if let (Some(conn), Some(_), Ok(mut pool)) = (conn, outcome, pool.lock()) {
                pool.push(conn);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    let shots = snapshots
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("emulator snapshot: {e}"))?;
    let after = emulator.stats(false).await?;
    let record = record.lock().map(|r| r.clone()).unwrap_or_default();
    let app_accepted = |s: &EmulatorStats| s.apis.get(API).map_or(0, |t| t.calls - t.over);
    let rate = |from: &(Instant, EmulatorStats),
                to: &(Instant, EmulatorStats),
                n: &dyn Fn(&EmulatorStats) -> u64| {
        (n(&to.1) - n(&from.1)) as f64 / (to.0 - from.0).as_secs_f64()
    };
    let app_utilization = rate(&shots[0], &shots[1], &app_accepted) / APP_LIMIT;
    let hot: Vec<f64> = (0..HOT)
        .map(|i| {
            let name = group_name(i);
            let accepted =
                |s: &EmulatorStats| s.group_writes.get(&name).map_or(0, |t| t.calls - t.over);
            rate(&shots[2], &shots[3], &accepted) / GROUP_LIMIT
        })
        .collect();
    Ok(PacingReport {
        offered: arrivals.len(),
        callers: record.summary(elapsed),
        app_peak: after.apis.get(API).map_or(0, |t| t.peak),
        group_peak: after.group_peak,
        limit_refusals: after.limit_refusals() - before.limit_refusals(),
        app_utilization,
        hot_utilization_min: hot.iter().copied().fold(f64::INFINITY, f64::min),
        hot_utilization_mean: hot.iter().sum::<f64>() / HOT as f64,
    })
}

/// Reads the emulator's tallies at set instants (from a task of its own, while calls go on).
async fn snapshots(
    addr: std::net::SocketAddr,
    times: [Instant; 4],
) -> Result<Vec<(Instant, EmulatorStats)>, String> {
    let mut shots = Vec::with_capacity(times.len());
    for at in times {
        tokio::time::sleep_until(at).await;
        let taken = Instant::now();
        shots.push((taken, emulator_stats(addr, true).await?));
    }
    Ok(shots)
}
