//! A redis-server (or redis-sentinel) of the test's own on a free port: started, frozen
//! (SIGSTOP), thawed, killed and restarted on the same port, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use loadgen::procs::redis_server;
use rustix::process::{Pid, Signal, kill_process};

/// A redis-server process the test controls.
pub(crate) struct Redis {
    /// Its port on 127.0.0.1 (its TLS port when it has no other).
    pub port: u16,
    /// The program and the arguments after `--port`, to start it again the same way.
    program: PathBuf,
    args: Vec<String>,
    /// Where it runs (a Cluster node's and a Sentinel's files are written there).
    dir: Option<PathBuf>,
    child: Option<Child>,
}

/// A port free now on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Whether `program` is missing: fails the test then, unless TIMGATE_SKIP_MISSING_TOOLS=1 asks to
/// skip it (tests/support/tools.rs).
pub(crate) fn skip_without(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        super::tools::missing(program);
    }
    !found
}

impl Redis {
    /// Starts one, or returns `None` where redis-server is missing and
    /// TIMGATE_SKIP_MISSING_TOOLS=1 (without it, a missing redis-server fails the test).
    pub(crate) fn start() -> Option<Redis> {
        Redis::start_with("redis-server", free_port(), &[], None)
    }

    /// Starts `program --port <port> <the usual> <args>` in `dir`, or `None` as [`Redis::start`].
    /// `port` 0 with a `--tls-port` among `args`: it is waited for on that port instead.
    pub(crate) fn start_with(
        program: &str,
        port: u16,
        args: &[String],
        dir: Option<&Path>,
    ) -> Option<Redis> {
        if skip_without(program) {
            return None;
        }
        let tls_port = args
            .iter()
            .position(|arg| arg == "--tls-port")
            .and_then(|i| args.get(i + 1))
            .and_then(|port| port.parse().ok());
        let mut redis = Redis {
            port: tls_port.unwrap_or(port),
            program: PathBuf::from(program),
            args: std::iter::once(port.to_string())
                .chain(args.iter().cloned())
                .collect(),
            dir: dir.map(Path::to_path_buf),
            child: None,
        };
        redis.resume().expect("redis listens");
        Some(redis)
    }

    /// The URL replicas use.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port, empty (a restart loses every key).
    pub(crate) fn resume(&mut self) -> std::io::Result<()> {
        let port = self.args[0].parse().unwrap_or(self.port);
        // A config file (a Sentinel's) must come first.
        let (conf, rest) = match self.args[1..].split_first() {
            Some((conf, rest)) if conf.ends_with(".conf") => (Some(conf), rest),
            _ => (None, &self.args[1..]),
        };
        let mut command = std::process::Command::new(&self.program);
        command.args(conf);
        command.args(redis_server(&self.program, port).get_args());
        command.args(rest);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other("redis-server did not listen"))
    }

    /// Whether it was started and not stopped since.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills it: connections reset, keys lost.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing is answered.
    pub(crate) fn freeze(&self) {
        self.signal(Signal::STOP);
    }

    /// Thaws it (SIGCONT): it answers what it was sent, keys intact.
    pub(crate) fn thaw(&self) {
        self.signal(Signal::CONT);
    }

    fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("redis-server runs");
        let pid = Pid::from_raw(child.id() as i32).expect("a child has a pid");
        kill_process(pid, signal).expect("signal redis-server");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a frozen process too.
        self.stop();
    }
}
