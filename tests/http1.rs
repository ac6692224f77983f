//! timgate's own HTTP/1.1 connection over a real socket: chunked bodies, `Expect:
//! 100-continue`, pipelined requests answered in order, HTTP/1.0, ambiguous framing refused,
//! oversized heads, and a caller that hangs up while its write waits (taken out of line).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Gateway, base_toml, emulator};
use timgate::emulator::EmulatorConfig;

const GET: &str = "/v4/group_open_attr_http_svc/get_group_attr";
const MODIFY: &str = "/v4/group_open_http_svc/modify_group_attr";

/// Writes `request` and reads until `answers` complete answers came (by Content-Length) or the
/// peer closed; returns all that was read.
fn exchange(addr: std::net::SocketAddr, request: &[u8], answers: usize) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(request).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while complete_answers(&got) < answers {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

fn complete_answers(bytes: &[u8]) -> usize {
    let text = String::from_utf8_lossy(bytes);
    let (mut rest, mut count) = (&text[..], 0);
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        if head.starts_with("HTTP/1.1 100") {
            rest = &rest[end + 4..];
            continue;
        }
        let length = head
            .lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        if rest.len() < end + 4 + length {
            break;
        }
        rest = &rest[end + 4 + length..];
        count += 1;
    }
    count
}

async fn start() -> (Gateway, timgate::emulator::Emulator) {
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None)]).await;
    (gateway, emulator)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_with_100_continue_is_read_and_forwarded_whole() {
    let (gateway, emulator) = start().await;
    let addr = gateway.addr;
    let body = r#"{"GroupId":"@TGS#c","GroupAttr":[{"key":"song","value":"chunked"}]}"#;
    let (a, b) = body.split_at(20);
    let request = format!(
        "POST {MODIFY} HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-trailer: y\r\n\r\n",
        a.len(),
        b.len()
    );
    let answer = blocking(move || exchange(addr, request.as_bytes(), 1)).await;
    assert!(
        answer.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{answer}"
    );
    assert!(answer.contains(r#""ErrorCode":0"#), "{answer}");
    let stored = emulator.state.group("@TGS#c").expect("the write arrived");
    assert_eq!(stored.get("song").map(String::as_str), Some("chunked"));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (gateway, _emulator) = start().await;
    let addr = gateway.addr;
    let one = |id: &str| {
        let body = format!(r#"{{"GroupId":"@TGS#{id}"}}"#);
        format!(
            "POST {GET} HTTP/1.1\r\nHost: t\r\nx-request-id: r-{id}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let request = format!("{}{}{}", one("a"), one("b"), one("c"));
    let answer = blocking(move || exchange(addr, request.as_bytes(), 3)).await;
    let ids: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("x-request-id: "))
        .collect();
    assert_eq!(ids, ["r-a", "r-b", "r-c"], "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_is_answered_and_closed_and_ambiguous_framing_is_refused() {
    let (gateway, emulator) = start().await;
    let addr = gateway.addr;
    let body = r#"{"GroupId":"@TGS#z"}"#;
    let old = format!(
        "POST {GET} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = blocking(move || exchange(addr, old.as_bytes(), 2)).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(complete_answers(answer.as_bytes()), 1, "then closed");
    let smuggle = format!(
        "POST {MODIFY} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let answer = blocking(move || exchange(addr, smuggle.as_bytes(), 1)).await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer}");
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let answer = blocking(move || exchange(addr, huge.as_bytes(), 1)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let before = emulator.state.received();
    let zero = "POST /v4/group_open_http_svc/modify_group_attr HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\nab";
    let answer = blocking(move || exchange(addr, zero.as_bytes(), 1)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        emulator.state.received(),
        before,
        "nothing refused was forwarded"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_queued_is_taken_out_of_line() {
    // Each answer takes a second: the writes behind the first wait in their group's line.
    let slow = EmulatorConfig {
        latency: Duration::from_millis(1000),
        ..EmulatorConfig::demo()
    };
    let emulator = emulator(slow, None).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None)]).await;
    let addr = gateway.addr;
    let write = |i: usize| {
        let body = format!(r#"{{"GroupId":"@TGS#q","GroupAttr":[{{"key":"n","value":"{i}"}}]}}"#);
        format!(
            "POST {MODIFY} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let queued = gateway
        .metrics
        .queued_requests
        .with_label_values(&["group"]);
    // The first write leaves at once and is held a second; the next four queue behind it.
    let streams: Vec<TcpStream> = (0..5)
        .map(|i| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(write(i).as_bytes()).expect("send");
            s
        })
        .collect();
    for _ in 0..400 {
        if queued.get() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(queued.get(), 4, "four writes wait behind the first");
    drop(streams);
    for _ in 0..400 {
        if queued.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(queued.get(), 0, "every hung-up caller left the line");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api.ends_with("modify_group_attr"))
        .count();
    assert_eq!(sent, 1, "only the write already in flight was sent");
    gateway.shutdown().await;
}
