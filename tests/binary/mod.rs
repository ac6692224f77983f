//! The timgate binary as the tests that need their own processes start it: free ports, a child
//! killed when the test ends (pass or fail), and the environment of a gateway in front of an
//! emulator.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY};

/// A port free on 127.0.0.1 now.
pub(crate) fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A child process, killed and reaped when dropped.
pub(crate) struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `timgate args`, under `prlimit --nofile=N:N` when `nofile` is given, with the
/// developer's TIMGATE__ variables removed and `env` set. Output is dropped.
pub(crate) fn spawn(nofile: Option<u64>, args: &[&str], env: &[(&str, String)]) -> Killed {
    let bin = env!("CARGO_BIN_EXE_timgate");
    let mut command = match nofile {
        Some(n) => {
            let mut command = Command::new("prlimit");
            command.arg(format!("--nofile={n}:{n}")).arg(bin);
            command
        }
        None => Command::new(bin),
    };
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIMGATE__")) {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    Killed(command.spawn().expect("timgate starts"))
}

/// The environment of a gateway on `proxy` and `admin` in front of the emulator at `emulator`,
/// logging warnings only.
pub(crate) fn gateway_env(
    emulator: SocketAddr,
    proxy: SocketAddr,
    admin: SocketAddr,
) -> Vec<(&'static str, String)> {
    vec![
        ("TIMGATE__TENCENT__SDKAPPID", DEMO_SDKAPPID.to_string()),
        ("TIMGATE__TENCENT__SECRET_KEY", DEMO_SECRET_KEY.to_string()),
        ("TIMGATE__TENCENT__BASE_URL", format!("http://{emulator}")),
        ("TIMGATE__SERVER__LISTEN", proxy.to_string()),
        ("TIMGATE__SERVER__ADMIN_LISTEN", admin.to_string()),
        ("TIMGATE__LOG__LEVEL", "warn".to_string()),
    ]
}
