//! Limits held through a fault: load offered to replicas while something fails, then checked
//! against what the emulator saw (never over Tencent's limit in any second, nothing refused)
//! and what the callers got (every one an answer).

use std::time::Duration;

use loadgen::offer::{self as load, MODIFY, peak};
use timgate::emulator::Emulator;
use tokio::time::Instant;

use super::{ApartEmulator, Gateway, base_toml};

/// Tencent's limit per API, as the emulator enforces it.
pub(crate) const LIMIT: u32 = 200;

pub(crate) async fn until(what: &str, f: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` replicas on the default configuration with the `shared` layer (a Redis backend), all
/// connected.
pub(crate) async fn replicas(n: usize, emulator: &Emulator, shared: &str) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for _ in 0..n {
        gateways.push(Gateway::start(&[&base_toml(emulator.addr, None), shared]).await);
    }
    until("every replica shares the budget", || {
        gateways
            .iter()
            .all(|g| g.metrics.limiter_backend_up.get() == 1)
    })
    .await;
    gateways
}

pub(crate) async fn offer(gateways: &[Gateway], rate: u32, span: Duration) -> load::Answers {
    let urls: Vec<String> = gateways.iter().map(|g| g.url(MODIFY)).collect();
    load::offer(&urls, rate, span).await
}

pub(crate) fn report(what: &str, emulator: &ApartEmulator, answers: &load::Answers) {
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

pub(crate) fn assert_held(emulator: &Emulator, answers: &load::Answers) {
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
pub(crate) async fn watch_replicas(
    gateways: &[Gateway],
    span: Duration,
) -> Vec<Vec<(i64, i64, u64)>> {
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
pub(crate) async fn hold_through(
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
    utilization(what, emulator, span);
    assert_held(emulator, &answers);
    for gateway in gateways {
        if shared {
            let up = gateway.metrics.limiter_backend_up.get();
            assert_eq!(up, 1, "back to sharing");
        }
        gateway.shutdown().await;
    }
}

/// Says how much of the limit the writes Tencent accepted in the `span` the load was offered
/// used (after it, only the hot groups' queues drain, at their own 5 a second).
pub(crate) fn utilization(what: &str, emulator: &Emulator, span: Duration) {
    let records = emulator.state.records();
    let done: Vec<_> = records
        .iter()
        .filter(|r| r.api == MODIFY && r.code == 0)
        .map(|r| r.at)
        .collect();
    let Some(&first) = done.first() else { return };
    let within = done.iter().filter(|&&at| at < first + span).count();
    let per_second = within as f64 / span.as_secs_f64();
    eprintln!(
        "{what}: {within} writes accepted by Tencent in the {span:?} of load: {per_second:.0} a \
         second, {:.0}% of the limit",
        100.0 * per_second / f64::from(LIMIT)
    );
}
