//! The load benchmark's regression guard, in CI: the pacing scenario of `cargo bench --bench load`
//! shortened to 24 s (1,000 cold groups and 5 hot ones, steady load with bursts, app-bound then
//! group-bound) through the real gateway and emulator processes. It fails on any sliding-window
//! violation at the emulator, any call left without an answer, or a limit used below 0.9.
//! Absolute speeds are not asserted: CI machines are noisy; counts and ratios are not.

use std::path::Path;
use std::time::Duration;

use loadgen::pacing;
use loadgen::stack::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_pacing_run_has_no_violation_and_uses_the_limits() {
    let bin = Path::new(env!("CARGO_BIN_EXE_timgate"));
    let report = pacing::run_fresh(bin, Proxy::Timgate, Duration::from_secs(24))
        .await
        .expect("the pacing run completes");
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report serializes")
    );
    let problems = report.problems(0.9);
    assert!(problems.is_empty(), "pacing guard failed: {problems:?}");
    // Every planned call was answered once: OK, or refused by the gateway (429) while a hot
    // group's queue was full. Nothing else.
    let refused = report.callers.statuses.get("429").copied().unwrap_or(0);
    assert_eq!(
        report.callers.ok + refused,
        report.offered as u64,
        "{report:?}"
    );
    assert!(report.callers.ok > report.offered as u64 / 2, "{report:?}");
}
