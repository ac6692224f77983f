//! Pacing on paused tokio time: exact send times, ordering, fairness, cancellation, admission.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::claim::Hold;
use super::*;
use crate::error::Error;

const GROUP_MS: f64 = 204.0;
const APP_MS: f64 = 5.1;

fn settings() -> LaneSettings {
    LaneSettings::new(200, 5, Duration::from_millis(20), 64, 100_000)
}

fn api() -> Arc<str> {
    Arc::from("group_open_http_svc/modify_group_attr")
}

fn pacer_with(settings: LaneSettings) -> Pacer {
    Pacer::with_settings(settings, &[api()], Metrics::new())
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// (tag, group, slot, when it actually left): tokio timers fire on whole milliseconds, so a send
/// leaves up to 1 ms after its slot; the guard in the spacing absorbs that.
type Log = Arc<Mutex<Vec<(usize, String, Duration, Duration)>>>;

/// Starts a write that records its slot and when it was sent (answered at once) into `log`.
fn write(
    pacer: &Pacer,
    group: &str,
    tag: usize,
    log: &Log,
    start: Instant,
) -> tokio::task::JoinHandle<Result<(), Error>> {
    let (pacer, log, group) = (pacer.clone(), log.clone(), Arc::<str>::from(group));
    tokio::spawn(async move {
        let permit = pacer.acquire(&api(), Some(&group), far()).await?;
        let slot = permit.slot() - start;
        log.lock()
            .expect("log")
            .push((tag, group.to_string(), slot, start.elapsed()));
        Ok(())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(start_paused = true)]
async fn a_burst_to_one_group_leaves_every_204_ms_in_order() {
    let pacer = pacer_with(settings());
    let log = Log::default();
    let start = Instant::now();
    let tasks: Vec<_> = (0..12)
        .map(|i| write(&pacer, "g", i, &log, start))
        .collect();
    for task in tasks {
        task.await.expect("task").expect("sent");
    }
    let log = log.lock().expect("log");
    for (i, (tag, _, at, _)) in log.iter().enumerate() {
        assert_eq!(*tag, i, "accept order");
        assert!(
            (ms(*at) - i as f64 * GROUP_MS).abs() < 0.01,
            "write {i} at {} ms",
            ms(*at)
        );
    }
    assert_eq!(ms(log[0].2), 0.0, "the first leaves at once");
}

#[tokio::test(start_paused = true)]
async fn two_groups_interleave_without_waiting_for_each_other() {
    let pacer = pacer_with(settings());
    let log = Log::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(write(&pacer, "a", i, &log, start));
        tasks.push(write(&pacer, "b", i, &log, start));
    }
    for task in tasks {
        task.await.expect("task").expect("sent");
    }
    let log = log.lock().expect("log");
    let times = |g: &str| {
        log.iter()
            .filter(|e| e.1 == g)
            .map(|e| ms(e.2))
            .collect::<Vec<_>>()
    };
    let (a, b) = (times("a"), times("b"));
    for i in 0..3 {
        assert!((a[i] - i as f64 * GROUP_MS).abs() < 0.01, "a: {a:?}");
        // b is one app slot behind a, not one group interval.
        assert!(
            (b[i] - (i as f64 * GROUP_MS + APP_MS)).abs() < 0.01,
            "b: {b:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_app_lane_holds_200_per_sliding_second_with_500_groups_at_once() {
    let pacer = pacer_with(settings());
    let log = Log::default();
    let start = Instant::now();
    let tasks: Vec<_> = (0..500)
        .map(|i| write(&pacer, &format!("g{i}"), i, &log, start))
        .collect();
    for task in tasks {
        task.await.expect("task").expect("sent");
    }
    let log = log.lock().expect("log");
    let mut times: Vec<f64> = log.iter().map(|e| ms(e.2)).collect();
    let mut sent: Vec<f64> = log.iter().map(|e| ms(e.3)).collect();
    times.sort_by(f64::total_cmp);
    sent.sort_by(f64::total_cmp);
    assert_eq!(times.len(), 500);
    assert_eq!(
        max_in_window(&times, 1000.0),
        197,
        "any second holds ceil(1000 / 5.1) slots"
    );
    assert!(
        max_in_window(&sent, 1000.0) <= 200,
        "and at most 200 actual sends"
    );
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= APP_MS - 0.001, "spacing {pair:?}");
    }
    // Nearly all of the budget is used: 500 sends in 499 intervals.
    assert!(
        (times[499] - 499.0 * APP_MS).abs() < 0.01,
        "last at {}",
        times[499]
    );
}

/// The most sends within any window of `span` ms (a window is half-open: [t, t + span)).
fn max_in_window(sorted: &[f64], span: f64) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= span {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_write_is_never_sent_and_the_next_takes_its_place() {
    let pacer = pacer_with(settings());
    let log = Log::default();
    let start = Instant::now();
    let first = pacer
        .acquire(&api(), Some(&Arc::from("g")), far())
        .await
        .expect("first holds the group");
    let second = write(&pacer, "g", 2, &log, start);
    let third = write(&pacer, "g", 3, &log, start);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pacer.queued(), 2);
    second.abort();
    assert!(second.await.expect_err("aborted").is_cancelled());
    assert_eq!(pacer.queued(), 1, "the cancelled write left the queue");
    drop(first);
    third.await.expect("task").expect("sent");
    let log = log.lock().expect("log");
    assert_eq!(log.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3]);
    assert!(
        (ms(log[0].2) - GROUP_MS).abs() < 0.01,
        "the third goes in the second's slot"
    );
}

#[tokio::test(start_paused = true)]
async fn deadlines_and_full_queues_refuse_at_admission_without_waiting() {
    let small = LaneSettings {
        max_queue_per_group: 3,
        ..settings()
    };
    let pacer = pacer_with(small);
    let group: Arc<str> = Arc::from("g");
    let holder = pacer
        .acquire(&api(), Some(&group), far())
        .await
        .expect("holds");
    let waiting: Vec<_> = (0..3)
        .map(|i| write(&pacer, "g", i, &Log::default(), Instant::now()))
        .collect();
    tokio::task::yield_now().await;
    let start = Instant::now();
    match pacer.acquire(&api(), Some(&group), far()).await {
        Err(Error::GroupBusy {
            full: true,
            retry_after,
        }) => assert!(retry_after >= Duration::from_secs(1)),
        other => panic!("expected a full group queue, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "refusals are immediate");
    // Four writes ahead of a new one (one holding, three waiting): 4 x 204 ms > 500 ms.
    let soon = Instant::now() + Duration::from_millis(500);
    let other_group: Arc<str> = Arc::from("h");
    assert!(
        pacer
            .acquire(&api(), Some(&other_group), soon)
            .await
            .is_ok(),
        "another group is free"
    );
    drop(holder);
    let busy = LaneSettings {
        max_queue_per_group: 64,
        ..settings()
    };
    let pacer = pacer_with(busy);
    let _holder = pacer
        .acquire(&api(), Some(&group), far())
        .await
        .expect("holds");
    let _w: Vec<_> = (0..3)
        .map(|i| write(&pacer, "g", i, &Log::default(), Instant::now()))
        .collect();
    tokio::task::yield_now().await;
    let start = Instant::now();
    match pacer.acquire(&api(), Some(&group), soon).await {
        Err(Error::GroupBusy { full: false, .. }) => {}
        other => panic!("expected a deadline refusal, got {other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "refusals are immediate");
    for task in waiting {
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_gateway_refuses_with_app_queue_full() {
    let pacer = pacer_with(LaneSettings {
        max_queued: 2,
        ..settings()
    });
    let group: Arc<str> = Arc::from("g");
    let _holder = pacer
        .acquire(&api(), Some(&group), far())
        .await
        .expect("holds");
    let _a = write(&pacer, "g", 1, &Log::default(), Instant::now());
    let _b = write(&pacer, "g", 2, &Log::default(), Instant::now());
    tokio::task::yield_now().await;
    assert!(matches!(
        pacer.acquire(&api(), None, far()).await,
        Err(Error::AppBusy { full: true, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_retry_keeps_the_group_and_takes_a_new_slot_in_both_lanes() {
    let pacer = pacer_with(settings());
    let group: Arc<str> = Arc::from("g");
    let start = Instant::now();
    let mut first = pacer
        .acquire(&api(), Some(&group), far())
        .await
        .expect("holds");
    let log = Log::default();
    let later = write(&pacer, "g", 2, &log, start);
    pacer
        .reacquire(&mut first, far())
        .await
        .expect("retry slot");
    assert!((ms(first.slot() - start) - GROUP_MS).abs() < 0.01);
    drop(first);
    later.await.expect("task").expect("sent");
    let log = log.lock().expect("log");
    assert!(
        (ms(log[0].2) - 2.0 * GROUP_MS).abs() < 0.01,
        "the later write goes after the retry"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_groups_are_forgotten_after_their_spacing() {
    let pacer = pacer_with(settings());
    let log = Log::default();
    let start = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|i| write(&pacer, &format!("g{i}"), i, &log, start))
        .collect();
    for task in tasks {
        task.await.expect("task").expect("sent");
    }
    assert_eq!(pacer.active_groups(), 100);
    // Forgotten once the last write has left the send window (1 s + guard), not before: the
    // first was sent at 0 ms, the last at 504.9 ms.
    tokio::time::sleep_until(start + Duration::from_millis(1000)).await;
    pacer.forget_idle();
    assert_eq!(pacer.active_groups(), 100);
    tokio::time::sleep_until(start + Duration::from_millis(1530)).await;
    pacer.forget_idle();
    assert_eq!(pacer.active_groups(), 0);
    assert_eq!(pacer.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn reads_and_other_apis_pass_only_the_app_lane() {
    let pacer = pacer_with(settings());
    let start = Instant::now();
    let mut slots = Vec::new();
    for _ in 0..4 {
        let permit = pacer.acquire(&api(), None, far()).await.expect("slot");
        slots.push(ms(permit.slot() - start));
    }
    assert_eq!(pacer.active_groups(), 0);
    for (i, slot) in slots.iter().enumerate() {
        assert!((slot - i as f64 * APP_MS).abs() < 0.01, "{slots:?}");
    }
}

#[test]
fn the_send_cap_holds_back_sends_bunched_by_late_timers() {
    let settings = LaneSettings::new(3, 2, Duration::from_millis(20), 64, 100);
    let start = Instant::now();
    let (a, g): (Arc<str>, Arc<str>) = (api(), Arc::from("g"));
    let mut lanes = lanes::Lanes::new(std::slice::from_ref(&a), &settings, start);
    let at = |ms: u64| start + Duration::from_millis(ms);
    // Each call answered a millisecond after it left (within the guard: counted at its send).
    let send = |lanes: &mut lanes::Lanes, group: Option<&Arc<str>>, ms: u64| {
        let sent = lanes.claim_send((&a, 1), group, at(ms))?;
        lanes.land((&a, 1), group, sent, at(ms + 1));
        Ok::<_, Hold>(())
    };
    // Three sends bunched within 30 ms (their timers fired late): the fourth waits for the first
    // to leave the 1020 ms window.
    for ms in [0, 10, 20] {
        assert_eq!(send(&mut lanes, None, ms), Ok(()));
    }
    assert_eq!(send(&mut lanes, None, 30), Err(Hold::Until(at(1020))));
    assert_eq!(send(&mut lanes, None, 1020), Ok(()));
    // A group's cap holds on its own, and a held-back send records nothing.
    let _ = lanes.admit((&a, 1), Some(&g), at(5000), at(2000));
    assert_eq!(send(&mut lanes, Some(&g), 2000), Ok(()));
    assert_eq!(send(&mut lanes, Some(&g), 2001), Ok(()));
    assert_eq!(send(&mut lanes, Some(&g), 2002), Err(Hold::Until(at(3020))));
    assert_eq!(
        send(&mut lanes, None, 2040),
        Ok(()),
        "the app lane's oldest left"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slowed_group_is_kept_until_it_recovers_then_forgotten() {
    let pacer = pacer_with(settings());
    let group: Arc<str> = Arc::from("slow");
    drop(
        pacer
            .acquire(&api(), Some(&group), far())
            .await
            .expect("sent"),
    );
    pacer.slow_down(&api(), Some(&group));
    tokio::time::sleep(Duration::from_secs(30)).await;
    pacer.forget_idle();
    assert_eq!(pacer.active_groups(), 1, "its slowdown is remembered");
    // It recovers (the ceiling holds a minute, then a few steps) without being used again, and
    // is then forgotten.
    tokio::time::sleep(Duration::from_secs(60)).await;
    pacer.forget_idle();
    assert_eq!(pacer.active_groups(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_redis_backend_paces_at_the_fallback_share_while_redis_is_away() {
    let config = crate::config::Config::from_toml(
        "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\nfallback_share = 0.5",
    )
    .expect("config");
    let metrics = Metrics::new();
    let pacer = Pacer::new(&config.limits, 1, &[api()], metrics.clone());
    // Nothing listens on port 1: the replica starts, and stays, in fallback.
    assert_eq!(metrics.limiter_backend_up.get(), 0);
    let start = Instant::now();
    let group: Arc<str> = Arc::from("g");
    drop(
        pacer
            .acquire(&api(), Some(&group), far())
            .await
            .expect("first"),
    );
    // What the other replicas hold in Redis is unknown: the local share starts a horizon and a
    // window (100 + 1020 ms) after the pacer did.
    assert_eq!(start.elapsed(), Duration::from_millis(1120));
    drop(
        pacer
            .acquire(&api(), Some(&group), far())
            .await
            .expect("second"),
    );
    // Half of 5 writes a second: 2 a second, (1000 + 20) / 2 = 510 ms apart.
    assert_eq!(start.elapsed(), Duration::from_millis(1120 + 510));
}

#[tokio::test(start_paused = true)]
async fn a_reload_changes_the_spacing_the_shared_budget_reserves_by() {
    let redis = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\nfallback_share = 0.5\n";
    let config = crate::config::Config::from_toml(redis).expect("config");
    let pacer = Pacer::new(&config.limits, 1, &[api()], Metrics::new());
    assert_eq!(
        pacer.lanes().full.app_interval,
        interval(200, Duration::from_millis(20))
    );
    let faster =
        crate::config::Config::from_toml_layers(&[redis, "[limits]\napp_per_second = 400\n"])
            .expect("config");
    pacer.reconfigure(&faster.limits);
    let lanes = pacer.lanes();
    assert_eq!(
        lanes.full.app_interval,
        interval(400, Duration::from_millis(20)),
        "shared spacing follows the reload"
    );
    assert_eq!(lanes.full.app_cap, 400);
}
