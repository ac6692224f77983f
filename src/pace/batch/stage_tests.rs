//! Coalescing's decisions against a real pacer: which writes join, which open a batch, and
//! what a barrier does. The group is held by a permit, so nothing here is ever sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::{Config, LimitsConfig};
use crate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY};
use crate::metrics::Metrics;
use crate::pace::Pacer;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const DELETE: &str = "group_open_http_svc/delete_group_attr";

fn pacer() -> (Pacer, Metrics, LimitsConfig) {
    let config = Config::from_toml(&format!(
        "[tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\
         base_url = \"http://127.0.0.1:9\"\n[limits]\ncoalesce = true\n"
    ))
    .expect("config");
    let apis: Vec<Arc<str>> = config.allow.iter().map(|a| Arc::from(a.as_str())).collect();
    let metrics = Metrics::new();
    let pacer = Pacer::new(&config.limits, DEMO_SDKAPPID, &apis, metrics.clone());
    (pacer, metrics, config.limits)
}

fn write(key: &str) -> Write {
    Write {
        api: Arc::from(MODIFY),
        group: Arc::from("@TGS#aHOT"),
        attrs: vec![(key.to_string(), "v".to_string())],
        deadline: Instant::now() + Duration::from_secs(30),
        request_id: key.to_string(),
        traced: false,
    }
}

/// Starts a modify as the gateway does (an opened batch driven in its own task) and waits until
/// the pacer has taken it (joined or opened).
async fn accept(pacer: &Pacer, metrics: &Metrics, key: &str) {
    let admitted = metrics.admitted.with_label_values(&[MODIFY]);
    let before = admitted.get();
    let (pacer, write) = (pacer.clone(), write(key));
    tokio::spawn(async move {
        match pacer.merge(write, 64).expect("merged") {
            Merged::Joined(seat) => drop(seat.answer().await),
            Merged::Opened {
                seat,
                batch,
                admission,
            } => {
                tokio::spawn(async move { pacer.batch_turn(&batch, admission).await });
                drop(seat.answer().await);
            }
        }
    });
    while admitted.get() == before {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn consecutive_modifies_share_one_place_and_a_barrier_starts_the_next() {
    let (pacer, metrics, limits) = pacer();
    let (api, group) = (Arc::<str>::from(MODIFY), Arc::<str>::from("@TGS#aHOT"));
    let far = Instant::now() + Duration::from_secs(30);
    // A write in flight holds the group: everything below waits behind it.
    let _held = pacer.acquire(&api, Some(&group), far).await.expect("held");
    accept(&pacer, &metrics, "a").await;
    accept(&pacer, &metrics, "b").await;
    accept(&pacer, &metrics, "c").await;
    assert_eq!(pacer.queued(), 1, "three modifies, one batch in line");
    let delete = pacer
        .admit(&Arc::from(DELETE), Some(&group), far)
        .expect("admitted");
    assert_eq!(pacer.queued(), 2, "the delete queues behind the batch");
    accept(&pacer, &metrics, "a").await;
    accept(&pacer, &metrics, "d").await;
    assert_eq!(
        pacer.queued(),
        3,
        "nothing merges across the delete: the next modifies open a new batch"
    );
    // The delete's caller gives up its place; then a reload closes the open batch.
    drop(delete);
    pacer.reconfigure(&limits);
    accept(&pacer, &metrics, "e").await;
    assert_eq!(
        pacer.queued(),
        3,
        "two batches, and a new one after the reload"
    );
}

/// A modify that opens a batch, with its batch driven as the gateway drives it.
fn open(pacer: &Pacer, key: &str) -> (Seat, tokio::task::JoinHandle<Option<Taken>>) {
    let Merged::Opened {
        seat,
        batch,
        admission,
    } = pacer.merge(write(key), 64).expect("merged")
    else {
        panic!("the first modify opens a batch");
    };
    let pacer = pacer.clone();
    let turn = tokio::spawn(async move { pacer.batch_turn(&batch, admission).await });
    (seat, turn)
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_as_long_as_its_members_and_leaves_line_with_the_last() {
    let (pacer, _, _) = pacer();
    let (api, group) = (Arc::<str>::from(MODIFY), Arc::<str>::from("@TGS#aHOT"));
    let far = Instant::now() + Duration::from_secs(600);
    let _held = pacer.acquire(&api, Some(&group), far).await.expect("held");
    let (seat, turn) = open(&pacer, "a");
    let answer = seat.answer().await;
    assert!(
        matches!(answer.result, Err(Error::GroupBusy { full: false, .. })),
        "the member's own deadline (30 s) governs: {:?}",
        answer.result
    );
    let taken = turn.await.expect("the batch's task");
    assert!(
        taken.is_none(),
        "nothing is sent for a batch nobody is left in"
    );
    assert_eq!(pacer.queued(), 0, "the batch gave its place in line back");
}

#[tokio::test(start_paused = true)]
async fn draining_bounds_a_batch_that_has_no_deadline_of_its_own() {
    let (pacer, _, _) = pacer();
    let (api, group) = (Arc::<str>::from(MODIFY), Arc::<str>::from("@TGS#aHOT"));
    let far = Instant::now() + Duration::from_secs(600);
    let _held = pacer.acquire(&api, Some(&group), far).await.expect("held");
    let (_seat, turn) = open(&pacer, "a");
    pacer.drain(Instant::now() + Duration::from_secs(1));
    let taken = turn
        .await
        .expect("the batch's task")
        .expect("its member is still in");
    assert_eq!(taken.members.len(), 1);
    assert!(
        matches!(taken.permit, Err(Error::ShuttingDown)),
        "the members are answered 503 at the drain: {:?}",
        taken.permit.map(drop)
    );
}
