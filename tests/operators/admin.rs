//! The admin views over real sockets: `/queues` and `/config` on an in-process gateway in front
//! of the emulator, and `/log-level` with `/config` after SIGHUPs on the real binary, whose
//! log filter it changes.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use timgate::config::{Config, ConfigError};
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, EmulatorConfig};

use crate::process::{
    Killed, curl, curl_json, eventually, free_port, lines, signal, terminate, timgate, wait_for,
};
use crate::support::{Client, Gateway, base_toml, emulator};

const MODIFY: &str = "group_open_http_svc/modify_group_attr";

async fn admin_json(gateway: &Gateway, path: &str) -> (u16, Value) {
    let answer = Client::new()
        .get(&format!("http://{}{path}", gateway.admin))
        .await;
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (answer.status.as_u16(), json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_shows_the_lanes_and_the_deepest_groups_while_writes_wait() {
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None)]).await;
    let mut answers = Vec::new();
    for (group, writes) in [("@TGS#hot", 8), ("@TGS#warm", 3)] {
        for i in 0..writes {
            let url = gateway.url(MODIFY);
            let body =
                format!(r#"{{"GroupId":"{group}","GroupAttr":[{{"key":"k","value":"{i}"}}]}}"#);
            answers.push(tokio::spawn(
                async move { Client::new().post(&url, body).await },
            ));
        }
    }
    // At 5 writes a second per group the hot line takes 1.4 s to drain: look while it is deep.
    let started = tokio::time::Instant::now();
    let view = loop {
        let (status, view) = admin_json(&gateway, "/queues?top=2").await;
        assert_eq!(status, 200, "{view}");
        let groups = view["deepest_groups"].as_array().expect("groups").clone();
        if groups.len() == 2
            && groups[0]["depth"].as_u64() >= Some(4)
            && groups[1]["depth"].as_u64() >= Some(2)
        {
            break view;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never deep: {view}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let groups = &view["deepest_groups"];
    assert_eq!(groups[0]["group"], "@TGS#hot", "{view}");
    assert_eq!(groups[1]["group"], "@TGS#warm", "{view}");
    assert!(groups[0]["oldest_wait_ms"].as_u64() > Some(0), "{view}");
    let lane = view["lanes"]
        .as_array()
        .expect("lanes")
        .iter()
        .find(|lane| lane["api"] == MODIFY)
        .expect("the modify lane")
        .clone();
    assert!((lane["configured_per_second"].as_f64().expect("rate") - 1000.0 / 5.1).abs() < 0.01);
    assert_eq!(lane["current_per_second"], lane["configured_per_second"]);
    assert_eq!(lane["slowed"], false);
    assert!(view["group_waiting"].as_u64() >= Some(4), "{view}");
    for answer in answers {
        assert_eq!(
            answer.await.expect("task").code(),
            0,
            "every write is answered OK"
        );
    }
    let (_, drained) = admin_json(&gateway, "/queues").await;
    assert_eq!(
        drained["deepest_groups"],
        serde_json::json!([]),
        "{drained}"
    );
    assert_eq!(drained["queued"], 0);
    assert_eq!(admin_json(&gateway, "/queues?top=many").await.0, 400);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_what_is_in_force_and_how_the_last_reload_went_never_a_secret() {
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let token = "tok-config-view-secret";
    let layers = [
        base_toml(emulator.addr, None),
        format!("[server]\nauth_tokens = [\"billing:{token}\", \"tok-plain-secret\"]\n"),
    ];
    let refs: Vec<&str> = layers.iter().map(String::as_str).collect();
    let gateway = Gateway::start(&refs).await;
    let (status, shown) = admin_json(&gateway, "/config").await;
    assert_eq!(status, 200);
    assert_eq!(shown["last_reload"], Value::Null);
    assert_eq!(shown["config"]["tencent"]["sdkappid"], DEMO_SDKAPPID);
    assert_eq!(shown["config"]["tencent"]["secret_key"], "***");
    assert_eq!(
        shown["config"]["server"]["auth_tokens"],
        serde_json::json!(["billing:***", "***"])
    );
    assert_eq!(shown["config"]["limits"]["app_per_second"], 200);
    assert!(shown["started_at"].as_i64() > Some(1_700_000_000));
    let text = shown.to_string();
    assert!(
        !text.contains(token) && !text.contains(DEMO_SECRET_KEY),
        "{text}"
    );

    assert!(!text.contains("tok-plain-secret"), "{text}");

    // Each token's requests count under its caller's name.
    for bearer in [token, token, "tok-plain-secret", "wrong"] {
        let request = http::Request::post(gateway.url("group_open_attr_http_svc/get_group_attr"))
            .header("authorization", format!("Bearer {bearer}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"GroupId":"@TGS#t"}"#,
            )))
            .expect("request");
        let answer = Client::new().send(request).await;
        assert_eq!(
            answer.status.as_u16(),
            if bearer == "wrong" { 401 } else { 200 }
        );
    }
    let count = |name: &str| {
        gateway
            .metrics
            .caller_requests
            .with_label_values(&[name])
            .get()
    };
    assert_eq!((count("billing"), count("unnamed")), (2, 1));

    // A reload that applies, one that needs a restart for a part, one refused.
    let mut reloaded = refs.clone();
    reloaded.push("[limits]\napp_per_second = 100\n");
    let config = Config::from_toml_layers(&reloaded).expect("valid");
    assert!(gateway.reloader.apply(config).is_empty());
    let (_, shown) = admin_json(&gateway, "/config").await;
    assert_eq!(shown["config"]["limits"]["app_per_second"], 100);
    assert_eq!(shown["last_reload"]["outcome"], "applied");
    assert!(shown["last_reload"]["at"].as_i64() >= shown["started_at"].as_i64());
    reloaded.push("[upstream]\nconnect_timeout_ms = 1234\n");
    let config = Config::from_toml_layers(&reloaded).expect("valid");
    assert_eq!(gateway.reloader.apply(config), ["upstream"]);
    let (_, shown) = admin_json(&gateway, "/config").await;
    assert_eq!(shown["last_reload"]["outcome"], "applied_partly");
    assert_eq!(
        shown["last_reload"]["needs_restart"],
        serde_json::json!(["upstream"])
    );
    assert_eq!(
        shown["config"]["upstream"]["connect_timeout_ms"], 3000,
        "kept until a restart"
    );
    gateway
        .reloader
        .refused(&ConfigError::one("limits.burst: unknown field `burst`"));
    let (_, shown) = admin_json(&gateway, "/config").await;
    assert_eq!(shown["last_reload"]["outcome"], "refused");
    assert_eq!(
        shown["last_reload"]["problems"],
        serde_json::json!(["limits.burst: unknown field `burst`"])
    );
    assert_eq!(
        shown["config"]["limits"]["app_per_second"], 100,
        "the running one stays"
    );

    // Read-only, and `/log-level` says why it cannot change an in-process test's subscriber.
    let post = Client::new()
        .post(&format!("http://{}/config", gateway.admin), "{}")
        .await;
    assert_eq!(post.status.as_u16(), 405);
    assert_eq!(admin_json(&gateway, "/log-level").await.0, 503);
    gateway.shutdown().await;
}

/// Sends a request with `x-request-id: id` through curl and waits for its answer.
fn request(port: u16, id: &str) {
    let status = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-H",
            &format!("x-request-id: {id}"),
            "-X",
            "POST",
        ])
        .arg(format!(
            "http://127.0.0.1:{port}/v4/group_open_attr_http_svc/get_group_attr"
        ))
        .args(["-d", r#"{"GroupId":"@TGS#log"}"#])
        .status()
        .expect("curl");
    assert!(status.success());
}

/// Waits for the log line of request `id`; asserts that no line of `absent` came before it.
fn logged(log: &mpsc::Receiver<String>, id: &str, absent: Option<&str>) {
    loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .expect("a log line");
        if let Some(absent) = absent {
            assert!(!line.contains(absent), "filtered out, yet logged: {line}");
        }
        if line.contains(id) {
            return;
        }
    }
}

#[test]
fn log_level_changes_the_filter_at_run_time_reverts_on_request_and_reloads_show_in_config() {
    let (emu_port, port, admin) = (free_port(), free_port(), free_port());
    let mut emulator = Killed(
        timgate()
            .args(["emulate", "--listen", &format!("127.0.0.1:{emu_port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator starts"),
    );
    wait_for(
        &lines(emulator.0.stdout.take().expect("stdout")),
        "emulator listening on ",
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("timgate.toml");
    let config = |extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\
             base_url = \"http://127.0.0.1:{emu_port}\"\n[log]\nformat = \"text\"\nlevel = \"info\"\n{extra}"
        )
    };
    std::fs::write(&file, config("")).expect("write");
    let mut gateway = Killed(
        timgate()
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts"),
    );
    let log = lines(gateway.0.stderr.take().expect("stderr"));
    let url = format!("http://127.0.0.1:{admin}/log-level");
    eventually(30, "the admin listener", || {
        curl("GET", &url, None).0 == 200
    });
    let (_, level) = curl_json("GET", &url, None);
    assert_eq!(level["level"], "info");
    assert_eq!(level["overridden"], false);
    request(port, "probe-1");
    logged(&log, "probe-1", None);

    // Warnings only: the info line of probe-2 is filtered out; after DELETE probe-3's shows.
    let (status, level) = curl_json("PUT", &url, Some("warn"));
    assert_eq!(
        (status, &level["level"], &level["overridden"]),
        (200, &"warn".into(), &true.into())
    );
    request(port, "probe-2");
    let (_, level) = curl_json("DELETE", &url, None);
    assert_eq!(
        (&level["level"], &level["overridden"]),
        (&"info".into(), &false.into())
    );
    request(port, "probe-3");
    logged(&log, "probe-3", Some("probe-2"));

    // A mistyped level is refused and changes nothing; a timed one reverts by itself.
    let (status, refused) = curl_json("PUT", &url, Some("verbose!!"));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(curl_json("GET", &url, None).1["level"], "info");
    let (status, level) = curl_json("PUT", &format!("{url}?for_secs=1"), Some("warn"));
    assert_eq!(status, 200);
    assert!(level["reverts_at"].as_i64().is_some(), "{level}");
    eventually(15, "the timed override's revert", || {
        curl_json("GET", &url, None).1["level"] == "info"
    });
    assert_eq!(curl("POST", &url, Some("x")).0, 405);

    // SIGHUP: a refused reload and an applied one, each in /config; a reload ends an override.
    let config_url = format!("http://127.0.0.1:{admin}/config");
    std::fs::write(&file, config("[limits]\nburst = 3\n")).expect("write");
    signal(&gateway.0, "-HUP");
    eventually(15, "the refusal in /config", || {
        curl_json("GET", &config_url, None).1["last_reload"]["outcome"] == "refused"
    });
    let (_, shown) = curl_json("GET", &config_url, None);
    let problems = shown["last_reload"]["problems"].to_string();
    assert!(problems.contains("limits.burst"), "{problems}");
    assert!(!shown.to_string().contains(DEMO_SECRET_KEY));
    curl_json("PUT", &url, Some("warn"));
    std::fs::write(&file, config("[limits]\nmax_wait_ms = 7000\n")).expect("write");
    signal(&gateway.0, "-HUP");
    eventually(15, "the reload in /config", || {
        curl_json("GET", &config_url, None).1["last_reload"]["outcome"] == "applied"
    });
    assert_eq!(
        curl_json("GET", &config_url, None).1["config"]["limits"]["max_wait_ms"],
        7000
    );
    assert_eq!(curl_json("GET", &url, None).1["level"], "info");
    assert_eq!(terminate(&mut gateway.0).code(), Some(0));
    assert_eq!(terminate(&mut emulator.0).code(), Some(0));
}
