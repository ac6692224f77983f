//! Jobs and acknowledgements: `queue.wait_replicas` with a real Redis replica, a job read with
//! the writes' tokens (and refused without), an unknown job, and an async write past
//! `queue.max_age_secs`.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use timgate::emulator::{DEMO_SDKAPPID, EmulatorConfig};
use timgate::queue::keys::Keys;
use tokio::time::Instant;

use crate::calls::{durable, durable_with, job_location, until, write};
use crate::support::redis::{Redis, free_port};
use crate::support::{Client, Gateway, base_toml, emulator_apart};

const MODIFY: &str = "group_open_http_svc/modify_group_attr";

async fn redis_conn(redis: &Redis) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("url");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("redis")
}

/// POSTs an async write with `token`, when given.
async fn post(
    client: &Client,
    url: &str,
    body: String,
    token: Option<&str>,
) -> crate::support::Answer {
    let mut request = Request::post(url).header("prefer", "respond-async");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    client.send(request).await
}

async fn get(client: &Client, url: &str, token: Option<&str>) -> crate::support::Answer {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    client
        .send(request.body(Full::new(Bytes::new())).expect("request"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_replicas_says_how_many_replicas_had_the_write() {
    let Some(master) = Redis::start() else {
        return;
    };
    let of = ["--replicaof", "127.0.0.1", &master.port.to_string()].map(String::from);
    // In a directory of its own: a replica writes the master's snapshot where it runs.
    let dir = tempfile::tempdir().expect("dir");
    let Some(mut replica) = Redis::start_with("redis-server", free_port(), &of, Some(dir.path()))
    else {
        return;
    };
    let mut conn = redis_conn(&master).await;
    let started = Instant::now();
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        if info.contains("connected_slaves:1") && info.contains("state=online") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let emulator = emulator_apart(EmulatorConfig::demo());
    // WAIT answers as soon as the replica has the write: a long timeout costs nothing here, and
    // a loaded machine's slow replica still counts.
    let layer = durable_with(
        &master,
        "redis_timeout_ms = 5000\n",
        "wait_replicas = 1\nwait_timeout_ms = 4000\n",
    );
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &layer]).await;
    let client = Client::new();
    let answer = post(
        &client,
        &gateway.url(MODIFY),
        write("@TGS#wait", "k", "a"),
        None,
    )
    .await;
    job_location(&answer);
    assert_eq!(answer.headers["x-timgate-replicas"], "1");
    gateway.shutdown().await;
    // Without its replica the write is still acknowledged, by the master alone, and says so
    // (after a short timeout: no replica can count, however long WAIT waits).
    replica.stop();
    let layer = durable(&master, "wait_replicas = 1\nwait_timeout_ms = 100\n");
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &layer]).await;
    let answer = post(
        &client,
        &gateway.url(MODIFY),
        write("@TGS#wait", "k", "b"),
        None,
    )
    .await;
    job_location(&answer);
    assert_eq!(answer.headers["x-timgate-replicas"], "0");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_read_with_the_writes_tokens_and_an_old_write_fails_with_a_reason() {
    let Some(redis) = Redis::start() else {
        return;
    };
    // Another owner holds every partition, so that nothing is sent until the leases are freed.
    let keys = Keys::new("timgate", DEMO_SDKAPPID);
    let mut conn = redis_conn(&redis).await;
    for partition in 0..16 {
        let _: () = redis::cmd("SET")
            .arg(keys.lease(partition))
            .arg("another-replica")
            .arg("PX")
            .arg(60_000)
            .query_async(&mut conn)
            .await
            .expect("SET");
    }
    let emulator = emulator_apart(EmulatorConfig::demo());
    let layer = format!(
        "{}[server]\nauth_tokens = [\"t0ken\"]\n",
        durable(&redis, "max_age_secs = 1\n")
    );
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &layer]).await;
    let client = Client::new();
    let url = gateway.url(MODIFY);
    let refused = post(&client, &url, write("@TGS#old", "k", "v"), None).await;
    assert_eq!(
        (refused.status.as_u16(), refused.reason()),
        (401, Some("unauthorized"))
    );
    let answer = post(&client, &url, write("@TGS#old", "k", "v"), Some("t0ken")).await;
    let location = job_location(&answer);
    let job_url = format!("http://{}{location}", gateway.addr);
    let unauthorized = get(&client, &job_url, None).await;
    assert_eq!(unauthorized.status, 401);
    let job = get(&client, &job_url, Some("t0ken")).await;
    assert_eq!(
        (job.status.as_u16(), &job.json()["State"]),
        (200, &"queued".into())
    );
    let unknown = format!("http://{}/timgate/jobs/3-1-0", gateway.addr);
    let unknown = get(&client, &unknown, Some("t0ken")).await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.reason()),
        (404, Some("job_not_found"))
    );
    let garbage = format!("http://{}/timgate/jobs/..%2f", gateway.addr);
    assert_eq!(get(&client, &garbage, Some("t0ken")).await.status, 404);
    // Past its second, the leases freed: the gateway takes the partitions, and the write fails
    // without being sent.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for partition in 0..16 {
        let _: () = redis::cmd("DEL")
            .arg(keys.lease(partition))
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
    let started = Instant::now();
    let ended = loop {
        let job = get(&client, &job_url, Some("t0ken")).await.json();
        if job["State"] != "queued" && job["State"] != "sending" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended["State"], "failed", "{ended}");
    assert_eq!(ended["Answer"]["ErrorCode"], 900504, "{ended}");
    assert_eq!(emulator.state.received(), 0, "an expired write is not sent");
    let failed = gateway
        .metrics
        .queue
        .async_results
        .with_label_values(&["failed"]);
    // Counted by the owner once Redis has the answer, so a reader may see the answer first.
    until("the failed result counted", Duration::from_secs(30), || {
        failed.get() == 1
    })
    .await;
    assert_eq!(failed.get(), 1);
    gateway.shutdown().await;
}
