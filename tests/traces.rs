//! OpenTelemetry traces over OTLP/HTTP, against a small receiver the test starts: a caller's
//! `traceparent` is continued with a span per step of the request (admission, queue wait, each
//! attempt, the retry's wait, the answer), nothing of it reaches Tencent, sampling follows the
//! caller's flag and `tracing.sample_ratio`, and spans the exporter cannot deliver are counted.

mod support;

#[path = "access_log/capture.rs"]
mod capture;
#[path = "traces/receiver.rs"]
mod receiver;
#[path = "traces/upstream.rs"]
mod upstream;

use std::collections::BTreeMap;

use http::Request;
use http_body_util::Full;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use receiver::Receiver;
use support::{Answer, Client, Gateway, base_toml};
use timgate::trace::hex;
use upstream::RawUpstream;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const OK: &str = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#;
const BUSY: &str = r#"{"ActionStatus":"FAIL","ErrorCode":10002,"ErrorInfo":"internal error"}"#;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WRITE: &str = r#"{"GroupId":"@TGS#t","GroupAttr":[{"key":"k","value":"v"}]}"#;

/// The gateway's layers: the stand-in upstream, fast retries, and `[tracing]` with `extra`.
fn layers(upstream: &RawUpstream, receiver: &Receiver, extra: &str) -> [String; 2] {
    [
        base_toml(upstream.addr, None),
        format!(
            "[retry]\nbase_delay_ms = 20\nmax_delay_ms = 20\n\
             [tracing]\nenabled = true\notlp_endpoint = \"{}\"\nservice_name = \"timgate-test\"\n{extra}",
            receiver.url
        ),
    ]
}

async fn start(layers: &[String; 2]) -> Gateway {
    Gateway::start(&[&layers[0], &layers[1]]).await
}

async fn post(gateway: &Gateway, id: &str, traceparent: Option<&str>) -> Answer {
    let mut request = Request::post(gateway.url(MODIFY)).header("x-request-id", id);
    if let Some(parent) = traceparent {
        request = request
            .header("traceparent", parent)
            .header("tracestate", "vendor=opaque");
    }
    let request = request.body(Full::new(WRITE.into())).expect("request");
    Client::new().send(request).await
}

fn attrs(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(n)) => n.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_continued_a_span_per_step_and_none_of_it_reaches_tencent() {
    capture::capture();
    let upstream = RawUpstream::start(&[BUSY, OK]).await;
    let receiver = Receiver::start().await;
    // A long interval: the spans leave with the flush at shutdown.
    let gateway = start(&layers(
        &upstream,
        &receiver,
        "export_interval_ms = 60000\n",
    ))
    .await;
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let answer = post(&gateway, "traced-1", Some(&parent)).await;
    assert_eq!(answer.code(), 0, "{:?}", answer.body);
    gateway.shutdown().await;

    let spans = receiver.wait_spans(7).await;
    assert_eq!(spans.len(), 7, "{spans:#?}");
    let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "admission",
            "answer",
            "attempt",
            "attempt",
            MODIFY,
            "queue_wait",
            "retry_wait"
        ]
    );
    assert!(spans.iter().all(|s| hex(&s.trace_id) == TRACE), "one trace");
    let root = named(&spans, MODIFY)[0];
    assert_eq!(
        hex(&root.parent_span_id),
        CALLER_SPAN,
        "the caller's span is its parent"
    );
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.trace_state, "vendor=opaque");
    let root_attrs = attrs(&root.attributes);
    assert_eq!(root_attrs["timgate.api"], MODIFY);
    assert_eq!(root_attrs["timgate.request_id"], "traced-1");
    assert_eq!(root_attrs["timgate.attempts"], "2");
    assert_eq!(root_attrs["timgate.limiter"], "local");
    assert_eq!(root_attrs["http.response.status_code"], "200");
    assert_eq!(root_attrs["timgate.outcome"], "ok");
    for child in spans.iter().filter(|s| s.name != MODIFY) {
        assert_eq!(
            child.parent_span_id, root.span_id,
            "{} under the request",
            child.name
        );
        assert!(
            root.start_time_unix_nano <= child.start_time_unix_nano
                && child.start_time_unix_nano <= child.end_time_unix_nano
                && child.end_time_unix_nano <= root.end_time_unix_nano,
            "{} within the request",
            child.name
        );
    }
    // The steps follow one another: each begins where the one before it ended.
    let (admission, queue) = (
        named(&spans, "admission")[0],
        named(&spans, "queue_wait")[0],
    );
    let (attempts, wait) = (named(&spans, "attempt"), named(&spans, "retry_wait")[0]);
    let answer_span = named(&spans, "answer")[0];
    assert_eq!(admission.start_time_unix_nano, root.start_time_unix_nano);
    assert_eq!(admission.end_time_unix_nano, queue.start_time_unix_nano);
    assert!(queue.end_time_unix_nano <= attempts[0].start_time_unix_nano);
    let (first, second) = if attempts[0].start_time_unix_nano < attempts[1].start_time_unix_nano {
        (attempts[0], attempts[1])
    } else {
        (attempts[1], attempts[0])
    };
    assert_eq!(wait.start_time_unix_nano, first.end_time_unix_nano);
    assert_eq!(wait.end_time_unix_nano, second.start_time_unix_nano);
    // The retry waited for its backoff (up to 20 ms) and a new slot of its group, which sends 5
    // writes a second: the new slot is ~204 ms after the first attempt's, so the wait is most of
    // that (the first attempt's own time is the rest).
    let waited = wait.end_time_unix_nano - wait.start_time_unix_nano;
    assert!(waited >= 100_000_000, "{waited} ns");
    assert_eq!(answer_span.start_time_unix_nano, second.end_time_unix_nano);
    assert_eq!(answer_span.end_time_unix_nano, root.end_time_unix_nano);
    assert_eq!(first.kind, SpanKind::Client as i32);
    let status = first.status.as_ref().expect("the first attempt failed");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "ErrorCode 10002");
    assert_eq!(attrs(&first.attributes)["timgate.attempt"], "1");
    assert_eq!(attrs(&second.attributes)["timgate.code"], "0");
    assert!(
        second
            .status
            .as_ref()
            .is_none_or(|s| s.code == StatusCode::Unset as i32)
    );

    let resource = attrs(&receiver.resources()[0].attributes);
    assert_eq!(resource["service.name"], "timgate-test");
    let (types, paths) = receiver.requests();
    assert!(
        types.iter().all(|t| t == "application/x-protobuf"),
        "{types:?}"
    );
    assert!(paths.iter().all(|p| p == "/v1/traces"), "{paths:?}");

    // Both attempts reached the stand-in for Tencent without the caller's trace.
    let sent = upstream.requests();
    assert_eq!(sent.len(), 2);
    for request in &sent {
        let lower = request.to_lowercase();
        assert!(
            !lower.contains("traceparent") && !lower.contains("tracestate"),
            "{request}"
        );
        assert!(
            !lower.contains(TRACE) && !lower.contains(CALLER_SPAN),
            "{request}"
        );
    }
    // The access log line names the trace.
    assert_eq!(capture::answered("traced-1").await["trace_id"], TRACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_callers_flag_and_the_ratio_for_new_traces() {
    capture::capture();
    let upstream = RawUpstream::start(&[OK]).await;
    let receiver = Receiver::start().await;
    let config = layers(
        &upstream,
        &receiver,
        "sample_ratio = 0.0\nexport_interval_ms = 50\n",
    );
    let gateway = start(&config).await;
    // A new trace at ratio 0: not traced, and the log names no trace.
    assert_eq!(post(&gateway, "untraced-1", None).await.code(), 0);
    assert!(
        capture::answered("untraced-1")
            .await
            .get("trace_id")
            .is_none()
    );
    // The caller decided against sampling: not exported, but its trace id is logged.
    let unsampled = format!("00-{TRACE}-{CALLER_SPAN}-00");
    assert_eq!(
        post(&gateway, "unsampled-1", Some(&unsampled)).await.code(),
        0
    );
    assert_eq!(capture::answered("unsampled-1").await["trace_id"], TRACE);
    // The caller's sampled flag wins over the ratio.
    let sampled = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(post(&gateway, "sampled-1", Some(&sampled)).await.code(), 0);
    let spans = receiver.wait_spans(5).await;
    gateway.shutdown().await;
    let spans_now = receiver.spans();
    assert_eq!(
        spans_now.len(),
        spans.len(),
        "only one request's spans: {spans_now:#?}"
    );
    let root = named(&spans_now, MODIFY);
    assert_eq!(root.len(), 1);
    assert_eq!(
        attrs(&root[0].attributes)["timgate.request_id"],
        "sampled-1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_the_exporter_cannot_deliver_are_dropped_and_counted() {
    capture::capture();
    let upstream = RawUpstream::start(&[OK]).await;
    let receiver = Receiver::start().await;
    receiver.answer_with(503);
    let config = layers(
        &upstream,
        &receiver,
        "export_interval_ms = 50\nmax_queued_spans = 8\n",
    );
    let gateway = start(&config).await;
    let dropped = |reason: &str| {
        gateway
            .metrics
            .trace
            .dropped
            .with_label_values(&[reason])
            .get()
    };
    let sampled = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(
        post(&gateway, "refused-export", Some(&sampled))
            .await
            .code(),
        0
    );
    // A request without retries is five spans: request, admission, queue wait, attempt, answer.
    for _ in 0..200 {
        if dropped("export_failed") == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dropped("export_failed"), 5);
    assert_eq!(gateway.metrics.trace.exported.get(), 0);

    // Two requests' spans do not fit in 8 waiting: the second's are dropped whole, at once.
    let slow = layers(
        &upstream,
        &receiver,
        "export_interval_ms = 60000\nmax_queued_spans = 8\n",
    );
    let quiet = start(&slow).await;
    for id in ["first", "second"] {
        assert_eq!(post(&quiet, id, Some(&sampled)).await.code(), 0);
    }
    let full = quiet
        .metrics
        .trace
        .dropped
        .with_label_values(&["queue_full"])
        .get();
    assert_eq!(full, 5);
    receiver.answer_with(200);
    quiet.shutdown().await;
    assert_eq!(receiver.wait_spans(5).await.len(), 5);
    gateway.shutdown().await;
}
