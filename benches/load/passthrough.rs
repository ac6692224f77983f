//! Pass-through overhead: with pacing out of the way, the same client against timgate, nginx,
//! HAProxy and the emulator itself, alternating in one run: requests per second at a fixed
//! concurrency (closed loop), and latency at a fixed rate (open loop).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use loadgen::client::{self, MakeCall, modify};
use loadgen::procs::Workdir;
use loadgen::stack::{EmulatorProc, Limits, Proxy, ProxyProc};
use loadgen::stats::Summary;
use serde_json::json;

use super::BIN;
use super::report::Out;

/// Options of the side-by-side comparison.
#[derive(clap::Args, Clone)]
pub(crate) struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds; each proxy is measured once per round, in rotating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent keep-alive connections of the throughput runs.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Requests per second of the latency runs.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Latency added by the emulator, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Distinct groups the writes go to, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub groups: usize,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            seconds: 10,
            rounds: 3,
            connections: 64,
            rate: 1000.0,
            latency_ms: 0,
            groups: 10_000,
        }
    }
}

/// Options of a single run.
#[derive(clap::Args, Clone)]
pub(crate) struct RunArgs {
    /// timgate, nginx, haproxy or direct.
    #[arg(long, default_value = "timgate")]
    pub proxy: String,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Requests per second (open loop); 0 for closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Distinct groups, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub groups: usize,
    /// Tencent's limits in the proxy and the emulator (else both out of the way).
    #[arg(long)]
    pub tencent_limits: bool,
    /// Latency added by the emulator, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
}

fn writes(groups: usize) -> MakeCall {
    let names: Vec<Arc<str>> = (0..groups.max(1))
        .map(|i| format!("bench-{i:05}").into())
        .collect();
    Arc::new(move |n| modify(&names[n as usize % names.len()], n))
}

/// Runs closed-loop when `rate` is 0, else open-loop at `rate`. Returns the callers' figures
/// and the proxy's CPU time per request in microseconds (0 without a proxy): a figure that
/// other load on the machine disturbs far less than throughput.
async fn measure(
    under_test: &ProxyProc,
    connections: usize,
    rate: f64,
    seconds: u64,
    make: MakeCall,
) -> (Summary, f64) {
    let duration = Duration::from_secs(seconds);
    let target = &under_test.target;
    let cpu = || under_test.process().map_or(0.0, |p| p.cpu_seconds());
    let cpu_before = cpu();
    let (record, elapsed) = if rate > 0.0 {
        client::fixed_rate(target, connections, rate, duration, make).await
    } else {
        client::closed_loop(target, connections, duration, make).await
    };
    let cpu_us = (cpu() - cpu_before) * 1e6 / record.total().max(1) as f64;
    (record.summary(elapsed), cpu_us)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The side-by-side comparison.
pub(crate) async fn compare(args: &Args, out: &mut Out) -> Result<(), String> {
    let dir = Workdir::new("passthrough")?;
    let bin = PathBuf::from(BIN);
    let latency = Duration::from_millis(args.latency_ms);
    let emulator = EmulatorProc::start(&bin, &dir, latency, false).await?;
    let mut proxies = Vec::new();
    for kind in [Proxy::Timgate, Proxy::Nginx, Proxy::Haproxy, Proxy::Direct] {
        proxies.push(ProxyProc::start(kind, &bin, &dir, emulator.addr, Limits::Open, "").await?);
    }
    let make = writes(args.groups);
    for p in &proxies {
        measure(p, args.connections, 0.0, 2, make.clone()).await;
        if let Some(proc) = p.process() {
            eprintln!(
                "{} ready in {:?}, pid {}",
                p.kind.name(),
                p.started_in,
                proc.pid()
            );
        }
    }
    let mut results: Vec<(Vec<Summary>, Vec<Summary>)> = vec![Default::default(); proxies.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); proxies.len()];
    for round in 0..args.rounds {
        for i in 0..proxies.len() {
            let k = (i + round) % proxies.len();
            let p = &proxies[k];
            eprintln!("round {}: {} ...", round + 1, p.kind.name());
            let (closed, cpu_us) =
                measure(p, args.connections, 0.0, args.seconds, make.clone()).await;
            let (open, _) = measure(p, 50, args.rate, args.seconds, make.clone()).await;
            cpu[k].push(cpu_us);
            results[k].0.push(closed);
            results[k].1.push(open);
        }
    }
    // Each proxy counted under valgrind on its own (the ones above sit idle meanwhile).
    let instructions = super::instructions::per_request().await;
    if let Err(why) = &instructions {
        eprintln!("no instruction count: {why}");
    }
    let instructions_of = |kind: Proxy| match &instructions {
        Ok(rows) => rows
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or_else(|| "—".to_string(), |(_, n)| format!("{n:.0}")),
        Err(_) => "—".to_string(),
    };
    let rps: Vec<f64> = results
        .iter()
        .map(|(closed, _)| median(closed.iter().map(|s| s.per_second).collect()))
        .collect();
    let pct = |k: usize, f: fn(&Summary) -> f64| median(results[k].1.iter().map(f).collect());
    let nginx_rps = rps[1];
    let direct_p99 = pct(3, |s| s.p99_ms);
    let mut table = format!(
        "Pass-through, pacing out of the way: {} rounds, alternating, {} s each; throughput \
         with {} keep-alive connections (closed loop), latency at {:.0} requests per second \
         over 50 connections (open loop; a request held back by a slow answer before it counts \
         from its scheduled time); medians of the rounds. `direct`: the client signs and calls \
         the emulator itself. Proxy CPU: user and system time of the proxy's processes per \
         request, from /proc. Instructions: the proxy's instructions per request under \
         valgrind's callgrind after this table's runs (`-- instructions`: 4,000 writes over 16 \
         connections after 1,000 to warm up; nginx in one process), a count the machine's \
         other load does not move.\n\n\
         | | requests/s | vs nginx | proxy CPU per request | instructions per request | p50 \
         | p90 | p99 | p99.9 | p99 added to direct | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        args.rounds, args.seconds, args.connections, args.rate
    );
    let mut runs = Vec::new();
    for (k, p) in proxies.iter().enumerate() {
        let errors: u64 = results[k]
            .0
            .iter()
            .chain(&results[k].1)
            .map(|s| s.errors + s.requests - s.ok)
            .sum();
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.1} µs | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} |\n",
            p.kind.name(),
            rps[k],
            rps[k] / nginx_rps,
            median(cpu[k].clone()),
            instructions_of(p.kind),
            pct(k, |s| s.p50_ms),
            pct(k, |s| s.p90_ms),
            pct(k, |s| s.p99_ms),
            pct(k, |s| s.p999_ms),
            if p.kind == Proxy::Direct {
                "".to_string()
            } else {
                format!("{:.2} ms", pct(k, |s| s.p99_ms) - direct_p99)
            },
            errors,
        ));
        runs.push(json!({
            "proxy": p.kind.name(),
            "requests_per_second": rps[k],
            "cpu_us_per_request": median(cpu[k].clone()),
            "instructions_per_request": instructions.as_ref().ok().and_then(|rows| rows.iter().find(|(kind, _)| *kind == p.kind).map(|(_, n)| *n)),
            "throughput": results[k].0,
            "fixed_rate": results[k].1,
        }));
    }
    out.block(&table);
    out.summary(json!({"mode": "passthrough", "connections": args.connections, "rate": args.rate, "runs": runs}));
    Ok(())
}

/// One run against one proxy, with the emulator's view of the limits.
pub(crate) async fn single(args: &RunArgs, out: &mut Out) -> Result<(), String> {
    let kind = Proxy::parse(&args.proxy).ok_or(format!("unknown proxy {}", args.proxy))?;
    let limits = if args.tencent_limits {
        Limits::Tencent
    } else {
        Limits::Open
    };
    let dir = Workdir::new("run")?;
    let bin = PathBuf::from(BIN);
    let latency = Duration::from_millis(args.latency_ms);
    let emulator = EmulatorProc::start(&bin, &dir, latency, args.tencent_limits).await?;
    let under_test = ProxyProc::start(kind, &bin, &dir, emulator.addr, limits, "").await?;
    let (summary, cpu_us) = measure(
        &under_test,
        args.connections,
        args.rate,
        args.seconds,
        writes(args.groups),
    )
    .await;
    let stats = emulator.stats(false).await?;
    let api = stats.apis.values().next().copied().unwrap_or_default();
    out.block(&format!(
        "| | requests/s | proxy CPU per request | p50 | p90 | p99 | p99.9 | most calls in a second \
         (API) | most writes in a second (group) | app utilization |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {} | {:.0} | {:.1} µs | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} | {} | {:.3} |\n",
        kind.name(),
        summary.per_second,
        cpu_us,
        summary.p50_ms,
        summary.p90_ms,
        summary.p99_ms,
        summary.p999_ms,
        api.peak,
        stats.group_peak,
        (api.calls - api.over) as f64 / summary.seconds / 200.0,
    ));
    out.summary(json!({"mode": "run", "proxy": kind.name(), "summary": summary, "app_peak": api.peak, "group_peak": stats.group_peak, "limit_refusals": stats.limit_refusals()}));
    Ok(())
}
