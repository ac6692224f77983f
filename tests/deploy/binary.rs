//! What the manifests must agree with, read from the source and the binary itself: the config keys
//! and defaults (config/default.toml), the listener ports, and the admin paths (src/admin/mod.rs).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::tools;

/// The liveness path the manifests must probe.
pub(crate) const HEALTHZ: &str = "/healthz";
/// The readiness path the manifests must probe.
pub(crate) const READYZ: &str = "/readyz";
/// The path Prometheus must scrape.
pub(crate) const METRICS: &str = "/metrics";

/// Measured: resident memory of an idle gateway (`cargo bench --bench load -- memory`).
pub(crate) const IDLE_RSS_BYTES: u64 = 22_000_000;
/// Measured: extra resident memory per caller waiting over HTTP/1.1, its connection included
/// (4.77-4.93 KiB in the same benchmark).
pub(crate) const HELD_CALLER_BYTES: u64 = 5_100;
/// The share of the memory budget past which new requests are refused (`memory::REFUSE_AT`).
pub(crate) const REFUSE_AT: f64 = timgate::memory::REFUSE_AT;
/// Callers a container's limit must let wait before refusals start.
pub(crate) const MIN_HELD_CALLERS: u64 = 10_000;

/// `server.listen` and `server.admin_listen` as the binary's own loader reads the defaults.
pub(crate) fn default_listeners() -> (SocketAddr, SocketAddr) {
    // The identity keys are required; they do not touch the listeners.
    let config = timgate::config::Config::from_toml("[tencent]\nsdkappid = 1\nsecret_key = \"k\"")
        .expect("the built-in defaults load");
    (config.server.listen, config.server.admin_listen)
}

/// The paths src/admin/mod.rs answers: the string literals that open a match arm.
pub(crate) fn admin_paths() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(tools::repo().join("src/admin/mod.rs")).expect("src/admin/mod.rs");
    source
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("\"/") && line.contains("=>"))
        .filter_map(|line| line[1..].split('"').next())
        .map(str::to_string)
        .collect()
}

/// config/default.toml as JSON: every key with its default.
pub(crate) fn defaults(python: &Path) -> Value {
    let text = std::fs::read_to_string(tools::repo().join("config/default.toml"))
        .expect("config/default.toml");
    tools::toml(python, &text)
}

/// Every `section.key` of a TOML document (as JSON), tables flattened; arrays are values.
pub(crate) fn keys(toml: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Value::Object(sections) = toml {
        for (section, value) in sections {
            match value {
                Value::Object(table) => {
                    if table.is_empty() {
                        out.insert(section.clone());
                    }
                    out.extend(table.keys().map(|key| format!("{section}.{key}")));
                }
                _ => {
                    out.insert(section.clone());
                }
            }
        }
    }
    out
}

/// `TIMGATE__SECTION__KEY` as `section.key`; `None` for a name of another shape.
pub(crate) fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix("TIMGATE__")?;
    let (section, key) = rest.split_once("__")?;
    (!section.is_empty() && !key.is_empty() && !key.contains("__"))
        .then(|| format!("{}.{}", section.to_lowercase(), key.to_lowercase()))
}

/// `check-config` with a config file and environment, as a pod would run it (nothing inherited
/// from the developer's TIMGATE__ variables).
pub(crate) fn check_config(config: &Path, env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timgate"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIMGATE__") || k == "RUST_LOG")
    {
        command.env_remove(key);
    }
    command
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .envs(env.iter().cloned());
    tools::run(&mut command)
}

/// The listeners `check-config` printed (`  listen A  admin B`).
pub(crate) fn printed_listeners(stdout: &str) -> Option<(SocketAddr, SocketAddr)> {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("listen "))?;
    let mut words = line.split_whitespace();
    let listen = words.nth(1)?.parse().ok()?;
    let admin = words.nth(1)?.parse().ok()?;
    Some((listen, admin))
}
