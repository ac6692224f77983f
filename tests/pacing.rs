//! Pacing over real sockets against the emulator's strict sliding-window checks.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::emulator::{EmulatorConfig, Record};
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";

fn write(group: &str, value: &str) -> String {
    json!({"GroupId": group, "GroupAttr": [{"key": "seq", "value": value}]}).to_string()
}

/// The most records within any `span` of arrival time, per key.
fn max_per_window(
    records: &[Record],
    key: impl Fn(&Record) -> String,
    span: Duration,
) -> HashMap<String, usize> {
    let mut by_key: HashMap<String, Vec<Instant>> = HashMap::new();
    for record in records {
        by_key.entry(key(record)).or_default().push(record.at);
    }
    by_key
        .into_iter()
        .map(|(k, times)| (k, support::max_in_window(times, span)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_second_saturation_run_causes_no_limit_refusals_and_answers_everyone() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    // The guard is the jitter budget between a send and its arrival. Here the emulator stamps
    // arrivals on the same two cores as the gateway and 80 busy clients (and whatever else the
    // machine runs): under load its stamps jitter by more than production's 20 ms default, which
    // would leave an API lane (3 sends of slack a second) too little. Give the test's jitter its
    // own budget; the pacing under test is the same. (The utilization benchmark runs the
    // defaults on a quiet machine: zero refusals.)
    let guard = "[limits]\nwindow_guard_ms = 60\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), guard]).await;
    let url = gateway.url(MODIFY);
    let client = Client::new();
    let (sent, ok, busy) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop_at = Instant::now() + Duration::from_secs(20);
    let mut loops = Vec::new();
    // 5 hot groups with 4 writers each, and 60 writers spread over 1,000 cold groups.
    let plans: Vec<Vec<String>> = (0..5)
        .flat_map(|g| (0..4).map(move |_| vec![format!("hot-{g}")]))
        .chain((0..60).map(|w| {
            (0..1000)
                .filter(|g| g % 60 == w)
                .map(|g| format!("cold-{g}"))
                .collect()
        }))
        .collect();
    for groups in plans {
        let (client, url) = (client.clone(), url.clone());
        let (sent, ok, busy) = (sent.clone(), ok.clone(), busy.clone());
        loops.push(tokio::spawn(async move {
            let mut i = 0usize;
            while Instant::now() < stop_at {
                let group = &groups[i % groups.len()];
                i += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let answer = client.post(&url, write(group, &i.to_string())).await;
                match (answer.status.as_u16(), answer.code()) {
                    (200, 0) => ok.fetch_add(1, Ordering::Relaxed),
                    (429, _) => {
                        busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        0
                    }
                    other => panic!("unexpected answer {other:?}: {:?}", answer.body),
                };
            }
        }));
    }
    for task in loops {
        task.await.expect("writer");
    }
    let (sent, ok, busy) = (
        sent.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    assert_eq!(sent, ok + busy, "every request got exactly one answer");
    eprintln!(
        "refusals: 10049 {} 60007 {}",
        emulator.state.refused(10049),
        emulator.state.refused(60007)
    );
    assert_eq!(
        emulator.state.limit_refusals(),
        0,
        "the emulator refused nothing for rate"
    );
    let records = emulator.state.records();
    assert_eq!(
        records.len() as u64,
        ok,
        "each OK is one upstream call; no 429 reached it"
    );
    let second = Duration::from_secs(1);
    let per_group = max_per_window(&records, |r| r.group_id.clone().unwrap_or_default(), second);
    assert!(
        per_group.values().all(|&n| n <= 5),
        "a group saw more than 5 in a second"
    );
    // Hot groups share the saturated app lane fairly with everyone else: they make steady
    // progress, but get no more than their turn in the API's queue.
    for g in 0..5 {
        let writes = records
            .iter()
            .filter(|r| r.group_id.as_deref() == Some(&format!("hot-{g}")))
            .count();
        assert!(writes >= 20, "hot-{g} made {writes} writes");
    }
    let span = records.last().expect("records").at - records[0].at;
    eprintln!(
        "saturation: {ok} OK, {busy} 429; {:.1} sends/s upstream",
        records.len() as f64 / span.as_secs_f64()
    );
    let per_api = max_per_window(&records, |r| r.api.clone(), second);
    assert!(per_api[MODIFY] <= 200, "{per_api:?}");
    // Saturated: well over half of the 200/s budget was used (the benchmark measures it exactly).
    assert!(ok > 20 * 120, "only {ok} writes in 20 s");
    gateway.shutdown().await;
}

#[tokio::test]
async fn writes_to_one_group_arrive_in_the_order_they_were_accepted() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let mut answers = Vec::new();
    for i in 0..50 {
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        answers.push(tokio::spawn(async move {
            client.post(&url, write("ordered", &i.to_string())).await
        }));
        // Send the next only once this one is in line.
        support::wait_admitted(&admitted, i + 1).await;
    }
    for answer in answers {
        assert_eq!(answer.await.expect("answer").code(), 0);
    }
    let seen: Vec<String> = emulator
        .state
        .records()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["GroupAttr"][0]
                    ["value"]
                    .as_str()
                    .expect("value")
                    .to_string()
        })
        .collect();
    assert_eq!(seen, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(emulator.state.group("ordered").expect("group")["seq"], "49");
    gateway.shutdown().await;
}

#[tokio::test]
async fn full_queues_and_unmeetable_deadlines_get_429_with_retry_after_at_once() {
    // Slow answers keep each group's write in flight, so that the writes behind it queue.
    let slow = EmulatorConfig {
        latency: Duration::from_millis(400),
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(slow).await;
    let limits = "[limits]\nmax_queue_per_group = 2\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), limits]).await;
    let client = Client::new();
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    // One holding the group and two waiting fill it.
    let mut queued = Vec::new();
    for i in 0..3 {
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        queued.push(tokio::spawn(async move {
            client.post(&url, write("busy", &i.to_string())).await
        }));
        support::wait_admitted(&admitted, i + 1).await;
    }
    let full = client.post(&gateway.url(MODIFY), write("busy", "x")).await;
    assert_eq!((full.status.as_u16(), full.code()), (429, 10049));
    assert_eq!(full.reason(), Some("group_queue_full"));
    assert!(
        full.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );

    // Another group is not affected, but a caller who will wait only 100 ms for a group with
    // a write ahead is refused at once rather than after waiting.
    let other = tokio::spawn({
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        async move { client.post(&url, write("calm", "1")).await }
    });
    support::wait_admitted(&admitted, 4).await;
    let started = Instant::now();
    let request = Request::post(gateway.url("group_open_http_svc/set_group_attr"))
        .header("x-timgate-max-wait-ms", "100")
        .body(Full::new(Bytes::from(write("calm", "2"))))
        .expect("request");
    let hasty = client.send(request).await;
    assert_eq!(
        (hasty.status.as_u16(), hasty.code(), hasty.reason()),
        (429, 10049, Some("group_deadline"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(190),
        "refused without waiting for the slot"
    );
    assert_eq!(other.await.expect("answer").code(), 0);

    let request = Request::post(gateway.url(MODIFY))
        .header("x-timgate-max-wait-ms", "soon")
        .body(Full::new(Bytes::from(write("calm", "3"))))
        .expect("request");
    let bad = client.send(request).await;
    assert_eq!(
        (bad.status.as_u16(), bad.code(), bad.reason()),
        (400, 900400, Some("bad_header"))
    );
    for answer in queued {
        assert_eq!(answer.await.expect("answer").code(), 0);
    }
    assert_eq!(
        emulator.state.received(),
        4,
        "three queued writes and the calm one"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn app_queue_deadlines_get_the_gateway_429_code() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let slow = "[limits]\napp_per_second = 1\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), slow]).await;
    let client = Client::new();
    let get = "group_open_attr_http_svc/get_group_attr";
    assert_eq!(
        client
            .post(&gateway.url(get), r#"{"GroupId":"a"}"#)
            .await
            .code(),
        0
    );
    let request = Request::post(gateway.url(get))
        .header("x-timgate-max-wait-ms", "200")
        .body(Full::new(Bytes::from_static(br#"{"GroupId":"b"}"#)))
        .expect("request");
    let answer = client.send(request).await;
    assert_eq!(
        (answer.status.as_u16(), answer.code(), answer.reason()),
        (429, 900429, Some("app_deadline"))
    );
    assert_eq!(emulator.state.received(), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_queued_is_never_sent() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let first = tokio::spawn({
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        async move { client.post(&url, write("hangup", "first")).await }
    });
    support::wait_admitted(&admitted, 1).await;
    // The second caller gives up after 50 ms, while it waits behind the first's 204 ms spacing.
    let impatient = Client::new();
    let url = gateway.url(MODIFY);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        impatient.post(&url, write("hangup", "second")),
    )
    .await;
    assert!(gave_up.is_err(), "the impatient caller hung up");
    drop(impatient);
    let third = client
        .post(&gateway.url(MODIFY), write("hangup", "third"))
        .await;
    assert_eq!(third.code(), 0);
    assert_eq!(first.await.expect("first").code(), 0);
    let values: Vec<String> = emulator
        .state
        .records()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(values.len(), 2, "{values:?}");
    assert!(values.iter().all(|v| !v.contains("second")), "{values:?}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_waiting_for_an_app_slot_is_never_sent() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let slow = "[limits]\napp_per_second = 2\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), slow]).await;
    let get = gateway.url("group_open_attr_http_svc/get_group_attr");
    let client = Client::new();
    assert_eq!(client.post(&get, r#"{"GroupId":"a"}"#).await.code(), 0);
    // The next slot is about 510 ms away; this caller leaves after 100 ms.
    let impatient = Client::new();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        impatient.post(&get, r#"{"GroupId":"b"}"#),
    )
    .await;
    assert!(gave_up.is_err());
    drop(impatient);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        emulator.state.received(),
        1,
        "the abandoned read was never sent"
    );
    assert_eq!(client.post(&get, r#"{"GroupId":"c"}"#).await.code(), 0);
    gateway.shutdown().await;
}
