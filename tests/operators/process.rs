//! The binary as a child process: started with a clean environment, its output lines read on a
//! thread, HTTP through curl, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `timgate` without the developer's `TIMGATE__*` and `RUST_LOG`.
pub(crate) fn timgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timgate"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIMGATE__") || k == "RUST_LOG")
    {
        command.env_remove(key);
    }
    command
}

/// A port free on 127.0.0.1 now.
pub(crate) fn free_port() -> u16 {
    crate::binary::free_port().port()
}

/// The lines of a child's pipe, read on a thread.
pub(crate) fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line starting with `prefix` within 30 s.
pub(crate) fn wait_for(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no line starting {prefix:?} within 30 s"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

/// Sends `signal` (`-TERM`, `-HUP`) to the child.
pub(crate) fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// SIGTERM, then the exit status within 15 s.
pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    signal(child, "-TERM");
    for _ in 0..300 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("timgate did not exit within 15 s of SIGTERM");
}

pub(crate) use crate::binary::Killed;

/// `curl -X method [--data body] url`: (HTTP status, body).
pub(crate) fn curl(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    let output = command.stderr(Stdio::null()).output().expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.parse().unwrap_or(0), body.to_string())
}

/// `curl` for JSON: (status, parsed body).
pub(crate) fn curl_json(method: &str, url: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, text) = curl(method, url, body);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, json)
}

/// Polls `check` every 100 ms for up to `secs` seconds.
pub(crate) fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {secs} s");
}
