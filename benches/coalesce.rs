//! Coalescing benchmark (issue 10): one hot group receiving 50 single-key updates a second,
//! open loop, for 30 s, through the gateway to the in-process emulator over loopback, once with
//! `limits.coalesce` off and once on. Prints a markdown table: offered updates per second,
//! upstream writes per second, updates delivered per second (callers answered OK, over the run
//! until the last answer), refusals (the gateway's 429s and the emulator's limit refusals), the
//! caller-seen latency of every answer, and whether the group ends with each key's last update.
//!
//! `cargo bench --bench coalesce` runs both; `-- --seconds N` shortens the run, `-- --rate R`
//! changes the offered rate.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use loadgen::inproc::InProcess;
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const GROUP: &str = "@TGS#aHOTROOM";
/// A live room's attributes: each update sets one of them.
const KEYS: &[&str] = &["song", "host_seat", "viewers", "topic", "mic_queue"];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One caller's view of one update.
struct Outcome {
    ok: bool,
    refused: bool,
    latency: Duration,
}

/// The figures of one run.
struct Run {
    offered: f64,
    upstream: f64,
    delivered: f64,
    refused: usize,
    limit_refusals: u64,
    p50: Duration,
    p99: Duration,
    ok_p99: Duration,
    last_wins: bool,
}

fn main() {
    let seconds = arg("--seconds", 30);
    let rate = arg("--rate", 50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let off = runtime.block_on(run(false, seconds, rate));
    let on = runtime.block_on(run(true, seconds, rate));
    println!();
    println!(
        "One hot group, {rate} single-key updates/s offered for {seconds} s (Tencent allows 5 writes/s):"
    );
    println!();
    println!(
        "| coalesce | offered/s | upstream writes/s | updates delivered/s | refused (429) | emulator limit refusals | caller p50 | caller p99 | p99 of OK answers | final state = last update per key |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, r) in [("off", &off), ("on", &on)] {
        println!(
            "| {name} | {:.1} | {:.2} | {:.1} | {} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
            r.offered,
            r.upstream,
            r.delivered,
            r.refused,
            r.limit_refusals,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.ok_p99.as_secs_f64() * 1e3,
            if r.last_wins { "yes" } else { "no" }
        );
    }
}

async fn run(coalesce: bool, seconds: u64, rate: u64) -> Run {
    let extra = format!("[limits]\ncoalesce = {coalesce}\n[log]\nlevel = \"error\"\n");
    let running = InProcess::start(&extra)
        .await
        .expect("emulator and gateway");
    let (emulator, addr) = (&running.emulator, running.addr);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let url = format!("http://{addr}/v4/{MODIFY}");
    let total = seconds * rate;
    let spacing = Duration::from_secs(1) / rate as u32;
    let started = Instant::now();
    let mut callers = Vec::with_capacity(total as usize);
    let mut last = BTreeMap::new();
    // Open loop: an update every 1/rate s, whatever the answers to the earlier ones.
    for i in 0..total {
        tokio::time::sleep_until(started + spacing * i as u32).await;
        let key = KEYS[i as usize % KEYS.len()];
        let value = format!("u{i}");
        last.insert(key.to_string(), value.clone());
        let body =
            format!(r#"{{"GroupId":"{GROUP}","GroupAttr":[{{"key":"{key}","value":"{value}"}}]}}"#);
        let (client, url) = (client.clone(), url.clone());
        callers.push(tokio::spawn(async move {
            let sent = Instant::now();
            let request = http::Request::post(url)
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let (status, body) = match client.request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.into_body().collect().await.map(|b| b.to_bytes());
                    (status, body.unwrap_or_default())
                }
                Err(_) => (0, Bytes::new()),
            };
            let ok = status == 200 && body.starts_with(br#"{"ActionStatus":"OK""#);
            Outcome {
                ok,
                refused: status == 429,
                latency: sent.elapsed(),
            }
        }));
    }
    let offered_in = started.elapsed().as_secs_f64();
    let mut outcomes = Vec::with_capacity(callers.len());
    for caller in callers {
        outcomes.push(caller.await.expect("caller"));
    }
    // Delivered per second of the whole run, until the last answer: a queue still draining
    // after the offering stopped does not count as extra throughput.
    let answered_in = started.elapsed().as_secs_f64();
    let records: Vec<_> = emulator
        .state
        .records()
        .into_iter()
        .filter(|r| r.api == MODIFY)
        .collect();
    let span = match (records.first(), records.last()) {
        (Some(first), Some(last)) if records.len() > 1 => (last.at - first.at).as_secs_f64(),
        _ => offered_in,
    };
    let ok = outcomes.iter().filter(|o| o.ok).count();
    let quantile = |mut latencies: Vec<Duration>, p: f64| {
        latencies.sort();
        let at = ((latencies.len().max(1) - 1) as f64 * p) as usize;
        latencies.get(at).copied().unwrap_or_default()
    };
    let all: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    let ok_only: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.ok)
        .map(|o| o.latency)
        .collect();
    let state = emulator.state.group(GROUP).unwrap_or_default();
    let last_wins = last.iter().all(|(k, v)| state.get(k) == Some(v));
    let figures = Run {
        offered: total as f64 / offered_in,
        upstream: (records.len().saturating_sub(1)) as f64 / span,
        delivered: ok as f64 / answered_in,
        refused: outcomes.iter().filter(|o| o.refused).count(),
        limit_refusals: emulator.state.limit_refusals(),
        p50: quantile(all.clone(), 0.5),
        p99: quantile(all, 0.99),
        ok_p99: quantile(ok_only, 0.99),
        last_wins,
    };
    eprintln!(
        "coalesce = {coalesce}: {total} updates in {offered_in:.1} s, {ok} OK, {} refused, {} upstream writes",
        figures.refused,
        records.len()
    );
    running.stop().await;
    figures
}
