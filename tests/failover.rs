//! Tencent's backup domain: while the main domain cannot be reached, attempts go to the backup
//! (nothing was sent to the main one, so any API may go), and back once the main one answers.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Gateway, emulator};
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use tokio::net::TcpListener;
use tokio::time::Instant;

const CREATE: &str = "group_open_http_svc/create_group";

#[tokio::test]
async fn a_main_domain_that_refuses_connections_moves_to_the_backup_and_back() {
    // A port with nothing behind it: connections to it are refused.
    let main = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let main_addr = main.local_addr().expect("address");
    drop(main);
    let backup = emulator(EmulatorConfig::demo(), None).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\
         base_url = \"http://{main_addr}\"\nbackup_url = \"http://{}\"\n\
         [apis]\nallow = [\"{CREATE}\"]\n",
        backup.addr
    );
    let gateway = Gateway::start(&[&toml]).await;
    let client = Client::new();
    let create = |name: &str| json!({"Type": "Public", "Name": name}).to_string();
    // create_group is never sent twice, yet it may go to the backup: the main one got nothing.
    let answer = client.post(&gateway.url(CREATE), create("a")).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (200, 0));
    assert_eq!(backup.state.received(), 1);
    assert_eq!(gateway.metrics.upstream_backup.get(), 1);
    // The main domain comes back: within a few probes, attempts go to it again.
    let listener = TcpListener::bind(main_addr)
        .await
        .expect("the main port again");
    let main = Emulator::spawn(EmulatorConfig::demo(), listener, None);
    let waited = Instant::now();
    while gateway.metrics.upstream_backup.get() == 1 {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "still on the backup"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = client.post(&gateway.url(CREATE), create("b")).await;
    assert_eq!((answer.status.as_u16(), answer.code()), (200, 0));
    assert_eq!((main.state.received(), backup.state.received()), (1, 1));
    gateway.shutdown().await;
}
