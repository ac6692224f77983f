//! The guard's arithmetic: refusals past the first threshold, accepts stopped past the second,
//! and charges given back when dropped.

use super::*;
use crate::metrics::Metrics;

fn guard(headroom: u64) -> MemoryGuard {
    let metrics = Metrics::new();
    let rss = resident_bytes().expect("statm is readable");
    // A budget whose refusal line sits `headroom` bytes above what the process uses now.
    let budget = ((rss + headroom) as f64 / REFUSE_AT) as u64;
    MemoryGuard::new(Some(budget), &metrics.pressure)
}

#[test]
fn requests_are_refused_past_the_threshold_and_admitted_again_when_charges_go() {
    let guard = guard(10 << 20);
    let held: Vec<Charge> = (0..9)
        .map(|_| guard.admit(1 << 20).expect("within the budget"))
        .collect();
    let refused = guard.admit(2 << 20).expect_err("past the refusal line");
    assert_eq!(refused.reason(), "overloaded");
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.retry_after().is_some());
    drop(held);
    assert!(
        guard.admit(2 << 20).is_ok(),
        "room again once charges are dropped"
    );
}

#[test]
fn connections_stop_being_accepted_nearer_the_budget() {
    let guard = guard(10 << 20);
    let budget = guard.budget().expect("a budget");
    assert!(guard.accepting());
    // Charged, not admitted: connections and bodies already taken still count.
    let near = (budget as f64 * (STOP_ACCEPTING_AT - REFUSE_AT)) as u64 + (11 << 20);
    let held = guard.charge(near);
    assert!(!guard.accepting());
    assert!(guard.admit(1).is_err());
    drop(held);
    assert!(guard.accepting());
}

#[test]
fn without_a_budget_everything_passes() {
    let metrics = Metrics::new();
    let guard = MemoryGuard::new(None, &metrics.pressure);
    assert!(guard.admit(u64::MAX / 2).is_ok());
    assert!(guard.accepting());
    assert_eq!(guard.used(), 0);
    assert!(guard.spawn_sampler().is_none());
}

#[test]
fn a_configured_budget_wins_over_the_cgroup() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("memory.max"), "201326592\n").expect("write");
    assert_eq!(budget(1 << 30, dir.path()), Some(1 << 30));
    assert_eq!(budget(0, Path::new("/nonexistent")), None);
}
