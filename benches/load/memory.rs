//! Memory and start-up: timgate's resident memory idle, with 100,000 requests queued (held by
//! Tencent's limits, with a deadline long enough to wait), and after a reload lifts the limits
//! and they drain; and the time from start to ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use loadgen::client::modify;
use loadgen::flood::h2_flood;
use loadgen::procs::{Workdir, get};
use loadgen::stack::{EmulatorProc, Limits, Proxy, ProxyProc};
use serde_json::json;
use tokio::time::Instant;

use super::BIN;
use super::report::Out;

/// Options of the memory run.
#[derive(clap::Args, Clone)]
pub(crate) struct Args {
    /// Requests to queue.
    #[arg(long, default_value_t = 100_000)]
    pub queued: usize,
    /// Groups they are spread over (each holds at most 64 queued).
    #[arg(long, default_value_t = 2_000)]
    pub groups: usize,
    /// Fresh starts timed for the start-up figure.
    #[arg(long, default_value_t = 5)]
    pub starts: usize,
    /// HTTP/1.1 runs: callers held at once, one connection each, for timgate and nginx.
    #[arg(long, value_delimiter = ',', default_values_t = [8_000, 16_000])]
    pub h1: Vec<usize>,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            queued: 100_000,
            groups: 2_000,
            starts: 5,
            h1: vec![8_000, 16_000],
        }
    }
}

/// Long enough for 100,000 writes at 200 per second to be admitted rather than refused.
const HOLD: &str = "max_wait_ms = 600000\nmax_queued = 1000000\n";
/// The reload that lets them all go.
const RELEASE: &str = "max_wait_ms = 600000\nmax_queued = 1000000\napp_per_second = \
                       100000000\ngroup_writes_per_second = 100000000\n";

/// The sum of a gauge's series in timgate's `/metrics`, or of one labelled series.
async fn gauge(admin: std::net::SocketAddr, series: &str) -> f64 {
    let Ok((_, body)) = get(admin, "/metrics").await else {
        return -1.0;
    };
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(0.0, |k| k as f64 / 1024.0)
}

pub(crate) async fn run(args: &Args, out: &mut Out) -> Result<(), String> {
    let dir = Workdir::new("memory")?;
    let bin = PathBuf::from(BIN);
    let emulator = EmulatorProc::start(&bin, &dir, Duration::ZERO, false).await?;
    let start = || {
        ProxyProc::start(
            Proxy::Timgate,
            &bin,
            &dir,
            emulator.addr,
            Limits::Tencent,
            HOLD,
        )
    };
    let mut starts = Vec::new();
    for _ in 0..args.starts {
        starts.push(start().await?.started_in.as_secs_f64() * 1000.0);
    }
    starts.sort_by(f64::total_cmp);
    let gateway = start().await?;
    let (admin, process) = match (gateway.admin, gateway.process()) {
        (Some(admin), Some(process)) => (admin, process),
        _ => return Err("timgate has no admin listener".into()),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = process.rss_kib();
    let names: Vec<Arc<str>> = (0..args.groups)
        .map(|i| format!("mem-{i:05}").into())
        .collect();
    let make = Arc::new(move |n: u64| modify(&names[n as usize % names.len()], n));
    let answered = Arc::new(AtomicU64::new(0));
    eprintln!("memory: queueing {} requests ...", args.queued);
    let filling = Instant::now();
    let flood = tokio::spawn(h2_flood(
        gateway.target.addr,
        args.queued,
        make,
        answered.clone(),
    ));
    let series = "timgate_queued_requests{lane=\"app\"}";
    let (mut queued, mut last) = (0.0, -1.0);
    while queued < args.queued as f64 * 0.98 && queued != last && filling.elapsed().as_secs() < 120
    {
        last = queued;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        queued = gauge(admin, series).await;
    }
    let fill_time = filling.elapsed();
    let full = process.rss_kib();
    let config = gateway.config.clone().ok_or("timgate has no config file")?;
    let toml = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(&config, toml.replace(HOLD, RELEASE)).map_err(|e| e.to_string())?;
    process.signal("HUP")?;
    let draining = Instant::now();
    let record = flood.await.map_err(|e| e.to_string())??;
    let drain_time = draining.elapsed();
    // Idle groups are forgotten by the once-a-second housekeeping.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let drained = process.rss_kib();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let settled = process.rss_kib();
    let left = gauge(admin, series).await;
    let table = format!(
        "Memory and start-up: timgate's resident set (VmRSS), {} requests over {} groups sent \
         at once over HTTP/2 and held by Tencent's limits, then released by a reload.\n\n\
         | | resident memory |\n|---|---|\n| idle, after start | {:.1} MiB |\n\
         | {:.0} requests queued (filled in {:.1} s) | {:.1} MiB ({:.2} KiB per queued request) |\n\
         | drained ({} answered OK in {:.1} s, {} queued left), 3 s later | {:.1} MiB |\n\
         | 15 s later | {:.1} MiB |\n\n\
         Start to ready (`/readyz` 200), {} fresh starts: median {:.1} ms, slowest {:.1} ms.\n",
        args.queued,
        args.groups,
        mib(idle),
        queued,
        fill_time.as_secs_f64(),
        mib(full),
        (mib(full) - mib(idle)) * 1024.0 / queued.max(1.0),
        record.ok(),
        drain_time.as_secs_f64(),
        left,
        mib(drained),
        mib(settled),
        starts.len(),
        starts.get(starts.len() / 2).copied().unwrap_or(0.0),
        starts.last().copied().unwrap_or(0.0),
    );
    out.block(&table);
    drop(gateway);
    let held = super::held::run(&args.h1, &bin, &dir).await?;
    out.block(&super::held::table(&held));
    let h1: Vec<_> = held
        .iter()
        .map(|h| {
            json!({"proxy": h.proxy.name(), "callers": h.callers, "body_bytes": h.body_bytes, "held": h.held,
                   "kib_per_held_caller": h.per_caller(), "rss_after_mib": h.after_kib as f64 / 1024.0})
        })
        .collect();
    out.summary(json!({
        "h1": h1,
        "mode": "memory",
        "rss_idle_mib": mib(idle),
        "queued": queued,
        "rss_queued_mib": mib(full),
        "rss_drained_mib": mib(drained),
        "rss_settled_mib": mib(settled),
        "answered_ok": record.ok(),
        "answered": record.total(),
        "start_to_ready_ms": starts,
    }));
    Ok(())
}
