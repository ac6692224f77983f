//! The coalescer's decisions against a real pacer: which writes join, which open a batch, and
//! what a barrier does. The group is held by a permit, so nothing here is ever sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::Config;
use crate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY};
use crate::signer::Signer;
use crate::upstream::Upstream;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const DELETE: &str = "group_open_http_svc/delete_group_attr";

fn coalescer() -> (Arc<Coalescer>, Pacer, Metrics) {
    let config = Config::from_toml(&format!(
        "[tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\
         base_url = \"http://127.0.0.1:9\"\n[limits]\ncoalesce = true\n"
    ))
    .expect("config");
    let apis: Vec<Arc<str>> = config.allow.iter().map(|a| Arc::from(a.as_str())).collect();
    let metrics = Metrics::new();
    let pacer = Pacer::new(&config.limits, DEMO_SDKAPPID, &apis, metrics.clone());
    let signer = Arc::new(Signer::new(&config.tencent).expect("signer"));
    let upstream = Upstream::new(&config).expect("upstream");
    let forwarder = Forwarder::new(
        signer,
        upstream,
        pacer.clone(),
        &config,
        &apis,
        metrics.clone(),
    );
    let coalescer = Coalescer::new(pacer.clone(), Arc::new(forwarder), metrics.clone());
    (Arc::new(coalescer), pacer, metrics)
}

fn write(key: &str) -> Write {
    Write {
        api: Arc::from(MODIFY),
        group: Arc::from("@TGS#aHOT"),
        attrs: vec![(key.to_string(), "v".to_string())],
        deadline: Instant::now() + Duration::from_secs(30),
        request_id: key.to_string(),
    }
}

/// Starts a modify and waits until the coalescer has taken it (joined or opened).
async fn accept(coalescer: &Arc<Coalescer>, metrics: &Metrics, key: &str) {
    let admitted = metrics.admitted.with_label_values(&[MODIFY]);
    let before = admitted.get();
    let (coalescer, write) = (coalescer.clone(), write(key));
    tokio::spawn(async move { coalescer.modify(write, 64).await });
    while admitted.get() == before {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn consecutive_modifies_share_one_place_and_a_barrier_starts_the_next() {
    let (coalescer, pacer, metrics) = coalescer();
    let (api, group) = (Arc::<str>::from(MODIFY), Arc::<str>::from("@TGS#aHOT"));
    let far = Instant::now() + Duration::from_secs(30);
    // A write in flight holds the group: everything below waits behind it.
    let _held = pacer.acquire(&api, Some(&group), far).await.expect("held");
    accept(&coalescer, &metrics, "a").await;
    accept(&coalescer, &metrics, "b").await;
    accept(&coalescer, &metrics, "c").await;
    assert_eq!(pacer.queued(), 1, "three modifies, one batch in line");
    let delete = coalescer
        .barrier(&Arc::from(DELETE), &group, far)
        .expect("admitted");
    assert_eq!(pacer.queued(), 2, "the delete queues behind the batch");
    accept(&coalescer, &metrics, "a").await;
    accept(&coalescer, &metrics, "d").await;
    assert_eq!(
        pacer.queued(),
        3,
        "nothing merges across the delete: the next modifies open a new batch"
    );
    // The delete's caller gives up its place; then a reload closes the open batch.
    drop(delete);
    coalescer.close_all();
    accept(&coalescer, &metrics, "e").await;
    assert_eq!(
        pacer.queued(),
        3,
        "two batches, and a new one after the reload"
    );
}
