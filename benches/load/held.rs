//! Memory per held caller over HTTP/1.1: N callers, each on its own connection with one write
//! held by Tencent's limits (5 writes per group, 200 calls per API, per second), for timgate
//! and for nginx's `limit_req` delaying the same callers in the same run; then the callers go
//! away and what each proxy keeps is read.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use loadgen::client::{Conn, modify, modify_sized};
use loadgen::procs::Workdir;
use loadgen::stack::{EmulatorProc, Limits, Proxy, ProxyProc};

/// Writes per group: well inside a group's queue (64) and nginx's burst for it.
const PER_GROUP: usize = 40;

/// One proxy holding one count of callers.
pub(crate) struct Held {
    pub proxy: Proxy,
    pub callers: usize,
    /// The length of each caller's write.
    pub body_bytes: usize,
    /// Callers still waiting when memory was read.
    pub held: u64,
    pub idle_kib: u64,
    pub full_kib: u64,
    /// Resident memory 3 s after every caller hung up.
    pub after_kib: u64,
}

impl Held {
    /// Resident KiB per held caller.
    pub(crate) fn per_caller(&self) -> f64 {
        (self.full_kib.saturating_sub(self.idle_kib)) as f64 / self.held.max(1) as f64
    }
}

/// Holds `callers` callers on `proxy` in front of `emulator`, each with a one-key write or, with
/// `value_bytes`, a 16 KB one of four values that long, and reads the proxy's resident memory.
pub(crate) async fn hold(
    proxy: Proxy,
    callers: usize,
    value_bytes: Option<usize>,
    bin: &Path,
    dir: &Workdir,
    emulator: &EmulatorProc,
) -> Result<Held, String> {
    let gateway = ProxyProc::start(proxy, bin, dir, emulator.addr, Limits::Hold, "").await?;
    let process = gateway.process().ok_or("no process to measure")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = process.rss_tree_kib().unwrap_or(0);
    let groups: Vec<Arc<str>> = (0..callers.div_ceil(PER_GROUP))
        .map(|g| format!("@TGS#held-{}-{g}", proxy.name()).into())
        .collect();
    let (opened, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let make = |i: usize| {
        let group = &groups[i % groups.len()];
        match value_bytes {
            Some(bytes) => modify_sized(group, i as u64, bytes),
            None => modify(group, i as u64),
        }
    };
    let body_bytes = make(0).body.len();
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (target, call) = (gateway.target.clone(), make(i));
            let (opened, answered) = (opened.clone(), answered.clone());
            tokio::spawn(async move {
                let mut conn = Conn::open(target.addr).await?;
                opened.fetch_add(1, Ordering::Relaxed);
                let answer = conn.call(&target, &call).await;
                answered.fetch_add(1, Ordering::Relaxed);
                answer
            })
        })
        .collect();
    let started = tokio::time::Instant::now();
    while opened.load(Ordering::Relaxed) < callers as u64
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every request written and read by the proxy.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full_kib = process.rss_tree_kib().unwrap_or(0);
    let held = opened
        .load(Ordering::Relaxed)
        .saturating_sub(answered.load(Ordering::Relaxed));
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_kib = process.rss_tree_kib().unwrap_or(0);
    Ok(Held {
        proxy,
        callers,
        body_bytes,
        held,
        idle_kib,
        full_kib,
        after_kib,
    })
}

/// Callers holding a 16 KB write each, in the last rows of the table.
const SIZED_CALLERS: usize = 2_000;
/// Each of their four values.
const SIZED_VALUE: usize = 4_000;

/// The rows of the HTTP/1.1 table: timgate and nginx at each count with one-key writes, then at
/// [`SIZED_CALLERS`] with 16 KB writes, in the same run.
pub(crate) async fn run(counts: &[usize], bin: &Path, dir: &Workdir) -> Result<Vec<Held>, String> {
    timgate::server::fds::raise_nofile();
    let emulator = EmulatorProc::start(bin, dir, Duration::ZERO, false).await?;
    let mut rows = Vec::new();
    let runs = counts.iter().map(|&n| (n, None));
    for (callers, value_bytes) in runs.chain([(SIZED_CALLERS, Some(SIZED_VALUE))]) {
        for proxy in [Proxy::Timgate, Proxy::Nginx] {
            eprintln!(
                "memory: {} holding {callers} callers over HTTP/1.1 ...",
                proxy.name()
            );
            rows.push(hold(proxy, callers, value_bytes, bin, dir, &emulator).await?);
        }
    }
    Ok(rows)
}

/// The markdown table of `rows`.
pub(crate) fn table(rows: &[Held]) -> String {
    let mut out = String::from(
        "Held callers over HTTP/1.1: each caller on its own connection with one write held by \
         Tencent's limits (timgate's queues; nginx's `limit_req` with bursts, same emulator, same \
         run). Resident memory of the proxy's processes (nginx: master and workers).\n\n\
         | | callers | write | held when read | idle | holding | per held caller | 3 s after the callers left |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} B | {} | {:.1} MiB | {:.1} MiB | {:.2} KiB | {:.1} MiB |\n",
            row.proxy.name(),
            row.callers,
            row.body_bytes,
            row.held,
            row.idle_kib as f64 / 1024.0,
            row.full_kib as f64 / 1024.0,
            row.per_caller(),
            row.after_kib as f64 / 1024.0,
        ));
    }
    out
}
