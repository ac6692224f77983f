//! The durable queue (`queue.durable`) over a real redis-server and real gateways: writes accepted
//! by any replica leave in accept order, paced; a replica killed with SIGKILL loses nothing; the
//! owner coalesces across replicas; a Redis restart under AOF `always` loses nothing acknowledged;
//! a durable gateway without Redis refuses writes at once.

mod binary;
#[path = "durable/calls.rs"]
mod calls;
#[path = "durable/jobs.rs"]
mod jobs;
#[path = "durable/replies.rs"]
mod replies;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use calls::{
    all_done, arrived, durable, durable_with, job_location, post_async, until, until_metric, write,
    writes_to,
};
use serde_json::json;
use support::redis::{Redis, free_port};
use support::{Client, Gateway, base_toml, emulator_apart};
use timgate::emulator::EmulatorConfig;
use tokio::time::Instant;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const GET: &str = "group_open_attr_http_svc/get_group_attr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_three_replicas_leave_in_accept_order_paced() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let layer = durable(&redis, "");
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Gateway::start(&[&base_toml(emulator.addr, None), &layer]).await);
    }
    let client = Client::new();
    let mut locations = Vec::new();
    for i in 0..30 {
        let replica = &replicas[i % 3];
        let answer = post_async(
            &client,
            &replica.url(MODIFY),
            write("@TGS#order", "seq", &format!("v{i:02}")),
        )
        .await;
        locations.push(job_location(&answer));
    }
    // Any replica reads any job.
    all_done(&client, replicas[1].addr, &locations).await;
    let records = emulator.state.records();
    let expected: Vec<String> = (0..30).map(|i| format!("v{i:02}")).collect();
    assert_eq!(arrived(&records, "@TGS#order", "seq"), expected);
    let writes = writes_to(&records, "@TGS#order");
    let most = support::max_in_window(
        writes.iter().map(|r| r.at).collect(),
        Duration::from_secs(1),
    );
    assert!(most <= 5, "{most} writes in a second");
    assert_eq!(emulator.state.limit_refusals(), 0);
    let accepted: u64 = replicas
        .iter()
        .map(|g| g.metrics.queue.accepted.with_label_values(&["async"]).get())
        .sum();
    assert_eq!(accepted, 30);
    for replica in replicas {
        replica.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_loses_nothing_it_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let aof = ["--appendonly", "yes"].map(String::from);
    let Some(redis) = Redis::start_with("redis-server", free_port(), &aof, Some(dir.path())) else {
        return;
    };
    // Answers that take 150 ms keep each group's write in flight most of the time, so that the
    // kill usually leaves some that reached Tencent unanswered: B sends those again.
    let emulator = emulator_apart(EmulatorConfig {
        latency: Duration::from_millis(150),
        ..EmulatorConfig::demo()
    });
    let (proxy, admin) = (binary::free_port(), binary::free_port());
    let mut env = binary::gateway_env(emulator.addr, proxy, admin);
    env.extend([
        ("TIMGATE__LIMITS__BACKEND", "redis".to_string()),
        ("TIMGATE__LIMITS__REDIS_URL", redis.url()),
        ("TIMGATE__QUEUE__DURABLE", "true".to_string()),
        ("TIMGATE__QUEUE__LEASE_MS", "1000".to_string()),
    ]);
    let mut a = binary::spawn(None, &[], &env);
    // A takes every partition before B starts, so that every write below is A's to send.
    until_metric(admin, "timgate_queue_partitions_owned 16").await;
    let b = Gateway::start(&[&base_toml(emulator.addr, None), &durable(&redis, "")]).await;
    let client = Client::new();
    let groups: Vec<String> = (0..5).map(|g| format!("@TGS#kill{g}")).collect();
    let mut locations = Vec::new();
    for i in 0..100 {
        let answer = post_async(
            &client,
            &format!("http://{proxy}/v4/{MODIFY}"),
            write(&groups[i % 5], "seq", &format!("v{:02}", i / 5)),
        )
        .await;
        locations.push(job_location(&answer));
    }
    // Some of A's writes have left (each group sends 5 a second), most are still queued.
    until("A has sent some", Duration::from_secs(30), || {
        emulator.state.received() >= 10
    })
    .await;
    assert_eq!(
        b.metrics.queue.owned.get(),
        0,
        "B owns nothing while A lives"
    );
    a.0.kill().expect("SIGKILL");
    let _ = a.0.wait();
    let sent_by_a = emulator.state.received();
    assert!(sent_by_a < 100, "A sent everything before it was killed");
    let last = locations.last().expect("a job").clone();
    all_done(&client, b.addr, std::slice::from_ref(&last)).await;
    all_done(&client, b.addr, &locations).await;
    // Partitions without writes may be taken a renewal later than those with.
    until("B took every partition", Duration::from_secs(30), || {
        b.metrics.queue.owned.get() == 16
    })
    .await;
    let records = emulator.state.records();
    let expected: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
    for group in &groups {
        assert_eq!(arrived(&records, group, "seq"), expected, "{group}");
    }
    // Each group had one write at most in flight: at most one repeat per group, each counted
    // (the count may include a write A had asked its slot for and not yet sent).
    let redelivered = b.metrics.queue.redelivered.get();
    eprintln!(
        "A sent {sent_by_a} before SIGKILL; B counted {redelivered} redelivered; {} calls in all",
        records.len()
    );
    assert!(
        records.len() - 100 <= redelivered as usize,
        "a repeat not counted"
    );
    assert!(redelivered <= 5, "{redelivered} redelivered");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_merges_a_hot_groups_writes_from_three_replicas() {
    let Some(redis) = Redis::start() else {
        return;
    };
    // Each call takes 400 ms, so that writes queue behind the one in flight and merge.
    let emulator = emulator_apart(EmulatorConfig {
        latency: Duration::from_millis(400),
        ..EmulatorConfig::demo()
    });
    // Room for all 90 in the group's queue (64 by default), so that none is refused.
    let layer = durable_with(&redis, "coalesce = true\nmax_queue_per_group = 100\n", "");
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Gateway::start(&[&base_toml(emulator.addr, None), &layer]).await);
    }
    let client = Client::new();
    let group = "@TGS#hot";
    let mut expected = BTreeMap::new();
    let mut locations = Vec::new();
    let mut waiting = Vec::new();
    for i in 0..90 {
        let replica = &replicas[i % 3];
        let (key, value) = (format!("k{}", i % 7), format!("v{i:02}"));
        expected.insert(key.clone(), value.clone());
        let body = write(group, &key, &value);
        if i % 2 == 0 {
            locations.push(job_location(
                &post_async(&client, &replica.url(MODIFY), body).await,
            ));
        } else {
            // A caller that waits for Tencent's answer; the next write is sent once this one is
            // in the stream, so that the accept order is the loop's.
            let sync = &replica.metrics.queue.accepted.with_label_values(&["sync"]);
            let before = sync.get();
            let (client, url) = (client.clone(), replica.url(MODIFY));
            waiting.push(tokio::spawn(async move { client.post(&url, body).await }));
            until(
                "the sync write is accepted",
                Duration::from_secs(30),
                || sync.get() > before,
            )
            .await;
        }
    }
    for caller in waiting {
        let answer = caller.await.expect("caller");
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (200, 0),
            "{answer:?}"
        );
    }
    all_done(&client, replicas[2].addr, &locations).await;
    let records = emulator.state.records();
    let calls = writes_to(&records, group).len();
    assert!(calls <= 15, "{calls} upstream calls for 90 writes");
    let final_attrs = emulator.state.group(group).expect("the group");
    assert_eq!(final_attrs, expected);
    let merged: u64 = replicas
        .iter()
        .map(|g| g.metrics.coalesced_requests.get())
        .sum();
    assert!(merged > 0, "nothing merged");
    eprintln!("90 writes through 3 replicas: {calls} upstream calls");
    for replica in replicas {
        replica.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_aof_always_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("dir");
    let aof = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from);
    let Some(mut redis) = Redis::start_with("redis-server", free_port(), &aof, Some(dir.path()))
    else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &durable(&redis, "")]).await;
    let client = Client::new();
    let groups = ["@TGS#aof0", "@TGS#aof1"];
    let mut locations = Vec::new();
    for i in 0..40 {
        let body = write(groups[i % 2], "seq", &format!("v{:02}", i / 2));
        locations.push(job_location(
            &post_async(&client, &gateway.url(MODIFY), body).await,
        ));
    }
    // Killed (SIGKILL) while most writes are queued, and started again on the same files.
    redis.stop();
    let sent_before = emulator.state.received();
    assert!(sent_before < 40, "everything left before the restart");
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.resume().expect("redis-server again");
    all_done(&client, gateway.addr, &locations).await;
    let records = emulator.state.records();
    let expected: Vec<String> = (0..20).map(|i| format!("v{i:02}")).collect();
    for group in groups {
        assert_eq!(arrived(&records, group, "seq"), expected, "{group}");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_gateway_without_redis_refuses_writes_at_once() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let refuse = Gateway::start(&[&base_toml(emulator.addr, None), &durable(&redis, "")]).await;
    let memory = Gateway::start(&[
        &base_toml(emulator.addr, None),
        &durable(&redis, "fallback = \"memory\"\n"),
    ])
    .await;
    let client = Client::new();
    let ok = client
        .post(&refuse.url(MODIFY), write("@TGS#down", "k", "before"))
        .await;
    assert_eq!((ok.status.as_u16(), ok.code()), (200, 0));
    redis.stop();
    let received = emulator.state.received();
    for prefer_async in [false, true] {
        let body = write("@TGS#down", "k", "refused");
        let sent = Instant::now();
        let answer = if prefer_async {
            post_async(&client, &refuse.url(MODIFY), body).await
        } else {
            client.post(&refuse.url(MODIFY), body).await
        };
        // Generous: "at once" is a connection refused, not a timeout of seconds.
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.reason(), Some("queue_unavailable"));
    }
    assert_eq!(emulator.state.received(), received, "nothing was sent");
    assert_eq!(
        refuse
            .metrics
            .queue
            .accepted
            .with_label_values(&["sync"])
            .get()
            + refuse
                .metrics
                .queue
                .accepted
                .with_label_values(&["async"])
                .get(),
        1,
        "only the write before the stop was accepted"
    );
    // Reads keep today's path.
    let read = client
        .post(
            &refuse.url(GET),
            json!({"GroupId": "@TGS#down"}).to_string(),
        )
        .await;
    assert_eq!((read.status.as_u16(), read.code()), (200, 0), "{read:?}");
    assert_eq!(read.json()["GroupAttrAry"][0]["value"], "before");
    // `fallback = "memory"` takes today's path and says so.
    let answer = client
        .post(&memory.url(MODIFY), write("@TGS#down", "k", "memory"))
        .await;
    assert_eq!(
        (answer.status.as_u16(), answer.code()),
        (200, 0),
        "{answer:?}"
    );
    assert_eq!(answer.headers["x-timgate-queue"], "memory");
    assert_eq!(
        memory
            .metrics
            .queue
            .accepted
            .with_label_values(&["memory"])
            .get(),
        1
    );
    assert_eq!(
        emulator.state.group("@TGS#down").expect("group")["k"],
        "memory"
    );
    refuse.shutdown().await;
    memory.shutdown().await;
}
