//! Retries that read Tencent's answers, over real sockets against the emulator's faults.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::clock::unix_now;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig, Fault};
use timgate::tencent::usersig;
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";

fn write(group: &str, value: &str) -> String {
    json!({"GroupId": group, "GroupAttr": [{"key": "k", "value": value}]}).to_string()
}

fn counter(gateway: &Gateway, name: &str, labels: &[&str]) -> u64 {
    match name {
        "retries" => gateway.metrics.retries.with_label_values(labels).get(),
        "attempts" => gateway
            .metrics
            .upstream_attempts
            .with_label_values(labels)
            .get(),
        _ => unreachable!("no such counter"),
    }
}

/// The demo emulator behind a gateway whose retries start at a 10 ms backoff (the TLS files
/// are kept for the test's length).
async fn quick_retries() -> (Emulator, support::Tls, Gateway) {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[
        &base_toml(emulator.addr, Some(&tls)),
        "[retry]\nbase_delay_ms = 10\n",
    ])
    .await;
    (emulator, tls, gateway)
}

#[tokio::test]
async fn a_10002_twice_then_success_is_ok_after_three_attempts_with_three_randoms() {
    // Apart, as the retries' spacing is read from the moments it stamps: on the test's own
    // runtime, a loaded machine stamped one attempt late and the next 166 ms after it.
    let emulator = support::emulator_apart(EmulatorConfig::demo());
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None)]).await;
    emulator.state.inject("flaky", Fault::Code(10002), 2);
    let answer = Client::new()
        .post(&gateway.url(MODIFY), write("flaky", "v"))
        .await;
    assert_eq!((answer.status.as_u16(), answer.code()), (200, 0));
    let records = emulator.state.records();
    assert_eq!(
        records.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![10002, 10002, 0]
    );
    let mut randoms: Vec<u32> = records.iter().map(|r| r.random.expect("random")).collect();
    randoms.dedup();
    assert_eq!(randoms.len(), 3, "a fresh random per attempt");
    // Each retry took a new group slot: slots are 204 ms apart; a send may trail its slot by the
    // 1 ms timer slack, and arrival at the emulator jitters by a little more.
    for pair in records.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(195),
            "{:?}",
            pair[1].at - pair[0].at
        );
    }
    assert_eq!(counter(&gateway, "retries", &[MODIFY, "code_10002"]), 2);
    assert_eq!(emulator.state.group("flaky").expect("group")["k"], "v");
    gateway.shutdown().await;
}

#[tokio::test]
async fn codes_that_are_never_retried_get_exactly_one_attempt() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let codes = [
        10004, 10007, 10010, 10015, 10045, 10046, 10047, 10048, 10050, 10056, 60002, 60003, 60006,
        60009, 60010, 60012, 60020, 60025, 60026, 70003, 70009, 70013, 70014, 70016, 70020, 424242,
    ];
    for (i, code) in codes.iter().enumerate() {
        let group = format!("final-{i}");
        emulator.state.inject(&group, Fault::Code(*code), 1);
        let answer = client.post(&gateway.url(MODIFY), write(&group, "v")).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (200, *code),
            "passed through unchanged"
        );
        assert_eq!(answer.reason(), None);
    }
    assert_eq!(
        emulator.state.received(),
        codes.len() as u64,
        "one attempt each"
    );
    assert_eq!(counter(&gateway, "attempts", &[MODIFY]), codes.len() as u64);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_expired_usersig_is_renewed_and_the_request_retried() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    // UserSigs are stamped in whole seconds: let the clock move so the renewed one differs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    emulator.state.inject("sig", Fault::Code(70001), 1);
    let answer = Client::new()
        .post(&gateway.url(MODIFY), write("sig", "v"))
        .await;
    assert_eq!(answer.code(), 0);
    let records = emulator.state.records();
    assert_eq!(
        records.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![70001, 0]
    );
    let sig = |i: usize| records[i].usersig.clone().expect("usersig");
    assert_ne!(sig(0), sig(1), "a new usersig");
    let (old, new) = (
        usersig::decode(&sig(0)).expect("decodes"),
        usersig::verify(
            &sig(1),
            DEMO_SDKAPPID,
            "administrator",
            DEMO_SECRET_KEY,
            unix_now(),
        )
        .expect("verifies"),
    );
    assert!(new.time > old.time);
    assert_eq!(counter(&gateway, "retries", &[MODIFY, "code_70001"]), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_is_retried_up_to_max_attempts_then_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gateway =
        Gateway::start(&[&base_toml(closed, None), "[retry]\nbase_delay_ms = 50\n"]).await;
    let started = Instant::now();
    // get is paced by its app lane only, so the time between attempts is the backoff itself.
    let answer = Client::new()
        .post(
            &gateway.url("group_open_attr_http_svc/get_group_attr"),
            r#"{"GroupId":"g"}"#,
        )
        .await;
    assert_eq!(
        (answer.status.as_u16(), answer.code(), answer.reason()),
        (502, 900502, Some("upstream_unreachable"))
    );
    let api = "group_open_attr_http_svc/get_group_attr";
    assert_eq!(counter(&gateway, "attempts", &[api]), 4, "max_attempts");
    assert_eq!(counter(&gateway, "retries", &[api, "connect"]), 3);
    // Full jitter: each backoff is uniform under 50, 100 and 200 ms; together they stay under 350.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn resets_and_timeouts_of_idempotent_writes_are_retried() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let short = "[upstream]\nrequest_timeout_ms = 300\n[retry]\nbase_delay_ms = 10\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), short]).await;
    emulator.state.inject("bumpy", Fault::Close, 1);
    emulator.state.inject("bumpy", Fault::Stall, 1);
    let answer = Client::new()
        .post(&gateway.url(MODIFY), write("bumpy", "v"))
        .await;
    assert_eq!(answer.code(), 0, "{:?}", answer.body);
    assert_eq!(emulator.state.received(), 3);
    assert_eq!(counter(&gateway, "retries", &[MODIFY, "reset"]), 1);
    assert_eq!(counter(&gateway, "retries", &[MODIFY, "timeout"]), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_bounds_attempts_against_an_upstream_that_always_fails() {
    let broken = EmulatorConfig {
        fail_share: 1.0,
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(broken).await;
    let fast = "[retry]\nbase_delay_ms = 1\nmax_delay_ms = 5\n";
    let started = Instant::now();
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), fast]).await;
    let client = Client::new();
    let requests = 100;
    let answers: Vec<_> = (0..requests)
        .map(|i| {
            let (client, url) = (client.clone(), gateway.url(MODIFY));
            tokio::spawn(async move { client.post(&url, write(&format!("b{i}"), "v")).await })
        })
        .collect();
    for answer in answers {
        assert_eq!(
            answer.await.expect("answer").code(),
            10002,
            "the caller gets the last answer"
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let attempts = emulator.state.received() as f64;
    // (1 + budget_ratio) x requests, plus the floor: a second's worth at the start and a
    // second's worth every second since the gateway started.
    let floor = timgate::retry::FLOOR_PER_SECOND;
    let bound = (1.0 + 0.2) * requests as f64 + floor + seconds * floor;
    assert!(attempts <= bound, "{attempts} attempts > {bound}");
    assert!(attempts > requests as f64, "some retries were made");
    assert!(
        gateway
            .metrics
            .retry_budget_exhausted
            .with_label_values(&[MODIFY])
            .get()
            > 0
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn writes_stay_in_accept_order_when_retries_are_injected() {
    let (emulator, _tls, gateway) = quick_retries().await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    emulator.state.inject("ordered", Fault::Code(10002), 2);
    let client = Client::new();
    let mut answers = Vec::new();
    for i in 0..10 {
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        answers.push(tokio::spawn(async move {
            client.post(&url, write("ordered", &i.to_string())).await
        }));
        support::wait_admitted(&admitted, i + 1).await;
        if i == 4 {
            emulator.state.inject("ordered", Fault::Code(60008), 1);
        }
    }
    for answer in answers {
        assert_eq!(answer.await.expect("answer").code(), 0);
    }
    let applied: Vec<String> = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.code == 0)
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["GroupAttr"][0]
                    ["value"]
                    .to_string()
        })
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("\"{i}\"")).collect();
    assert_eq!(applied, expected);
    assert_eq!(emulator.state.received(), 13);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_answers_slow_the_group_lane_until_the_errors_stop() {
    let strict = EmulatorConfig {
        group_writes_per_second: 2,
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(strict).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let stop_at = Instant::now() + Duration::from_secs(14);
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, url) = (client.clone(), gateway.url(MODIFY));
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < stop_at {
                    i += 1;
                    let answer = client
                        .post(&url, write("shared", &format!("{w}-{i}")))
                        .await;
                    assert_eq!(answer.status, 200);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let records = emulator.state.records();
    let first = records[0].at;
    let throttled: Vec<f64> = records
        .iter()
        .filter(|r| r.code == 10049)
        .map(|r| (r.at - first).as_secs_f64())
        .collect();
    assert!(!throttled.is_empty(), "the emulator's 2/s limit was met");
    let late: Vec<_> = records
        .iter()
        .filter(|r| r.at - first >= Duration::from_secs(6))
        .collect();
    assert!(
        late.iter().all(|r| r.code != 10049),
        "errors stopped after convergence: {throttled:?}"
    );
    let span = (late.last().expect("late").at - late[0].at).as_secs_f64();
    let rate = (late.len() - 1) as f64 / span;
    assert!((1.5..=2.0).contains(&rate), "converged to {rate:.2}/s");
    assert!(
        gateway
            .metrics
            .throttles
            .with_label_values(&["group"])
            .get()
            >= 1
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_5xx_is_retried_only_for_an_api_that_is_safe_to_send_twice() {
    const CREATE: &str = "group_open_http_svc/create_group";
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let allow =
        format!("[retry]\nbase_delay_ms = 10\n[apis]\nallow = [\"{MODIFY}\", \"{CREATE}\"]\n");
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), &allow]).await;
    emulator.state.inject("new_room", Fault::Status(502), 3);
    let create = json!({"GroupId": "new_room", "Type": "Public", "Name": "room"}).to_string();
    let answer = Client::new().post(&gateway.url(CREATE), create).await;
    assert_eq!(
        answer.status.as_u16(),
        502,
        "the 502 is the answer: the group may have been created"
    );
    let sent = |api: &str| {
        emulator
            .state
            .records()
            .iter()
            .filter(|r| r.api == api)
            .count()
    };
    assert_eq!(sent(CREATE), 1, "create_group is sent exactly once");
    assert_eq!(counter(&gateway, "attempts", &[CREATE]), 1);
    // A modify writes absolute values: the same 502 twice, then its answer.
    emulator.state.inject("flaky", Fault::Status(502), 2);
    let answer = Client::new()
        .post(&gateway.url(MODIFY), write("flaky", "v"))
        .await;
    assert_eq!((answer.status.as_u16(), answer.code()), (200, 0));
    assert_eq!(sent(MODIFY), 3);
    assert_eq!(counter(&gateway, "retries", &[MODIFY, "http_5xx"]), 2);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_delete_re_sent_after_a_lost_answer_that_gets_10050_is_answered_ok() {
    const DELETE: &str = "group_open_http_svc/delete_group_attr";
    let (emulator, _tls, gateway) = quick_retries().await;
    let client = Client::new();
    let answer = client.post(&gateway.url(MODIFY), write("room", "v")).await;
    assert_eq!(answer.code(), 0);
    let delete = json!({"GroupId": "room", "GroupAttr": [{"key": "k"}]}).to_string();
    // Not answered, after the emulator deleted: the re-sent delete finds nothing to delete.
    emulator.state.inject("room", Fault::StatusAfter(502), 1);
    let answer = client.post(&gateway.url(DELETE), delete.clone()).await;
    assert_eq!(
        (answer.status.as_u16(), answer.code()),
        (200, 0),
        "the delete happened"
    );
    let codes: Vec<i64> = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api == DELETE)
        .map(|r| r.code)
        .collect();
    assert_eq!(
        codes,
        vec![0, 10050],
        "deleted, then nothing left to delete"
    );
    // A delete of a key that was never there, answered the first time, stays a 10050.
    let answer = client.post(&gateway.url(DELETE), delete).await;
    assert_eq!(answer.code(), 10050);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_60011_slows_every_api_of_the_app_and_a_60007_only_its_own() {
    const GET: &str = "group_open_attr_http_svc/get_group_attr";
    const DELETE: &str = "group_open_http_svc/delete_group_attr";
    let (emulator, _tls, gateway) = quick_retries().await;
    let rate = |api: &str| {
        gateway
            .metrics
            .lane_rate
            .with_label_values(&["app", api])
            .get()
    };
    let full = rate(GET);
    assert!(full > 190.0, "every lane starts at the limit: {full}");
    let client = Client::new();
    emulator.state.inject("one", Fault::Code(60007), 1);
    let answer = client.post(&gateway.url(MODIFY), write("one", "v")).await;
    assert_eq!(answer.code(), 0, "retried after the slowdown");
    assert!(rate(MODIFY) < full, "the API that got 60007 is slowed");
    assert_eq!(rate(GET), full, "60007 is one API's limit");
    emulator.state.inject("two", Fault::Code(60011), 1);
    let answer = client.post(&gateway.url(MODIFY), write("two", "v")).await;
    assert_eq!(answer.code(), 0);
    for api in [GET, DELETE] {
        assert!(
            rate(api) < full,
            "60011 is the app's total: {api} is slowed too ({})",
            rate(api)
        );
    }
    gateway.shutdown().await;
}
