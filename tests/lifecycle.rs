//! Life in a pod: a Secret rotated under a running gateway, and a drain with writes queued.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::clock::unix_now;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use timgate::tencent::usersig;
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const GET: &str = "group_open_attr_http_svc/get_group_attr";

/// Lays out a Secret volume as kubelet does: `secret-key -> ..data/secret-key`,
/// `..data -> ..<version>`, and swaps `..data` atomically by a rename.
fn publish_key(dir: &Path, version: &str, key: &str) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).expect("version dir");
    std::fs::write(versioned.join("secret-key"), key).expect("key");
    let staged = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &staged).expect("staged link");
    std::fs::rename(&staged, dir.join("..data")).expect("atomic swap");
    let link = dir.join("secret-key");
    if !link.exists() {
        std::os::unix::fs::symlink("..data/secret-key", &link).expect("key link");
    }
}

/// The emulator over TLS, and a gateway whose key is read from a Secret volume in `dir` that
/// holds the emulator's key as version `v1`.
async fn signing_from_a_secret_volume() -> (Emulator, tempfile::TempDir, Gateway) {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let dir = tempfile::tempdir().expect("dir");
    publish_key(dir.path(), "v1", DEMO_SECRET_KEY);
    let from_file = format!(
        "[tencent]\nsecret_key = \"\"\nsecret_key_file = \"{}\"\n",
        dir.path().join("secret-key").display()
    );
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), &from_file]).await;
    (emulator, dir, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_picked_up_without_a_restart_or_a_failed_request() {
    let (emulator, dir, gateway) = signing_from_a_secret_volume().await;
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop_at = Instant::now() + Duration::from_secs(7);
    let client = Client::new();
    let load: Vec<_> = (0..4)
        .map(|w| {
            let (client, url) = (client.clone(), gateway.url(GET));
            let (answered, failed) = (answered.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let answer = client
                        .post(&url, json!({"GroupId": format!("r{w}")}).to_string())
                        .await;
                    answered.fetch_add(1, Ordering::Relaxed);
                    if answer.status != 200 || answer.code() != 0 {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {:?}", answer.body);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    // The console's rotation with an overlap: both keys valid, the Secret updated, the old key
    // retired once the gateway has had time to notice (it looks every second).
    tokio::time::sleep(Duration::from_secs(1)).await;
    emulator.state.set_keys(&[DEMO_SECRET_KEY, "second-key"]);
    publish_key(dir.path(), "v2", "second-key");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    emulator.state.set_keys(&["second-key"]);
    // A rotation without an overlap: the old key dies with the swap. The first 70009 makes the
    // gateway re-read the file and try again with the new key.
    tokio::time::sleep(Duration::from_secs(1)).await;
    publish_key(dir.path(), "v3", "third-key");
    emulator.state.set_keys(&["third-key"]);
    for task in load {
        task.await.expect("load");
    }
    assert!(answered.load(Ordering::Relaxed) > 100);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across two rotations"
    );
    let records = emulator.state.records();
    let last = records
        .last()
        .and_then(|r| r.usersig.clone())
        .expect("a usersig");
    usersig::verify(
        &last,
        DEMO_SDKAPPID,
        "administrator",
        "third-key",
        unix_now(),
    )
    .expect("signed with the newest key");
    assert!(
        records.iter().any(|r| r.code == 70009),
        "the second rotation was met by a 70009"
    );
    assert!(
        gateway
            .metrics
            .retries
            .with_label_values(&[GET, "key_rotated"])
            .get()
            >= 1
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_in_flight_across_a_rotation_is_retried_with_the_new_key() {
    let (emulator, dir, gateway) = signing_from_a_secret_volume().await;
    // Four calls signed with the old key, held upstream while the key is swapped without an
    // overlap: all four come back 70009 together, and only one of them (or the gateway's own
    // look at the file) sees the file change.
    emulator.state.stall(Duration::from_secs(2));
    let client = Client::new();
    let callers: Vec<_> = (0..4)
        .map(|w| {
            let (client, url) = (client.clone(), gateway.url(GET));
            let body = json!({"GroupId": format!("r{w}")}).to_string();
            tokio::spawn(async move { client.post(&url, body).await })
        })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(20);
    while gateway.metrics.upstream_in_flight.get() < 4 {
        assert!(
            Instant::now() < give_up,
            "the four calls never reached the emulator"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publish_key(dir.path(), "v2", "second-key");
    emulator.state.set_keys(&["second-key"]);
    for caller in callers {
        let answer = caller.await.expect("caller");
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (200, 0),
            "{:?}",
            answer.body
        );
    }
    let refused = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.code == 70009)
        .count();
    assert_eq!(refused, 4, "each held call was refused once, then retried");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_answers_every_queued_caller_and_loses_none() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    // Sends may go on for grace - request timeout = 2 s; 15 writes to one group need 2.9 s.
    let grace = "[server]\nshutdown_grace_ms = 3000\n[upstream]\nrequest_timeout_ms = 1000\n";
    let mut gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), grace]).await;
    let admitted = gateway.metrics.admitted.with_label_values(&[MODIFY]);
    let client = Client::new();
    let mut callers = Vec::new();
    for i in 0..15u64 {
        let (client, url) = (client.clone(), gateway.url(MODIFY));
        let body = json!({"GroupId": "drain", "GroupAttr": [{"key": "k", "value": i.to_string()}]})
            .to_string();
        callers.push(tokio::spawn(async move { client.post(&url, body).await }));
        support::wait_admitted(&admitted, i + 1).await;
    }
    let started = Instant::now();
    gateway.begin_shutdown();
    let (mut ok, mut refused) = (0, 0);
    for caller in callers {
        let answer = caller.await.expect("every queued caller gets an answer");
        match (answer.status.as_u16(), answer.reason()) {
            (200, None) => ok += 1,
            (503, Some("shutting_down")) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok + refused, 15);
    assert!(ok >= 5 && refused >= 1, "{ok} sent, {refused} answered 503");
    assert_eq!(
        emulator.state.received(),
        ok,
        "each OK was sent once, and nothing else was"
    );
    gateway.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "drained within the grace"
    );
}

#[tokio::test]
async fn a_reload_changes_limits_and_the_allow_list_live_and_keeps_the_queue() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let base = base_toml(emulator.addr, Some(&tls));
    let slow = "[limits]\napp_per_second = 1\n";
    let gateway = Gateway::start(&[&base, slow]).await;
    let client = Client::new();
    let get = |group: &str| json!({"GroupId": group}).to_string();
    assert_eq!(client.post(&gateway.url(GET), get("a")).await.code(), 0);
    // Queued behind the 1-per-second lane when the reload comes; it must still be answered.
    let queued = tokio::spawn({
        let (client, url) = (client.clone(), gateway.url(GET));
        async move { client.post(&url, json!({"GroupId": "b"}).to_string()).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fast = "[limits]\napp_per_second = 200\n[apis]\nallow = [\"group_open_attr_http_svc/get_group_attr\"]\n";
    let config = timgate::config::Config::from_toml_layers(&[&base, fast]).expect("config");
    assert!(
        gateway.reloader.apply(config).is_empty(),
        "nothing here needs a restart"
    );
    assert_eq!(
        queued.await.expect("answer").code(),
        0,
        "the queued request survived the reload"
    );
    let started = Instant::now();
    for i in 0..5 {
        assert_eq!(
            client
                .post(&gateway.url(GET), get(&format!("c{i}")))
                .await
                .code(),
            0
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "200 a second now: {:?}",
        started.elapsed()
    );
    let answer = client
        .post(
            &gateway.url(MODIFY),
            json!({"GroupId": "g", "GroupAttr": [{"key": "k", "value": "v"}]}).to_string(),
        )
        .await;
    assert_eq!(answer.status, 403, "modify left the allow-list");
    let moved = "[server]\nlisten = \"127.0.0.1:1\"\n";
    let config = timgate::config::Config::from_toml_layers(&[&base, fast, moved]).expect("config");
    assert_eq!(
        gateway.reloader.apply(config),
        vec!["server.listen / server.admin_listen"]
    );
    // An inline key is redacted in every printout, yet its change is still seen.
    let rekeyed = "[tencent]\nsecret_key = \"another\"\n";
    let config =
        timgate::config::Config::from_toml_layers(&[&base, fast, rekeyed]).expect("config");
    assert_eq!(gateway.reloader.apply(config), vec!["tencent"]);
    assert_eq!(
        client.post(&gateway.url(GET), get("d")).await.code(),
        0,
        "still serving where it was"
    );
    gateway.shutdown().await;
}
