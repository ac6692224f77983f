//! Property test of the pacer on paused time: for random arrivals, groups, answer latencies and
//! hang-ups, no lane's schedule ever holds more than its rate in any window of its length, and
//! each group's writes leave in arrival order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use proptest::prelude::*;
use timgate::metrics::Metrics;
use timgate::pace::{LaneSettings, Pacer};
use tokio::time::Instant;

const APP_RATE: u32 = 10;
const GROUP_RATE: u32 = 5;
const GUARD: Duration = Duration::from_millis(20);

/// One request: when it arrives, which group it writes (or none: a read), how long its answer
/// takes, and whether its caller hangs up after some wait.
#[derive(Debug, Clone)]
struct Job {
    arrive_ms: u64,
    group: Option<u8>,
    latency_ms: u64,
    hang_up_ms: Option<u64>,
}

fn job() -> impl Strategy<Value = Job> {
    (
        0..3000u64,
        prop::option::weighted(0.8, 0..6u8),
        0..300u64,
        prop::option::weighted(0.1, 0..500u64),
    )
        .prop_map(|(arrive_ms, group, latency_ms, hang_up_ms)| Job {
            arrive_ms,
            group,
            latency_ms,
            hang_up_ms,
        })
}

/// (job index, group, slot) of every job that was sent.
fn run(jobs: &[Job]) -> Vec<(usize, Option<u8>, Duration)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let settings = LaneSettings::new(APP_RATE, GROUP_RATE, GUARD, 1000, 100_000);
        let api: Arc<str> = Arc::from("api");
        let pacer = Pacer::with_settings(settings, std::slice::from_ref(&api), Metrics::new());
        let start = Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| (jobs[i].arrive_ms, i));
        let mut tasks = Vec::new();
        for i in order {
            let (job, pacer, api, sent) =
                (jobs[i].clone(), pacer.clone(), api.clone(), sent.clone());
            tokio::time::sleep_until(start + Duration::from_millis(job.arrive_ms)).await;
            let group = job.group.map(|g| Arc::<str>::from(format!("g{g}")));
            let attempt = async move {
                let permit = pacer
                    .acquire(&api, group.as_ref(), start + Duration::from_secs(3600))
                    .await
                    .expect("admitted");
                sent.lock()
                    .expect("log")
                    .push((i, job.group, permit.slot() - start));
                tokio::time::sleep(Duration::from_millis(job.latency_ms)).await;
            };
            tasks.push(tokio::spawn(async move {
                match job.hang_up_ms {
                    Some(ms) => {
                        let _ = tokio::time::timeout(Duration::from_millis(ms), attempt).await;
                    }
                    None => attempt.await,
                }
            }));
            tokio::task::yield_now().await;
        }
        for task in tasks {
            task.await.expect("job");
        }
        Arc::try_unwrap(sent)
            .expect("all done")
            .into_inner()
            .expect("log")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_lane_ever_exceeds_its_rate_and_groups_keep_their_order(jobs in prop::collection::vec(job(), 0..120)) {
        let sent = run(&jobs);
        let window = Duration::from_secs(1) + GUARD;
        let all: Vec<Duration> = sent.iter().map(|s| s.2).collect();
        prop_assert!(support::max_in_window(all, window) <= APP_RATE as usize);
        for g in 0..6u8 {
            let mine: Vec<&(usize, Option<u8>, Duration)> = sent.iter().filter(|s| s.1 == Some(g)).collect();
            prop_assert!(support::max_in_window(mine.iter().map(|s| s.2).collect(), window) <= GROUP_RATE as usize);
            let mut by_slot = mine.clone();
            by_slot.sort_by_key(|s| s.2);
            let arrival = |s: &&(usize, Option<u8>, Duration)| (jobs[s.0].arrive_ms, s.0);
            prop_assert!(by_slot.windows(2).all(|w| arrival(&w[0]) < arrival(&w[1])), "group {} out of order", g);
        }
        // Nobody who stayed was left unsent.
        let stayed = jobs.iter().filter(|j| j.hang_up_ms.is_none()).count();
        prop_assert!(sent.len() >= stayed);
    }
}
