//! Every row of the retry classification, the backoff bounds and the budget arithmetic.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use super::*;
use crate::tencent::codes::fail_body;

/// Nothing done to the signature yet.
const NONE: Resigned = Resigned {
    sig: false,
    key: false,
};
/// The UserSig already regenerated once.
const SIG: Resigned = Resigned {
    sig: true,
    key: false,
};

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(5000),
        window: Duration::from_millis(1020),
    }
}

fn reply(code: i64) -> Result<Reply, Error> {
    Ok(Reply {
        status: StatusCode::OK,
        body: Bytes::from(fail_body(code, "x")),
        code: Some(code),
    })
}

fn reason(verdict: &Verdict) -> Option<&'static str> {
    match verdict {
        Verdict::Retry { reason, .. } => Some(reason),
        Verdict::Answer => None,
    }
}

#[test]
fn success_and_final_codes_are_answered_at_once() {
    let never = [
        0, 10004, 10007, 10010, 10015, 10045, 10046, 10047, 10048, 10050, 60002, 60003, 60006,
        60009, 60010, 60012, 60015, 60016, 60017, 60020, 60021, 60025, 60026, 60027, 60028, 70003,
        70013, 70014, 70016, 70020, 10056, 123456,
    ];
    for code in never {
        assert_eq!(
            policy().decide(&reply(code), 1, true, NONE),
            Verdict::Answer,
            "{code}"
        );
    }
}

#[test]
fn transient_codes_are_retried_with_backoff() {
    let attrs_and_accounts = [10002, 60008, 60014, 70169, 70202, 70500];
    // The other families' (tencent-im-api.md §8.1, §8.2): messages, relationship chain, profile,
    // recent contacts.
    let others = [
        20004, 20005, 30006, 30007, 40006, 50004, 50005, 90992, 90994, 90995, 91000,
    ];
    for code in attrs_and_accounts.into_iter().chain(others) {
        match policy().decide(&reply(code), 1, true, NONE) {
            Verdict::Retry {
                reason,
                delay,
                renew: Renew::Nothing,
                slow: None,
            } => {
                assert_eq!(reason, format!("code_{code}"));
                assert!(delay <= Duration::from_millis(100));
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[test]
fn throttling_codes_slow_the_right_lane_then_retry() {
    let slow = |code| match policy().decide(&reply(code), 1, true, NONE) {
        Verdict::Retry { slow, .. } => slow,
        Verdict::Answer => panic!("{code} answered"),
    };
    assert_eq!(slow(10049), Some(Slow::Group));
    match policy().decide(&reply(10049), 1, true, NONE) {
        Verdict::Retry { delay, .. } => assert!(
            delay >= Duration::from_millis(1020),
            "a window passes first"
        ),
        Verdict::Answer => panic!("10049 answered"),
    }
    for code in [60007, 60018, 60019, 10006, 90024] {
        assert_eq!(slow(code), Some(Slow::App), "{code}");
    }
    assert_eq!(slow(60011), Some(Slow::Sdkappid), "the app's total");
    match policy().decide(&reply(70050), 1, true, NONE) {
        Verdict::Retry { delay, .. } => assert_eq!(delay, Duration::from_secs(60)),
        Verdict::Answer => panic!("70050 answered"),
    }
}

#[test]
fn an_expired_sig_is_renewed_and_retried_once() {
    // 70052 and 20002 (§8.1) say what 70001 says.
    for code in [70001, 70052, 20002] {
        match policy().decide(&reply(code), 1, true, NONE) {
            Verdict::Retry {
                renew: Renew::Sig,
                delay,
                ..
            } => assert_eq!(delay, Duration::ZERO, "{code}"),
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(
            policy().decide(&reply(code), 2, true, SIG),
            Verdict::Answer,
            "{code}"
        );
    }
}

#[test]
fn a_re_sent_delete_that_finds_nothing_to_delete_did_delete() {
    const DELETE: &str = "group_open_http_svc/delete_group_attr";
    let lost = Err(Error::UpstreamTimeout(Duration::from_secs(1)));
    assert!(unsure(&lost));
    assert!(!unsure(&reply(10002)), "Tencent answered");
    let settled = settle(DELETE, reply(10050), true).expect("a reply");
    assert_eq!((settled.status, settled.code), (StatusCode::OK, Some(0)));
    assert_eq!(
        crate::tencent::codes::error_code(&settled.body),
        Some(0),
        "the body the caller gets says OK too"
    );
    let first = settle(DELETE, reply(10050), false).expect("a reply");
    assert_eq!(
        first.code,
        Some(10050),
        "answered the first time: nothing was there"
    );
    let modify = settle("group_open_http_svc/modify_group_attr", reply(10050), true);
    assert_eq!(modify.expect("a reply").code, Some(10050), "deletes only");
}

#[test]
fn a_bad_signature_is_retried_once_if_the_key_changed() {
    match policy().decide(&reply(70009), 1, false, NONE) {
        Verdict::Retry {
            reason: "key_rotated",
            delay: Duration::ZERO,
            renew: Renew::KeyIfChanged,
            slow: None,
        } => {}
        other => panic!("{other:?}"),
    }
    let rekeyed = Resigned {
        sig: false,
        key: true,
    };
    assert_eq!(
        policy().decide(&reply(70009), 2, false, rekeyed),
        Verdict::Answer
    );
}

#[test]
fn transport_faults_retry_by_what_may_have_been_sent() {
    let p = policy();
    let connect = Err(Error::UpstreamConnect("refused".into()));
    assert_eq!(
        reason(&p.decide(&connect, 1, false, NONE)),
        Some("connect"),
        "nothing was sent"
    );
    let reset = Err(Error::UpstreamUnreachable("reset".into()));
    assert_eq!(reason(&p.decide(&reset, 1, true, NONE)), Some("reset"));
    assert_eq!(
        p.decide(&reset, 1, false, NONE),
        Verdict::Answer,
        "not idempotent"
    );
    let timeout = Err(Error::UpstreamTimeout(Duration::from_secs(1)));
    assert_eq!(reason(&p.decide(&timeout, 1, true, NONE)), Some("timeout"));
    assert_eq!(p.decide(&timeout, 1, false, NONE), Verdict::Answer);
    let http = Ok(Reply {
        status: StatusCode::BAD_GATEWAY,
        body: Bytes::new(),
        code: None,
    });
    assert_eq!(reason(&p.decide(&http, 1, true, NONE)), Some("http_5xx"));
    assert_eq!(
        p.decide(&http, 1, false, NONE),
        Verdict::Answer,
        "a 5xx may come after Tencent got the call: not idempotent, not re-sent"
    );
    let html = Ok(Reply {
        status: StatusCode::OK,
        body: Bytes::from_static(b"<html>"),
        code: None,
    });
    assert_eq!(p.decide(&html, 1, true, NONE), Verdict::Answer);
}

#[test]
fn attempts_stop_at_max_attempts() {
    let p = policy();
    assert!(reason(&p.decide(&reply(10002), 3, true, NONE)).is_some());
    assert_eq!(p.decide(&reply(10002), 4, true, NONE), Verdict::Answer);
}

#[test]
fn backoff_is_full_jitter_under_an_exponential_cap() {
    let p = policy();
    for attempt in 1..=8u32 {
        let cap = Duration::from_millis((100u64 << (attempt - 1)).min(5000));
        let delays: Vec<Duration> = (0..200).map(|_| p.backoff(attempt)).collect();
        assert!(delays.iter().all(|d| *d <= cap), "attempt {attempt}");
        assert!(
            delays.iter().any(|d| *d < cap / 2),
            "jitter reaches low values"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_budget_allows_the_ratio_plus_the_floor() {
    let budget = RetryBudget::new(0.2);
    let take_all = || (0..1000).take_while(|_| budget.withdraw()).count();
    assert_eq!(
        take_all(),
        10,
        "a new budget starts with one second of floor"
    );
    for _ in 0..10 {
        budget.deposit();
    }
    assert_eq!(take_all(), 2, "ten first attempts earn two retries");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(take_all(), 3, "the floor refills ten a second");
    tokio::time::sleep(Duration::from_secs(1000)).await;
    assert_eq!(take_all(), 100, "savings are capped");
}
