//! End to end over real sockets: caller -> gateway -> TLS -> emulator, and back.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, EmulatorConfig};
use timgate::tencent::usersig;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const GET: &str = "group_open_attr_http_svc/get_group_attr";

#[tokio::test]
async fn modify_then_get_returns_what_was_written() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let body = json!({"GroupId": "@TGS#aROOM1", "GroupAttr": [
        {"key": "song", "value": "intro"}, {"key": "seat", "value": "\u{4e3b}\u{6301}"}]});
    let answer = client.post(&gateway.url(MODIFY), body.to_string()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})
    );
    assert_eq!(
        answer.reason(),
        None,
        "Tencent's own answer carries no gateway reason"
    );

    let answer = client
        .post(&gateway.url(GET), r#"{"GroupId":"@TGS#aROOM1"}"#)
        .await;
    assert_eq!(answer.code(), 0);
    let mut attrs = answer.json()["GroupAttrAry"]
        .as_array()
        .expect("GroupAttrAry")
        .clone();
    attrs.sort_by_key(|a| a["key"].as_str().map(str::to_owned));
    assert_eq!(
        attrs,
        vec![
            json!({"key": "seat", "value": "\u{4e3b}\u{6301}"}),
            json!({"key": "song", "value": "intro"})
        ]
    );
    assert_eq!(emulator.state.received(), 2);
    gateway.shutdown().await;
}

#[tokio::test]
async fn replaces_whatever_signing_parameters_the_caller_sent() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let url = format!(
        "{}?sdkappid=1&identifier=mallory&usersig=forged&random=notanumber&contenttype=xml",
        gateway.url(MODIFY)
    );
    let body = r#"{"GroupId":"g-sign","GroupAttr":[{"key":"k","value":"v"}]}"#;
    let client = Client::new();
    let first = client.post(&url, body).await;
    let second = client.post(&url, body).await;
    assert_eq!((first.code(), second.code()), (0, 0), "{:?}", first.body);

    let records = emulator.state.records();
    assert_eq!(records.len(), 2);
    for record in &records {
        assert_eq!(record.identifier.as_deref(), Some("administrator"));
        let sig = record.usersig.as_deref().expect("usersig sent");
        let decoded = usersig::verify(
            sig,
            DEMO_SDKAPPID,
            "administrator",
            DEMO_SECRET_KEY,
            timgate::clock::unix_now(),
        )
        .expect("the gateway's usersig verifies");
        assert_eq!(decoded.expire, 86400);
        assert!(record.random.is_some(), "random is a u32");
        assert_eq!(
            &record.body[..],
            body.as_bytes(),
            "the body is forwarded unchanged"
        );
    }
    assert_ne!(
        records[0].random, records[1].random,
        "each attempt has a fresh random"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_gets_the_emulators_70009_answer_unchanged() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let wrong_key = "[tencent]\nsecret_key = \"not-the-apps-key\"\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), wrong_key]).await;
    let answer = Client::new()
        .post(
            &gateway.url(MODIFY),
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#,
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.code(), 70009);
    assert_eq!(answer.json()["ActionStatus"], "FAIL");
    assert_eq!(
        answer.reason(),
        None,
        "passed through, not made by the gateway"
    );
    assert!(!String::from_utf8_lossy(&answer.body).contains("not-the-apps-key"));
    assert_eq!(emulator.state.refused(70009), 1);
    gateway.shutdown().await;
}

#[tokio::test]
async fn refuses_apis_off_the_allow_list_with_403_and_sends_nothing() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let answer = client
        .post(
            &gateway.url("group_open_http_svc/destroy_group"),
            r#"{"GroupId":"g"}"#,
        )
        .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.code(), 900403);
    assert_eq!(answer.reason(), Some("api_not_allowed"));
    // get lives under group_open_attr_http_svc; the write service's name for it is not allowed.
    let answer = client
        .post(
            &gateway.url("group_open_http_svc/get_group_attr"),
            r#"{"GroupId":"g"}"#,
        )
        .await;
    assert_eq!(answer.status, 403);
    let answer = client
        .post(&format!("http://{}/v3/x", gateway.addr), "{}")
        .await;
    assert_eq!((answer.status.as_u16(), answer.code()), (404, 900404));
    let answer = client.get(&gateway.url(MODIFY)).await;
    assert_eq!(
        (answer.status.as_u16(), answer.reason()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(emulator.state.received(), 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn refuses_bodies_over_the_cap_with_413_whether_declared_or_streamed() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let small = "[server]\nmax_body_bytes = 1024\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), small]).await;
    let client = Client::new();
    let big = format!(
        r#"{{"GroupId":"g","GroupAttr":[{{"key":"k","value":"{}"}}]}}"#,
        "x".repeat(2000)
    );
    let answer = client.post(&gateway.url(MODIFY), big.clone()).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (413, 900413));
    assert_eq!(answer.reason(), Some("body_too_large"));

    // No Content-Length (chunked): the cap is enforced while reading the stream.
    let request = Request::post(gateway.url(MODIFY))
        .body(Chunks(8))
        .expect("request");
    let conn = tokio::net::TcpStream::connect(gateway.addr)
        .await
        .expect("connect");
    let (mut send, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(conn))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let response = send.send_request(request).await.expect("answer");
    assert_eq!(response.status(), 413);
    // Exactly at the cap is fine.
    let object = r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#;
    let at_cap = format!("{object}{}", " ".repeat(1024 - object.len()));
    assert_eq!(at_cap.len(), 1024);
    assert_eq!(client.post(&gateway.url(MODIFY), at_cap).await.code(), 0);
    assert_eq!(emulator.state.received(), 1);
    gateway.shutdown().await;
}

/// A body of `n` chunks of 512 bytes with no declared length, so it is sent chunked.
struct Chunks(u32);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(None);
        }
        self.0 -= 1;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![
            b' ';
            512
        ])))))
    }
}

#[tokio::test]
async fn requires_a_known_bearer_token_when_tokens_are_configured() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let auth = "[server]\nauth_tokens = [\"s3cret\", \"other\"]\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), auth]).await;
    let client = Client::new();
    let body = r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#;
    let answer = client.post(&gateway.url(MODIFY), body).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (401, 900401));
    for (token, status) in [
        ("Bearer wrong", 401),
        ("Bearer s3cre", 401),
        ("s3cret", 401),
        ("Bearer s3cret", 200),
        ("Bearer other", 200),
        // The scheme in any case (RFC 7235), spaces around the token not part of it.
        ("bearer s3cret", 200),
        ("BEARER   other  ", 200),
        ("Bearers3cret", 401),
    ] {
        let request = Request::post(gateway.url(MODIFY))
            .header("authorization", token)
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        assert_eq!(client.send(request).await.status, status, "{token}");
    }
    assert_eq!(emulator.state.received(), 4);
    gateway.shutdown().await;
}

#[tokio::test]
async fn admin_listener_serves_health_readiness_and_metrics() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    client
        .post(
            &gateway.url(MODIFY),
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#,
        )
        .await;
    client.post(&gateway.url(MODIFY), "not json").await;
    let admin = |path: &str| format!("http://{}{path}", gateway.admin);
    assert_eq!(client.get(&admin("/healthz")).await.status, 200);
    assert_eq!(client.get(&admin("/readyz")).await.status, 200);
    let metrics = client.get(&admin("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(&format!(
            "timgate_requests_total{{api=\"{MODIFY}\",outcome=\"ok\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "timgate_requests_total{{api=\"{MODIFY}\",outcome=\"invalid\"}} 1"
    )));
    assert!(text.contains(&format!(
        "timgate_upstream_duration_seconds_count{{api=\"{MODIFY}\"}} 1"
    )));
    assert!(text.contains("timgate_usersig_expiry_timestamp_seconds"));
    assert!(!text.contains(DEMO_SECRET_KEY));
    gateway.shutdown().await;
}

#[tokio::test]
async fn unreachable_and_slow_upstreams_give_502_and_504() {
    // A port with nothing behind it: bind, note the address, close.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let gateway = Gateway::start(&[&base_toml(closed, None)]).await;
    let client = Client::new();
    let body = r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#;
    let answer = client.post(&gateway.url(MODIFY), body).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (502, 900502));
    assert_eq!(answer.reason(), Some("upstream_unreachable"));
    gateway.shutdown().await;

    let slow = EmulatorConfig {
        latency: Duration::from_millis(1500),
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(slow).await;
    let short = "[upstream]\nrequest_timeout_ms = 300\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), short]).await;
    let answer = client.post(&gateway.url(MODIFY), body).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (504, 900504));
    assert_eq!(answer.reason(), Some("upstream_timeout"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_stops_listening() {
    let slow = EmulatorConfig {
        latency: Duration::from_millis(600),
        ..EmulatorConfig::demo()
    };
    let (emulator, tls) = tls_emulator(slow).await;
    let mut gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let url = gateway.url(MODIFY);
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .post(
                    &url,
                    r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#,
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = gateway.addr;
    gateway.begin_shutdown();
    let answer = in_flight.await.expect("request task");
    assert_eq!(answer.code(), 0, "the request in flight was answered");
    gateway.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_draining_gateway_answers_new_requests_503() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let config =
        timgate::config::Config::from_toml(&base_toml(emulator.addr, Some(&tls))).expect("config");
    let signer =
        std::sync::Arc::new(timgate::signer::Signer::new(&config.tencent).expect("signer"));
    let metrics = timgate::metrics::Metrics::new();
    let upstream = timgate::upstream::Upstream::new(&config, &metrics).expect("upstream");
    let gateway = std::sync::Arc::new(timgate::gateway::Gateway::new(
        &config, signer, upstream, metrics,
    ));
    let request = || {
        Request::post(format!("/v4/{MODIFY}"))
            .body(Full::new(Bytes::from_static(
                br#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#,
            )))
            .expect("request")
    };
    assert_eq!(gateway.clone().handle(request()).await.status(), 200);
    gateway.start_draining(tokio::time::Instant::now());
    let response = gateway.clone().handle(request()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-timgate-error"], "shutting_down");
    assert_eq!(emulator.state.received(), 1);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_the_callers_or_a_new_one() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let body = r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#;
    let with = |id: &str| {
        Request::post(gateway.url(MODIFY))
            .header("x-request-id", id)
            .body(Full::new(Bytes::from(body)))
            .expect("request")
    };
    let answer = client.send(with("order-42")).await;
    assert_eq!(answer.headers["x-request-id"], "order-42");
    let generated = client.post(&gateway.url(MODIFY), "not json").await;
    let id = generated.headers["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let too_long = client.send(with(&"x".repeat(129))).await;
    assert_eq!(
        too_long.headers["x-request-id"].len(),
        16,
        "an unusable id is replaced"
    );
    gateway.shutdown().await;
}
