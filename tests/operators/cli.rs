//! `check-config`, the command line's refusals, `usersig --identifier`, and the demo's logs.

use std::process::{Output, Stdio};

use timgate::clock::unix_now;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY};
use timgate::tencent::usersig;

use crate::process::{Killed, lines, terminate, timgate, wait_for};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const TOKEN: &str = "tok-operators-secret-1";

#[test]
fn check_config_lists_every_problem_at_once_naming_the_variable_or_file_behind_it() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten_port = 1\nshutdown_grace_ms = \"long\"\n",
    )
    .expect("write");
    let output = timgate()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
        .env("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY)
        .env("TIMGATE__SERVER__MAX_BODY_BYTES", "lots")
        .env("TIMGATE__SERVER__IDLE_TIMEOUT_MS", "soon")
        .env("TIMGATE__LOG__LEVEL", "verbose!!")
        .env("TIMGATE__SERVER__LISTEN", "nowhere")
        .env("TIMGATE__SERVER__AUTH_TOKENS", format!(" {TOKEN}"))
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    let file = file.display();
    let want = [
        "  server.max_body_bytes: invalid type: string \"lots\", expected an integer (set by TIMGATE__SERVER__MAX_BODY_BYTES)".to_string(),
        "  server.idle_timeout_ms: invalid type: string \"soon\", expected an integer (set by TIMGATE__SERVER__IDLE_TIMEOUT_MS)".to_string(),
        format!("  server.shutdown_grace_ms: invalid type: string \"long\", expected an integer (in {file})"),
        "  server.listen_port: unknown field `listen_port`".to_string(),
        "  server.listen: \"nowhere\" is not an IP:port address (e.g. \"127.0.0.1:4470\") (set by TIMGATE__SERVER__LISTEN)".to_string(),
        "  server.auth_tokens: a token has leading or trailing spaces and could never match (set by TIMGATE__SERVER__AUTH_TOKENS)".to_string(),
        "  log.level: \"verbose!!\" is not a level (off, error, warn, info, debug, trace) (set by TIMGATE__LOG__LEVEL)".to_string(),
    ];
    for line in &want {
        assert!(
            text.lines().any(|l| l.starts_with(line.as_str())),
            "{line}\nnot in:\n{text}"
        );
    }
    assert!(
        text.starts_with(&format!("configuration has {} problem(s):", want.len())),
        "{text}"
    );
    assert!(
        !text.contains(TOKEN) && !text.contains(DEMO_SECRET_KEY),
        "{text}"
    );
}

#[test]
fn check_config_ok_summarises_backend_coalescing_durability_and_tokens_never_their_values() {
    let output = timgate()
        .arg("check-config")
        .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
        .env("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY)
        .env("TIMGATE__LIMITS__BACKEND", "redis")
        .env(
            "TIMGATE__LIMITS__REDIS_URL",
            "redis://app:hunter22hunter@10.1.2.3:6379",
        )
        .env("TIMGATE__LIMITS__COALESCE", "true")
        .env("TIMGATE__QUEUE__DURABLE", "true")
        .env("TIMGATE__TRACING__ENABLED", "true")
        .env("TIMGATE__TRACING__SAMPLE_RATIO", "0.25")
        .env(
            "TIMGATE__SERVER__AUTH_TOKENS",
            format!("billing:{TOKEN},tok-operators-secret-2"),
        )
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    for line in [
        "configuration OK",
        "  limits backend redis standalone redis://app:***@10.1.2.3:6379 (timeout 200 ms)",
        "  coalescing on",
        "  queue durable: 16 partitions",
        "  auth tokens: 2 (billing, unnamed)",
        "  log json at \"info\"",
        "  tracing OTLP/HTTP to http://127.0.0.1:4318/v1/traces  sample_ratio 0.25",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line}\nnot in:\n{text}"
        );
    }
    for secret in [TOKEN, "hunter22hunter", DEMO_SECRET_KEY] {
        assert!(!text.contains(secret), "{text}");
    }
    let output = timgate()
        .arg("check-config")
        .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
        .env("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY)
        .output()
        .expect("runs");
    let text = stdout(&output);
    for line in [
        "  limits backend local",
        "  coalescing off",
        "  queue in memory",
        "  auth tokens: none",
        "  tracing off",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line}\nnot in:\n{text}"
        );
    }
}

#[test]
fn flags_that_would_be_ignored_are_refused_with_a_reason() {
    let output = timgate()
        .args(["--demo", "check-config"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("--demo runs the gateway with its own emulator and takes no subcommand"),
        "{}",
        stderr(&output)
    );
    let output = timgate()
        .args([
            "--config",
            "/dev/null",
            "emulate",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("emulate does not read --config"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usersig_signs_for_another_user_with_identifier() {
    let run = |identifier: &str| {
        timgate()
            .args(["usersig", "--identifier", identifier])
            .env("TIMGATE__TENCENT__SDKAPPID", DEMO_SDKAPPID.to_string())
            .env("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY)
            .output()
            .expect("runs")
    };
    let output = run("user_42");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let sig = stdout(&output).trim().to_string();
    let decoded = usersig::verify(&sig, DEMO_SDKAPPID, "user_42", DEMO_SECRET_KEY, unix_now())
        .expect("a sig for user_42");
    assert_eq!(decoded.expire, 86400);
    assert!(
        usersig::verify(
            &sig,
            DEMO_SDKAPPID,
            "administrator",
            DEMO_SECRET_KEY,
            unix_now()
        )
        .is_err()
    );
    assert!(
        stderr(&output).contains("identifier user_42"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains(DEMO_SECRET_KEY));
    let output = run(&"x".repeat(33));
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("--identifier: is 33 bytes"),
        "{}",
        stderr(&output)
    );
}

/// Runs the demo with `env` until it prints its curl, then stops it; returns its stderr, which
/// went to a file (not a terminal).
fn demo_log(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("demo.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut command = timgate();
    command
        .arg("--demo")
        .env("TIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TIMGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(file);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = Killed(command.spawn().expect("demo starts"));
    let out = lines(child.0.stdout.take().expect("stdout"));
    wait_for(&out, "curl ");
    assert_eq!(terminate(&mut child.0).code(), Some(0));
    std::fs::read_to_string(&log).expect("log")
}

#[test]
fn the_demo_honours_log_and_writes_no_colour_codes_to_a_file() {
    // Its own default: text, for a person; in a file, without colour codes.
    let text = demo_log(&[]);
    assert!(
        text.contains(" INFO ") && text.contains("Serving."),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
    // [log] as configured: JSON lines at warn, so no INFO line at all.
    let json = demo_log(&[
        ("TIMGATE__LOG__FORMAT", "json"),
        ("TIMGATE__LOG__LEVEL", "warn"),
    ]);
    assert!(
        !json.is_empty(),
        "the demo warns of its plain-HTTP upstream"
    );
    for line in json.lines() {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(entry["level"], "INFO", "{line}");
    }
    assert!(!json.contains('\u{1b}'));
}
