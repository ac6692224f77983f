//! Connections under pressure, over real sockets: header, idle and body timeouts, the connection
//! cap with oldest-idle-first eviction, and the binary under a 1,024-descriptor limit with both
//! listeners flooded.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio::time::Instant;

use support::{Gateway, base_toml, emulator};
use timgate::emulator::EmulatorConfig;

const GET: &str = "/v4/group_open_attr_http_svc/get_group_attr";
const BODY: &str = r#"{"GroupId":"@TGS#a"}"#;

fn full_request(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads from `stream` until the peer closes (Ok: all it sent) or `within` passes (Err).
fn read_to_close(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(got);
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(_) => return Err(got),
        }
    }
}

/// Sends one request and reads one answer's head and body (by Content-Length), keeping the
/// connection open.
fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("answer");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

fn closed_by(gateway: &Gateway, listener: &str, reason: &str) -> u64 {
    gateway
        .metrics
        .pressure
        .connections_closed
        .with_label_values(&[listener, reason])
        .get()
}

async fn gateway_with(
    server: &str,
    emulator_config: EmulatorConfig,
) -> (Gateway, timgate::emulator::Emulator) {
    let emulator = emulator(emulator_config, None).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), server]).await;
    (gateway, emulator)
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_silent_connections_are_closed_after_the_header_timeout() {
    let server = "[server]\nheader_read_timeout_ms = 500\nidle_timeout_ms = 60000\n";
    let (gateway, _emulator) = gateway_with(server, EmulatorConfig::demo()).await;
    let addr = gateway.addr;
    let outcome = blocking(move || {
        let mut silent = TcpStream::connect(addr).expect("connect");
        let mut half = TcpStream::connect(addr).expect("connect");
        half.write_all(b"POST /v4/group_open_attr_http_svc/get_group_attr HTTP/1.1\r\nHost: t\r\n")
            .expect("send half");
        // A caller that completes its request in time is answered on the same kind of socket.
        let mut whole = TcpStream::connect(addr).expect("connect");
        let answer = exchange(&mut whole, &full_request(GET, BODY));
        let silent = read_to_close(&mut silent, Duration::from_secs(20));
        let half = read_to_close(&mut half, Duration::from_secs(20));
        (answer, silent, half)
    })
    .await
    .expect("client thread");
    let (answer, silent, half) = outcome;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        silent,
        Ok(Vec::new()),
        "the silent connection is closed, unanswered"
    );
    assert_eq!(half, Ok(Vec::new()), "the half-sent one too");
    assert_eq!(closed_by(&gateway, "proxy", "header_timeout"), 2);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_is_closed_after_the_idle_timeout_but_a_waiting_caller_is_not() {
    // Every answer takes 1.5 s, three idle timeouts: the caller waiting for it keeps its socket.
    let slow = EmulatorConfig {
        latency: Duration::from_millis(1500),
        ..EmulatorConfig::demo()
    };
    let server = "[server]\nheader_read_timeout_ms = 10000\nidle_timeout_ms = 500\n";
    let (gateway, _emulator) = gateway_with(server, slow).await;
    let addr = gateway.addr;
    let (answer, after) = blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let answer = exchange(&mut stream, &full_request(GET, BODY));
        (answer, read_to_close(&mut stream, Duration::from_secs(20)))
    })
    .await
    .expect("client thread");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(after, Ok(Vec::new()), "closed once idle");
    assert_eq!(closed_by(&gateway, "proxy", "idle_timeout"), 1);
    assert_eq!(closed_by(&gateway, "proxy", "header_timeout"), 0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408() {
    let server = "[server]\nbody_read_timeout_ms = 500\n";
    let (gateway, emulator) = gateway_with(server, EmulatorConfig::demo()).await;
    let addr = gateway.addr;
    let answer = blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let head = format!("POST {GET} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
        stream.write_all(head.as_bytes()).expect("head");
        stream
            .write_all(&BODY.as_bytes()[..10])
            .expect("a little body");
        read_to_close(&mut stream, Duration::from_secs(20))
    })
    .await
    .expect("client thread");
    let answer = String::from_utf8_lossy(&answer.unwrap_or_else(|got| got)).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("x-timgate-error: body_timeout"), "{answer}");
    assert!(answer.contains("900408"), "{answer}");
    assert_eq!(emulator.state.records().len(), 0, "nothing was forwarded");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_stay() {
    // Header timeout a minute: only eviction can make room within the test.
    let slow = EmulatorConfig {
        latency: Duration::from_millis(2000),
        ..EmulatorConfig::demo()
    };
    let server = "[server]\nheader_read_timeout_ms = 60000\nmax_connections = 20\n";
    let (gateway, _emulator) = gateway_with(server, slow).await;
    let addr = gateway.addr;
    let (busy, fresh, halves) = blocking(move || {
        // Five callers with a request in flight (the emulator holds each answer 2 s)...
        let busy: Vec<_> = (0..5)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(full_request(GET, BODY).as_bytes())
                    .expect("send");
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // ...and fifteen that never finish their header fill the cap.
        let mut halves: Vec<_> = (0..15)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"POST / HTTP/1.1\r\n").expect("half");
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut caller = TcpStream::connect(addr).expect("connect");
        let fresh = exchange(&mut caller, &full_request(GET, BODY));
        let busy: Vec<String> = busy
            .into_iter()
            .map(|mut s| {
                String::from_utf8_lossy(
                    &read_to_close(&mut s, Duration::from_secs(1)).unwrap_or_else(|g| g),
                )
                .to_string()
            })
            .collect();
        let closed = halves
            .iter_mut()
            .filter_map(|s| read_to_close(s, Duration::from_millis(50)).ok())
            .count();
        (busy, fresh, closed)
    })
    .await
    .expect("client thread");
    assert!(fresh.starts_with("HTTP/1.1 200"), "{fresh}");
    for answer in &busy {
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "a busy caller keeps its socket: {answer}"
        );
    }
    assert_eq!(halves, 1, "exactly one idle connection made room");
    assert_eq!(closed_by(&gateway, "proxy", "evicted"), 1);
    assert_eq!(
        gateway
            .metrics
            .pressure
            .connections_max
            .with_label_values(&["proxy"])
            .get(),
        20
    );
    gateway.shutdown().await;
}
