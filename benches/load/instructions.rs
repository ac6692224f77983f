//! CPU per request that the machine's noise does not move: each proxy's instructions per
//! request, counted by valgrind's callgrind over a fixed number of pass-through requests after a
//! warm-up (counters zeroed between), for timgate and nginx in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use loadgen::client::{self, MakeCall, modify};
use loadgen::procs::Workdir;
use loadgen::stack::{EmulatorProc, Limits, Proxy, ProxyProc, Under, which};
use serde_json::json;

use super::BIN;
use super::report::Out;

/// Options of the instruction count.
#[derive(clap::Args, Clone)]
pub(crate) struct Args {
    /// Requests counted, per proxy.
    #[arg(long, default_value_t = 4000)]
    pub requests: u64,
    /// Requests sent before the counters are zeroed (connections made, pools and caches warm).
    #[arg(long, default_value_t = 1000)]
    pub warmup: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// A directory to copy callgrind's dumps into, for `callgrind_annotate` (where the
    /// instructions go, function by function).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            requests: 4000,
            warmup: 1000,
            connections: 16,
            keep: None,
        }
    }
}

/// The count of one proxy: instructions over the counted requests, and the requests answered OK.
struct Count {
    instructions: u64,
    ok: u64,
}

/// Runs `callgrind_control <flag> <pid>` for each process.
fn control(flag: &str, pids: &[u32]) -> Result<(), String> {
    for pid in pids {
        let status = Command::new("callgrind_control")
            .arg(flag)
            .arg(pid.to_string())
            .output()
            .map_err(|e| format!("callgrind_control: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "callgrind_control {flag} {pid}: {}",
                String::from_utf8_lossy(&status.stderr)
            ));
        }
    }
    Ok(())
}

/// The instructions of `pid`'s newest dump under `prefix` (`<prefix>.<pid>.<n>`), copied into
/// `keep` when given.
fn dumped(prefix: &Path, pid: u32, keep: Option<&Path>) -> Result<u64, String> {
    let dir = prefix.parent().ok_or("no directory")?;
    let stem = format!(
        "{}.{pid}.",
        prefix.file_name().and_then(|n| n.to_str()).unwrap_or("")
    );
    let newest = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix(&stem)?.parse().ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .ok_or(format!("no callgrind dump for {pid}"))?;
    let text = std::fs::read_to_string(&newest.1).map_err(|e| e.to_string())?;
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep).map_err(|e| e.to_string())?;
        let to = keep.join(newest.1.file_name().ok_or("no name")?);
        std::fs::write(&to, &text).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ").or(l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or(format!("no total in {}", newest.1.display()))
}

async fn count(
    kind: Proxy,
    dir: &Workdir,
    upstream: std::net::SocketAddr,
    args: &Args,
    make: MakeCall,
) -> Result<Count, String> {
    let prefix = dir.path.join(format!("callgrind-{}", kind.name()));
    let wrapper = vec![
        "valgrind".to_string(),
        "--tool=callgrind".to_string(),
        format!("--callgrind-out-file={}.%p", prefix.display()),
    ];
    let bin = PathBuf::from(BIN);
    // callgrind_control reaches only the process valgrind started, not a forked worker: nginx
    // serves in that one process (its per-request work is the same as in a worker's).
    let more = match kind {
        Proxy::Nginx => vec!["-g".to_string(), "master_process off;".to_string()],
        _ => Vec::new(),
    };
    let under = Under {
        wrapper,
        more_args: more,
    };
    let proxy = ProxyProc::start_under(kind, &bin, dir, upstream, Limits::Open, "", &under).await?;
    let pids = [proxy.process().ok_or("no process")?.pid()];
    client::counted(&proxy.target, args.connections, args.warmup, make.clone()).await;
    control("--zero", &pids)?;
    let (record, elapsed) =
        client::counted(&proxy.target, args.connections, args.requests, make).await;
    control("--dump", &pids)?;
    // The dump is written by the process itself, at its next scheduling.
    let mut instructions = 0;
    for pid in &pids {
        let mut tries = 0;
        instructions += loop {
            match dumped(&prefix, *pid, args.keep.as_deref()) {
                Ok(n) => break n,
                Err(e) if tries > 100 => return Err(e),
                Err(_) => tries += 1,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
    }
    Ok(Count {
        instructions,
        ok: record.summary(elapsed).ok,
    })
}

/// timgate's and nginx's counts, in that order, in one run with an emulator of their own.
async fn counts(args: &Args) -> Result<Vec<(Proxy, Count)>, String> {
    which("valgrind")?;
    let dir = Workdir::new("instructions")?;
    let emulator = EmulatorProc::start(&PathBuf::from(BIN), &dir, Duration::ZERO, false).await?;
    let names: Vec<Arc<str>> = (0..1000).map(|i| format!("bench-{i:05}").into()).collect();
    let make: MakeCall = Arc::new(move |n| modify(&names[n as usize % names.len()], n));
    let mut rows = Vec::new();
    for kind in [Proxy::Timgate, Proxy::Nginx] {
        eprintln!("{} under callgrind ...", kind.name());
        let c = count(kind, &dir, emulator.addr, args, make.clone()).await?;
        rows.push((kind, c));
    }
    Ok(rows)
}

/// Instructions per request of timgate and nginx with the default options, for the
/// pass-through table's column: `Err` says why there is none (valgrind missing).
pub(crate) async fn per_request() -> Result<Vec<(Proxy, f64)>, String> {
    let args = Args::default();
    let rows = counts(&args).await?;
    Ok(rows
        .into_iter()
        .map(|(kind, c)| (kind, c.instructions as f64 / args.requests.max(1) as f64))
        .collect())
}

/// timgate's and nginx's instructions per request, in one run.
pub(crate) async fn run(args: &Args, out: &mut Out) -> Result<(), String> {
    let rows = counts(args).await?;
    let per = |c: &Count| c.instructions as f64 / args.requests.max(1) as f64;
    let nginx = per(&rows[1].1);
    let mut table = format!(
        "Instructions per request (valgrind's callgrind: every thread of timgate; nginx in one process, `master_process off`; \
         counters zeroed after {} warm-up requests, then {} requests over {} keep-alive \
         connections, pacing out of the way): a count the machine's other load does not \
         change.\n\n| | instructions per request | vs nginx | answered OK |\n|---|---|---|---|\n",
        args.warmup, args.requests, args.connections
    );
    let mut runs = Vec::new();
    for (kind, c) in &rows {
        table.push_str(&format!(
            "| {} | {:.0} | {:.2} | {} of {} |\n",
            kind.name(),
            per(c),
            per(c) / nginx,
            c.ok,
            args.requests
        ));
        runs.push(json!({"proxy": kind.name(), "instructions_per_request": per(c), "ok": c.ok}));
    }
    out.block(&table);
    out.summary(json!({"mode": "instructions", "requests": args.requests, "runs": runs}));
    Ok(())
}
