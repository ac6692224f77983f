//! Limits that hold through faults, against real redis-server processes and the emulator:
//! replicas sharing one budget while Redis freezes or restarts under a backlog, and a stalled
//! upstream that releases everything it held at once. Tencent must never see more than its
//! limit in any sliding second, and every caller gets its answer.

mod support;

use std::time::Duration;

use support::held::{hold_through, replicas};
use support::redis::Redis;
use support::{Gateway, base_toml, emulator_apart};
use timgate::emulator::EmulatorConfig;

/// One scenario at a time: each runs up to three gateways and 340 callers a second on a 2-core
/// machine, and four at once would measure how they starve each other's timers, not the limits.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The layer that points replicas at `redis`.
fn shared(redis: &Redis) -> String {
    format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_hold_the_limit_while_redis_freezes_and_thaws_under_a_backlog() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some(redis) = Redis::start() else { return };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateways = replicas(2, &emulator, &shared(&redis)).await;
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
    let gateways = replicas(3, &emulator, &shared(&redis)).await;
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
    let gateways = replicas(2, &emulator, &shared(&redis)).await;
    let fault = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        emulator.state.stall(Duration::from_secs(8));
    };
    let load = (250, Duration::from_secs(14));
    let what = "upstream stalled 8 s, 2 replicas";
    hold_through(what, &emulator, gateways, load, fault, true).await;
}
