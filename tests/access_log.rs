//! The access log explains a request: each answer's line carries its queue wait, its time
//! upstream, its attempts, the batch it shared, the budget that paced it, and the caller's name,
//! on an in-process gateway in front of the emulator (and a real redis-server for the shared
//! budget), its log lines captured as the JSON a deployment writes.

mod support;

#[path = "access_log/capture.rs"]
mod capture;

use std::time::Duration;

use capture::{answered, capture};
use http::Request;
use http_body_util::Full;
use support::held::until;
use support::redis::Redis;
use support::{Answer, Client, Gateway, base_toml, emulator, wait_admitted};
use timgate::emulator::EmulatorConfig;
use tokio::task::JoinHandle;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";

fn write(group: &str, value: &str) -> String {
    format!(r#"{{"GroupId":"{group}","GroupAttr":[{{"key":"k","value":"{value}"}}]}}"#)
}

/// POSTs `body` to `url` with a request id and, when given, a bearer token.
async fn post(url: String, id: &str, token: Option<&str>, body: String) -> Answer {
    let mut request = Request::post(url).header("x-request-id", id);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(body.into())).expect("request");
    Client::new().send(request).await
}

/// [`post`] in a task of its own.
fn spawn_post(
    url: String,
    id: &str,
    token: Option<&'static str>,
    body: String,
) -> JoinHandle<Answer> {
    let id = id.to_string();
    tokio::spawn(async move { post(url, &id, token, body).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_write_logs_its_wait_its_time_upstream_and_its_caller() {
    capture();
    let slow = EmulatorConfig {
        latency: Duration::from_millis(30),
        ..EmulatorConfig::demo()
    };
    let emulator = emulator(slow, None).await;
    let tokens = "[server]\nauth_tokens = [\"billing:tok-billing-1\", \"tok-plain-2\"]\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), tokens]).await;
    // Three writes to one group at once: at 5 a second, the third waits two intervals (~400 ms).
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let mut answers = Vec::new();
    for i in 0..3 {
        let body = write("@TGS#paced", &i.to_string());
        let id = format!("paced-{i}");
        answers.push(spawn_post(
            gateway.url(MODIFY),
            &id,
            Some("tok-billing-1"),
            body,
        ));
        // Each in line before the next is sent, so they leave in this order.
        wait_admitted(&admitted, i + 1).await;
    }
    for answer in answers {
        let answer = answer.await.expect("answer");
        assert_eq!(answer.code(), 0, "{:?}", answer.body);
    }
    let last = answered("paced-2").await;
    assert_eq!(last["caller"], "billing", "{last}");
    assert_eq!(last["attempts"], 1, "{last}");
    assert_eq!(last["limiter"], "local", "{last}");
    assert_eq!(last["outcome"], "ok", "{last}");
    let wait = last["queue_wait_ms"].as_f64().expect("queue_wait_ms");
    let upstream = last["upstream_ms"].as_f64().expect("upstream_ms");
    let latency = last["latency_ms"].as_f64().expect("latency_ms");
    // Its slot is two of the group's ~204 ms intervals after the first write's, and it joined the
    // queue right behind the second: most of the 408 ms is its wait (the bound leaves room for a
    // loaded machine's late admission).
    assert!(wait >= 150.0, "{last}");
    let first = answered("paced-0").await;
    assert!(first["queue_wait_ms"].as_f64() < Some(wait), "{first}");
    assert!(upstream >= 30.0, "the emulator's latency: {last}");
    assert!(latency + 0.01 >= wait + upstream, "{last}");
    assert!(last.get("coalesced").is_none(), "{last}");
    assert!(last.get("trace_id").is_none(), "tracing is off: {last}");

    // A plain token's caller is `unnamed`; a refusal before the queue has no send fields.
    let refused = post(
        gateway.url(MODIFY),
        "refused-1",
        Some("tok-plain-2"),
        "{".into(),
    )
    .await;
    assert_eq!(refused.code(), 60003, "{:?}", refused.body);
    let line = answered("refused-1").await;
    assert_eq!(line["caller"], "unnamed", "{line}");
    assert_eq!(line["outcome"], "invalid", "{line}");
    for absent in ["queue_wait_ms", "upstream_ms", "attempts", "limiter"] {
        assert!(line.get(absent).is_none(), "{absent} in {line}");
    }
    // Refused before its body (an API not allowed): still named.
    let url = format!("http://{}/v4/openim/sendmsg", gateway.addr);
    let forbidden = post(url, "forbidden-1", Some("tok-billing-1"), "{}".into()).await;
    assert_eq!(forbidden.status, 403, "{:?}", forbidden.body);
    let line = answered("forbidden-1").await;
    assert_eq!(
        (&line["caller"], &line["outcome"]),
        (&"billing".into(), &"rejected".into())
    );
    // No token, no caller.
    let anonymous = post(
        gateway.url(MODIFY),
        "anonymous-1",
        None,
        write("@TGS#x", "1"),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert!(answered("anonymous-1").await.get("caller").is_none());
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_logs_every_attempt_and_their_time_upstream() {
    capture();
    let broken = EmulatorConfig {
        fail_share: 1.0,
        latency: Duration::from_millis(20),
        ..EmulatorConfig::demo()
    };
    let emulator = emulator(broken, None).await;
    let fast = "[retry]\nmax_attempts = 3\nbase_delay_ms = 1\nmax_delay_ms = 5\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), fast]).await;
    let answer = post(gateway.url(MODIFY), "retried-1", None, write("@TGS#r", "1")).await;
    assert_eq!(answer.code(), 10002, "{:?}", answer.body);
    let line = answered("retried-1").await;
    assert_eq!(line["attempts"], 3, "{line}");
    assert_eq!(line["outcome"], "fail", "{line}");
    assert_eq!(line["code"], 10002, "{line}");
    assert!(
        line["upstream_ms"].as_f64() >= Some(60.0),
        "3 x 20 ms: {line}"
    );
    assert_eq!(emulator.state.received(), 3);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_writes_log_the_batch_they_shared() {
    capture();
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let coalesce = "[limits]\ncoalesce = true\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), coalesce]).await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    // The first write takes the group's slot; the four after it wait and merge into one batch.
    let mut answers = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"GroupId":"@TGS#c","GroupAttr":[{{"key":"k{i}","value":"v"}}]}}"#);
        answers.push(spawn_post(
            gateway.url(MODIFY),
            &format!("merged-{i}"),
            None,
            body,
        ));
        if i == 0 {
            wait_admitted(&admitted, 1).await;
        }
    }
    let mut sizes = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.await.expect("answer");
        assert_eq!(answer.code(), 0, "{:?}", answer.body);
        let header = answer
            .headers
            .get("x-timgate-coalesced")
            .map(|v| v.to_str().expect("ascii").parse::<u64>().expect("a count"));
        let line = answered(&format!("merged-{i}")).await;
        assert_eq!(line["coalesced"].as_u64(), header, "{line}");
        assert_eq!(line["attempts"], 1, "{line}");
        sizes.push(header);
    }
    assert!(
        sizes.iter().any(|s| *s > Some(1)),
        "some writes shared a call: {sizes:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_named_is_redis_while_it_serves_and_fallback_while_it_is_away() {
    capture();
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let shared = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\nfallback_share = 0.5\n",
        redis.url()
    );
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &shared]).await;
    let up = &gateway.metrics.limiter_backend_up;
    until("Redis is up", || up.get() == 1).await;
    let answer = post(gateway.url(MODIFY), "via-redis", None, write("@TGS#l", "1")).await;
    assert_eq!(answer.code(), 0, "{:?}", answer.body);
    assert_eq!(answered("via-redis").await["limiter"], "redis");

    redis.stop();
    until("Redis is seen away", || up.get() == 0).await;
    let answer = post(gateway.url(MODIFY), "via-share", None, write("@TGS#l", "2")).await;
    assert_eq!(answer.code(), 0, "{:?}", answer.body);
    assert_eq!(answered("via-share").await["limiter"], "fallback");
    gateway.shutdown().await;
}
