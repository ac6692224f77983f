//! Durable queue benchmark (issue 19): the same load through a gateway on the Redis budget with
//! `queue.durable` off and on. Prints a markdown table of the caller-seen latency of synchronous
//! writes (100 a second over 100 groups, so that no write waits for its group), the async writes
//! one replica accepts a second (64 callers in a closed loop over 2,000 groups), the Redis memory a
//! queued write takes beyond its body (5,000 appends through the queue's own code with no owner
//! running, `INFO memory` before and after), and the time a second replica takes to resume a
//! partition after the first is killed with SIGKILL (a real `timgate` process).
//!
//! `cargo bench --bench durable` (needs `redis-server`); `-- --seconds N` shortens the latency run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loadgen::inproc::InProcess;
use loadgen::procs::{Proc, Workdir, free_addr, redis_server};
use timgate::config::Config;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const BIN: &str = env!("CARGO_BIN_EXE_timgate");

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn body(group: &str, i: u64) -> String {
    format!(r#"{{"GroupId":"{group}","GroupAttr":[{{"key":"seq","value":"v{i:08}"}}]}}"#)
}

/// A redis-server of the benchmark's own, on a free port.
struct Redis {
    url: String,
    _proc: Proc,
    _dir: Workdir,
}

impl Redis {
    async fn start() -> Redis {
        let dir = Workdir::new("durable-redis").expect("workdir");
        let port = free_addr().expect("port").port();
        let program = loadgen::stack::which("redis-server").expect("redis-server on PATH");
        let proc = Proc::spawn(
            "redis",
            redis_server(&program, port),
            &dir.path.join("redis.log"),
        )
        .expect("redis-server starts");
        let url = format!("redis://127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str()).expect("url");
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Redis {
                    url,
                    _proc: proc,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer");
    }

    async fn used_memory(&self) -> u64 {
        let client = redis::Client::open(self.url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory")
    }
}

fn limits(redis: &Redis, durable: bool) -> String {
    limits_with(redis, durable, "")
}

/// As [`limits`], with `queue` lines in `[queue]`.
fn limits_with(redis: &Redis, durable: bool, queue: &str) -> String {
    format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n[queue]\ndurable = {durable}\n{queue}[log]\nlevel = \"error\"\n",
        redis.url
    )
}

async fn post(
    client: &Client,
    addr: SocketAddr,
    body: String,
    asynchronous: bool,
) -> (u16, Duration) {
    let sent = Instant::now();
    let mut request = http::Request::post(format!("http://{addr}/v4/{MODIFY}"));
    if asynchronous {
        request = request.header("prefer", "respond-async");
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let status = match client.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.into_body().collect().await;
            status
        }
        Err(_) => 0,
    };
    (status, sent.elapsed())
}

fn quantile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    let at = ((latencies.len().max(1) - 1) as f64 * p) as usize;
    latencies.get(at).copied().unwrap_or_default()
}

/// Synchronous writes, 100 a second over 100 groups, open loop: p50 and p99 of the OK answers.
async fn latency(durable: bool, seconds: u64) -> (Duration, Duration, usize) {
    let redis = Redis::start().await;
    let running = InProcess::start(&limits(&redis, durable))
        .await
        .expect("gateway");
    tokio::time::sleep(Duration::from_millis(500)).await; // the leases taken
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let total = seconds * 100;
    let started = Instant::now();
    let mut callers = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_millis(10 * i)).await;
        let (client, addr) = (client.clone(), running.addr);
        callers.push(tokio::spawn(async move {
            post(
                &client,
                addr,
                body(&format!("@TGS#lat{}", i % 100), i),
                false,
            )
            .await
        }));
    }
    let mut ok = Vec::new();
    for caller in callers {
        let (status, latency) = caller.await.expect("caller");
        if status == 200 {
            ok.push(latency);
        }
    }
    running.stop().await;
    let answered = ok.len();
    (quantile(&mut ok, 0.5), quantile(&mut ok, 0.99), answered)
}

/// Async writes accepted a second by one replica: 64 callers in a closed loop for 5 s.
async fn accepts() -> f64 {
    let redis = Redis::start().await;
    let running = InProcess::start(&limits(&redis, true))
        .await
        .expect("gateway");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let accepted = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let callers: Vec<_> = (0..64)
        .map(|_| {
            let (client, addr, accepted, next) =
                (client.clone(), running.addr, accepted.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (status, _) = post(
                        &client,
                        addr,
                        body(&format!("@TGS#acc{}", i % 2000), i),
                        true,
                    )
                    .await;
                    if status == 202 {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        let _ = caller.await;
    }
    running.stop().await;
    accepted.load(Ordering::Relaxed) as f64 / 5.0
}

/// Redis bytes per queued write beyond its body: 5,000 appends, no owner.
async fn memory_per_write() -> (f64, usize) {
    let redis = Redis::start().await;
    let extra = format!(
        "[tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n{}",
        limits(&redis, true)
    );
    let config = Config::from_toml(&extra).expect("config");
    let timgate::config::Backend::Redis(target) = &config.limits.backend else {
        panic!("the Redis backend");
    };
    let queue = timgate::queue::Queue::new(
        target,
        &config.queue,
        &config.limits.redis_prefix,
        DEMO_SDKAPPID,
        (1000, 1_000_000),
        timgate::metrics::QueueMetrics::new(),
    );
    // One write first, so that the streams and hashes exist before the baseline.
    let n = 5000u64;
    let groups = 500;
    let entry = |i: u64| timgate::queue::Entry {
        job: timgate::queue::JobId {
            partition: 0,
            entry: String::new(),
        },
        api: MODIFY.to_string(),
        group: format!("@TGS#mem{}", i % groups),
        body: Bytes::from(body(&format!("@TGS#mem{}", i % groups), i)),
        request_id: format!("{:016x}", rand::random::<u64>()),
        deadline_ms: timgate::queue::unix_ms() + 300_000,
        asynchronous: true,
    };
    for i in 0..groups {
        queue
            .append(&entry(i), Duration::ZERO, Duration::from_secs(300))
            .await
            .expect("append");
    }
    let before = redis.used_memory().await;
    for i in groups..groups + n {
        queue
            .append(&entry(i), Duration::ZERO, Duration::from_secs(300))
            .await
            .expect("append");
    }
    let after = redis.used_memory().await;
    let body_len = entry(0).body.len();
    (
        (after - before) as f64 / n as f64 - body_len as f64,
        body_len,
    )
}

/// From a SIGKILL of the replica owning every partition to the first write the other sends.
async fn takeover(lease_ms: u64) -> Duration {
    let redis = Redis::start().await;
    let extra = limits_with(&redis, true, &format!("lease_ms = {lease_ms}\n"));
    // A (a process) starts first and takes every partition; B (in this process) follows.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let emulator = Emulator::spawn(EmulatorConfig::demo(), listener, None);
    let dir = Workdir::new("durable-takeover").expect("workdir");
    let (proxy, admin) = (free_addr().expect("port"), free_addr().expect("port"));
    let mut command = std::process::Command::new(BIN);
    command
        .env("TIMGATE__TENCENT__SDKAPPID", DEMO_SDKAPPID.to_string())
        .env("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY)
        .env(
            "TIMGATE__TENCENT__BASE_URL",
            format!("http://{}", emulator.addr),
        )
        .env("TIMGATE__SERVER__LISTEN", proxy.to_string())
        .env("TIMGATE__SERVER__ADMIN_LISTEN", admin.to_string())
        .env("TIMGATE__LIMITS__BACKEND", "redis")
        .env("TIMGATE__LIMITS__REDIS_URL", &redis.url)
        .env("TIMGATE__QUEUE__DURABLE", "true")
        .env("TIMGATE__QUEUE__LEASE_MS", lease_ms.to_string())
        .env("TIMGATE__LOG__LEVEL", "warn");
    let a = Proc::spawn("timgate-a", command, &dir.path.join("a.log")).expect("replica A");
    loadgen::procs::wait_http(admin, "/readyz", Instant::now(), Duration::from_secs(10))
        .await
        .expect("A ready");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b_toml = loadgen::inproc::demo_toml(emulator.addr, &extra);
    let b = timgate::app::App::build(Config::from_toml(&b_toml).expect("B config"))
        .await
        .expect("replica B");
    let (stop_b, b_stopped) = tokio::sync::oneshot::channel::<()>();
    let b_task = tokio::spawn(b.serve(async {
        let _ = b_stopped.await;
    }));
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    for i in 0..200 {
        let (status, _) = post(
            &client,
            proxy,
            body(&format!("@TGS#take{}", i % 20), i),
            true,
        )
        .await;
        assert_eq!(status, 202, "A accepts");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal("KILL").expect("SIGKILL");
    let killed = Instant::now();
    let records_at_kill = emulator.state.records().len();
    let resumed = loop {
        let records = emulator.state.records();
        if let Some(first) = records.get(records_at_kill + 1) {
            break first.at.saturating_duration_since(killed);
        }
        if killed.elapsed() > Duration::from_secs(30) {
            panic!("B never resumed");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let _ = stop_b.send(());
    let _ = b_task.await;
    emulator.shutdown().await;
    resumed
}

fn main() {
    let seconds = arg("--seconds", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (m50, m99, m_ok) = runtime.block_on(latency(false, seconds));
    let (d50, d99, d_ok) = runtime.block_on(latency(true, seconds));
    let accepted = runtime.block_on(accepts());
    let (per_write, body_len) = runtime.block_on(memory_per_write());
    let take_2000 = runtime.block_on(takeover(2000));
    let take_1000 = runtime.block_on(takeover(1000));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "Durable queue against in-memory, the Redis budget in both ({seconds} s at 100 sync writes/s over 100 groups):"
    );
    println!();
    println!("| measure | in memory | durable | added |");
    println!("|---|---:|---:|---:|");
    println!(
        "| sync write p50 | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(m50),
        ms(d50),
        ms(d50) - ms(m50)
    );
    println!(
        "| sync write p99 | {:.2} ms | {:.2} ms | {:.2} ms |",
        ms(m99),
        ms(d99),
        ms(d99) - ms(m99)
    );
    println!("| answered OK | {m_ok} | {d_ok} | |");
    println!("| async writes accepted a second, one replica (64 callers) | — | {accepted:.0} | |");
    println!(
        "| Redis memory per queued write beyond its {body_len}-byte body | — | {per_write:.0} B | |"
    );
    println!(
        "| SIGKILL to the next owner's first send, lease_ms 2000 | — | {:.0} ms | |",
        ms(take_2000)
    );
    println!(
        "| SIGKILL to the next owner's first send, lease_ms 1000 | — | {:.0} ms | |",
        ms(take_1000)
    );
}
