//! A running gateway: a SIGHUP reload refuses a malformed file, and the Redis limiter logs its
//! URL, both without printing a secret.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio::time::Instant;

use super::{BOUND, KEY, PASSWORD, TOKEN, assert_no_secret, cases, masked, timgate};

/// A child process, killed when the test ends however it ends, so that a failed assertion leaves
/// no gateway or redis-server behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The gateway's stderr lines, read on a thread.
fn log_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits up to [`BOUND`] for a line containing `want`; every line read is kept in `seen`.
fn wait_for(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: &str) -> String {
    let deadline = Instant::now() + BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = log.recv_timeout(left) else {
            panic!(
                "no log line with {want:?} in {BOUND:?}:\n{}",
                masked(&seen.join("\n"))
            );
        };
        seen.push(line.clone());
        if line.contains(want) {
            return line;
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {name}");
}

#[test]
fn a_sighup_reload_refuses_a_bad_secret_line_without_printing_it() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("timgate.toml");
    let good = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         auth_tokens = [\"{TOKEN}\"]\n\
         [tencent]\nsdkappid = 1400000000\nsecret_key = \"{KEY}\"\n\
         base_url = \"{NO_UPSTREAM}\"\n\
         [limits]\nredis_url = \"redis://:{PASSWORD}@127.0.0.1:6379\"\n[log]\nformat = \"text\"\n"
    );
    std::fs::write(&file, &good).expect("write");
    let mut gateway = Killed(
        timgate()
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("timgate starts"),
    );
    let log = log_lines(&mut gateway.0);
    let mut seen = Vec::new();
    wait_for(&log, &mut seen, "Serving.");
    for case in cases() {
        std::fs::write(&file, &case.toml).expect("write");
        signal(&gateway.0, "-HUP");
        let refused = wait_for(&log, &mut seen, "reload refused");
        assert!(
            refused.contains(case.names),
            "{:?}: {}",
            case.name,
            masked(&refused)
        );
    }
    std::fs::write(&file, &good).expect("write");
    signal(&gateway.0, "-HUP");
    wait_for(&log, &mut seen, "Configuration reloaded.");
    signal(&gateway.0, "-TERM");
    wait_for(&log, &mut seen, "Stopped.");
    let mut stdout = String::new();
    let mut pipe = gateway.0.stdout.take().expect("stdout piped");
    pipe.read_to_string(&mut stdout).expect("stdout");
    assert_eq!(gateway.0.wait().expect("exits").code(), Some(0));
    seen.extend(log.try_iter());
    seen.push(stdout);
    assert_no_secret("the running gateway", &seen.join("\n"));
}

/// Where the fixtures send the upstream: nothing listens there, so requests fail fast.
const NO_UPSTREAM: &str = "http://127.0.0.1:9";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A redis-server of the test's own that wants `PASSWORD`, or `None` where there is none and
/// TIMGATE_SKIP_MISSING_TOOLS=1 (without it, a missing redis-server fails the test).
fn redis_server(port: u16) -> Option<Killed> {
    let started = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            PASSWORD,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = started.map(Killed) else {
        crate::tools::missing("redis-server");
        return None;
    };
    let deadline = Instant::now() + BOUND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

#[test]
fn the_redis_limiter_logs_its_url_with_the_password_masked() {
    let redis_port = free_port();
    let Some(redis) = redis_server(redis_port) else {
        return;
    };
    let port = free_port();
    let url = format!("redis://default:{PASSWORD}@127.0.0.1:{redis_port}");
    let mut gateway = Killed(
        timgate()
            .env("TIMGATE__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("TIMGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
            .env("TIMGATE__SERVER__AUTH_TOKENS", TOKEN)
            .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
            .env("TIMGATE__TENCENT__SECRET_KEY", KEY)
            .env("TIMGATE__TENCENT__BASE_URL", NO_UPSTREAM)
            .env("TIMGATE__LIMITS__BACKEND", "redis")
            .env("TIMGATE__LIMITS__REDIS_URL", &url)
            .env("TIMGATE__LOG__FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("timgate starts"),
    );
    let log = log_lines(&mut gateway.0);
    let mut seen = Vec::new();
    let shown = format!("redis://default:***@127.0.0.1:{redis_port}");
    let reachable = wait_for(&log, &mut seen, "Redis limiter reachable");
    assert!(reachable.contains(&shown), "{}", masked(&reachable));
    // With Redis gone, the next reservation fails and says so, with the redis crate's error.
    drop(redis);
    let answered = Command::new("curl")
        .args([
            "-s",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-d",
            r#"{"GroupId":"g"}"#,
        ])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!(
            "http://127.0.0.1:{port}/v4/group_open_attr_http_svc/get_group_attr"
        ))
        .status()
        .expect("curl runs");
    assert!(answered.success(), "the gateway answered");
    let unreachable = wait_for(&log, &mut seen, "Redis limiter unreachable");
    assert!(unreachable.contains(&shown), "{}", masked(&unreachable));
    signal(&gateway.0, "-TERM");
    wait_for(&log, &mut seen, "Stopped.");
    assert_eq!(gateway.0.wait().expect("exits").code(), Some(0));
    seen.extend(log.try_iter());
    assert_no_secret("the Redis limiter's log", &seen.join("\n"));
}
