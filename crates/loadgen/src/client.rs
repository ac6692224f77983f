//! The load benchmark's caller: keep-alive HTTP/1.1 connections driven closed-loop, at a fixed
//! rate, or by a schedule, recording each answer's latency as the caller sees it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stats::Recorder;
use timgate::signer::encode;

/// One request of a run: which API, for which group, with which body.
#[derive(Debug, Clone)]
pub struct Call {
    /// `service/command`.
    pub api: &'static str,
    /// The GroupId the body names (nginx's `limit_req` reads it from the query).
    pub group: Arc<str>,
    /// The JSON body.
    pub body: Bytes,
}

/// The `n`th write of a run to `group`: a one-key `modify_group_attr`.
pub fn modify(group: &Arc<str>, n: u64) -> Call {
    let body = format!(r#"{{"GroupId":"{group}","GroupAttr":[{{"key":"seq","value":"{n}"}}]}}"#);
    Call {
        api: "group_open_http_svc/modify_group_attr",
        group: group.clone(),
        body: Bytes::from(body),
    }
}

/// The `n`th write of a run to `group` carrying four attributes of `value_bytes` each (4,000:
/// a 16 KB write, the largest the attribute rules allow).
pub fn modify_sized(group: &Arc<str>, n: u64, value_bytes: usize) -> Call {
    let value = char::from(b'a' + (n % 26) as u8)
        .to_string()
        .repeat(value_bytes);
    let attrs: Vec<String> = (0..4)
        .map(|k| format!(r#"{{"key":"k{k}","value":"{value}"}}"#))
        .collect();
    let body = format!(
        r#"{{"GroupId":"{group}","GroupAttr":[{}]}}"#,
        attrs.join(",")
    );
    Call {
        api: "group_open_http_svc/modify_group_attr",
        group: group.clone(),
        body: Bytes::from(body),
    }
}

/// Makes the `n`th call of a run.
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// Where the calls go and what the caller adds to them.
#[derive(Debug, Clone)]
pub struct Target {
    /// The proxy (or emulator) address.
    pub addr: SocketAddr,
    /// The signed query (without `random`) when the caller signs: a plain proxy or the emulator
    /// itself. `None` for timgate, which signs.
    pub signed_query: Option<Arc<str>>,
    /// Add `group=<GroupId>` to the query, for a proxy that can key on the query only.
    pub group_param: bool,
}

impl Target {
    /// A target that signs nothing itself (timgate).
    pub fn unsigned(addr: SocketAddr) -> Target {
        Target {
            addr,
            signed_query: None,
            group_param: false,
        }
    }

    /// A target the caller signs for, as a service behind a plain proxy must.
    pub fn signed(addr: SocketAddr, sdkappid: u64, identifier: &str, usersig: &str) -> Target {
        let query = format!(
            "sdkappid={sdkappid}&identifier={}&usersig={}&contenttype=json",
            encode(identifier),
            encode(usersig)
        );
        Target {
            addr,
            signed_query: Some(query.into()),
            group_param: false,
        }
    }

    fn uri(&self, call: &Call) -> String {
        let mut uri = format!("/v4/{}", call.api);
        if let Some(query) = &self.signed_query {
            let random: u32 = rand::rng().random();
            uri.push('?');
            uri.push_str(query);
            uri.push_str(&format!("&random={random}"));
        }
        if self.group_param {
            let sep = if self.signed_query.is_some() {
                '&'
            } else {
                '?'
            };
            uri.push_str(&format!("{sep}group={}", encode(&call.group)));
        }
        uri
    }
}

/// One keep-alive connection.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(conn);
        Ok(Conn { send })
    }

    /// Sends `call` and reads the whole answer: the HTTP status and the body's `ErrorCode`.
    pub async fn call(&mut self, target: &Target, call: &Call) -> Result<(u16, i64), String> {
        let request = Request::post(target.uri(call))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(call.body.clone()));
        let (status, body) = self.exchange(request).await?;
        Ok((status, error_code(&body)))
    }

    /// `GET path`: the HTTP status and the body.
    pub async fn get(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        self.exchange(Request::get(path).body(Full::new(Bytes::new())))
            .await
    }

    async fn exchange(
        &mut self,
        request: http::Result<Request<Full<Bytes>>>,
    ) -> Result<(u16, Bytes), String> {
        let mut request = request.map_err(|e| e.to_string())?;
        request
            .headers_mut()
            .insert(header::HOST, http::HeaderValue::from_static("127.0.0.1"));
        self.send.ready().await.map_err(|e| e.to_string())?;
        let answer = self
            .send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// The `ErrorCode` of a Tencent-shaped answer, or -1 when it has none.
pub fn error_code(body: &[u8]) -> i64 {
    const KEY: &[u8] = b"\"ErrorCode\":";
    let Some(at) = body.windows(KEY.len()).position(|w| w == KEY) else {
        return -1;
    };
    let digits: String = body[at + KEY.len()..]
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .map(|&b| char::from(b))
        .collect();
    digits.parse().unwrap_or(-1)
}

/// Sends `call` on `conn`, opening a new connection when there is none or the last one broke,
/// and records the outcome against `since`.
async fn send_one(
    conn: &mut Option<Conn>,
    target: &Target,
    call: &Call,
    since: Instant,
    record: &mut Recorder,
) {
    if conn.is_none() {
        match Conn::open(target.addr).await {
            Ok(opened) => *conn = Some(opened),
            Err(_) => {
                record.error(since.elapsed());
                return;
            }
        }
    }
    let Some(open) = conn.as_mut() else { return };
    match open.call(target, call).await {
        Ok((status, code)) => record.answer(since.elapsed(), status, code),
        Err(_) => {
            *conn = None;
            record.error(since.elapsed());
        }
    }
}

/// `connections` callers, each sending its next request as soon as the last is answered, for
/// `duration`. Returns what they saw and the time it took.
pub async fn closed_loop(
    target: &Target,
    connections: usize,
    duration: Duration,
    make: MakeCall,
) -> (Recorder, Duration) {
    let end = Instant::now() + duration;
    callers(target, connections, make, Some(end), u64::MAX).await
}

/// As [`closed_loop`], until `total` requests have been sent, however long that takes (an
/// instruction count over a fixed number of requests).
pub async fn counted(
    target: &Target,
    connections: usize,
    total: u64,
    make: MakeCall,
) -> (Recorder, Duration) {
    callers(target, connections, make, None, total).await
}

/// The closed loop's callers: each stops at `end` (when given) or once `total` requests have
/// been taken, whichever comes first.
async fn callers(
    target: &Target,
    connections: usize,
    make: MakeCall,
    end: Option<Instant>,
    total: u64,
) -> (Recorder, Duration) {
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (target, make, seq) = (target.clone(), make.clone(), seq.clone());
            tokio::spawn(async move {
                let mut record = Recorder::default();
                let mut conn = Conn::open(target.addr).await.ok();
                while end.is_none_or(|end| Instant::now() < end) {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    send_one(&mut conn, &target, &make(n), Instant::now(), &mut record).await;
                }
                record
            })
        })
        .collect();
    let record = gather(workers).await;
    (record, start.elapsed())
}

/// An open-loop run at `rate` requests per second over `connections` callers for `duration`.
/// A request that leaves late because the answer before it on its connection was slow counts
/// from its scheduled time, so slowness shows in the figures (no coordinated omission); one
/// whose connection was free counts from when it left, so tokio's millisecond timer, the
/// client's own lateness, is not charged to the server.
pub async fn fixed_rate(
    target: &Target,
    connections: usize,
    rate: f64,
    duration: Duration,
    make: MakeCall,
) -> (Recorder, Duration) {
    let start = Instant::now() + Duration::from_millis(50);
    let total = (rate * duration.as_secs_f64()) as u64;
    let step = Duration::from_secs_f64(1.0 / rate);
    let workers: Vec<_> = (0..connections as u64)
        .map(|k| {
            let (target, make) = (target.clone(), make.clone());
            tokio::spawn(async move {
                let mut record = Recorder::default();
                let mut conn = Conn::open(target.addr).await.ok();
                let mut n = k;
                while n < total {
                    let at = start + step * n as u32;
                    let backlogged = Instant::now() > at;
                    tokio::time::sleep_until(at).await;
                    let since = if backlogged { at } else { Instant::now() };
                    send_one(&mut conn, &target, &make(n), since, &mut record).await;
                    n += connections as u64;
                }
                record
            })
        })
        .collect();
    let record = gather(workers).await;
    (record, start.elapsed())
}

async fn gather(workers: Vec<tokio::task::JoinHandle<Recorder>>) -> Recorder {
    let mut all = Recorder::default();
    for worker in workers {
        if let Ok(record) = worker.await {
            all.merge(record);
        }
    }
    all
}
