//! The shared budget on Redis as people run it, against real servers the tests start: over TLS
//! with a client certificate and an ACL user whose password rotates, on a Cluster (three masters,
//! and six nodes with a master failed over), behind a Sentinel (the master failed over), and a
//! frozen Redis noticed within the command timeout. Tencent (the emulator) must never see more
//! than its limit in a second, and every caller gets its answer.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::held::{hold_through, replicas, until};
use support::redis::Redis;
use support::redis_modes::{Cluster, Sentinel, TlsRedis, USER, cli};
use support::{Gateway, emulator_apart};
use timgate::config::RedisTarget;
use timgate::emulator::{DEMO_SDKAPPID, EmulatorConfig};
use timgate::metrics::Metrics;
use timgate::pace::shared::Shared;
use tokio::time::Instant;

/// One scenario at a time: each runs up to three gateways, up to six Redis processes and 340
/// callers a second on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes offered a second: 1.7 times the limit, so that the budget is what holds them back.
const RATE: u32 = 340;

/// Watches `metrics` from `since` until every replica has gone away from Redis and come back,
/// and says how long each took; `None` if they never left (the fault did not reach them).
async fn time_to_follow(what: &str, metrics: &[Metrics], since: Instant) -> Option<Duration> {
    let up = |m: &Metrics| m.limiter_backend_up.get() == 1;
    let give_up = since + Duration::from_secs(30);
    while metrics.iter().all(up) {
        if Instant::now() > since + Duration::from_secs(5) {
            eprintln!("{what}: no replica left Redis");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = since.elapsed();
    while !metrics.iter().all(up) {
        assert!(Instant::now() < give_up, "{what}: the replicas came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back = since.elapsed();
    eprintln!("{what}: replicas left Redis {left:?} after the fault, all back {back:?} after it");
    Some(back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_over_mutual_tls_as_an_acl_user_whose_password_rotates() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(tls) = TlsRedis::start() else { return };
    let emulator = emulator_apart(EmulatorConfig::demo());
    // Without the client certificate the server refuses the handshake: no sharing, still serving.
    let layer = tls.layer();
    let no_cert: String = layer
        .lines()
        .filter(|line| !line.starts_with("redis_cert_file") && !line.starts_with("redis_key_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let refused = Gateway::start(&[&support::base_toml(emulator.addr, None), &no_cert]).await;
    let gateways = replicas(2, &emulator, &layer).await;
    assert_eq!(
        refused.metrics.limiter_backend_up.get(),
        0,
        "no client certificate, no TLS session"
    );
    refused.shutdown().await;
    let metrics: Vec<Metrics> = gateways.iter().map(|g| g.metrics.clone()).collect();
    let c = &tls.certs;
    let port = tls.redis.port.to_string();
    let (ca, cert, key) = (
        c.ca.display(),
        c.client_cert.display(),
        c.client_key.display(),
    );
    let redis_cli = |pass: &str, command: &[&str]| {
        let (ca, cert, key) = (ca.to_string(), cert.to_string(), key.to_string());
        let mut args = vec![
            "--tls",
            "--cacert",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "-p",
            &port,
            "--user",
            USER,
            "--pass",
            pass,
            "--no-auth-warning",
        ];
        args.extend(command);
        cli(&args)
    };
    // The password rotates: the file first (as a Secret's update lands), then the server, and
    // the connections made with the old one are cut.
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let old = std::fs::read_to_string(&tls.password_file).expect("read password");
        std::fs::write(&tls.password_file, "rotated-pass-2\n").expect("rotate");
        let set = redis_cli(
            old.trim(),
            &["ACL", "SETUSER", USER, "resetpass", ">rotated-pass-2"],
        );
        assert!(set.contains("OK"), "{set}");
        let cut = Instant::now();
        redis_cli("rotated-pass-2", &["CLIENT", "KILL", "USER", USER]);
        time_to_follow("password rotated", &metrics, cut).await;
    };
    let what = "TLS with a client certificate, an ACL user, the password rotated; 2 replicas";
    let load = (RATE, Duration::from_secs(9));
    hold_through(what, &emulator, gateways, load, fault, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_budget_on_a_three_master_cluster() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(false) else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(3, &emulator, &cluster.layer()).await;
    let what = "Cluster of 3 masters, 3 replicas";
    let load = (RATE, Duration::from_secs(8));
    hold_through(what, &emulator, gateways, load, async {}, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_the_limit_while_a_cluster_master_fails_over_to_its_replica() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::start(true) else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(3, &emulator, &cluster.layer()).await;
    let metrics: Vec<Metrics> = gateways.iter().map(|g| g.metrics.clone()).collect();
    // The master of the budget's slot (its keys' hash tag is the SDKAppID).
    let master = cluster.master_of(&DEMO_SDKAPPID.to_string());
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = Instant::now();
        cluster.nodes[master].stop();
        let back = time_to_follow("Cluster master killed", &metrics, killed).await;
        assert!(back.is_some(), "the replicas noticed the master go");
        let now_master = cluster.master_of(&DEMO_SDKAPPID.to_string());
        assert_ne!(now_master, master, "its replica was promoted");
    };
    let what = "Cluster of 6, the budget's master killed; 3 replicas";
    let load = (RATE, Duration::from_secs(14));
    hold_through(what, &emulator, gateways, load, fault, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_follow_a_sentinel_failover_to_the_promoted_replica() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut sentinel) = Sentinel::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(2, &emulator, &sentinel.layer()).await;
    let metrics: Vec<Metrics> = gateways.iter().map(|g| g.metrics.clone()).collect();
    let replica_port = sentinel.replica.port;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = Instant::now();
        sentinel.master.stop();
        let back = time_to_follow("Sentinel master killed", &metrics, killed).await;
        assert!(back.is_some(), "the replicas noticed the master go");
        assert_eq!(
            sentinel.master_port(),
            replica_port,
            "the replica was promoted"
        );
        let role = cli(&["-p", &replica_port.to_string(), "role"]);
        assert!(role.starts_with("master"), "{role}");
    };
    let what = "Sentinel, the master killed; 2 replicas";
    let load = (RATE, Duration::from_secs(14));
    hold_through(what, &emulator, gateways, load, fault, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_noticed_within_the_command_timeout() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(redis) = Redis::start() else { return };
    let window = Duration::from_millis(1020);
    let spacing = Duration::from_millis(5);
    let mut figures = Vec::new();
    for timeout_ms in [100, 400] {
        let target = RedisTarget {
            timeout: Duration::from_millis(timeout_ms),
            ..RedisTarget::standalone(&redis.url())
        };
        let shared = Shared::new(&target, "frozen", timeout_ms, window, Metrics::new());
        tokio::spawn(Shared::run(Arc::downgrade(&shared)));
        until("the budget connects", || shared.is_up()).await;
        let ok = shared.reserve("a", None, spacing, spacing, None).await;
        assert!(ok.is_some(), "Redis answers while it runs");
        redis.freeze();
        let asked = Instant::now();
        let answer = shared.reserve("a", None, spacing, spacing, None).await;
        let noticed = asked.elapsed();
        redis.thaw();
        assert_eq!(answer, None, "a frozen Redis gives no slot");
        assert!(!shared.is_up(), "and the replica paces alone");
        let timeout = target.timeout;
        assert!(noticed >= timeout, "not before the timeout: {noticed:?}");
        // Generous: the bound is the timeout; the second is for a loaded machine's timers.
        assert!(
            noticed < timeout + Duration::from_secs(1),
            "noticed {noticed:?} after a timeout of {timeout:?}"
        );
        figures.push((timeout, noticed));
        until("the budget comes back", || shared.is_up()).await;
    }
    eprintln!("frozen Redis noticed by a reservation (timeout, after): {figures:?}");
    // An idle replica, with no reservation to time out, notices at its next announcement (every
    // second) and says so in its metric.
    let metrics = Metrics::new();
    metrics.register_limiter();
    let target = RedisTarget::standalone(&redis.url());
    let idle = Shared::new(&target, "idle", 1, window, metrics.clone());
    tokio::spawn(Shared::run(Arc::downgrade(&idle)));
    until("the idle budget connects", || idle.is_up()).await;
    redis.freeze();
    let frozen = Instant::now();
    until("the idle replica notices", || !idle.is_up()).await;
    let noticed = frozen.elapsed();
    redis.thaw();
    assert_eq!(metrics.limiter_backend_up.get(), 0, "and reports it");
    assert!(
        noticed < Duration::from_secs(1) + target.timeout + Duration::from_secs(1),
        "an idle replica noticed after {noticed:?}"
    );
    eprintln!("frozen Redis noticed by an idle replica after {noticed:?}");
}
