//! Limits that hold through faults, against real redis-server processes and the emulator:
//! replicas sharing one budget while Redis freezes or restarts under a backlog, and a stalled
//! upstream that releases everything it held at once. Tencent must never see more than its
//! limit in any sliding second, and every caller gets its answer.

mod support;

use std::time::Duration;

use loadgen::offer::{self as load, MODIFY, peak};
use support::redis::Redis;
use support::{ApartEmulator, Gateway, base_toml, emulator_apart};
use timgate::emulator::{Emulator, EmulatorConfig};
use tokio::time::Instant;

/// One scenario at a time: each runs up to three gateways and 340 callers a second on a 2-core
/// machine, and four at once would measure how they starve each other's timers, not the limits.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tencent's limit per API, as the emulator enforces it.
const LIMIT: u32 = 200;

async fn until(what: &str, f: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` replicas on the default configuration, sharing the budget in `redis`, all connected.
async fn replicas(n: usize, emulator: &Emulator, redis: &Redis) -> Vec<Gateway> {
    let shared = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    );
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(Gateway::start(&[&base_toml(emulator.addr, None), &shared]).await);
    }
    until("every replica shares the budget", || {
        gateways
            .iter()
            .all(|g| g.metrics.limiter_backend_up.get() == 1)
    })
    .await;
    gateways
}

async fn offer(gateways: &[Gateway], rate: u32, span: Duration) -> load::Answers {
    let urls: Vec<String> = gateways.iter().map(|g| g.url(MODIFY)).collect();
    load::offer(&urls, rate, span).await
}

fn report(what: &str, emulator: &ApartEmulator, answers: &load::Answers) {
    let records = emulator.state.records();
    if let Some(first) = records.first() {
        // Refusals per second of the run, to see when they came.
        let mut by_second = std::collections::BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| r.code == 60007 || r.code == 10049)
        {
            *by_second.entry((r.at - first.at).as_secs()).or_insert(0) += 1;
        }
        eprintln!("{what}: limit refusals by second {by_second:?}");
    }
    eprintln!(
        "{what}: peak {} calls in a second, {} limit refusals (the emulator woke up to {:?} late); \
         callers: {} ok, {} busy, {} failed {:?}",
        peak(emulator),
        emulator.state.limit_refusals(),
        emulator.late_by(),
        answers.ok,
        answers.busy,
        answers.failed.len(),
        &answers.failed[..answers.failed.len().min(5)],
    );
}

fn assert_held(emulator: &Emulator, answers: &load::Answers) {
    assert_eq!(
        emulator.state.limit_refusals(),
        0,
        "Tencent refused nothing"
    );
    assert!(peak(emulator) <= LIMIT as usize, "never over the limit");
    assert!(answers.failed.is_empty(), "every caller got OK or busy");
    assert!(answers.ok > 1000, "the replicas kept serving");
}

/// Each replica's view every half second of `span`: whether it shares the budget, how many
/// replicas it last saw, and how many upstream calls it made in that half second, so that a
/// failure says which replica sent more than its share.
async fn watch_replicas(gateways: &[Gateway], span: Duration) -> Vec<Vec<(i64, i64, u64)>> {
    let sent = |g: &Gateway| {
        g.metrics
            .upstream_attempts
            .with_label_values(&[MODIFY])
            .get()
    };
    let mut last: Vec<u64> = gateways.iter().map(sent).collect();
    let mut seen = Vec::new();
    let end = Instant::now() + span;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let row = gateways
            .iter()
            .zip(last.iter_mut())
            .map(|(g, last)| {
                let now = sent(g);
                let delta = now - std::mem::replace(last, now);
                let m = &g.metrics;
                (m.limiter_backend_up.get(), m.limiter_replicas.get(), delta)
            })
            .collect();
        seen.push(row);
    }
    seen
}

/// Offers `rate` writes a second to `gateways` for `span` while `fault` runs, then checks that
/// the emulator never saw more than the limit in a second and every caller got its answer, and
/// that replicas sharing a budget are back to sharing.
async fn hold_through(
    what: &str,
    emulator: &ApartEmulator,
    gateways: Vec<Gateway>,
    (rate, span): (u32, Duration),
    fault: impl std::future::Future<Output = ()>,
    shared: bool,
) {
    let watch = watch_replicas(&gateways, span);
    let (answers, (), seen) = tokio::join!(offer(&gateways, rate, span), fault, watch);
    if shared {
        eprintln!("{what}: each replica by half second (up, replicas seen, sent): {seen:?}");
    }
    report(what, emulator, &answers);
    assert_held(emulator, &answers);
    for gateway in gateways {
        if shared {
            let up = gateway.metrics.limiter_backend_up.get();
            assert_eq!(up, 1, "back to sharing");
        }
        gateway.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hold_the_limit_while_redis_freezes_and_thaws_under_a_backlog() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(redis) = Redis::start() else { return };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(2, &emulator, &redis).await;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        redis.freeze();
        tokio::time::sleep(Duration::from_secs(5)).await;
        redis.thaw();
    };
    let load = (340, Duration::from_secs(12));
    hold_through(
        "redis frozen 5 s, 2 replicas",
        &emulator,
        gateways,
        load,
        fault,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_hold_the_limit_while_redis_restarts_empty_under_a_backlog() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(3, &emulator, &redis).await;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        redis.resume().expect("redis restarts");
    };
    let load = (340, Duration::from_secs(12));
    hold_through(
        "redis killed 5 s, 3 replicas",
        &emulator,
        gateways,
        load,
        fault,
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_releasing_everything_at_once_stays_within_the_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = vec![Gateway::start(&[&base_toml(emulator.addr, None)]).await];
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        emulator.state.stall(Duration::from_secs(8));
    };
    let load = (250, Duration::from_secs(14));
    hold_through(
        "upstream stalled 8 s",
        &emulator,
        gateways,
        load,
        fault,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_budget_hold_the_limit_through_an_upstream_stall() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(redis) = Redis::start() else { return };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(2, &emulator, &redis).await;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        emulator.state.stall(Duration::from_secs(8));
    };
    let load = (250, Duration::from_secs(14));
    let what = "upstream stalled 8 s, 2 replicas";
    hold_through(what, &emulator, gateways, load, fault, true).await;
}
