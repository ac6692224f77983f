//! Open-loop load for the fault scenarios (`tests/faults.rs`, `cargo bench --bench load --
//! faults`): writes offered at a fixed rate over many groups and two hot ones, round-robin over
//! the replicas, each caller's answer sorted into what it was.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

/// The write every caller sends.
pub const MODIFY: &str = "group_open_http_svc/modify_group_attr";

/// The most writes the emulator saw in any sliding second: what the fault scenarios hold to
/// Tencent's limit.
pub fn peak(emulator: &timgate::emulator::Emulator) -> usize {
    let times = emulator
        .state
        .records()
        .iter()
        .filter(|r| r.api == MODIFY)
        .map(|r| r.at)
        .collect();
    crate::stats::max_in_window(times, Duration::from_secs(1))
}

/// How the callers were answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// 200 with ErrorCode 0.
    pub ok: u64,
    /// 429 or 503 with Retry-After: the gateway could not send it in time and said so.
    pub busy: u64,
    /// Anything else, as (status, ErrorCode, x-timgate-error): a write the caller lost.
    pub failed: Vec<(u16, i64, String)>,
    /// When the last caller got its answer.
    pub last_answer: Option<Instant>,
}

/// Offers `rate` writes a second to `urls` (each a gateway's `/v4/<MODIFY>`) for `span`,
/// starting now: one in ten to one of two hot groups, the rest spread over 1,000 groups.
/// Returns once every caller has its answer.
pub async fn offer(urls: &[String], rate: u32, span: Duration) -> Answers {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let gap = Duration::from_secs(1) / rate.max(1);
    let start = Instant::now();
    let mut callers = Vec::new();
    let mut i: u64 = 0;
    while start.elapsed() < span {
        let group = if i.is_multiple_of(10) {
            format!("hot-{}", i % 20 / 10)
        } else {
            format!("g-{}", i % 1000)
        };
        let body = format!(r#"{{"GroupId":"{group}","GroupAttr":[{{"key":"k","value":"{i}"}}]}}"#);
        let (client, url) = (client.clone(), urls[i as usize % urls.len()].clone());
        let answers = answers.clone();
        callers.push(tokio::spawn(async move {
            let outcome = call(&client, &url, body).await;
            let mut answers = answers.lock().unwrap_or_else(|p| p.into_inner());
            answers.last_answer = Some(Instant::now());
            match outcome {
                (200, Some(0), _, _) => answers.ok += 1,
                (429 | 503, _, _, true) => answers.busy += 1,
                (status, code, reason, _) => {
                    answers
                        .failed
                        .push((status, code.unwrap_or(-1), reason.unwrap_or_default()))
                }
            }
        }));
        i += 1;
        tokio::time::sleep_until(start + gap * i as u32).await;
    }
    for caller in callers {
        let _ = caller.await;
    }
    std::mem::take(&mut *answers.lock().unwrap_or_else(|p| p.into_inner()))
}

/// One write: (status, ErrorCode, x-timgate-error, whether Retry-After came); status 0 when the
/// gateway could not be reached or the answer was cut.
async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    body: String,
) -> (u16, Option<i64>, Option<String>, bool) {
    let Ok(request) = http::Request::post(url).body(Full::new(Bytes::from(body))) else {
        return (0, None, None, false);
    };
    let Ok(response) = client.request(request).await else {
        return (0, None, None, false);
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (reason, retry_after) = (header("x-timgate-error"), header("retry-after").is_some());
    let Ok(body) = response.into_body().collect().await else {
        return (0, None, reason, retry_after);
    };
    let code = serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
        .ok()
        .and_then(|v| v["ErrorCode"].as_i64());
    (status, code, reason, retry_after)
}
