//! Shared test fixtures: a TLS emulator with a throwaway CA (rcgen), a gateway pointed at it over
//! real sockets on port 0, and a plain HTTP client for the caller's side.
#![allow(dead_code)] // each test binary uses its own subset

pub(crate) mod held;
pub(crate) mod redis;
pub(crate) mod redis_modes;
pub(crate) mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use timgate::app::App;
use timgate::config::Config;
use timgate::emulator::{DEMO_SECRET_KEY, Emulator, EmulatorConfig};
use timgate::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A self-signed certificate for 127.0.0.1 and localhost, with its PEM written to a temp dir.
pub(crate) struct Tls {
    /// The certificate's PEM file, to be trusted through `ca_file`.
    pub ca_path: PathBuf,
    cert_pem: String,
    key_pem: String,
    _dir: tempfile::TempDir,
}

impl Tls {
    /// Makes a fresh certificate.
    pub(crate) fn new() -> Tls {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .expect("rcgen makes a certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, certified.cert.pem()).expect("write CA");
        Tls {
            ca_path,
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            _dir: dir,
        }
    }

    /// The server side of it.
    pub(crate) fn server_config(&self) -> rustls::ServerConfig {
        timgate::tls::server_config(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("server config")
    }
}

/// Starts an emulator on 127.0.0.1:0, over TLS when `tls` is given.
pub(crate) async fn emulator(config: EmulatorConfig, tls: Option<&Tls>) -> Emulator {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind emulator");
    Emulator::spawn(config, listener, tls.map(Tls::server_config))
}

/// An emulator on a thread and runtime of its own, as Tencent is another machine: however busy
/// the gateways keep the test's runtime, they cannot delay the moment it sees a call (its limit
/// windows count that moment). Dereferences to the emulator; dropping it stops both.
pub(crate) struct ApartEmulator {
    emulator: Emulator,
    /// The most its thread woke late, in microseconds (see [`ApartEmulator::late_by`]).
    late: Arc<AtomicU64>,
    _runtime: oneshot::Sender<()>,
}

impl std::ops::Deref for ApartEmulator {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        &self.emulator
    }
}

impl ApartEmulator {
    /// The most the emulator's thread woke late so far. Calls it sees that late are stamped that
    /// late, so a call sent on time can count in the next second's window: a limit test whose
    /// emulator was late by more than half the guard measured the machine, not the gateway.
    pub(crate) fn late_by(&self) -> Duration {
        Duration::from_micros(self.late.load(Ordering::Relaxed))
    }
}

/// Starts an [`ApartEmulator`] on 127.0.0.1:0, over plain HTTP, on two threads the kernel runs
/// ahead of every other (see [`ahead_of_the_rest`]). A limit test counts calls by the moment
/// the emulator sees them, so that moment must not wait for the machine: on a 2-core VM with a
/// build beside the tests, one emulator thread at normal priority was kept off the CPU for up
/// to 97 ms while the gateways sent on time (captured on the loopback), and the calls it then
/// read in a bunch counted in the next second's window (201-206 "in a second", 1-7 refusals, in
/// 4 of 10 runs). Real-time priority removes the wait behind other threads; the second thread
/// covers the host pausing one virtual CPU (10-30 ms, seen as steal time), which no priority can.
pub(crate) fn emulator_apart(config: EmulatorConfig) -> ApartEmulator {
    let (ready, started) = std::sync::mpsc::channel();
    let (runtime, stopped) = oneshot::channel::<()>();
    let late = Arc::new(AtomicU64::new(0));
    let probe = late.clone();
    let thread = std::thread::Builder::new().name("emulator".into());
    let spawned = thread.spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("emulator")
            .on_thread_start(ahead_of_the_rest)
            .enable_all()
            .build()
            .expect("the emulator's runtime");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind emulator");
            let _ = ready.send(Emulator::spawn(config, listener, None));
            let watching = tokio::spawn(async move { watch_lateness(&probe).await });
            let _ = stopped.await;
            watching.abort();
        });
    });
    spawned.expect("the emulator's thread starts");
    let emulator = started.recv().expect("the emulator starts");
    ApartEmulator {
        emulator,
        late,
        _runtime: runtime,
    }
}

/// Gives the calling thread real-time priority (`chrt`, which needs CAP_SYS_NICE), or failing
/// that the highest normal priority it may take. Said once if neither is allowed.
fn ahead_of_the_rest() {
    static SAID: std::sync::Once = std::sync::Once::new();
    let tid = rustix::thread::gettid();
    let realtime = std::process::Command::new("chrt")
        .args(["--fifo", "--pid", "1", &tid.as_raw_nonzero().to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !realtime && rustix::process::setpriority_process(Some(tid), -10).is_err() {
        SAID.call_once(|| {
            eprintln!("the emulator runs at normal priority: a loaded machine can delay it");
        });
    }
}

/// Wakes every 5 ms (on one of the emulator's workers) and keeps the most it woke late in
/// `late` (microseconds).
async fn watch_lateness(late: &AtomicU64) {
    let tick = Duration::from_millis(5);
    loop {
        let due = tokio::time::Instant::now() + tick;
        tokio::time::sleep_until(due).await;
        let by = tokio::time::Instant::now().saturating_duration_since(due);
        late.fetch_max(by.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The demo app's emulator over TLS, and the TLS material to trust it.
pub(crate) async fn tls_emulator(config: EmulatorConfig) -> (Emulator, Tls) {
    let tls = Tls::new();
    let emulator = emulator(config, Some(&tls)).await;
    (emulator, tls)
}

/// The base layer of a test gateway's configuration: both listeners on port 0, the demo app's
/// identity, the upstream at `emulator` trusted through `tls`.
pub(crate) fn base_toml(emulator: SocketAddr, tls: Option<&Tls>) -> String {
    let (scheme, ca) = match tls {
        Some(tls) => ("https", tls.ca_path.display().to_string()),
        None => ("http", String::new()),
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 5000\n\
         [tencent]\nsdkappid = {}\nsecret_key = \"{DEMO_SECRET_KEY}\"\nbase_url = \"{scheme}://{emulator}\"\nca_file = \"{ca}\"\n",
        timgate::emulator::DEMO_SDKAPPID
    )
}

/// A gateway serving in the background.
pub(crate) struct Gateway {
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    /// Its metrics.
    pub metrics: Metrics,
    /// Applies configuration reloads, as SIGHUP does.
    pub reloader: timgate::app::Reloader,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), timgate::Error>>,
}

impl Gateway {
    /// Builds and serves a gateway from TOML layers over the defaults.
    pub(crate) async fn start(layers: &[&str]) -> Gateway {
        let config = Config::from_toml_layers(layers).expect("test config is valid");
        let app = App::build(config).await.expect("gateway builds");
        let (addr, admin, metrics) = (app.addr(), app.admin_addr(), app.metrics().clone());
        let reloader = app.reloader();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(async {
            let _ = stopped.await;
        }));
        Gateway {
            addr,
            admin,
            metrics,
            reloader,
            stop: Some(stop),
            task,
        }
    }

    /// The URL of an API on this gateway.
    pub(crate) fn url(&self, api: &str) -> String {
        format!("http://{}/v4/{api}", self.addr)
    }

    /// Signals shutdown and waits until the gateway has drained and stopped.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("serve task")
            .expect("serve ends cleanly");
    }

    /// Signals shutdown without waiting.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An answer as the caller sees it.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The body's `ErrorCode`.
    pub(crate) fn code(&self) -> i64 {
        self.json()["ErrorCode"]
            .as_i64()
            .expect("ErrorCode is a number")
    }

    /// The `x-timgate-error` header, if any.
    pub(crate) fn reason(&self) -> Option<&str> {
        self.headers
            .get("x-timgate-error")
            .and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP client for the caller's side.
#[derive(Clone)]
pub(crate) struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A new pooled client.
    pub(crate) fn new() -> Client {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request and reads the whole answer.
    pub(crate) async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = self.inner.request(request).await.expect("gateway answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("answer body")
            .to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POSTs `body` to `url`.
    pub(crate) async fn post(&self, url: &str, body: impl Into<Bytes>) -> Answer {
        let request = Request::post(url)
            .body(Full::new(body.into()))
            .expect("valid request");
        self.send(request).await
    }

    /// GETs `url`.
    pub(crate) async fn get(&self, url: &str) -> Answer {
        let request = Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        self.send(request).await
    }
}

/// Waits until `counter` (a gateway's `admitted` counter for an API) reaches `n`: the request just
/// sent is in line, so the next one is accepted after it.
pub(crate) async fn wait_admitted(counter: &prometheus::IntCounter, n: u64) {
    while counter.get() < n {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[allow(unused_imports)] // each test binary uses its own subset
pub(crate) use loadgen::stats::max_in_window;
