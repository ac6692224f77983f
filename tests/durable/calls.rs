//! The durable tests' calls: the configuration layer, async writes and their jobs, what the
//! emulator received, and waiting for a condition.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use timgate::emulator::Record;
use tokio::time::Instant;

use crate::support::redis::Redis;
use crate::support::{Answer, Client};

/// The layer that makes a gateway durable on `redis`, with `extra` lines in `[queue]`.
pub(crate) fn durable(redis: &Redis, extra: &str) -> String {
    durable_with(redis, "", extra)
}

/// As [`durable`], with `limits` lines in `[limits]` too.
pub(crate) fn durable_with(redis: &Redis, limits: &str, extra: &str) -> String {
    format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n{limits}[queue]\ndurable = true\nlease_ms = 1000\n{extra}",
        redis.url()
    )
}

pub(crate) fn write(group: &str, key: &str, value: &str) -> String {
    json!({"GroupId": group, "GroupAttr": [{"key": key, "value": value}]}).to_string()
}

/// POSTs a write asking for an answer at once.
pub(crate) async fn post_async(client: &Client, url: &str, body: String) -> Answer {
    let request = Request::post(url)
        .header("prefer", "respond-async")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    client.send(request).await
}

/// The job a 202 names, checked: its Location and JobId agree.
pub(crate) fn job_location(answer: &Answer) -> String {
    assert_eq!(answer.status, 202, "accepted: {:?}", answer.body);
    let location = answer.headers["location"].to_str().expect("ascii");
    let body = answer.json();
    assert_eq!(
        (&body["ActionStatus"], &body["ErrorCode"]),
        (&json!("OK"), &json!(0))
    );
    let id = body["JobId"].as_str().expect("JobId");
    assert_eq!(location, format!("/timgate/jobs/{id}"));
    location.to_string()
}

/// A job as the proxy listener at `addr` reads it; `None` while the queue's Redis is away
/// (503 `queue_unavailable`, the one other answer a known job may get).
pub(crate) async fn job(
    client: &Client,
    addr: std::net::SocketAddr,
    location: &str,
) -> Option<Value> {
    let answer = client.get(&format!("http://{addr}{location}")).await;
    if answer.status == 503 && answer.reason() == Some("queue_unavailable") {
        return None;
    }
    assert_eq!(answer.status, 200, "{location}: {:?}", answer.body);
    Some(answer.json())
}

pub(crate) async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every job at `locations` reads `done` from `addr`, each with Tencent's OK.
pub(crate) async fn all_done(client: &Client, addr: std::net::SocketAddr, locations: &[String]) {
    let started = Instant::now();
    for location in locations {
        loop {
            let job = job(client, addr, location).await.unwrap_or(Value::Null);
            if job["State"] == "done" {
                assert_eq!(job["Answer"]["ErrorCode"], 0, "{job}");
                break;
            }
            assert_ne!(job["State"], "failed", "{job}");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{location} still {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The values of `key` the emulator received for `group`, in arrival order, with a value sent
/// again right after itself (a redelivery) collapsed.
pub(crate) fn arrived(records: &[Record], group: &str, key: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for record in records.iter().filter(|r| {
        r.api.ends_with("modify_group_attr") && r.group_id.as_deref() == Some(group) && r.code == 0
    }) {
        let body: Value = serde_json::from_slice(&record.body).expect("JSON");
        for attr in body["GroupAttr"].as_array().expect("GroupAttr") {
            if attr["key"] == key {
                let value = attr["value"].as_str().expect("value").to_string();
                if values.last() != Some(&value) {
                    values.push(value);
                }
            }
        }
    }
    values
}

pub(crate) fn writes_to<'a>(records: &'a [Record], group: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.api.ends_with("modify_group_attr") && r.group_id.as_deref() == Some(group))
        .collect()
}

/// Reads `/metrics` on `admin` until a line starts with `line`.
pub(crate) async fn until_metric(admin: std::net::SocketAddr, line: &str) {
    let client = Client::new();
    let started = Instant::now();
    loop {
        if std::net::TcpStream::connect(admin).is_ok() {
            let answer = client.get(&format!("http://{admin}/metrics")).await;
            let text = String::from_utf8_lossy(&answer.body);
            if text.lines().any(|l| l.starts_with(line)) {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no `{line}` on {admin}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
