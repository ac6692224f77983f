//! Each API's own limit and the app's total, shared by replicas through a real Redis: the
//! shared budget spaces a per-minute API by its own spacing, and every replica's calls together
//! stay within the app-wide cap.

mod support;

use std::time::Duration;

use serde_json::json;
use support::redis::Redis;
use support::{Client, Gateway, base_toml, emulator_apart, max_in_window};
use timgate::emulator::EmulatorConfig;
use tokio::time::Instant;

const BATCH: &str = "openim/batchsendmsg";
const CREATE: &str = "group_open_http_svc/create_group";
const MODIFY: &str = "group_open_http_svc/modify_group_attr";

/// Two replicas sharing the Redis on `port`, each with `extra` over the shared settings.
async fn replicas(emulator: std::net::SocketAddr, port: u16, extra: &str) -> Vec<Gateway> {
    let shared = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\nfallback_share = 0.5\n{extra}"
    );
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(Gateway::start(&[&base_toml(emulator, None), &shared]).await);
    }
    let started = Instant::now();
    while !gateways
        .iter()
        .all(|g| g.metrics.limiter_backend_up.get() == 1)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "Redis never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gateways
}

/// When the emulator received each `batchsendmsg` call, in order.
fn batch_arrivals(emulator: &support::ApartEmulator) -> Vec<Instant> {
    let mut at: Vec<Instant> = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api == BATCH)
        .map(|r| r.at)
        .collect();
    at.sort();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_space_batchsendmsg_by_its_minute_and_hold_the_apps_total_together() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let extra = "max_wait_ms = 6000\napp_total_per_second = 40\n\
                 [apis]\nallow = [\"openim/batchsendmsg\", \"group_open_http_svc/create_group\", \
                 \"group_open_http_svc/modify_group_attr\"]\n";
    let gateways = replicas(emulator.addr, redis.port, extra).await;
    let client = Client::new();
    let mut calls = Vec::new();
    for (r, gateway) in gateways.iter().enumerate() {
        for n in 0..10 {
            let to: Vec<String> = (0..500).map(|i| format!("u{r}_{n}_{i}")).collect();
            let body = json!({"To_Account": to, "MsgRandom": n, "MsgBody": []});
            calls.push((gateway.url(BATCH), body));
        }
        for n in 0..40 {
            let (api, body) = match n % 2 {
                0 => (
                    CREATE,
                    json!({"Type": "Public", "Name": format!("g{r}_{n}")}),
                ),
                _ => (
                    MODIFY,
                    json!({"GroupId": format!("g{r}_{n}"), "GroupAttr": [{"key": "k", "value": "v"}]}),
                ),
            };
            calls.push((gateway.url(api), body));
        }
    }
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(url, body)| {
            let client = client.clone();
            tokio::spawn(async move { client.post(&url, body.to_string()).await })
        })
        .collect();
    for handle in handles {
        let answer = handle.await.expect("caller");
        // OK, or refused at once for a deadline the limits cannot meet.
        assert!(
            matches!((answer.status.as_u16(), answer.code()), (200, 0) | (429, _)),
            "{:?}",
            answer.json()
        );
    }
    assert_eq!(emulator.state.limit_refusals(), 0);
    let records = emulator.state.records();
    let batches = batch_arrivals(&emulator);
    assert!(!batches.is_empty());
    // One call of 500 every 2.6 s over both replicas: the shared lane is spaced by the minute.
    for pair in batches.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(2400),
            "{:?} apart",
            pair[1] - pair[0]
        );
    }
    let all: Vec<Instant> = records.iter().map(|r| r.at).collect();
    let busiest = max_in_window(all, Duration::from_secs(1));
    assert!(
        busiest <= 40,
        "{busiest} calls in a second over both replicas"
    );
    for gateway in gateways {
        gateway.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_daily_cap_and_refuse_it_while_redis_cannot_count() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let extra = "[limits.api_daily]\n\"all_member_push/im_push\" = 3\n\
                 [apis]\nallow = [\"all_member_push/im_push\"]\n";
    let gateways = replicas(emulator.addr, redis.port, extra).await;
    let client = Client::new();
    let push = |n: usize| json!({"MsgRandom": n, "MsgBody": []}).to_string();
    let mut answers = Vec::new();
    for n in 0..3 {
        for gateway in &gateways {
            let answer = client
                .post(&gateway.url("all_member_push/im_push"), push(n))
                .await;
            answers.push((answer.status.as_u16(), answer.reason().map(str::to_string)));
        }
    }
    let ok = answers.iter().filter(|(status, _)| *status == 200).count();
    let capped = answers
        .iter()
        .filter(|(status, reason)| *status == 429 && reason.as_deref() == Some("daily_cap"))
        .count();
    assert_eq!((ok, capped), (3, 3), "{answers:?}");
    assert_eq!(
        emulator.state.received(),
        3,
        "three in all, whichever replica took them"
    );
    // Redis away: what the other replica took cannot be known, so nothing is sent.
    redis.stop();
    let answer = client
        .post(&gateways[0].url("all_member_push/im_push"), push(9))
        .await;
    assert_eq!(
        (answer.status.as_u16(), answer.reason()),
        (429, Some("daily_cap_unknown"))
    );
    assert_eq!(emulator.state.received(), 3);
    for gateway in gateways {
        gateway.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_space_batchsendmsg_calls_by_the_recipients_each_carries() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let extra = "max_wait_ms = 20000\n[apis]\nallow = [\"openim/batchsendmsg\"]\n";
    let gateways = replicas(emulator.addr, redis.port, extra).await;
    let client = Client::new();
    // 20 calls of 25 accounts from each replica: 1,000 recipients, each call 25 recipients'
    // spacing (about 130 ms) after the one before over both replicas, all within about 5 s
    // (at one call per 2.5 s, 8 of the 40 would fit the 20 s deadline).
    let handles: Vec<_> = gateways
        .iter()
        .enumerate()
        .flat_map(|(r, gateway)| (0..20).map(move |n| (r, n, gateway.url(BATCH))))
        .map(|(r, n, url)| {
            let to: Vec<String> = (0..25).map(|i| format!("u{r}_{n}_{i}")).collect();
            let body = json!({"To_Account": to, "MsgRandom": n, "MsgBody": []}).to_string();
            let client = client.clone();
            tokio::spawn(async move { client.post(&url, body).await })
        })
        .collect();
    for handle in handles {
        let answer = handle.await.expect("caller");
        let got = (answer.status.as_u16(), answer.code());
        assert_eq!(got, (200, 0), "{:?}", answer.json());
    }
    assert_eq!(emulator.state.limit_refusals(), 0);
    let batches = batch_arrivals(&emulator);
    assert_eq!(batches.len(), 40);
    // 25 of the 11,501 units a minute and guard are spaced apart (130.5 ms); the emulator stamps
    // a call when its task runs, so the mean over the run is what is asserted.
    let mean = (batches[39] - batches[0]) / 39;
    // The README quotes it (`cargo test --test shared_catalogue -- --nocapture`).
    eprintln!("calls of 25 recipients over two replicas: {mean:?} apart on average");
    assert!(
        mean >= Duration::from_millis(125),
        "{mean:?} apart on average"
    );
    assert!(
        mean < Duration::from_millis(500),
        "{mean:?} apart: paced as 500 a call"
    );
    for gateway in gateways {
        gateway.shutdown().await;
    }
}
