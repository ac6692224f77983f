//! A redis-server of the test's own on a free port: started, frozen (SIGSTOP), thawed, killed
//! and restarted on the same port, stopped on drop.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use loadgen::procs::redis_server;
use rustix::process::{Pid, Signal, kill_process};

/// A redis-server process the test controls.
pub(crate) struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one, or returns `None` (after saying why) where redis-server is missing, unless
    /// `TIMGATE_REQUIRE_TOOLS=1`.
    pub(crate) fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = Redis { port, child: None };
        if redis.resume().is_err() {
            assert!(
                std::env::var("TIMGATE_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "redis-server is required"
            );
            eprintln!("skipped: redis-server not found");
            return None;
        }
        Some(redis)
    }

    /// The URL replicas use.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port, empty (a restart loses every key).
    pub(crate) fn resume(&mut self) -> std::io::Result<()> {
        let child = redis_server(Path::new("redis-server"), self.port)
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
