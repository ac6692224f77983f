//! The binary under `prlimit --nofile=1024:1024`: 1,100 idle connections to the admin port and
//! 1,100 half-sent requests to the proxy must leave a new caller served within a second and
//! `/healthz` answering (before the caps, the caller got nothing for 5 s and /healthz was dead).

mod binary;
#[path = "support/tools.rs"]
mod tools;

use binary::{free_port, gateway_env, spawn};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tokio::time::Instant;

/// One request on a new connection; the status line, and how long it took.
fn ask(addr: SocketAddr, request: &str) -> (String, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    (
        text.lines().next().unwrap_or("").to_string(),
        start.elapsed(),
    )
}

fn wait_ready(admin: SocketAddr) {
    for _ in 0..200 {
        if ask_quick(admin) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the gateway never became ready");
}

fn ask_quick(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
}

#[test]
fn a_new_caller_and_healthz_get_through_with_both_listeners_flooded_under_1024_descriptors() {
    if !tools::runs("prlimit") {
        return;
    }
    // This test's own side holds 2,200 sockets.
    timgate::server::fds::raise_nofile();
    let emulator = free_port();
    let _emulator = spawn(
        Some(1024),
        &["emulate", "--listen", &emulator.to_string()],
        &[],
    );
    let (proxy, admin) = (free_port(), free_port());
    let _gateway = spawn(Some(1024), &[], &gateway_env(emulator, proxy, admin));
    wait_ready(admin);
    let mut held = Vec::new();
    for _ in 0..1100 {
        if let Ok(s) = TcpStream::connect_timeout(&admin, Duration::from_secs(2)) {
            held.push(s);
        }
    }
    for _ in 0..1100 {
        if let Ok(mut s) = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)) {
            let _ = s.write_all(b"POST /v4/group_open_attr_http_svc/get_group_attr HTTP/1.1\r\n");
            held.push(s);
        }
    }
    assert!(
        held.len() >= 2000,
        "the flood itself connected: {}",
        held.len()
    );
    let body = r#"{"GroupId":"@TGS#a"}"#;
    let request = format!(
        "POST /v4/group_open_attr_http_svc/get_group_attr HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, took) = ask(proxy, &request);
    eprintln!("new caller answered in {took:?}");
    assert_eq!(status, "HTTP/1.1 200 OK", "a new caller is served");
    assert!(took < Duration::from_secs(1), "served in {took:?}");
    let (status, took) = ask(admin, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    eprintln!("/healthz answered in {took:?}");
    assert_eq!(status, "HTTP/1.1 200 OK", "/healthz answers");
    assert!(took < Duration::from_secs(1), "answered in {took:?}");
    drop(held);
}
