//! The emulator and the proxies under test, started as separate processes on 127.0.0.1: timgate
//! itself, nginx and HAProxy as plain keep-alive reverse proxies (the caller signs), or nothing
//! (the caller talks to the emulator directly, the baseline).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::client::Target;
use super::conf;
use super::procs::{Proc, Workdir, free_addr, get, wait_http};
use timgate::emulator::state::Tally;
use timgate::emulator::{DEMO_IDENTIFIER, DEMO_SDKAPPID, DEMO_SECRET_KEY};
use timgate::tencent::usersig;

const READY: Duration = Duration::from_secs(20);

/// What stands between the caller and the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// timgate: the caller sends plain JSON.
    Timgate,
    /// nginx (Debian's package) as a reverse proxy; the caller signs.
    Nginx,
    /// HAProxy (Debian's package) as a reverse proxy; the caller signs.
    Haproxy,
    /// No proxy: the caller signs and calls the emulator (the baseline for "added latency").
    Direct,
}

impl Proxy {
    /// Its name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Timgate => "timgate",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "haproxy",
            Proxy::Direct => "direct",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Option<Proxy> {
        [Proxy::Timgate, Proxy::Nginx, Proxy::Haproxy, Proxy::Direct]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// How the proxy limits calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limits {
    /// Far above the offered load: pacing out of the way (pass-through runs).
    Open,
    /// Tencent's limits: timgate's defaults; nginx's `limit_req` keyed by the `group` query
    /// parameter (nginx cannot read the body) and by the path. HAProxy is not run this way.
    Tencent,
    /// Tencent's limits with room to hold many callers at once (the memory run): timgate with
    /// long deadlines and a high connection cap, nginx with `limit_req` bursts as deep.
    Hold,
}

/// The emulator, in its own process (`timgate emulate`).
#[derive(Debug)]
pub struct EmulatorProc {
    /// Where it listens (plain HTTP).
    pub addr: SocketAddr,
    /// Held for the emulator's lifetime: dropping it stops the process.
    _proc: Proc,
}

impl EmulatorProc {
    /// Starts it with `latency` added to every answer. With `strict`, Tencent's limits are
    /// enforced (10049, 60007); else they are only counted, so a pass-through run is not refused.
    pub async fn start(
        bin: &Path,
        dir: &Workdir,
        latency: Duration,
        strict: bool,
    ) -> Result<EmulatorProc, String> {
        let addr = free_addr()?;
        let (group, app) = if strict {
            ("5", "200")
        } else {
            ("1000000000", "1000000000")
        };
        let mut command = Command::new(bin);
        command.args([
            "emulate",
            "--listen",
            &addr.to_string(),
            "--max-records",
            "0",
        ]);
        command.args(["--latency-ms", &latency.as_millis().to_string()]);
        command.args(["--group-writes-per-second", group, "--app-per-second", app]);
        let proc = Proc::spawn("emulator", command, &dir.path.join("emulator.log"))?;
        wait_http(addr, "/_emulator/stats", Instant::now(), READY).await?;
        Ok(EmulatorProc { addr, _proc: proc })
    }

    /// Its counters; with `per_group`, every group's tally.
    pub async fn stats(&self, per_group: bool) -> Result<EmulatorStats, String> {
        emulator_stats(self.addr, per_group).await
    }
}

/// The counters of the emulator at `addr`; with `per_group`, every group's tally.
pub async fn emulator_stats(addr: SocketAddr, per_group: bool) -> Result<EmulatorStats, String> {
    let path = if per_group {
        "/_emulator/stats?groups=1"
    } else {
        "/_emulator/stats"
    };
    let (_, body) = get(addr, path).await?;
    serde_json::from_slice(&body).map_err(|e| format!("emulator stats: {e}"))
}

/// The emulator's counters (`GET /_emulator/stats`).
#[derive(Debug, Clone, Deserialize)]
pub struct EmulatorStats {
    /// Calls received.
    pub received: u64,
    /// Calls answered with each non-zero `ErrorCode`.
    pub refused: BTreeMap<String, u64>,
    /// Calls and peaks by API.
    pub apis: BTreeMap<String, Tally>,
    /// The highest writes-per-sliding-second of any group.
    pub group_peak: u32,
    /// Writes and peaks by group, when asked for.
    #[serde(default)]
    pub group_writes: HashMap<String, Tally>,
}

impl EmulatorStats {
    /// Calls refused for crossing a rate limit (10049 per group, 60007 per API).
    pub fn limit_refusals(&self) -> u64 {
        ["10049", "60007"]
            .iter()
            .map(|code| self.refused.get(*code).copied().unwrap_or(0))
            .sum()
    }
}

/// How a proxy is run: under a wrapper (a program and its arguments, such as valgrind's; empty:
/// none), with more arguments after its own (nginx only).
#[derive(Debug, Default, Clone)]
pub struct Under {
    /// The wrapper's program and arguments, before the proxy's.
    pub wrapper: Vec<String>,
    /// Arguments after the proxy's own.
    pub more_args: Vec<String>,
}

/// A proxy under test, ready to take calls.
#[derive(Debug)]
pub struct ProxyProc {
    /// Which one.
    pub kind: Proxy,
    /// Where and how the caller reaches it.
    pub target: Target,
    /// timgate's admin listener (`/metrics`, `/readyz`).
    pub admin: Option<SocketAddr>,
    /// From spawn to ready.
    pub started_in: Duration,
    /// timgate's configuration file (rewritten and reloaded by the memory run).
    pub config: Option<PathBuf>,
    proc: Option<Proc>,
}

impl ProxyProc {
    /// Starts `kind` in front of the emulator at `upstream`; `extra_limits` are more lines for
    /// timgate's `[limits]` table.
    pub async fn start(
        kind: Proxy,
        bin: &Path,
        dir: &Workdir,
        upstream: SocketAddr,
        limits: Limits,
        extra_limits: &str,
    ) -> Result<ProxyProc, String> {
        let plain = Under::default();
        ProxyProc::start_under(kind, bin, dir, upstream, limits, extra_limits, &plain).await
    }

    /// As [`ProxyProc::start`], the proxy run as `under` says.
    pub async fn start_under(
        kind: Proxy,
        bin: &Path,
        dir: &Workdir,
        upstream: SocketAddr,
        limits: Limits,
        extra_limits: &str,
        under: &Under,
    ) -> Result<ProxyProc, String> {
        let more_args = &under.more_args;
        let command = |program: &Path| match under.wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        let usersig = usersig::generate(
            DEMO_SDKAPPID,
            DEMO_IDENTIFIER,
            DEMO_SECRET_KEY,
            timgate::clock::unix_now(),
            86_400,
        );
        let signed = |addr| Target::signed(addr, DEMO_SDKAPPID, DEMO_IDENTIFIER, &usersig);
        let listen = free_addr()?;
        let log = dir.path.join(format!("{}.log", kind.name()));
        let started = Instant::now();
        let (proc, target, admin, config) = match kind {
            Proxy::Direct => (None, signed(upstream), None, None),
            Proxy::Timgate => {
                let admin = free_addr()?;
                let toml = conf::timgate(listen, admin, upstream, limits, extra_limits);
                let path = dir.write("timgate.toml", &toml)?;
                let mut command = command(bin);
                command.arg("--config").arg(&path);
                let proc = Proc::spawn("timgate", command, &log)?;
                wait_ready(admin, started).await?;
                (
                    Some(proc),
                    Target::unsigned(listen),
                    Some(admin),
                    Some(path),
                )
            }
            Proxy::Nginx => {
                let path = dir.write("nginx.conf", &conf::nginx(dir, listen, upstream, limits))?;
                let mut command = command(&which("nginx")?);
                command.arg("-p").arg(&dir.path).arg("-c").arg(&path);
                command.arg("-e").arg(dir.path.join("nginx-error.log"));
                command.args(more_args);
                let proc = Proc::spawn("nginx", command, &log)?;
                wait_http(listen, "/", started, READY).await?;
                let mut target = signed(listen);
                target.group_param = limits != Limits::Open;
                (Some(proc), target, None, None)
            }
            Proxy::Haproxy => {
                let path = dir.write("haproxy.cfg", &conf::haproxy(listen, upstream))?;
                let mut command = command(&which("haproxy")?);
                command.arg("-f").arg(&path).arg("-db");
                let proc = Proc::spawn("haproxy", command, &log)?;
                wait_http(listen, "/", started, READY).await?;
                (Some(proc), signed(listen), None, None)
            }
        };
        Ok(ProxyProc {
            kind,
            target,
            admin,
            started_in: started.elapsed(),
            config,
            proc,
        })
    }

    /// The process, when there is one (not for `Direct`).
    pub fn process(&self) -> Option<&Proc> {
        self.proc.as_ref()
    }
}

/// Waits for timgate's `/readyz` to answer 200.
async fn wait_ready(admin: SocketAddr, since: Instant) -> Result<Duration, String> {
    loop {
        if super::procs::get_status(admin, "/readyz").await == Ok(200) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > READY {
            return Err(format!("timgate not ready after {READY:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Finds a program on PATH or in the sbin directories Debian puts servers in.
pub fn which(program: &str) -> Result<PathBuf, String> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{program} not found: install it (apt-get install {program})"))
}
