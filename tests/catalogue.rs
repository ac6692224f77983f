//! Each API paced by its own documented limit, end to end against the emulator, which enforces
//! the same catalogue: `batchsendmsg`'s recipients a minute, a limit raised in `[limits.api]`,
//! and a reload that changes one.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Gateway, base_toml, emulator};
use timgate::emulator::{Emulator, EmulatorConfig};
use tokio::time::Instant;

const BATCH: &str = "openim/batchsendmsg";
const CREATE: &str = "group_open_http_svc/create_group";

/// The demo emulator and a gateway in front of it allowing `apis`, with `extra` TOML.
async fn start(apis: &[&str], extra: &str) -> (Emulator, Gateway) {
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, None), &allow(apis), extra]).await;
    (emulator, gateway)
}

fn allow(apis: &[&str]) -> String {
    let names: Vec<String> = apis.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[apis]\nallow = [{}]\n", names.join(", "))
}

/// A batch message to 500 accounts.
fn batch(n: usize) -> String {
    batch_to(n, 500)
}

/// A batch message to `accounts` accounts.
fn batch_to(n: usize, accounts: usize) -> String {
    let to: Vec<String> = (0..accounts).map(|i| format!("user{n}_{i}")).collect();
    json!({"From_Account": "administrator", "To_Account": to, "MsgRandom": n,
           "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]})
    .to_string()
}

/// Waits for every call, each of which must be answered OK.
async fn all_ok(calls: Vec<tokio::task::JoinHandle<support::Answer>>) {
    for call in calls {
        let answer = call.await.expect("caller");
        let got = (answer.status.as_u16(), answer.code());
        assert_eq!(got, (200, 0), "{:?}", answer.json());
    }
}

/// Asserts that each of `at` came at least `gap` after the one before.
/// Asserts that `at` came at least `gap` apart on average: the emulator stamps a call when its
/// task runs, which a loaded machine delays by milliseconds now and then (one pair of a lane
/// slowed to 51 ms was once stamped 47 ms apart), so single gaps measure the machine; the mean
/// over the run measures the pacing.
fn assert_spaced(at: &[Instant], gap: Duration) {
    let (Some(first), Some(last)) = (at.first(), at.last()) else {
        return;
    };
    let gaps = (at.len() - 1).max(1) as u32;
    let mean = (*last - *first) / gaps;
    assert!(mean >= gap, "{mean:?} apart on average over {gaps} gaps");
}

/// How many accounts the emulator saw named in the busiest minute (read from each call's
/// `To_Account`), and the calls it refused for a limit.
fn busiest_minute(emulator: &Emulator) -> (usize, u64) {
    let calls: Vec<(Instant, usize)> = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api == BATCH)
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
            (r.at, body["To_Account"].as_array().map_or(0, Vec::len))
        })
        .collect();
    let minute = Duration::from_secs(60);
    let busiest = calls
        .iter()
        .map(|&(from, _)| {
            let within = calls
                .iter()
                .filter(|(at, _)| *at >= from && *at - from < minute);
            within.map(|(_, n)| n).sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    (busiest, emulator.state.refused(60007))
}

#[tokio::test]
async fn forty_batchsendmsg_calls_of_500_never_pass_12000_recipients_a_minute() {
    let (emulator, gateway) = start(&[BATCH], "[limits]\nmax_wait_ms = 6000\n").await;
    let client = Client::new();
    let started = Instant::now();
    let calls = (0..40).map(|n| {
        let (client, url) = (client.clone(), gateway.url(BATCH));
        tokio::spawn(async move {
            let answer = client.post(&url, batch(n)).await;
            (answer, started.elapsed())
        })
    });
    let mut ok = 0;
    for call in calls.collect::<Vec<_>>() {
        let (answer, took) = call.await.expect("caller");
        match answer.status.as_u16() {
            200 => {
                assert_eq!(answer.code(), 0, "{:?}", answer.json());
                ok += 1;
            }
            429 => {
                // Refused at once: its deadline could not be met, and it was never queued.
                assert!(answer.headers.contains_key("retry-after"));
                assert!(took < Duration::from_secs(3), "refused after {took:?}");
            }
            other => panic!("{other}: {:?}", answer.json()),
        }
    }
    // Calls of 500 spaced 2.6 s apart (500 of 11,501 units a minute): within a 6 s deadline,
    // the first three.
    assert!((2..=3).contains(&ok), "{ok} sent");
    let (busiest, refused) = busiest_minute(&emulator);
    assert!(busiest <= 12_000, "{busiest} recipients in a minute");
    assert_eq!(refused, 0, "Tencent refused none");
    let sent = arrivals(&emulator, BATCH, 0);
    assert!(sent.len() >= 2, "{} sent", sent.len());
    assert_spaced(&sent, Duration::from_millis(2400));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_batchsendmsg_call_costs_its_recipients_so_small_calls_are_not_paced_as_500() {
    // 60 calls of 20 accounts: 1,200 recipients, a tenth of the minute's 12,000. Each takes 20
    // recipients' spacing (about 104 ms), so all leave within about 6 s, not one per 2.5 s.
    let (emulator, gateway) = start(&[BATCH], "[limits]\nmax_wait_ms = 20000\n").await;
    let client = Client::new();
    let calls = (0..60)
        .map(|n| {
            let (client, url) = (client.clone(), gateway.url(BATCH));
            tokio::spawn(async move { client.post(&url, batch_to(n, 20)).await })
        })
        .collect();
    all_ok(calls).await;
    let (busiest, refused) = busiest_minute(&emulator);
    assert_eq!(busiest, 1_200, "every recipient sent once");
    assert_eq!(refused, 0, "Tencent refused none");
    // Spaced by their recipients: 20 of 12,000 a minute, less the last call's allowance.
    let sent = arrivals(&emulator, BATCH, 0);
    assert_eq!(sent.len(), 60);
    assert_spaced(&sent, Duration::from_millis(100));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_limit_in_limits_api_replaces_the_catalogues_and_a_reload_changes_it() {
    let emulator = emulator(EmulatorConfig::demo(), None).await;
    let base = base_toml(emulator.addr, None);
    let allow = allow(&[CREATE]);
    let gateway = Gateway::start(&[
        &base,
        &allow,
        "[limits.api]\n\"group_open_http_svc/create_group\" = 4\n",
    ])
    .await;
    let client = Client::new();
    let create = |n: usize| json!({"Type": "Public", "Name": format!("g{n}")}).to_string();
    let burst = |from: usize| {
        let handles: Vec<_> = (from..from + 8)
            .map(|n| {
                let (client, url, body) = (client.clone(), gateway.url(CREATE), create(n));
                tokio::spawn(async move { client.post(&url, body).await })
            })
            .collect();
        async move {
            for handle in handles {
                let answer = handle.await.expect("caller");
                assert_eq!((answer.status.as_u16(), answer.code()), (200, 0));
            }
        }
    };
    burst(0).await;
    let peak = |emulator: &Emulator, after: usize| {
        let at: Vec<Instant> = emulator
            .state
            .records()
            .iter()
            .skip(after)
            .map(|r| r.at)
            .collect();
        support::max_in_window(at, Duration::from_secs(1))
    };
    assert!(
        peak(&emulator, 0) <= 4,
        "{} in a second",
        peak(&emulator, 0)
    );
    // Raised to 8 a second: the next eight leave within about one second.
    let raised = format!("{base}{allow}[limits.api]\n\"group_open_http_svc/create_group\" = 8\n");
    let config = timgate::config::Config::from_toml(&raised).expect("valid");
    assert_eq!(
        gateway.reloader.apply(config),
        Vec::<&str>::new(),
        "reloaded at once"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    burst(8).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(peak(&emulator, 8) <= 8);
    gateway.shutdown().await;
}

const MESSAGE: &str = "group_open_http_svc/send_group_msg";
const MODIFY: &str = "group_open_http_svc/modify_group_attr";

fn message(group: &str, n: usize) -> String {
    json!({"GroupId": group, "Random": n,
           "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": format!("m{n}")}}]})
    .to_string()
}

/// The arrival instants of `api`'s calls that the emulator answered `code`.
fn arrivals(emulator: &Emulator, api: &str, code: i64) -> Vec<Instant> {
    let records = emulator.state.records();
    records
        .iter()
        .filter(|r| r.api == api && r.code == code)
        .map(|r| r.at)
        .collect()
}

#[tokio::test]
async fn a_groups_messages_leave_at_40_a_second_in_their_own_lane_beside_its_writes() {
    let (emulator, gateway) = start(&[MESSAGE, MODIFY], "").await;
    let client = Client::new();
    let calls: Vec<_> = (0..60)
        .map(|n| {
            let (client, url) = (client.clone(), gateway.url(MESSAGE));
            tokio::spawn(async move { client.post(&url, message("room", n)).await })
        })
        .chain((0..3).map(|n| {
            let (client, url) = (client.clone(), gateway.url(MODIFY));
            let body =
                json!({"GroupId": "room", "GroupAttr": [{"key": "k", "value": n.to_string()}]});
            tokio::spawn(async move { client.post(&url, body.to_string()).await })
        }))
        .collect();
    let started = Instant::now();
    all_ok(calls).await;
    assert_eq!(
        emulator.state.limit_refusals(),
        0,
        "no 10023, 10049 or 60007"
    );
    let sent = arrivals(&emulator, MESSAGE, 0);
    assert_eq!(sent.len(), 60);
    let busiest = support::max_in_window(sent.clone(), Duration::from_secs(1));
    assert!(busiest <= 40, "{busiest} messages in a second");
    // The writes did not wait behind the messages: three writes take 0.4 s of their own lane,
    // while 60 messages take 1.5 s of theirs.
    let writes = arrivals(&emulator, MODIFY, 0);
    assert!(
        writes
            .iter()
            .all(|&t| t - started < Duration::from_millis(1000)),
        "{:?}",
        writes.iter().map(|&t| t - started).collect::<Vec<_>>()
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_10023_slows_the_groups_message_lane_and_the_message_is_sent_again() {
    let (emulator, gateway) = start(&[MESSAGE], "").await;
    emulator
        .state
        .inject("room", timgate::emulator::Fault::Code(10023), 1);
    let client = Client::new();
    let calls: Vec<_> = (0..8)
        .map(|n| {
            let (client, url) = (client.clone(), gateway.url(MESSAGE));
            tokio::spawn(async move { client.post(&url, message("room", n)).await })
        })
        .collect();
    all_ok(calls).await;
    let throttled = gateway
        .metrics
        .throttles
        .with_label_values(&["group"])
        .get();
    assert_eq!(throttled, 1, "the group's lane was slowed once");
    // Spaced 25.5 ms at 40 a second; slowed, at least twice that.
    let sent = arrivals(&emulator, MESSAGE, 0);
    assert_eq!(sent.len(), 8, "the refused message was sent again");
    // Unslowed they would leave 25.5 ms apart.
    assert_spaced(&sent, Duration::from_millis(45));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_community_group_refuses_clear_with_10007_and_an_unknown_type_is_refused() {
    const CLEAR: &str = "group_open_http_svc/clear_group_attr";
    let (emulator, gateway) = start(&[CREATE, MODIFY, CLEAR], "").await;
    let client = Client::new();
    for (kind, group) in [
        ("Community", "@TGS#_community"),
        ("AVChatRoom", "@TGS#live"),
    ] {
        let body = json!({"Type": kind, "Name": kind, "GroupId": group}).to_string();
        let answer = client.post(&gateway.url(CREATE), body).await;
        assert_eq!(answer.code(), 0, "{:?}", answer.json());
        let write = json!({"GroupId": group, "GroupAttr": [{"key": "k", "value": "v"}]});
        let answer = client.post(&gateway.url(MODIFY), write.to_string()).await;
        assert_eq!(answer.code(), 0, "every type takes a modify");
        let clear = json!({"GroupId": group}).to_string();
        let answer = client.post(&gateway.url(CLEAR), clear).await;
        let want = if kind == "Community" { 10007 } else { 0 };
        assert_eq!(answer.code(), want, "{kind}: {:?}", answer.json());
    }
    // Final: the 10007 was sent once.
    let clears = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api == CLEAR)
        .count();
    assert_eq!(clears, 2);
    let bogus = json!({"Type": "Bogus", "Name": "x"}).to_string();
    assert_eq!(client.post(&gateway.url(CREATE), bogus).await.code(), 10004);
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_apps_total_over_every_api_holds_app_total_per_second() {
    let (emulator, gateway) =
        start(&[CREATE, MODIFY], "[limits]\napp_total_per_second = 40\n").await;
    let client = Client::new();
    // 50 group creations and 50 writes to 50 groups: each API alone is well within 200 a second.
    let calls: Vec<_> = (0..100)
        .map(|n| {
            let (client, api) = (client.clone(), if n % 2 == 0 { CREATE } else { MODIFY });
            let url = gateway.url(api);
            let body = match api {
                CREATE => json!({"Type": "Public", "Name": format!("g{n}")}),
                _ => json!({"GroupId": format!("g{n}"), "GroupAttr": [{"key": "k", "value": "v"}]}),
            };
            tokio::spawn(async move { client.post(&url, body.to_string()).await })
        })
        .collect();
    all_ok(calls).await;
    // Without the cap, all 100 arrived within one second.
    let at: Vec<Instant> = emulator.state.records().iter().map(|r| r.at).collect();
    let busiest = support::max_in_window(at, Duration::from_secs(1));
    assert!(busiest <= 40, "{busiest} calls in a second over both APIs");
    gateway.shutdown().await;
}

const PUSH: &str = "all_member_push/im_push";

fn push(n: usize) -> String {
    json!({"From_Account": "administrator", "MsgRandom": n,
           "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "news"}}]})
    .to_string()
}

#[tokio::test]
async fn a_push_past_its_daily_cap_is_refused_at_once_and_never_sent() {
    let (emulator, gateway) = start(
        &[PUSH],
        "[limits.api_daily]\n\"all_member_push/im_push\" = 3\n",
    )
    .await;
    let client = Client::new();
    let (mut ok, mut capped) = (0, 0);
    for n in 0..5 {
        let started = Instant::now();
        let answer = client.post(&gateway.url(PUSH), push(n)).await;
        match (answer.status.as_u16(), answer.reason()) {
            (200, _) => ok += 1,
            (429, Some("daily_cap")) => {
                capped += 1;
                assert!(started.elapsed() < Duration::from_millis(500), "at once");
                let retry: u64 = answer.headers["retry-after"]
                    .to_str()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(0);
                assert!(
                    retry > 23 * 3600,
                    "retry after {retry} s: when the first leaves the day"
                );
            }
            other => panic!("{other:?}: {:?}", answer.json()),
        }
    }
    assert_eq!((ok, capped), (3, 2));
    assert_eq!(emulator.state.received(), 3, "the capped pushes never left");
    // One a second: the three pushes that went were spaced by the API's own rate.
    assert_spaced(&arrivals(&emulator, PUSH, 0), Duration::from_millis(950));
    gateway.shutdown().await;
}
