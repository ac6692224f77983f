//! An emulator and a gateway in this process, over loopback HTTP: for the benchmarks that read
//! the emulator's records directly (the pacer's utilization, coalescing) rather than through
//! separate processes.

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use timgate::app::App;
use timgate::config::Config;
use timgate::emulator::{DEMO_SDKAPPID, DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use timgate::error::Error;

/// The demo app's emulator and a gateway in front of it, serving until stopped.
#[derive(Debug)]
pub struct InProcess {
    /// The emulator, with its records.
    pub emulator: Emulator,
    /// The gateway's proxy address.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<(), Error>>,
}

/// A gateway on free loopback ports signing as the demo app for the emulator at `upstream`,
/// with `extra` TOML (any table but `[server]` and `[tencent]`).
pub fn demo_toml(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [tencent]\nsdkappid = {DEMO_SDKAPPID}\nsecret_key = \"{DEMO_SECRET_KEY}\"\n\
         base_url = \"http://{upstream}\"\n{extra}"
    )
}

impl InProcess {
    /// Starts both on 127.0.0.1 ports of their own; `extra` is more TOML for the gateway (any
    /// table but `[server]` and `[tencent]`, e.g. `[limits]` and `[log]`).
    pub async fn start(extra: &str) -> Result<InProcess, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let emulator = Emulator::spawn(EmulatorConfig::demo(), listener, None);
        let config =
            Config::from_toml(&demo_toml(emulator.addr, extra)).map_err(|e| e.to_string())?;
        let app = App::build(config).await.map_err(|e| e.to_string())?;
        let addr = app.addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(async {
            let _ = stopped.await;
        }));
        Ok(InProcess {
            emulator,
            addr,
            stop,
            server,
        })
    }

    /// Stops the gateway (it drains first) and then the emulator.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.emulator.shutdown().await;
    }
}
