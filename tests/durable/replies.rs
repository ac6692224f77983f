//! A read whose reply was lost: Redis ran an owner's XREADGROUP (the entry is now pending under
//! that owner) and the connection broke before the reply arrived, as when Redis is killed right
//! after an append. The owner still holds its lease, so nothing claims the entry; it must find it
//! among its own pending entries and send it.

use timgate::emulator::{DEMO_SDKAPPID, EmulatorConfig};
use timgate::queue::keys::{CONSUMERS, Keys, partition_of};
use timgate::queue::{Entry, JobId, unix_ms};

use crate::calls::{all_done, arrived, durable, job_location, post_async, write};
use crate::support::redis::Redis;
use crate::support::{Client, Gateway, base_toml, emulator_apart};

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const GROUP: &str = "@TGS#lostreply";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_read_whose_reply_was_lost_is_still_sent() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let emulator = emulator_apart(EmulatorConfig::demo());
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &durable(&redis, "")]).await;
    let client = Client::new();
    // A first write makes the gateway the partition's owner and a consumer of its stream.
    let first =
        job_location(&post_async(&client, &gateway.url(MODIFY), write(GROUP, "k", "first")).await);
    all_done(&client, gateway.addr, std::slice::from_ref(&first)).await;

    let partition = partition_of(GROUP, 16);
    let keys = Keys::new("timgate", DEMO_SDKAPPID);
    let redis_client = redis::Client::open(redis.url()).expect("url");
    let mut conn = redis_client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let owner: String = redis::cmd("GET")
        .arg(keys.lease(partition))
        .query_async(&mut conn)
        .await
        .expect("the lease");
    // Appended and read as the owner in one transaction (the owner cannot read it first), the
    // reply going to this connection instead of the owner's: what a lost reply leaves behind.
    let entry = Entry {
        job: JobId {
            partition,
            entry: String::new(),
        },
        api: MODIFY.to_string(),
        group: GROUP.to_string(),
        body: write(GROUP, "k", "lost").into(),
        request_id: "lost-reply".to_string(),
        deadline_ms: unix_ms() + 60_000,
        asynchronous: true,
    };
    let mut append = redis::cmd("XADD");
    append.arg(keys.stream(partition)).arg("*");
    for (field, value) in entry.fields() {
        append.arg(field).arg(value);
    }
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(CONSUMERS)
        .arg(&owner)
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(keys.stream(partition))
        .arg(">");
    let (id, _read): (String, redis::Value) = redis::pipe()
        .atomic()
        .add_command(append)
        .cmd("HINCRBY")
        .arg(keys.counts(partition))
        .arg(GROUP)
        .arg(1)
        .ignore()
        .cmd("HINCRBY")
        .arg(keys.counts(partition))
        .arg("")
        .arg(1)
        .ignore()
        .add_command(read)
        .query_async(&mut conn)
        .await
        .expect("append and read");
    // The owner's connections break, as when the reply was lost.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    let lost = format!("/timgate/jobs/{partition}-{id}");
    all_done(&client, gateway.addr, std::slice::from_ref(&lost)).await;
    assert_eq!(
        arrived(&emulator.state.records(), GROUP, "k"),
        ["first", "lost"]
    );
    gateway.shutdown().await;
}
