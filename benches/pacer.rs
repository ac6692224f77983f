//! Pacer benchmarks (figures in the README). `cargo bench --bench pacer` runs all three;
//! `cargo bench --bench pacer -- scale|latency|utilization` runs one.
//!
//! - scale: 100,000 groups with one queued write each: enqueue and dispatch CPU per job, and
//!   resident memory per queued job.
//! - latency: what the pacer adds to a request when nothing is queued (p50, p99, p99.9).
//! - utilization: one group lane and one app lane saturated for 30 s against the emulator over
//!   real sockets: achieved rate / configured rate, and the emulator's refusals.
//! - redis: reservations per second from one replica in Redis mode, and the latency each adds
//!   (p50, p99) against local mode, with a redis-server of its own on loopback.

use std::sync::Arc;
use std::time::Duration;

use loadgen::inproc::InProcess;
use timgate::metrics::Metrics;
use timgate::pace::{LaneSettings, Pacer};
use tokio::time::Instant;

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if wants("scale") {
        runtime.block_on(scale());
    }
    if wants("latency") {
        runtime.block_on(latency());
    }
    if wants("utilization") {
        runtime.block_on(utilization());
    }
    if wants("redis") {
        runtime.block_on(redis());
    }
}

fn settings(app_interval: Duration) -> LaneSettings {
    // No send cap on the app lane: these benchmarks set its spacing far from Tencent's.
    LaneSettings {
        app_cap: 0,
        app_interval,
        ..LaneSettings::new(200, 5, Duration::from_millis(20), 64, 1_000_000)
    }
}

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// User + system CPU time of this process, from /proc (Linux; clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn scale() {
    const GROUPS: usize = 100_000;
    let api: Arc<str> = Arc::from("group_open_http_svc/modify_group_attr");
    let groups: Vec<Arc<str>> = (0..GROUPS)
        .map(|i| Arc::from(format!("@TGS#aBENCH{i:08}")))
        .collect();

    // Memory: every write queued behind a slow app lane (one slot an hour).
    let pacer = Pacer::with_settings(
        settings(Duration::from_secs(3600)),
        std::slice::from_ref(&api),
        Metrics::new(),
    );
    // 100,000 slots an hour apart: the last is 11 years away, so the deadline is further still.
    let far = Instant::now() + Duration::from_secs(20 * 365 * 24 * 3600);
    let before = rss_bytes();
    let mut held = Vec::with_capacity(GROUPS);
    for group in &groups {
        let (pacer, api, group) = (pacer.clone(), api.clone(), group.clone());
        held.push(tokio::spawn(async move {
            pacer.acquire(&api, Some(&group), far).await.map(drop)
        }));
    }
    while pacer.queued() + 1 < GROUPS {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = rss_bytes();
    for task in &held {
        task.abort();
    }
    for task in held {
        let _ = task.await;
    }
    let per_job = after.saturating_sub(before) as f64 / GROUPS as f64;
    println!(
        "scale/memory: {GROUPS} queued writes in {GROUPS} groups: {:.0} MB resident added, {per_job:.0} B per queued job (pacer state and the waiting task)",
        after.saturating_sub(before) as f64 / 1e6
    );

    // CPU: enqueue and dispatch through an app lane that is never the bottleneck.
    let pacer = Pacer::with_settings(
        settings(Duration::from_nanos(1)),
        std::slice::from_ref(&api),
        Metrics::new(),
    );
    let cpu = cpu_seconds();
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(GROUPS);
    for group in &groups {
        let (pacer, api, group) = (pacer.clone(), api.clone(), group.clone());
        tasks.push(tokio::spawn(async move {
            let permit = pacer.acquire(&api, Some(&group), far).await;
            drop(permit.expect("admitted"));
        }));
    }
    for task in tasks {
        task.await.expect("job");
    }
    let (cpu, wall) = (cpu_seconds() - cpu, started.elapsed());
    println!(
        "scale/cpu: {GROUPS} jobs enqueued and dispatched in {:.0} ms wall, {:.0} ms CPU: {:.2} us CPU per job",
        wall.as_secs_f64() * 1e3,
        cpu * 1e3,
        cpu * 1e6 / GROUPS as f64
    );
    println!(
        "{{\"bench\":\"pacer_scale\",\"groups\":{GROUPS},\"bytes_per_queued_job\":{per_job:.0},\"cpu_us_per_job\":{:.3}}}",
        cpu * 1e6 / GROUPS as f64
    );
}

async fn latency() {
    const N: usize = 200_000;
    let api: Arc<str> = Arc::from("group_open_http_svc/modify_group_attr");
    let pacer = Pacer::with_settings(
        settings(Duration::from_nanos(1)),
        std::slice::from_ref(&api),
        Metrics::new(),
    );
    let far = Instant::now() + Duration::from_secs(3600);
    let mut samples = Vec::with_capacity(N);
    for i in 0..N {
        let group: Arc<str> = Arc::from(format!("g{}", i % 50_000));
        let started = tokio::time::Instant::now();
        let permit = pacer
            .acquire(&api, Some(&group), far)
            .await
            .expect("admitted");
        samples.push(started.elapsed());
        drop(permit);
        if i % 50_000 == 49_999 {
            // Let every group's spacing pass, so that nothing is ever queued.
            tokio::time::sleep(Duration::from_millis(210)).await;
            pacer.forget_idle();
        }
    }
    samples.sort();
    let q = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
    println!(
        "latency: pacer added, nothing queued, {N} requests: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        q(0.5),
        q(0.99),
        q(0.999)
    );
    println!(
        "{{\"bench\":\"pacer_latency\",\"p50_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2}}}",
        q(0.5),
        q(0.99),
        q(0.999)
    );
}

async fn utilization() {
    const SECONDS: u64 = 30;
    let running = InProcess::start("[log]\nlevel = \"warn\"\n")
        .await
        .expect("emulator and gateway");
    let (emulator, addr) = (&running.emulator, running.addr);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let until = Instant::now() + Duration::from_secs(SECONDS);
    let post = move |api: &'static str, body: String| {
        let client = client.clone();
        async move {
            let request = http::Request::post(format!("http://{addr}/v4/{api}"))
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .expect("request");
            client
                .request(request)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let mut tasks = Vec::new();
    // One group lane saturated by 8 writers; one app lane (get) saturated by 64 readers.
    for _ in 0..8 {
        let post = post.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let body =
                    format!(r#"{{"GroupId":"hot","GroupAttr":[{{"key":"k","value":"{i}"}}]}}"#);
                post("group_open_http_svc/modify_group_attr", body).await;
            }
        }));
    }
    for w in 0..64 {
        let post = post.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                post(
                    "group_open_attr_http_svc/get_group_attr",
                    format!(r#"{{"GroupId":"r{w}-{}"}}"#, i % 100),
                )
                .await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let records = emulator.state.records();
    let rate = |api: &str| {
        let times: Vec<Instant> = records
            .iter()
            .filter(|r| r.api == api && r.code == 0)
            .map(|r| r.at)
            .collect();
        let span = (*times.last().expect("sends") - times[0]).as_secs_f64();
        (times.len() - 1) as f64 / span
    };
    let group_rate = rate("group_open_http_svc/modify_group_attr");
    let app_rate = rate("group_open_attr_http_svc/get_group_attr");
    println!(
        "utilization over {SECONDS} s: group lane {group_rate:.3}/s of 5 ({:.3}), app lane {app_rate:.2}/s of 200 ({:.3}); emulator refusals for rate: {}",
        group_rate / 5.0,
        app_rate / 200.0,
        emulator.state.limit_refusals()
    );
    println!(
        "{{\"bench\":\"pacer_utilization\",\"group_utilization\":{:.4},\"app_utilization\":{:.4},\"limit_refusals\":{}}}",
        group_rate / 5.0,
        app_rate / 200.0,
        emulator.state.limit_refusals()
    );
    running.stop().await;
}

async fn redis() {
    use timgate::pace::shared::Shared;
    const N: usize = 20_000;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let Ok(mut server) = loadgen::procs::redis_server(std::path::Path::new("redis-server"), port)
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        println!("redis: skipped, redis-server not found");
        return;
    };
    let window = Duration::from_millis(1020);
    let shared = Shared::new(
        &timgate::config::RedisTarget::standalone(&format!("redis://127.0.0.1:{port}")),
        "bench",
        1,
        window,
        Metrics::new(),
    );
    tokio::spawn(Shared::run(Arc::downgrade(&shared)));
    while !shared.is_up() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(window).await; // the fence raised on connecting
    // Spacing far below the call rate, so that nothing waits: only the reservation is measured.
    let (app, group) = (Duration::from_nanos(1), Duration::from_nanos(1));
    let mut samples = Vec::with_capacity(N);
    let started = tokio::time::Instant::now();
    for i in 0..N {
        let group_id = format!("g{}", i % 1000);
        let t = tokio::time::Instant::now();
        let reserved = shared
            .reserve("api", Some(&group_id), app, group, None)
            .await;
        samples.push(t.elapsed());
        assert!(
            matches!(reserved, Some(timgate::pace::shared::Reserved::At(_))),
            "reservation failed"
        );
    }
    let per_second = N as f64 / started.elapsed().as_secs_f64();
    samples.sort();
    let q = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e6;
    println!(
        "redis: {per_second:.0} reservations/s from one replica (sequential); added per request p50 {:.0} us, p99 {:.0} us (local mode: see latency)",
        q(0.5),
        q(0.99)
    );
    println!(
        "{{\"bench\":\"pacer_redis\",\"reservations_per_second\":{per_second:.0},\"p50_us\":{:.1},\"p99_us\":{:.1}}}",
        q(0.5),
        q(0.99)
    );
    let _ = server.kill();
    let _ = server.wait();
}
