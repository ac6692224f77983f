//! The memory budget on the binary: a 96 MiB budget and 5,000 callers at once, each on its own
//! connection with a 16 KB write that must wait for its group. The gateway's resident set,
//! sampled every 20 ms, must never pass the budget by more than 10%, and every caller must get
//! an answer: OK, or a refusal with `Retry-After` that came at once.

mod binary;

use binary::{free_port, gateway_env, spawn};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BUDGET: u64 = 96 * 1024 * 1024;
const CALLERS: usize = 5000;
const GROUPS: usize = 250;

fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A 16,000-byte write to group `g`: four values of 4,000 bytes.
fn request(g: usize, i: usize) -> Vec<u8> {
    let attrs: Vec<String> = (0..4)
        .map(|k| {
            format!(
                r#"{{"key":"k{k}","value":"{}"}}"#,
                ((b'a' + (i % 26) as u8) as char).to_string().repeat(4000)
            )
        })
        .collect();
    let body = format!(
        r#"{{"GroupId":"@TGS#m{g}","GroupAttr":[{}]}}"#,
        attrs.join(",")
    );
    format!(
        "POST /v4/group_open_http_svc/modify_group_attr HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What one caller got: the status line and whether a Retry-After came with it, and how long it
/// waited; None when the connection closed without an answer.
async fn call(addr: SocketAddr, bytes: Vec<u8>) -> Option<(String, bool, Duration)> {
    let start = Instant::now();
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("connect failed after {:?}: {e}", start.elapsed());
            return None;
        }
    };
    if let Err(e) = stream.write_all(&bytes).await {
        eprintln!("send failed after {:?}: {e}", start.elapsed());
        return None;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("read failed after {:?}: {e}", start.elapsed());
                return None;
            }
        };
        if n == 0 {
            eprintln!("closed unanswered after {:?}", start.elapsed());
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("").to_string();
    Some((status, head.contains("\r\nretry-after:"), start.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_callers_stay_within_a_96_mib_budget_and_each_gets_an_answer() {
    timgate::server::fds::raise_nofile();
    let emulator = free_port();
    let _emulator = spawn(
        None,
        &[
            "emulate",
            "--listen",
            &emulator.to_string(),
            "--max-records",
            "0",
        ],
        &[],
    );
    let (proxy, admin) = (free_port(), free_port());
    let gateway = spawn(
        None,
        &[],
        &[
            gateway_env(emulator, proxy, admin),
            vec![("TIMGATE__SERVER__MEMORY_LIMIT_BYTES", BUDGET.to_string())],
        ]
        .concat(),
    );
    let pid = gateway.0.id();
    let mut ready = false;
    for _ in 0..200 {
        if TcpStream::connect(proxy).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the gateway listens");
    let idle = resident(pid).expect("the gateway's VmRSS");
    let (peak, stop) = (
        Arc::new(AtomicU64::new(idle)),
        Arc::new(AtomicBool::new(false)),
    );
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = resident(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| tokio::spawn(call(proxy, request(i % GROUPS, i))))
        .collect();
    let (mut ok, mut refused, mut overloaded, mut slow_refusals, mut unanswered, mut other) =
        (0, 0, 0, 0, 0, Vec::new());
    for caller in callers {
        match caller.await.expect("caller task") {
            Some((status, _, _)) if status.starts_with("http/1.1 200") => ok += 1,
            Some((status, retry_after, waited))
                if status.starts_with("http/1.1 503") || status.starts_with("http/1.1 429") =>
            {
                assert!(retry_after, "a refusal says when to retry: {status}");
                refused += 1;
                if status.starts_with("http/1.1 503") {
                    overloaded += 1;
                }
                if waited > Duration::from_secs(5) && status.starts_with("http/1.1 503") {
                    slow_refusals += 1;
                }
            }
            Some((status, _, _)) => other.push(status),
            None => unanswered += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "idle {:.1} MiB, peak {:.1} MiB (budget {} MiB); {ok} OK, {refused} refused ({overloaded} with 503)",
        idle as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        BUDGET >> 20
    );
    assert_eq!(unanswered, 0, "every caller gets an answer");
    assert!(other.is_empty(), "only OK or refusals: {other:?}");
    assert_eq!(ok + refused, CALLERS);
    assert!(ok > 0, "the budget still lets work through");
    assert_eq!(
        slow_refusals, 0,
        "a refusal comes at once, not after a wait"
    );
    assert!(
        peak as f64 <= BUDGET as f64 * 1.1,
        "resident memory {peak} passed the budget {BUDGET} by more than 10%"
    );
}
