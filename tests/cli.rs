//! The binary as a new user meets it: `--demo` and its printed curl, SIGTERM, configuration
//! mistakes, `usersig`, `check-config` and `emulate`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use timgate::clock::unix_now;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY};
use timgate::tencent::usersig;

fn timgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timgate"));
    // Start from a clean slate whatever the developer's shell exports.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIMGATE__") || k == "RUST_LOG")
    {
        command.env_remove(key);
    }
    command
}

/// Reads the child's stdout lines on a thread, so the test can wait with a timeout.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("expected output within 30 s");
        if line.starts_with(prefix) {
            return line;
        }
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for _ in 0..300 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("timgate did not exit within 15 s of SIGTERM");
}

#[test]
fn demo_prints_a_curl_that_works_as_printed_and_exits_0_on_sigterm() {
    let mut child = timgate()
        .arg("--demo")
        .env("TIMGATE__SERVER__LISTEN", "127.0.0.1:0")
        .env("TIMGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("timgate starts");
    let rx = lines(&mut child);
    let curl = wait_for(&rx, "curl ");
    assert!(curl.contains("modify_group_attr"), "{curl}");
    let get = wait_for(&rx, "curl ");
    let run = |line: &str| {
        Command::new("sh")
            .args(["-c", line])
            .output()
            .expect("sh runs")
    };
    let output = run(&curl);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(r#""ActionStatus":"OK""#),
        "printed curl answered: {text}"
    );
    let text = String::from_utf8_lossy(&run(&get).stdout).to_string();
    assert!(text.contains(r#"{"key":"song","value":"intro"}"#), "{text}");
    let status = terminate(&mut child);
    assert_eq!(status.code(), Some(0), "SIGTERM ends the demo cleanly");
}

fn run(command: &mut Command) -> Output {
    command.output().expect("timgate runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn missing_identity_is_one_line_and_exit_64_not_a_panic() {
    let output = run(timgate().env("TIMGATE__SERVER__LISTEN", "127.0.0.1:0"));
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("invalid configuration: tencent.sdkappid: required"),
        "{text}"
    );
    assert!(text.contains("tencent.secret_key: required"), "{text}");
    assert!(!text.contains("panicked"));
}

#[test]
fn check_config_lists_every_problem_by_key() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"nowhere\"\n[limits]\napp_per_second = 0\nbackend = \"memcached\"\n",
    )
    .expect("write");
    let output = run(timgate()
        .arg("--config")
        .arg(&file)
        .arg("check-config")
        .env("TIMGATE__TENCENT__SDKAPPID", "7"));
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    for key in [
        "server.listen",
        "limits.app_per_second",
        "limits.backend",
        "tencent.secret_key",
    ] {
        assert!(
            text.contains(&format!("  {key}: ")),
            "{key} missing from: {text}"
        );
    }
    assert!(
        !text.contains("tencent.sdkappid"),
        "the environment set it: {text}"
    );

    std::fs::write(&file, "[server]\nlisten_port = 1\n").expect("write");
    let output = run(timgate().arg("--config").arg(&file).arg("check-config"));
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("unknown field `listen_port`"),
        "{}",
        stderr(&output)
    );

    let output = run(timgate().args(["--config", "/nonexistent.toml", "check-config"]));
    assert!(stderr(&output).contains("/nonexistent.toml: no such file"));

    let output = run(timgate()
        .arg("check-config")
        .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
        .env("TIMGATE__TENCENT__SECRET_KEY", "k")
        .env("TIMGATE__SERVER__AUTH_TOKENS", "a,b"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("configuration OK") && !text.contains("secret_key = "),
        "{text}"
    );
}

#[test]
fn the_fallback_share_and_in_flight_bound_come_from_the_environment_in_either_form() {
    let check = |share: &str| {
        run(timgate()
            .arg("check-config")
            .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
            .env("TIMGATE__TENCENT__SECRET_KEY", "k")
            .env("TIMGATE__LIMITS__FALLBACK_SHARE", share)
            .env("TIMGATE__LIMITS__MAX_IN_FLIGHT_PER_API", "25"))
    };
    for (share, shown) in [("auto", "auto"), ("0.5", "0.5"), ("1", "1")] {
        let output = check(share);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{share}: {}",
            stderr(&output)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(&format!("fallback_share {shown}  max_in_flight_per_api 25")),
            "{share}: {text}"
        );
    }
    for (share, why) in [
        (
            "half",
            "\"half\" is neither \"auto\" nor a number in (0, 1]",
        ),
        ("1.5", "1.5 is outside (0, 1]"),
        ("0", "0 is outside (0, 1]"),
    ] {
        let output = check(share);
        assert_eq!(output.status.code(), Some(64), "{share}");
        let text = stderr(&output);
        assert!(
            text.contains(&format!("  limits.fallback_share: {why}")),
            "{share}: {text}"
        );
    }
}

#[test]
fn usersig_prints_a_sig_made_from_the_secret_key_file() {
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("secret");
    std::fs::write(&key_file, format!("{DEMO_SECRET_KEY}\n")).expect("write key");
    let output = run(timgate()
        .arg("usersig")
        .env("TIMGATE__TENCENT__SDKAPPID", DEMO_SDKAPPID.to_string())
        .env("TIMGATE__TENCENT__SECRET_KEY_FILE", &key_file));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let sig = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let decoded = usersig::verify(
        &sig,
        DEMO_SDKAPPID,
        "administrator",
        DEMO_SECRET_KEY,
        unix_now(),
    )
    .expect("verifies");
    assert_eq!(decoded.expire, 86400);
    assert!(!stderr(&output).contains(DEMO_SECRET_KEY));

    let output = run(timgate()
        .arg("usersig")
        .env("TIMGATE__TENCENT__SDKAPPID", "1")
        .env(
            "TIMGATE__TENCENT__SECRET_KEY_FILE",
            dir.path().join("missing"),
        ));
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains("tencent.secret_key_file: cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn emulate_serves_on_the_given_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = timgate()
        .args(["emulate", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let rx = lines(&mut child);
    let line = wait_for(&rx, "emulator listening on ");
    assert_eq!(
        line,
        format!("emulator listening on http://127.0.0.1:{port}")
    );
    let output = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/_emulator/stats")])
        .output()
        .expect("curl runs (.ci/run installs it)");
    assert!(String::from_utf8_lossy(&output.stdout).contains(r#""received":0"#));
    assert_eq!(terminate(&mut child).code(), Some(0));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// POSTs with curl; returns (HTTP status, body).
fn curl_post(url: &str, body: &str) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            url,
            "-d",
            body,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (status.to_string(), body.to_string())
}

#[test]
fn sighup_reloads_the_allow_list_and_refuses_a_bad_config() {
    let (emu_port, port, admin) = (free_port(), free_port(), free_port());
    let mut emulator = timgate()
        .args(["emulate", "--listen", &format!("127.0.0.1:{emu_port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("emulator starts");
    let emulator_lines = lines(&mut emulator);
    wait_for(&emulator_lines, "emulator listening on ");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("timgate.toml");
    let config = |allow: &str, extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\nbase_url = \"http://127.0.0.1:{emu_port}\"\n\
             [apis]\nallow = [{allow}]\n[log]\nformat = \"text\"\n{extra}"
        )
    };
    std::fs::write(
        &file,
        config("\"group_open_http_svc/modify_group_attr\"", ""),
    )
    .expect("write");
    let mut gateway = timgate()
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stderr = gateway.stderr.take().expect("stderr piped");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let get = format!("http://127.0.0.1:{port}/v4/group_open_attr_http_svc/get_group_attr");
    let body = r#"{"GroupId":"g"}"#;
    let poll = |want: &str| {
        for _ in 0..100 {
            if curl_post(&get, body).0 == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("get never answered {want}");
    };
    poll("403");
    let hangup = |child: &Child| {
        assert!(
            Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .expect("kill")
                .success()
        );
    };
    std::fs::write(
        &file,
        config("\"group_open_attr_http_svc/get_group_attr\"", ""),
    )
    .expect("write");
    hangup(&gateway);
    poll("200");
    assert!(curl_post(&get, body).1.contains(r#""ErrorCode":0"#));
    // A configuration with a mistake is refused; the running one stays.
    std::fs::write(
        &file,
        config(
            "\"group_open_http_svc/modify_group_attr\"",
            "[limits]\nburst = 3\n",
        ),
    )
    .expect("write");
    hangup(&gateway);
    let refused = loop {
        let line = log
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line about the reload");
        if line.contains("reload refused") {
            break line;
        }
    };
    assert!(
        refused.contains("burst"),
        "the log names the key: {refused}"
    );
    assert_eq!(
        curl_post(&get, body).0,
        "200",
        "the old allow-list is still in force"
    );
    assert_eq!(terminate(&mut gateway).code(), Some(0));
    assert_eq!(terminate(&mut emulator).code(), Some(0));
}

#[test]
fn check_config_names_the_endpoint_and_its_backup_and_warns_of_a_region_tencent_dropped() {
    let check = |region: &str| {
        run(timgate()
            .arg("check-config")
            .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
            .env("TIMGATE__TENCENT__SECRET_KEY", "k")
            .env("TIMGATE__TENCENT__REGION", region))
    };
    let output = check("tokyo");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(
            "upstream https://adminapijpn.im.qcloud.com  backup https://adminapijpn.my-imcloud.com"
        ),
        "{text}"
    );
    assert!(!text.contains("warning"), "{text}");
    let output = check("india");
    assert_eq!(output.status.code(), Some(0), "a warning, not a refusal");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("warning: Tencent's current pages no longer list region \"india\""),
        "{text}"
    );
}

#[test]
fn check_config_names_the_redis_mode_it_will_use_never_a_password() {
    let check = |vars: &[(&str, &str)]| {
        let mut command = timgate();
        command
            .arg("check-config")
            .env("TIMGATE__TENCENT__SDKAPPID", "1400000000")
            .env("TIMGATE__TENCENT__SECRET_KEY", "k")
            .env("TIMGATE__LIMITS__BACKEND", "redis");
        for (name, value) in vars {
            command.env(name, value);
        }
        run(&mut command)
    };
    for (vars, shown) in [
        (
            vec![("TIMGATE__LIMITS__REDIS_URL", "redis://:hunter22@h:6379")],
            "limits backend redis standalone redis://:***@h:6379 (timeout 200 ms)",
        ),
        (
            vec![
                ("TIMGATE__LIMITS__REDIS_URL", "rediss://u:hunter22@h:6380"),
                ("TIMGATE__LIMITS__REDIS_TIMEOUT_MS", "150"),
            ],
            "limits backend redis TLS rediss://u:***@h:6380 (timeout 150 ms)",
        ),
        (
            vec![
                (
                    "TIMGATE__LIMITS__REDIS_SENTINELS",
                    "redis://:hunter22@s1:26379,redis://s2:26379",
                ),
                ("TIMGATE__LIMITS__REDIS_SENTINEL_MASTER", "mymaster"),
            ],
            "limits backend redis Sentinel master \"mymaster\" via redis://:***@s1:26379, \
             redis://s2:26379 (timeout 200 ms)",
        ),
        (
            vec![(
                "TIMGATE__LIMITS__REDIS_CLUSTER_NODES",
                "redis://:hunter22@a:7000,redis://b:7000",
            )],
            "limits backend redis Cluster seeds redis://:***@a:7000, redis://b:7000 (timeout 200 ms)",
        ),
    ] {
        let output = check(&vars);
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{vars:?}: {}",
            stderr(&output)
        );
        assert!(text.contains(shown), "{vars:?}: {text}");
        assert!(!text.contains("hunter22"), "{text}");
    }
    // A problem in a list given by the environment is masked too.
    let output = check(&[(
        "TIMGATE__LIMITS__REDIS_CLUSTER_NODES",
        "http://:hunter22@a:7000",
    )]);
    assert_eq!(output.status.code(), Some(64));
    let text = stderr(&output);
    assert!(
        text.contains("limits.redis_cluster_nodes: \"http://:***@a:7000\""),
        "{text}"
    );
    assert!(!text.contains("hunter22"), "{text}");
}
