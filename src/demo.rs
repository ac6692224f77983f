//! `timgate --demo`: the gateway plus an in-process emulator with sample credentials, so that a
//! newcomer can try it with curl at once.

use std::future::Future;
use std::path::Path;

use crate::app::{App, bind};
use crate::config::{Config, ConfigError};
use crate::emulator::{DEMO_IDENTIFIER, DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use crate::error::Error;

/// A sample write the printed curl sends.
pub const SAMPLE_BODY: &str =
    r#"{"GroupId":"@TGS#aDEMO","GroupAttr":[{"key":"song","value":"intro"}]}"#;

/// The demo's own defaults, under the file and the environment: logs as text, for a person
/// reading them in a terminal, unless `[log]` says otherwise.
pub const DEMO_DEFAULTS: &str = "[log]\nformat = \"text\"\n";

/// Loads the configuration as usual (over [`DEMO_DEFAULTS`]), with the demo app's identity in
/// place of `[tencent]`'s and the upstream pointed at the emulator.
pub fn demo_config(file: Option<&Path>, emulator_url: &str) -> Result<Config, ConfigError> {
    let mut raw = Config::load_raw_under(DEMO_DEFAULTS, file)?;
    raw.tencent.sdkappid = DEMO_SDKAPPID;
    raw.tencent.identifier = DEMO_IDENTIFIER.into();
    raw.tencent.secret_key = DEMO_SECRET_KEY.into();
    raw.tencent.secret_key_file = String::new();
    raw.tencent.base_url = emulator_url.into();
    raw.tencent.ca_file = String::new();
    raw.check()
}

/// Starts the emulator and the gateway, prints how to try them, and serves until `shutdown`.
pub async fn run(
    file: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let listener = bind(([127, 0, 0, 1], 0).into(), "demo emulator").await?;
    let emulator = Emulator::spawn(EmulatorConfig::demo(), listener, None);
    let config = demo_config(file, &format!("http://{}", emulator.addr))?;
    // `[log]` as configured: the level and format of the file and environment.
    let log = crate::telemetry::init(config.log.format, &config.log.level);
    let app = App::build(config).await?.with_log_level(log);
    let (addr, admin) = (app.addr(), app.admin_addr());
    println!("timgate demo: a gateway in front of an emulated Tencent IM app");
    println!("  gateway   http://{addr}   (signs as {DEMO_IDENTIFIER} of app {DEMO_SDKAPPID})");
    println!("  admin     http://{admin}/metrics  /healthz  /readyz  /config  /queues  /log-level");
    println!(
        "  emulator  http://{}   (stands in for Tencent; GET /_emulator/stats)",
        emulator.addr
    );
    println!("Try:");
    println!(
        "curl -s -X POST http://{addr}/v4/group_open_http_svc/modify_group_attr -d '{SAMPLE_BODY}'"
    );
    println!(
        "curl -s -X POST http://{addr}/v4/group_open_attr_http_svc/get_group_attr -d '{{\"GroupId\":\"@TGS#aDEMO\"}}'"
    );
    println!("Press Ctrl-C to stop.");
    let result = app.serve(shutdown).await;
    emulator.shutdown().await;
    result
}
