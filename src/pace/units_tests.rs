//! A recipient-counted API (`batchsendmsg`) on paused tokio time: calls of any size between 1
//! and 500 recipients never put more than 12,000 in any minute, and calls are spaced by what they
//! carry, so the minute is used, not one call per 2.5 s whatever its size.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

const BATCH: &str = "openim/batchsendmsg";

fn pacer() -> Pacer {
    let config = crate::config::Config::from_toml("[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n")
        .expect("config");
    Pacer::new(&config.limits, 1, &[Arc::from(BATCH)], Metrics::new())
}

/// Sizes between 1 and 500, mixed (a fixed sequence, so a failure repeats).
fn sizes(n: usize) -> Vec<u32> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Every fifth call of the most, so windows end on a full call too.
            match i % 5 {
                0 => 500,
                _ => (x % 500) as u32 + 1,
            }
        })
        .collect()
}

/// The most recipients any `span` held, sends sorted by time.
fn busiest(sent: &[(Duration, u32)], span: Duration) -> u32 {
    sent.iter()
        .enumerate()
        .map(|(i, &(from, _))| {
            let within = sent[i..].iter().take_while(|(at, _)| *at - from < span);
            within.map(|(_, n)| n).sum::<u32>()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn calls_of_mixed_sizes_hold_12000_recipients_a_minute_and_use_it() {
    let pacer = pacer();
    let api: Arc<str> = Arc::from(BATCH);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(3600);
    let log = Arc::new(Mutex::new(Vec::new()));
    let sizes = sizes(300);
    let offered: u32 = sizes.iter().sum();
    let tasks: Vec<_> = sizes
        .into_iter()
        .map(|units| {
            let (pacer, api, log) = (pacer.clone(), api.clone(), log.clone());
            // Admitted in order, now: the lane's line is the order of this loop.
            let admission = pacer.admit_units((&api, units), None, deadline);
            tokio::spawn(async move {
                let mut permit = pacer.wait(admission?, deadline).await?;
                log.lock().expect("log").push((start.elapsed(), units));
                // Answered 40 ms later.
                tokio::time::sleep(Duration::from_millis(40)).await;
                permit.landed();
                Ok::<(), crate::error::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("sent");
    }
    let mut sent = log.lock().expect("log").clone();
    sent.sort();
    assert_eq!(sent.iter().map(|(_, n)| n).sum::<u32>(), offered);
    // Tencent's minute, and the minute plus the guard the pacer keeps to: neither over 12,000.
    let minute = Duration::from_secs(60);
    let guarded = minute + Duration::from_millis(20);
    let most = busiest(&sent, guarded);
    assert!(most <= 12_000, "{most}");
    // Used, not wasted: the first minute sends within 500 of the limit (at 500 a call it was
    // 24 calls, and 24 calls of these sizes would be about 7,500).
    let first: u32 = sent
        .iter()
        .filter(|(at, _)| *at < minute)
        .map(|(_, n)| n)
        .sum();
    // The README quotes these (`cargo test --lib units_tests -- --nocapture`).
    eprintln!("busiest 60 s + guard: {most} recipients; first minute: {first}");
    assert!(first >= 11_000, "{first} recipients in the first minute");
    // Each call leaves its recipients' spacing after the one before.
    let unit = guarded / 11_501;
    for pair in sent.windows(2) {
        let ((a, n), (b, _)) = (pair[0], pair[1]);
        assert!(
            b - a + Duration::from_millis(1) >= unit * n,
            "{a:?} {n} then {b:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_gives_up_before_its_slot_gives_back_its_recipients() {
    let pacer = pacer();
    let api: Arc<str> = Arc::from(BATCH);
    let far = Instant::now() + Duration::from_secs(3600);
    let first = pacer.admit_units((&api, 500), None, far).expect("first");
    let second = pacer.admit_units((&api, 500), None, far).expect("second");
    // Two of 500 ahead: a third is estimated two full calls' spacing away.
    let third = pacer.admit_units((&api, 10), None, far).expect("third");
    let unit = (Duration::from_secs(60) + Duration::from_millis(20)) / 11_501;
    assert_eq!(third.estimate() - Instant::now(), unit * 1000);
    drop((second, third));
    // With the second gone, the next is estimated behind the first alone.
    let fourth = pacer.admit_units((&api, 10), None, far).expect("fourth");
    assert_eq!(fourth.estimate() - Instant::now(), unit * 500);
    drop((first, fourth));
    assert_eq!(pacer.queued(), 0);
}
