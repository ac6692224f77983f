//! Write coalescing (`limits.coalesce`) over real sockets against the emulator: a hot group takes
//! far more than 5 writes a second without a refusal or a lost update, barriers keep order,
//! deadlines hold per caller, and with coalescing off nothing changes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::{Answer, Client, Gateway, base_toml, tls_emulator};
use timgate::emulator::{Emulator, EmulatorConfig, Record};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const DELETE: &str = "group_open_http_svc/delete_group_attr";
const GET: &str = "group_open_attr_http_svc/get_group_attr";
/// Coalescing on. The emulator stamps arrivals on the same two busy cores as the gateway and
/// the callers: a wider guard than production's 20 ms keeps its jitter out of the verdict.
const ON: &str = "[limits]\ncoalesce = true\nwindow_guard_ms = 60\n";

/// A TLS emulator that answers after `latency_ms`, so that a group's first write stays in flight
/// while later ones queue behind it, and a coalescing gateway in front of it.
async fn slow_coalescing(latency_ms: u64) -> (Emulator, support::Tls, Gateway) {
    let slow = EmulatorConfig {
        latency: Duration::from_millis(latency_ms),
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(slow).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), ON]).await;
    (emulator, tls, gateway)
}

fn modify(group: &str, key: &str, value: &str) -> String {
    json!({"GroupId": group, "GroupAttr": [{"key": key, "value": value}]}).to_string()
}

fn post(
    client: &Client,
    url: String,
    body: String,
    max_wait_ms: Option<u64>,
) -> JoinHandle<Answer> {
    let client = client.clone();
    tokio::spawn(async move {
        let mut request = Request::post(url);
        if let Some(ms) = max_wait_ms {
            request = request.header("x-timgate-max-wait-ms", ms.to_string());
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        client.send(request).await
    })
}

fn coalesced(answer: &Answer) -> Option<usize> {
    answer
        .headers
        .get("x-timgate-coalesced")
        .map(|v| v.to_str().expect("ascii").parse().expect("a count"))
}

fn attrs_of(body: &[u8], field: &str) -> BTreeMap<String, String> {
    let value: Value = serde_json::from_slice(body).expect("json");
    value[field]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let s = |f: &str| e[f].as_str().unwrap_or_default().to_string();
                    (s("key"), s("value"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn writes_to(records: &[Record], group: &str) -> Vec<Record> {
    records
        .iter()
        .filter(|r| r.group_id.as_deref() == Some(group) && r.api != GET)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_group_takes_100_writes_in_a_second_and_keeps_every_update() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), ON]).await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let group = "@TGS#aHOT";
    let started = Instant::now();
    let mut answers = Vec::new();
    let mut expected = BTreeMap::new();
    for i in 0..100u64 {
        let (key, value) = (format!("k{}", i % 10), format!("v{i}"));
        answers.push(post(
            &client,
            gateway.url(MODIFY),
            modify(group, &key, &value),
            None,
        ));
        // Accept order is send order: the next caller starts once this one is in line.
        support::wait_admitted(&admitted, i + 1).await;
        expected.insert(key, value);
        tokio::time::sleep_until(started + Duration::from_millis(9 * (i + 1))).await;
    }
    let offered_in = started.elapsed();
    let mut sizes = BTreeMap::<usize, usize>::new();
    for answer in answers {
        let answer = answer.await.expect("caller");
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (200, 0),
            "{:?}",
            answer.body
        );
        let size = coalesced(&answer).expect("x-timgate-coalesced on every merged answer");
        assert!(size >= 1);
        *sizes.entry(size).or_default() += 1;
    }
    let writes = writes_to(&emulator.state.records(), group);
    // Each batch of n answers n callers: the callers per size are whole batches, and the
    // batches are exactly the upstream writes.
    let batches: usize = sizes
        .iter()
        .map(|(size, callers)| {
            assert_eq!(callers % size, 0, "{sizes:?}");
            callers / size
        })
        .sum();
    eprintln!(
        "100 writes offered in {offered_in:?}: {} upstream writes, callers by batch size {sizes:?}",
        writes.len()
    );
    assert_eq!(batches, writes.len(), "{sizes:?}");
    assert!(
        writes.len() < 20,
        "{} upstream writes for 100",
        writes.len()
    );
    let times: Vec<Instant> = writes.iter().map(|r| r.at).collect();
    assert!(support::max_in_window(times, Duration::from_secs(1)) <= 5);
    assert_eq!(emulator.state.limit_refusals(), 0);
    let size = &gateway.metrics.coalesce_batch_size;
    assert_eq!(size.get_sample_sum(), 100.0);
    assert_eq!(size.get_sample_count(), writes.len() as u64);
    let shared: usize = sizes.iter().filter(|(s, _)| **s > 1).map(|(_, c)| c).sum();
    assert_eq!(gateway.metrics.coalesced_requests.get(), shared as u64);

    let read = client
        .post(&gateway.url(GET), json!({"GroupId": group}).to_string())
        .await;
    assert_eq!(read.code(), 0);
    assert_eq!(
        attrs_of(&read.body, "GroupAttrAry"),
        expected,
        "the 100 writes applied in accept order"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_coalescing_off_the_same_burst_queues_and_refuses_and_nothing_merges() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let guard = "[limits]\nwindow_guard_ms = 60\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), guard]).await;
    let client = Client::new();
    let group = "@TGS#aCALM";
    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..100u64 {
        let body = modify(group, &format!("k{}", i % 10), &format!("v{i}"));
        // A 2 s wait keeps the run short: what cannot leave by then is refused at once.
        answers.push(post(&client, gateway.url(MODIFY), body, Some(2000)));
        tokio::time::sleep_until(started + Duration::from_millis(9 * (i + 1))).await;
    }
    let (mut ok, mut refused) = (0, 0);
    for answer in answers {
        let answer = answer.await.expect("caller");
        assert_eq!(coalesced(&answer), None, "nothing merges when off");
        match (answer.status.as_u16(), answer.code()) {
            (200, 0) => ok += 1,
            // 10049 mostly; a write handed its group's lane just before its deadline may find
            // its slot past it, which the pacer answers as an API deadline (900429).
            (429, 10049 | 900429) => refused += 1,
            other => panic!("unexpected answer {other:?}: {:?}", answer.body),
        }
    }
    let writes = writes_to(&emulator.state.records(), group);
    eprintln!("coalescing off: {ok} OK, {refused} refused");
    assert_eq!(writes.len(), ok, "one upstream write per OK");
    assert!(
        writes
            .iter()
            .all(|w| attrs_of(&w.body, "GroupAttr").len() == 1)
    );
    assert!(ok <= 20 && refused >= 80, "{ok} OK, {refused} refused");
    assert_eq!(emulator.state.limit_refusals(), 0);
    assert_eq!(gateway.metrics.coalesce_batch_size.get_sample_count(), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_delete_is_a_barrier_nothing_merges_across_and_order_is_kept() {
    // Slow answers keep the group's first write in flight while the others queue behind it.
    let (emulator, _tls, gateway) = slow_coalescing(400).await;
    let modifies = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let deletes = gateway.metrics.admitted.with_label_values(&[DELETE]);
    let client = Client::new();
    let group = "@TGS#aBARRIER";
    let hold = post(&client, gateway.url(MODIFY), modify(group, "h", "0"), None);
    support::wait_admitted(&modifies, 1).await;
    let m1 = post(&client, gateway.url(MODIFY), modify(group, "a", "1"), None);
    support::wait_admitted(&modifies, 2).await;
    let m2 = post(&client, gateway.url(MODIFY), modify(group, "b", "2"), None);
    support::wait_admitted(&modifies, 3).await;
    let delete = json!({"GroupId": group, "GroupAttr": [{"key": "a"}]}).to_string();
    let d = post(&client, gateway.url(DELETE), delete, None);
    support::wait_admitted(&deletes, 1).await;
    let m3 = post(&client, gateway.url(MODIFY), modify(group, "a", "3"), None);

    let answers = [hold, m1, m2, d, m3].map(|a| async { a.await.expect("caller") });
    let [hold, m1, m2, d, m3] = futures_join(answers).await;
    for answer in [&hold, &m1, &m2, &d, &m3] {
        assert_eq!(answer.code(), 0, "{:?}", answer.body);
    }
    let sizes: Vec<Option<usize>> = [&hold, &m1, &m2, &d, &m3].map(coalesced).to_vec();
    assert_eq!(sizes, [Some(1), Some(2), Some(2), None, Some(1)]);

    let seen: Vec<(String, BTreeMap<String, String>)> = writes_to(&emulator.state.records(), group)
        .iter()
        .map(|r| (r.api.clone(), attrs_of(&r.body, "GroupAttr")))
        .collect();
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    assert_eq!(
        seen,
        [
            (MODIFY.to_string(), map(&[("h", "0")])),
            (MODIFY.to_string(), map(&[("a", "1"), ("b", "2")])),
            (DELETE.to_string(), map(&[("a", "")])),
            (MODIFY.to_string(), map(&[("a", "3")])),
        ]
    );
    assert_eq!(
        emulator.state.group(group).expect("group"),
        map(&[("a", "3"), ("b", "2"), ("h", "0")])
    );
    gateway.shutdown().await;
}

/// Awaits five answers together.
async fn futures_join<F: std::future::Future<Output = Answer>>(answers: [F; 5]) -> [Answer; 5] {
    let [a, b, c, d, e] = answers;
    let (a, b, c, d, e) = tokio::join!(a, b, c, d, e);
    [a, b, c, d, e]
}

#[tokio::test]
async fn a_callers_deadline_holds_inside_a_batch() {
    // The group's first write is in flight for 2 s; the batch behind it waits that long.
    let (emulator, _tls, gateway) = slow_coalescing(2000).await;
    let modifies = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let group = "@TGS#aDEADLINE";
    let hold = post(&client, gateway.url(MODIFY), modify(group, "h", "0"), None);
    support::wait_admitted(&modifies, 1).await;
    let patient = post(&client, gateway.url(MODIFY), modify(group, "a", "1"), None);
    support::wait_admitted(&modifies, 2).await;
    // Joins (the batch was expected to leave within about 0.4 s), but the batch really leaves
    // after the 2 s answer ahead of it: this caller is answered 429 at its deadline, and its
    // write is left out of the batch.
    let hasty = post(
        &client,
        gateway.url(MODIFY),
        modify(group, "a", "2"),
        Some(1000),
    );
    support::wait_admitted(&modifies, 3).await;
    // Cannot leave before its deadline even by the estimate: refused at once.
    let started = Instant::now();
    let hastier = post(
        &client,
        gateway.url(MODIFY),
        modify(group, "b", "3"),
        Some(100),
    )
    .await
    .expect("caller");
    assert_eq!(
        (hastier.status.as_u16(), hastier.code(), hastier.reason()),
        (429, 10049, Some("group_deadline"))
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "refused at once"
    );

    let hasty = hasty.await.expect("caller");
    assert_eq!(
        (hasty.status.as_u16(), hasty.code(), hasty.reason()),
        (429, 10049, Some("group_deadline"))
    );
    assert_eq!(coalesced(&hasty), None);
    let patient = patient.await.expect("caller");
    assert_eq!((patient.code(), coalesced(&patient)), (0, Some(1)));
    assert_eq!(hold.await.expect("caller").code(), 0);
    let bodies: Vec<BTreeMap<String, String>> = writes_to(&emulator.state.records(), group)
        .iter()
        .map(|r| attrs_of(&r.body, "GroupAttr"))
        .collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(
        bodies[1],
        BTreeMap::from([("a".to_string(), "1".to_string())])
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_reload_switches_coalescing_on() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let base = base_toml(emulator.addr, Some(&tls));
    let gateway = Gateway::start(&[&base]).await;
    let client = Client::new();
    let before = client
        .post(&gateway.url(MODIFY), modify("@TGS#aRELOAD", "k", "1"))
        .await;
    assert_eq!((before.code(), coalesced(&before)), (0, None));
    let config = timgate::config::Config::from_toml_layers(&[&base, ON]).expect("config");
    assert!(
        gateway.reloader.apply(config).is_empty(),
        "no restart needed"
    );
    let after = client
        .post(&gateway.url(MODIFY), modify("@TGS#aRELOAD", "k", "2"))
        .await;
    assert_eq!((after.code(), coalesced(&after)), (0, Some(1)));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_caller_who_hangs_up_is_taken_out_of_its_batch() {
    let (emulator, _tls, gateway) = slow_coalescing(600).await;
    let modifies = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let group = "@TGS#aHANGUP";
    let hold = post(&client, gateway.url(MODIFY), modify(group, "h", "0"), None);
    support::wait_admitted(&modifies, 1).await;
    // The batch behind the held write is opened by a caller who gives up after 100 ms.
    let impatient = Client::new();
    let gave_up = tokio::spawn({
        let url = gateway.url(MODIFY);
        let body = modify(group, "a", "gone");
        async move { tokio::time::timeout(Duration::from_millis(100), impatient.post(&url, body)).await }
    });
    support::wait_admitted(&modifies, 2).await;
    let patient = post(&client, gateway.url(MODIFY), modify(group, "b", "2"), None);
    support::wait_admitted(&modifies, 3).await;
    assert!(
        gave_up.await.expect("task").is_err(),
        "the impatient caller hung up"
    );

    let patient = patient.await.expect("caller");
    assert_eq!((patient.code(), coalesced(&patient)), (0, Some(1)));
    assert_eq!(hold.await.expect("caller").code(), 0);
    let bodies: Vec<BTreeMap<String, String>> = writes_to(&emulator.state.records(), group)
        .iter()
        .map(|r| attrs_of(&r.body, "GroupAttr"))
        .collect();
    assert_eq!(
        bodies,
        [
            BTreeMap::from([("h".to_string(), "0".to_string())]),
            BTreeMap::from([("b".to_string(), "2".to_string())]),
        ]
    );
    gateway.shutdown().await;
}
