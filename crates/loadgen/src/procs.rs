//! The processes a load run starts (the emulator, timgate, nginx, HAProxy), each in its own
//! process as in production, stopped when dropped; and the readings taken of them.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// A child process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `command` with its output in `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (Linux `VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Resident memory of the process and its direct children (nginx's workers) now, in KiB.
    pub fn rss_tree_kib(&self) -> Option<u64> {
        let pid = self.pid();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut total = self.rss_kib()?;
        for child in children.split_whitespace() {
            let status =
                std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            let kib = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            total += kib.unwrap_or(0);
        }
        Some(total)
    }

    /// CPU time (user and system) used so far by the process and its direct children (nginx's
    /// workers), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let pid = self.pid().to_string();
        let mut ticks = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
                continue;
            };
            // The command name is in parentheses and may hold spaces: count fields after it.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (ppid, utime, stime) = (fields.get(1), fields.get(11), fields.get(12));
            if name == pid || ppid == Some(&pid.as_str()) {
                let parse = |f: Option<&&str>| f.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                ticks += parse(utime) + parse(stime);
            }
        }
        // Linux reports in USER_HZ, 100 on every architecture timgate builds for.
        ticks as f64 / 100.0
    }

    /// Sends a signal by name (`HUP`, `TERM`) with kill(1): no unsafe code for a benchmark.
    pub fn signal(&self, name: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{name} {} failed", self.name))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master stops its workers only when asked politely.
        let _ = self.signal("TERM");
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` (a redis-server) on 127.0.0.1:`port`, keeping nothing on disk (no RDB, no AOF):
/// the benchmarks' and tests' own Redis.
pub fn redis_server(program: &Path, port: u16) -> Command {
    let mut command = Command::new(program);
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    command
}

/// A free TCP port on 127.0.0.1 (bound and released: good enough for a benchmark).
pub fn free_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// Waits until `GET http://addr/path` answers at all (any status below 500), or fails after
/// `limit`. Returns how long it took from `since`.
pub async fn wait_http(
    addr: SocketAddr,
    path: &str,
    since: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    loop {
        if get_status(addr, path)
            .await
            .is_ok_and(|status| status < 500)
        {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            return Err(format!("{addr}{path} not ready after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The status of `GET http://addr/path`.
pub async fn get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    get(addr, path).await.map(|(status, _)| status)
}

/// `GET http://addr/path` on a new connection: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, bytes::Bytes), String> {
    super::client::Conn::open(addr).await?.get(path).await
}

/// A scratch directory for configuration files and logs, removed when dropped.
#[derive(Debug)]
pub struct Workdir {
    /// Its path.
    pub path: PathBuf,
}

impl Workdir {
    /// Creates a fresh directory under the system's temp dir.
    pub fn new(tag: &str) -> Result<Workdir, String> {
        let path = std::env::temp_dir().join(format!(
            "timgate-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Workdir { path })
    }

    /// Writes `contents` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf, String> {
        let path = self.path.join(name);
        std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
