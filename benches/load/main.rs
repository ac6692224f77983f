//! The load benchmark: timgate side by side with nginx and HAProxy, each a separate process in
//! front of the emulator (`timgate emulate`), driven by one keep-alive client. Figures and
//! commands are in the README's Performance section; `benches/compare.sh` writes them there.
//!
//! ```text
//! cargo bench --bench load -- passthrough   # req/s and latency, pacing out of the way
//! cargo bench --bench load -- instructions  # instructions per request, timgate vs nginx
//! cargo bench --bench load -- pacing        # accuracy at Tencent's limits vs nginx limit_req
//! cargo bench --bench load -- memory        # RSS idle, 100,000 queued, drained; start-up
//! cargo bench --bench load -- faults        # limits through Redis loss and upstream stalls
//! cargo bench --bench load -- short         # the CI guard's scenario (24 s); exit 1 on failure
//! cargo bench --bench load -- run --proxy nginx --connections 64 --rate 2000 --seconds 10
//! cargo bench --bench load -- all --markdown target/load.md
//! ```
//!
//! Every mode prints its tables and one JSON summary line (`{"mode":...}`).

mod faults;
mod held;
mod instructions;
mod memory;
mod passthrough;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use loadgen::pacing::{self, PacingReport};
use loadgen::stack::Proxy;

/// The gateway binary cargo built for this benchmark.
pub const BIN: &str = env!("CARGO_BIN_EXE_timgate");

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Added by `cargo bench`; ignored.
    #[arg(long, global = true, hide = true)]
    bench: bool,
    /// Also write the tables, in markdown, to this file.
    #[arg(long, global = true)]
    markdown: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Mode {
    /// Throughput and latency of timgate, nginx and HAProxy (and no proxy), alternating.
    Passthrough(passthrough::Args),
    /// Instructions per request of timgate and nginx under callgrind, over a fixed count.
    Instructions(instructions::Args),
    /// Pacing accuracy at Tencent's limits: timgate, then nginx's limit_req on the same traffic.
    Pacing {
        /// Length of each run in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Resident memory idle, at N queued requests and after they drain; time to ready.
    Memory(memory::Args),
    /// The limits through faults: Redis frozen or restarted under a backlog, an upstream stall.
    Faults,
    /// The CI guard: a 24 s pacing run through timgate; fails on any violation or a
    /// utilization below 0.9.
    Short,
    /// One run against one proxy, with the figures printed.
    Run(passthrough::RunArgs),
    /// Passthrough, pacing and memory with their defaults.
    All,
}

fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut out = report::Out::new(cli.markdown.clone());
    let result = runtime.block_on(async {
        match cli.mode {
            Mode::Passthrough(args) => passthrough::compare(&args, &mut out).await,
            Mode::Pacing { seconds } => pacing_compare(seconds, &mut out).await,
            Mode::Memory(args) => memory::run(&args, &mut out).await,
            Mode::Instructions(args) => instructions::run(&args, &mut out).await,
            Mode::Faults => faults::run(&mut out).await,
            Mode::Short => short(&mut out).await,
            Mode::Run(args) => passthrough::single(&args, &mut out).await,
            Mode::All => {
                out.machine();
                passthrough::compare(&passthrough::Args::default(), &mut out).await?;
                pacing_compare(60, &mut out).await?;
                memory::run(&memory::Args::default(), &mut out).await
            }
        }
    });
    out.finish();
    if let Err(e) = result {
        eprintln!("load benchmark failed: {e}");
        std::process::exit(1);
    }
}

/// One pacing run against `proxy` at Tencent's limits, with a fresh emulator enforcing them.
async fn pacing_run(proxy: Proxy, seconds: u64) -> Result<PacingReport, String> {
    pacing::run_fresh(&PathBuf::from(BIN), proxy, Duration::from_secs(seconds)).await
}

async fn pacing_compare(seconds: u64, out: &mut report::Out) -> Result<(), String> {
    let mut rows = Vec::new();
    for proxy in [Proxy::Timgate, Proxy::Nginx] {
        eprintln!("pacing: {} for {seconds} s ...", proxy.name());
        rows.push((proxy, pacing_run(proxy, seconds).await?));
    }
    out.pacing_table(seconds, &rows);
    Ok(())
}

async fn short(out: &mut report::Out) -> Result<(), String> {
    let report = pacing_run(Proxy::Timgate, 24).await?;
    out.pacing_table(24, &[(Proxy::Timgate, report.clone())]);
    let problems = report.problems(0.9);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
