//! Open-loop load for the fault tests: writes offered at a fixed rate over many groups and a few
//! hot ones, round-robin over the replicas, each caller's answer sorted into what it was.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::support::{Client, Gateway};

/// The write every caller sends.
pub const MODIFY: &str = "group_open_http_svc/modify_group_attr";

/// How the callers were answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// 200 with ErrorCode 0.
    pub ok: u64,
    /// 429 (the gateway could not send it in time, said at once) or 503 with Retry-After.
    pub busy: u64,
    /// Anything else, as (status, ErrorCode, x-timgate-error): a write the caller lost.
    pub failed: Vec<(u16, i64, String)>,
}

/// Offers `rate` writes a second for `span`, starting now: one in ten to one of two hot groups,
/// the rest spread over 1,000 groups. Returns the tasks' joined answers once every caller has
/// its answer.
pub async fn offer(gateways: &[Gateway], rate: u32, span: Duration) -> Answers {
    let urls: Vec<String> = gateways.iter().map(|g| g.url(MODIFY)).collect();
    let answers = Arc::new(Mutex::new(Answers::default()));
    let client = Client::new();
    let gap = Duration::from_secs(1) / rate;
    let start = Instant::now();
    let mut callers = Vec::new();
    let mut i: u64 = 0;
    while start.elapsed() < span {
        let group = if i.is_multiple_of(10) {
            format!("hot-{}", i % 20 / 10)
        } else {
            format!("g-{}", i % 1000)
        };
        let body = json!({"GroupId": group, "GroupAttr": [{"key": "k", "value": i.to_string()}]});
        let (client, url) = (client.clone(), urls[i as usize % urls.len()].clone());
        let answers = answers.clone();
        callers.push(tokio::spawn(async move {
            let answer = client.post(&url, body.to_string()).await;
            let status = answer.status.as_u16();
            let mut answers = answers.lock().expect("answers");
            match status {
                200 if answer.code() == 0 => answers.ok += 1,
                429 | 503 if answer.headers.contains_key("retry-after") => answers.busy += 1,
                _ => {
                    let code = answer.json()["ErrorCode"].as_i64().unwrap_or(-1);
                    let reason = answer.reason().unwrap_or("").to_string();
                    answers.failed.push((status, code, reason));
                }
            }
        }));
        i += 1;
        tokio::time::sleep_until(start + gap * i as u32).await;
    }
    for caller in callers {
        caller.await.expect("caller");
    }
    std::mem::take(&mut *answers.lock().expect("answers"))
}
