//! The scripted scenario: known numbers of successes, retries, a throttle, final failures,
//! validation refusals and 429s through a gateway in front of the TLS emulator, and the exact
//! counters they must leave in /metrics. All on modify_group_attr except the retry budget's part,
//! which spends set_group_attr's budget.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use timgate::emulator::{Emulator, EmulatorConfig, Fault};
use tokio::task::JoinHandle;

use crate::exposition::Scrape;
use crate::support::{Answer, Client, Gateway, base_toml, tls_emulator};

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const SET: &str = "group_open_http_svc/set_group_attr";

/// Writes Tencent answers OK at once.
const PLAIN: u64 = 6;
/// Writes answered 10002 once, then OK: one retry each.
const RETRIED: u64 = 3;
/// Writes answered with a final code (10007, never retried).
const FINAL: u64 = 2;
/// Bodies that are not JSON, and a key over 32 bytes: refused by validation.
const NOT_JSON: u64 = 3;
const KEY_TOO_LONG: u64 = 1;
/// Writes refused 429 because their group's queue is full, and because of their deadline.
const QUEUE_FULL: u64 = 3;
const DEADLINE: u64 = 2;
/// Writes that hold a group while the refused ones arrive (two on "busy", one on "hasty").
const HOLDERS: u64 = 3;
/// set_group_attr writes answered 10002 once, at once: more than the retry budget allows.
const BUDGET_BURST: u64 = 100;

fn write(group: &str, key: &str) -> String {
    json!({"GroupId": group, "GroupAttr": [{"key": key, "value": "v"}]}).to_string()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// Sends a modify write in the background, and returns once the pacer has admitted it.
async fn hold(gateway: &Gateway, client: &Client, group: &str) -> JoinHandle<Answer> {
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let before = admitted.get();
    let answer = spawn_post(client, gateway.url(MODIFY), write(group, "k"));
    while admitted.get() == before {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    answer
}

async fn all(answers: Vec<JoinHandle<Answer>>) -> Vec<Answer> {
    let mut out = Vec::new();
    for answer in answers {
        out.push(answer.await.expect("answer"));
    }
    out
}

fn spawn_post(client: &Client, url: String, body: String) -> JoinHandle<Answer> {
    let client = client.clone();
    tokio::spawn(async move { client.post(&url, body).await })
}

/// Spends set_group_attr's retry budget: a burst of writes each answered 10002 once.
async fn budget_burst(gateway: &Gateway, emulator: &Emulator, client: &Client) {
    let burst = (0..BUDGET_BURST)
        .map(|i| {
            let group = format!("budget-{i}");
            emulator.state.inject(&group, Fault::Code(10002), 1);
            spawn_post(client, gateway.url(SET), write(&group, "k"))
        })
        .collect();
    for answer in all(burst).await {
        assert!(
            matches!((answer.status.as_u16(), answer.code()), (200, 0 | 10002)),
            "{answer:?}"
        );
    }
}

/// Successes, retries, a throttle, final failures and validation refusals, on modify_group_attr.
async fn answered_by_tencent(gateway: &Gateway, emulator: &Emulator, client: &Client) {
    let mut expected = Vec::new();
    let mut plan = |group: String, fault: Option<Fault>, code: i64| {
        if let Some(fault) = fault {
            emulator.state.inject(&group, fault, 1);
        }
        expected.push((
            code,
            spawn_post(client, gateway.url(MODIFY), write(&group, "k")),
        ));
    };
    (0..PLAIN).for_each(|i| plan(format!("plain-{i}"), None, 0));
    (0..RETRIED).for_each(|i| plan(format!("retried-{i}"), Some(Fault::Code(10002)), 0));
    (0..FINAL).for_each(|i| plan(format!("final-{i}"), Some(Fault::Code(10007)), 10007));
    plan("throttled".into(), Some(Fault::Code(10049)), 0);
    for (code, answer) in expected {
        assert_eq!(answer.await.expect("answer").code(), code);
    }
    for _ in 0..NOT_JSON {
        let answer = client.post(&gateway.url(MODIFY), "not json").await;
        assert_eq!(answer.reason(), Some("invalid_json"));
    }
    let long_key = write("plain-0", &"k".repeat(33));
    let answer = client.post(&gateway.url(MODIFY), long_key).await;
    assert_eq!(answer.reason(), Some("key_too_long"));
}

/// 429s: a full group queue, and a deadline a group with a write in flight cannot meet. The
/// emulator's latency keeps the holding writes in flight meanwhile.
async fn refused_for_queues(gateway: &Gateway, client: &Client) {
    // "busy": one write in flight and one waiting fill its queue of one.
    let mut holders = vec![
        hold(gateway, client, "busy").await,
        hold(gateway, client, "busy").await,
    ];
    for _ in 0..QUEUE_FULL {
        let full = client.post(&gateway.url(MODIFY), write("busy", "k")).await;
        assert_eq!(
            (full.status.as_u16(), full.reason()),
            (429, Some("group_queue_full"))
        );
    }
    // "hasty": one write in flight; the next slot is 204 ms away, past a 50 ms deadline.
    holders.push(hold(gateway, client, "hasty").await);
    for _ in 0..DEADLINE {
        let request = Request::post(gateway.url(MODIFY))
            .header("x-timgate-max-wait-ms", "50")
            .body(Full::new(Bytes::from(write("hasty", "k"))))
            .expect("request");
        let hasty = client.send(request).await;
        assert_eq!(
            (hasty.status.as_u16(), hasty.reason()),
            (429, Some("group_deadline"))
        );
    }
    for answer in all(holders).await {
        assert_eq!(answer.code(), 0);
    }
}

/// Runs the scenario and returns the gateway's /metrics exposition at its end.
pub(crate) async fn run() -> String {
    let slow = EmulatorConfig {
        latency: Duration::from_millis(250),
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(slow).await;
    let layers = "[limits]\nmax_queue_per_group = 1\n[retry]\nbase_delay_ms = 10\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), layers]).await;
    let client = Client::new();
    // First, while the budget holds only its starting balance (it refills at 10 a second).
    budget_burst(&gateway, &emulator, &client).await;
    answered_by_tencent(&gateway, &emulator, &client).await;
    refused_for_queues(&gateway, &client).await;
    let answer = client
        .get(&format!("http://{}/metrics", gateway.admin))
        .await;
    assert_eq!(answer.status, 200);
    gateway.shutdown().await;
    String::from_utf8(answer.body.to_vec()).expect("utf-8")
}

/// Asserts the counters the scenario must have left, exactly.
pub(crate) fn assert_counters(scrape: &Scrape) {
    assert_modify_counters(scrape);
    assert_budget_counters(scrape);
    assert_settled(scrape);
}

fn assert_modify_counters(m: &Scrape) {
    let requests = |outcome| {
        m.get(
            "timgate_requests_total",
            &[("api", MODIFY), ("outcome", outcome)],
        )
    };
    let ok = PLAIN + RETRIED + 1 + HOLDERS;
    assert_eq!(requests("ok"), ok, "n successes");
    assert_eq!(requests("fail"), FINAL);
    assert_eq!(
        requests("invalid"),
        NOT_JSON + KEY_TOO_LONG,
        "m validation refusals"
    );
    assert_eq!(
        requests("rejected"),
        QUEUE_FULL + DEADLINE,
        "j queue refusals"
    );
    let outcomes = m.label_values("timgate_requests_total", ("api", MODIFY), "outcome");
    assert_eq!(outcomes, set(&["ok", "fail", "invalid", "rejected"]));

    let rejections = |reason| m.get("timgate_rejections_total", &[("reason", reason)]);
    assert_eq!(rejections("invalid_json"), NOT_JSON);
    assert_eq!(rejections("key_too_long"), KEY_TOO_LONG);
    assert_eq!(rejections("group_queue_full"), QUEUE_FULL);
    assert_eq!(rejections("group_deadline"), DEADLINE);
    // Every reason exists from the start (at zero); these are the ones that moved.
    let reasons: BTreeSet<String> = m
        .samples
        .iter()
        .filter(|s| s.name == "timgate_rejections_total" && s.value > 0.0)
        .filter_map(|s| s.labels.get("reason").cloned())
        .collect();
    assert_eq!(
        reasons,
        set(&[
            "invalid_json",
            "key_too_long",
            "group_queue_full",
            "group_deadline"
        ])
    );

    let retries = |reason| {
        m.get(
            "timgate_retries_total",
            &[("api", MODIFY), ("reason", reason)],
        )
    };
    assert_eq!(retries("code_10002"), RETRIED, "k retries");
    assert_eq!(retries("code_10049"), 1, "the throttled write's retry");
    let reasons = m.label_values("timgate_retries_total", ("api", MODIFY), "reason");
    assert_eq!(reasons, set(&["code_10002", "code_10049"]));
    assert_eq!(m.get("timgate_throttles_total", &[("lane", "group")]), 1);
    // The app lane's series exists from the start, at zero: no API lane was throttled.
    assert_eq!(
        m.find("timgate_throttles_total", &[("lane", "app")]),
        Some(0.0)
    );

    // The caller saw 10007 only: a throttle answer a retry absorbed is not a Tencent error here,
    // which is why the throttling alert watches throttles_total as well.
    let codes = m.label_values("timgate_tencent_errors_total", ("api", MODIFY), "code");
    assert_eq!(codes, set(&["10007"]));
    assert_eq!(
        m.get(
            "timgate_tencent_errors_total",
            &[("api", MODIFY), ("code", "10007")]
        ),
        FINAL
    );
    let attempts = PLAIN + 2 * RETRIED + FINAL + 2 + HOLDERS;
    assert_eq!(
        m.get("timgate_upstream_attempts_total", &[("api", MODIFY)]),
        attempts
    );
    let answered = ok + FINAL + NOT_JSON + KEY_TOO_LONG + QUEUE_FULL + DEADLINE;
    let durations = m.get("timgate_request_duration_seconds_count", &[("api", MODIFY)]);
    assert_eq!(durations, answered, "one caller latency per answer");
}

fn assert_budget_counters(m: &Scrape) {
    let retried = m.get(
        "timgate_retries_total",
        &[("api", SET), ("reason", "code_10002")],
    );
    let exhausted = m.get("timgate_retry_budget_exhausted_total", &[("api", SET)]);
    assert_eq!(
        retried + exhausted,
        BUDGET_BURST,
        "each failure retried or refused a retry"
    );
    assert!(exhausted >= 1, "the burst outran the budget");
    eprintln!("budget burst: {retried} retried, {exhausted} refused a retry");
    let requests = |outcome| {
        m.get(
            "timgate_requests_total",
            &[("api", SET), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("ok"), retried);
    assert_eq!(requests("fail"), exhausted);
    assert_eq!(
        m.get(
            "timgate_tencent_errors_total",
            &[("api", SET), ("code", "10002")]
        ),
        exhausted
    );
    assert_eq!(
        m.get("timgate_upstream_attempts_total", &[("api", SET)]),
        BUDGET_BURST + retried
    );
}

fn assert_settled(m: &Scrape) {
    for lane in ["app", "group"] {
        assert_eq!(m.get("timgate_queued_requests", &[("lane", lane)]), 0);
    }
    assert_eq!(m.get("timgate_upstream_in_flight", &[]), 0);
    assert!(m.get("timgate_usersig_expiry_timestamp_seconds", &[]) > 1_700_000_000);
}
