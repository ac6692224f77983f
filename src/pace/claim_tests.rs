//! The send moment's accounting: calls in flight, late answers and the respacing of held claims.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::claim::Hold;
use super::lanes::{LaneSettings, Lanes};

fn setup(cap: u32) -> (Lanes, Arc<str>, impl Fn(u64) -> Instant) {
    let settings = LaneSettings::new(cap, 5, Duration::from_millis(20), 64, 100);
    let start = Instant::now();
    let api: Arc<str> = Arc::from("svc/cmd");
    let lanes = Lanes::new(std::slice::from_ref(&api), &settings, start);
    (lanes, api, move |ms| start + Duration::from_millis(ms))
}

#[test]
fn the_calls_in_flight_alone_can_hold_a_send_until_one_is_answered() {
    let (mut lanes, a, at) = setup(3);
    let sent: Vec<Instant> = (0..3)
        .map(|i| lanes.claim_send((&a, 1), None, at(i)).expect("room"))
        .collect();
    assert_eq!(lanes.claim_send((&a, 1), None, at(5)), Err(Hold::Landing));
    // Answered promptly: it counts at its send, which holds the window until 1020 ms.
    lanes.land((&a, 1), None, sent[0], at(6));
    assert_eq!(
        lanes.claim_send((&a, 1), None, at(7)),
        Err(Hold::Until(at(1020)))
    );
    // Two still fly, inside the window: with this one, three.
    assert!(lanes.claim_send((&a, 1), None, at(1020)).is_ok());
    lanes.land((&a, 1), None, sent[1], at(1030));
    // Answered 1029 ms late, it counts from 1030; the one sent at 2 ms still flies though its
    // send has left the window: with the send at 1020, three until 2040.
    assert_eq!(
        lanes.claim_send((&a, 1), None, at(1030)),
        Err(Hold::Until(at(2040)))
    );
}

#[test]
fn calls_a_stalled_upstream_answers_at_once_count_from_their_answer() {
    let (mut lanes, a, at) = setup(3);
    let sent: Vec<Instant> = [0, 10, 20]
        .into_iter()
        .map(|ms| lanes.claim_send((&a, 1), None, at(ms)).expect("room"))
        .collect();
    // The upstream held them for 8 s and answered all three at once: it may have processed
    // them together at the end, so the next send waits a whole window after.
    for &s in &sent {
        lanes.land((&a, 1), None, s, at(8000));
    }
    assert_eq!(
        lanes.claim_send((&a, 1), None, at(8001)),
        Err(Hold::Until(at(9020)))
    );
    assert!(lanes.claim_send((&a, 1), None, at(9020)).is_ok());
}

#[test]
fn a_call_still_flying_after_its_window_still_counts() {
    let (mut lanes, a, at) = setup(3);
    let _stuck = lanes.claim_send((&a, 1), None, at(0)).expect("room");
    for ms in [1500, 1510] {
        let sent = lanes.claim_send((&a, 1), None, at(ms)).expect("room");
        lanes.land((&a, 1), None, sent, at(ms + 1));
    }
    // The first send left the window at 1020 ms but has no answer: with the two of the window
    // it makes three, so the next waits for the one at 1500 to leave.
    assert_eq!(
        lanes.claim_send((&a, 1), None, at(2000)),
        Err(Hold::Until(at(2520)))
    );
}

#[test]
fn claims_held_together_are_given_spaced_slots() {
    let (mut lanes, a, at) = setup(5);
    let interval = super::interval(5, Duration::from_millis(20));
    let slots: Vec<Instant> = (0..3)
        .map(|_| lanes.respace((&a, 1), at(3000), at(10)))
        .collect();
    assert_eq!(
        slots,
        vec![at(3000), at(3000) + interval, at(3000) + interval * 2]
    );
}
