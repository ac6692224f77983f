//! The connection deadlines on paused time: which timeout applies in each state.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const T: Timeouts = Timeouts {
    header: Some(Duration::from_secs(10)),
    idle: Some(Duration::from_secs(75)),
};

#[tokio::test(start_paused = true)]
async fn a_silent_new_connection_has_the_header_timeout_from_the_accept() {
    let conn = ConnState::new();
    let opened = Instant::now();
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        conn.deadline(&T),
        Some((opened + Duration::from_secs(10), Close::HeaderTimeout))
    );
}

#[tokio::test(start_paused = true)]
async fn a_half_sent_header_counts_from_its_first_byte_after_a_request() {
    let conn = Arc::new(ConnState::new());
    let opened = Instant::now();
    drop(InFlight::new(conn.clone()));
    tokio::time::advance(Duration::from_secs(5)).await;
    // Idle after a request: the idle timeout, from the end of the request.
    assert_eq!(
        conn.deadline(&T),
        Some((opened + Duration::from_secs(75), Close::IdleTimeout))
    );
    conn.read(b"POST / HTTP/1.1\r\n", false);
    tokio::time::advance(Duration::from_secs(1)).await;
    conn.read(b"Host: x\r\n", false);
    assert_eq!(
        conn.deadline(&T),
        Some((opened + Duration::from_secs(15), Close::HeaderTimeout))
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_is_never_timed_out_nor_evicted() {
    let conn = Arc::new(ConnState::new());
    conn.read(b"POST / HTTP/1.1\r\n\r\n", true);
    let in_flight = InFlight::new(conn.clone());
    tokio::time::advance(Duration::from_secs(600)).await;
    conn.read(b"body bytes", false);
    assert_eq!(conn.deadline(&T), None);
    assert!(!conn.evict());
    drop(in_flight);
    let done = Instant::now();
    assert_eq!(
        conn.deadline(&T),
        Some((done + Duration::from_secs(75), Close::IdleTimeout))
    );
    assert!(conn.evict());
    assert!(!conn.evict(), "picked once");
}

#[tokio::test(start_paused = true)]
async fn http2_pings_do_not_keep_an_idle_connection() {
    let conn = ConnState::new();
    let opened = Instant::now();
    conn.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true);
    tokio::time::advance(Duration::from_secs(30)).await;
    conn.read(b"ping frame", false);
    assert!(conn.is_h2());
    assert_eq!(
        conn.deadline(&T),
        Some((opened + Duration::from_secs(75), Close::IdleTimeout))
    );
}

#[tokio::test(start_paused = true)]
async fn no_timeouts_no_deadline() {
    let conn = ConnState::new();
    assert_eq!(conn.deadline(&Timeouts::NONE), None);
}
