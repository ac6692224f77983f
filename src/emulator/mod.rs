//! The Tencent emulator used by `--demo`, `timgate emulate` and the tests: a real HTTP(S) server
//! that checks signatures, payloads and rate limits as Tencent does for the group-attribute
//! family and the catalogue's other APIs it serves, and records everything it received.

pub mod apis;
mod limit;
mod others;
mod signature;
pub mod state;
pub mod window;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::server::RequestBody;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use rand::Rng;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::server::json_response;
use crate::server::{self, Abort, Body};
pub use state::{Fault, Record, State};

/// The demo app's SDKAppID (the one Tencent's own UserSig tests use).
pub const DEMO_SDKAPPID: u64 = 1_400_000_000;
/// The demo app's SecretKey (the one Tencent's own UserSig tests use; never a real key).
pub const DEMO_SECRET_KEY: &str =
    "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
/// The demo app's admin account.
pub const DEMO_IDENTIFIER: &str = "administrator";

const SECOND: Duration = Duration::from_secs(1);

/// How the emulated app is set up and how it misbehaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The app's SDKAppID.
    pub sdkappid: u64,
    /// Its App admin account; other identities get 60010.
    pub identifier: String,
    /// Its SecretKey, to verify UserSigs with.
    pub secret_key: String,
    /// Create a group on first use instead of answering 10010.
    pub auto_create: bool,
    /// Added to every answer.
    pub latency: Duration,
    /// Share of attribute writes answered 10002 (injected internal errors), in [0, 1].
    pub fail_share: f64,
    /// Attribute writes per group per sliding second before 10049.
    pub group_writes_per_second: u32,
    /// Calls per API per sliding second before 60007.
    pub app_per_second: u32,
    /// Records of calls kept at most (`State::records`); 0 for long load runs, whose tallies
    /// and counters suffice.
    pub max_records: usize,
}

impl EmulatorConfig {
    /// The demo app: demo credentials, groups created on first use, Tencent's limits.
    pub fn demo() -> EmulatorConfig {
        EmulatorConfig {
            sdkappid: DEMO_SDKAPPID,
            identifier: DEMO_IDENTIFIER.into(),
            secret_key: DEMO_SECRET_KEY.into(),
            auto_create: true,
            latency: Duration::ZERO,
            fail_share: 0.0,
            group_writes_per_second: 5,
            app_per_second: 200,
            max_records: state::MAX_RECORDS,
        }
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received and holds.
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<bool>>,
}

impl Emulator {
    /// Serves the emulated app on `listener`, over TLS when `tls` is given.
    pub fn spawn(
        config: EmulatorConfig,
        listener: TcpListener,
        tls: Option<rustls::ServerConfig>,
    ) -> Emulator {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = Arc::new(State::default());
        let service = Arc::new(Service {
            config,
            state: state.clone(),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let handler = move |req| service.clone().handle(req);
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(server::serve(
            listener,
            acceptor,
            handler,
            shutdown,
            SECOND,
            server::ListenerLimits::unbounded(),
        ));
        Emulator {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting and waits for open connections to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

struct Service {
    config: EmulatorConfig,
    state: Arc<State>,
}

/// The parts of a call that are recorded whatever the answer.
struct Call {
    api: String,
    query: HashMap<String, String>,
    body: Bytes,
}

impl Service {
    async fn handle(self: Arc<Self>, req: Request<RequestBody>) -> Result<Response<Body>, Abort> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET && path == "/_emulator/stats" {
            let per_group = req.uri().query() == Some("groups=1");
            return Ok(json_response(
                StatusCode::OK,
                self.state.stats_json(per_group),
            ));
        }
        let Some(api) = path.strip_prefix("/v4/").map(str::to_string) else {
            return Ok(json_response(
                StatusCode::NOT_FOUND,
                r#"{"error":"not a /v4/ path"}"#,
            ));
        };
        let query = signature::parse_query(req.uri().query().unwrap_or(""));
        let body = match Limited::new(req.into_body(), 4 << 20).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return Ok(json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"error":"body too large"}"#,
                ));
            }
        };
        let call = Call { api, query, body };
        if let Some(until) = self.state.stalled_until(Instant::now()) {
            // Held, then processed as Tencent would: whether or not the caller is still there,
            // so the call runs in its own task and counts when it is processed.
            let service = self.clone();
            let held = tokio::spawn(async move {
                tokio::time::sleep_until(until).await;
                service.answer(call).await
            });
            return held.await.unwrap_or(Err(Abort));
        }
        self.answer(call).await
    }

    /// Checks, records and answers one call now.
    async fn answer(&self, call: Call) -> Result<Response<Body>, Abort> {
        let now = Instant::now();
        let (outcome, fault) = self.state.with(|inner| {
            if inner.received % 4096 == 4095 {
                inner.prune(now, SECOND);
            }
            let fault = inner.take_fault(&call.body);
            let (group_id, outcome) = match &fault {
                Some((group, Fault::Code(code))) => {
                    (Some(group.clone()), Err((*code, "injected fault".into())))
                }
                Some((_, Fault::StatusAfter(_))) | None => self.process(&call, inner, now),
                Some((group, _)) => (
                    Some(group.clone()),
                    Err((state::NO_ANSWER, "no answer (injected)".into())),
                ),
            };
            inner.record(
                Record {
                    api: call.api.clone(),
                    group_id: group_id.clone(),
                    identifier: call.query.get("identifier").cloned(),
                    usersig: call.query.get("usersig").cloned(),
                    random: call.query.get("random").and_then(|r| r.parse().ok()),
                    body: call.body.clone(),
                    code: outcome.as_ref().err().map_or(0, |(code, _)| *code),
                    at: now,
                },
                self.config.max_records,
            );
            (outcome, fault.map(|(_, fault)| fault))
        });
        match fault {
            Some(Fault::Close) => return Err(Abort),
            Some(Fault::Stall) => std::future::pending::<()>().await,
            Some(Fault::Status(status) | Fault::StatusAfter(status)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut page = Response::new(http_body_util::Full::new(Bytes::from_static(
                    b"<html><body>upstream error (injected)</body></html>",
                )));
                *page.status_mut() = status;
                return Ok(page);
            }
            Some(Fault::Code(_)) | None => {}
        }
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let mut answer = Map::new();
        match outcome {
            Ok(fields) => {
                answer.insert("ActionStatus".into(), "OK".into());
                answer.insert("ErrorCode".into(), 0.into());
                answer.insert("ErrorInfo".into(), "".into());
                answer.extend(fields);
            }
            Err((code, info)) => {
                answer.insert("ActionStatus".into(), "FAIL".into());
                answer.insert("ErrorCode".into(), code.into());
                answer.insert("ErrorInfo".into(), info.into());
            }
        }
        Ok(json_response(
            StatusCode::OK,
            Value::Object(answer).to_string(),
        ))
    }

    /// Checks and applies one call; returns the GroupId it named and its outcome.
    fn process(
        &self,
        call: &Call,
        inner: &mut state::Inner,
        now: Instant,
    ) -> (Option<String>, apis::Outcome) {
        if let Err(e) = signature::check_signature(&self.config, &call.query, inner.keys.as_deref())
        {
            return (None, Err(e));
        }
        let Some((service, command)) = crate::tencent::catalogue::split_api(&call.api) else {
            return (None, Err((60009, "unknown API".into())));
        };
        let attr_api = matches!(
            (service, command),
            ("group_open_attr_http_svc", "get_group_attr")
                | (
                    "group_open_http_svc",
                    "modify_group_attr"
                        | "set_group_attr"
                        | "delete_group_attr"
                        | "clear_group_attr"
                )
        );
        let group_api =
            service == "group_open_http_svc" && matches!(command, "create_group" | "destroy_group");
        let other_api = others::OTHERS.contains(&call.api.as_str());
        if !attr_api && !group_api && !other_api {
            return (None, Err((60009, format!("{} is not emulated", call.api))));
        }
        let body = serde_json::from_slice::<Value>(&call.body);
        if !limit::allowed(&self.config, &call.api, &body, inner, now) {
            return (
                None,
                Err((60007, "REST API call frequency over its limit".into())),
            );
        }
        let body = match body {
            Ok(Value::Object(body)) => body,
            _ => {
                return (
                    None,
                    Err((60003, "JSON parse error in the request body".into())),
                );
            }
        };
        if group_api {
            let outcome = match command {
                "create_group" => apis::create_group(&body, inner),
                _ => apis::destroy_group(&body, inner),
            };
            return (None, outcome);
        }
        if other_api {
            return (None, others::other(&call.api, &body, inner, now));
        }
        let id = match apis::group_id(&body) {
            Ok(id) => id.to_string(),
            Err(e) => return (None, Err(e)),
        };
        (
            Some(id.clone()),
            self.attr_call(command, &id, &body, inner, now),
        )
    }

    fn attr_call(
        &self,
        command: &str,
        id: &str,
        body: &Map<String, Value>,
        inner: &mut state::Inner,
        now: Instant,
    ) -> apis::Outcome {
        if !inner.groups.contains_key(id) {
            if !self.config.auto_create {
                return Err((10010, "group does not exist".into()));
            }
            inner.groups.insert(id.to_string(), state::Attrs::new());
        }
        if command != "get_group_attr" {
            let window = inner.group_windows.entry(id.to_string()).or_default();
            let allowed = window.arrive(now, SECOND, self.config.group_writes_per_second);
            let in_window = window.len();
            inner
                .group_tally
                .entry(id.to_string())
                .or_default()
                .count(in_window, allowed);
            if !allowed {
                return Err((10049, "group attribute writes over 5 per second".into()));
            }
            if self.config.fail_share > 0.0 && rand::rng().random::<f64>() < self.config.fail_share
            {
                return Err((10002, "internal server error (injected)".into()));
            }
        }
        if !apis::supports(inner.group_types.get(id).map(String::as_str), command) {
            return Err((
                10007,
                format!("this group's type does not support {command}"),
            ));
        }
        let Some(attrs) = inner.groups.get_mut(id) else {
            return Err((10010, "group does not exist".into()));
        };
        apis::apply(command, body, attrs)
    }
}
