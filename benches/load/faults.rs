//! `cargo bench --bench load -- faults`: the limits through faults. Replicas in this process
//! share one budget through a real redis-server while it freezes (SIGSTOP) or is killed and
//! restarted under a backlog, and an upstream stalls 8 s then releases everything it held. For
//! each: the emulator's peak per sliding second (Tencent's limit: 200), its limit refusals, the
//! callers lost, and how long after the fault ended the backlog took to clear.

use std::time::Duration;

use loadgen::inproc::demo_toml;
use loadgen::offer::{self, MODIFY};
use loadgen::procs::{Proc, Workdir, free_addr, redis_server};
use loadgen::stack::which;
use timgate::app::App;
use timgate::config::Config;
use timgate::emulator::{Emulator, EmulatorConfig};
use tokio::time::Instant;

use crate::report::Out;

/// What goes wrong.
#[derive(Clone, Copy)]
enum Fault {
    None,
    Freeze,
    Kill,
    Stall,
}

struct Scenario {
    name: &'static str,
    replicas: usize,
    redis: bool,
    rate: u32,
    fault: Fault,
    /// How long the fault lasts.
    lasts: Duration,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "calm, 2 replicas, Redis",
        replicas: 2,
        redis: true,
        rate: 340,
        fault: Fault::None,
        lasts: Duration::from_secs(5),
    },
    Scenario {
        name: "Redis frozen 5 s, 2 replicas",
        replicas: 2,
        redis: true,
        rate: 340,
        fault: Fault::Freeze,
        lasts: Duration::from_secs(5),
    },
    Scenario {
        name: "Redis killed 5 s and restarted, 3 replicas",
        replicas: 3,
        redis: true,
        rate: 340,
        fault: Fault::Kill,
        lasts: Duration::from_secs(5),
    },
    Scenario {
        name: "upstream stalled 8 s, 1 replica",
        replicas: 1,
        redis: false,
        rate: 250,
        fault: Fault::Stall,
        lasts: Duration::from_secs(8),
    },
    Scenario {
        name: "upstream stalled 8 s, 2 replicas, Redis",
        replicas: 2,
        redis: true,
        rate: 250,
        fault: Fault::Stall,
        lasts: Duration::from_secs(8),
    },
];

/// Seconds of load before the fault begins, and after it ends.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(2);

/// Runs every scenario and prints the table.
pub(crate) async fn run(out: &mut Out) -> Result<(), String> {
    let redis_server = which("redis-server")?;
    let mut rows = Vec::new();
    for scenario in SCENARIOS {
        eprintln!("faults: {} ...", scenario.name);
        rows.push(one(scenario, &redis_server).await?);
    }
    table(out, &rows);
    Ok(())
}

/// One scenario's figures.
pub(crate) struct Row {
    /// What was done.
    pub name: &'static str,
    /// Writes a second offered.
    pub rate: u32,
    /// The emulator's most calls in a sliding second.
    pub peak: usize,
    /// Its 60007 and 10049 answers.
    pub refusals: u64,
    /// Callers answered OK, busy (429/503 with Retry-After), and lost.
    pub ok: u64,
    pub busy: u64,
    pub lost: usize,
    /// From the fault's end until the last caller was answered.
    pub clear: Duration,
}

async fn one(scenario: &Scenario, redis_program: &std::path::Path) -> Result<Row, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let config = EmulatorConfig {
        max_records: 1_000_000,
        ..EmulatorConfig::demo()
    };
    let emulator = Emulator::spawn(config, listener, None);
    let dir = Workdir::new("faults")?;
    let redis_addr = free_addr()?;
    let start_redis = || {
        let command = redis_server(redis_program, redis_addr.port());
        Proc::spawn("redis-server", command, &dir.path.join("redis.log"))
    };
    let mut redis = if scenario.redis {
        Some(start_redis()?)
    } else {
        None
    };
    if redis.is_some() {
        wait_port(redis_addr).await?;
    }
    let limits = if scenario.redis {
        format!("[limits]\nbackend = \"redis\"\nredis_url = \"redis://{redis_addr}\"\n")
    } else {
        String::new()
    };
    let mut stops = Vec::new();
    let mut urls = Vec::new();
    let mut metrics = Vec::new();
    for _ in 0..scenario.replicas {
        let toml = demo_toml(
            emulator.addr,
            &format!("[log]\nlevel = \"error\"\n{limits}"),
        );
        let config = Config::from_toml(&toml).map_err(|e| e.to_string())?;
        let app = App::build(config).await.map_err(|e| e.to_string())?;
        urls.push(format!("http://{}/v4/{MODIFY}", app.addr()));
        metrics.push(app.metrics().clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(async {
            let _ = stopped.await;
        }));
        stops.push((stop, server));
    }
    let give_up = Instant::now() + Duration::from_secs(20);
    while scenario.redis && !metrics.iter().all(|m| m.limiter_backend_up.get() == 1) {
        if Instant::now() > give_up {
            return Err("the replicas did not reach Redis".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let span = BEFORE + scenario.lasts + AFTER;
    let fault = async {
        tokio::time::sleep(BEFORE).await;
        match scenario.fault {
            Fault::None => tokio::time::sleep(scenario.lasts).await,
            Fault::Freeze | Fault::Kill => {
                let signal = if matches!(scenario.fault, Fault::Freeze) {
                    "STOP"
                } else {
                    "KILL"
                };
                if let Some(redis) = &redis {
                    let _ = redis.signal(signal);
                }
                tokio::time::sleep(scenario.lasts).await;
                if matches!(scenario.fault, Fault::Freeze) {
                    if let Some(redis) = &redis {
                        let _ = redis.signal("CONT");
                    }
                } else {
                    drop(redis.take());
                    redis = Some(start_redis()?);
                }
            }
            Fault::Stall => {
                emulator.state.stall(scenario.lasts);
                tokio::time::sleep(scenario.lasts).await;
            }
        }
        Ok::<Instant, String>(Instant::now())
    };
    let (answers, ended) = tokio::join!(offer::offer(&urls, scenario.rate, span), fault);
    let ended = ended?;
    for (stop, server) in stops {
        let _ = stop.send(());
        let _ = server.await;
    }
    let row = Row {
        name: scenario.name,
        rate: scenario.rate,
        peak: offer::peak(&emulator),
        refusals: emulator.state.limit_refusals(),
        ok: answers.ok,
        busy: answers.busy,
        lost: answers.failed.len(),
        clear: answers
            .last_answer
            .map_or(Duration::ZERO, |last| last.saturating_duration_since(ended)),
    };
    emulator.shutdown().await;
    Ok(row)
}

async fn wait_port(addr: std::net::SocketAddr) -> Result<(), String> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("nothing listens on {addr}"))
}

fn table(out: &mut Out, rows: &[Row]) {
    let mut block = String::from(
        "| scenario | offered/s | emulator peak per sliding second (limit 200) | limit refusals | callers OK / busy / lost | backlog cleared after the fault |\n|---|---:|---:|---:|---|---:|\n",
    );
    for row in rows {
        block.push_str(&format!(
            "| {} | {} | {} | {} | {} / {} / {} | {:.1} s |\n",
            row.name,
            row.rate,
            row.peak,
            row.refusals,
            row.ok,
            row.busy,
            row.lost,
            row.clear.as_secs_f64()
        ));
    }
    out.block(&block);
    let summary: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "scenario": row.name, "peak": row.peak, "refusals": row.refusals,
                "lost": row.lost, "clear_s": row.clear.as_secs_f64(),
            })
        })
        .collect();
    out.summary(serde_json::json!({"mode": "faults", "rows": summary}));
}
