//! What the durable queue keeps: a write as its stream entry (the fields an owner needs to send
//! it), and a job's answer as its result key holds it (enough to rebuild the response).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use redis::Value;
use serde::{Deserialize, Serialize};

use super::keys::JobId;
use crate::gateway::answer::ERROR_HEADER;
use crate::server::{Body, json_response};

/// A queued write, as its partition's owner reads it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The job: partition and entry id.
    pub job: JobId,
    /// `service/command`.
    pub api: String,
    /// The GroupId written.
    pub group: String,
    /// The body as the caller sent it.
    pub body: Bytes,
    /// The caller's request id.
    pub request_id: String,
    /// Until when it may be sent, in Unix milliseconds.
    pub deadline_ms: u64,
    /// The caller did not wait (`Prefer: respond-async`).
    pub asynchronous: bool,
}

impl Entry {
    /// The stream fields of a write, short names (each entry stores them) with their values.
    pub fn fields(&self) -> [(&'static str, Vec<u8>); 6] {
        [
            ("a", self.api.as_bytes().to_vec()),
            ("g", self.group.as_bytes().to_vec()),
            ("b", self.body.to_vec()),
            ("r", self.request_id.as_bytes().to_vec()),
            ("d", self.deadline_ms.to_string().into_bytes()),
            ("m", if self.asynchronous { b"a" } else { b"s" }.to_vec()),
        ]
    }

    /// Reads an entry `[id, [field, value, ...]]` of `partition`'s stream; `None` for an entry
    /// deleted while pending (its fields are nil) or one this version cannot read.
    pub fn from_value(partition: u32, value: &Value) -> Option<Entry> {
        let Value::Array(parts) = value else {
            return None;
        };
        let [id, Value::Array(fields)] = parts.as_slice() else {
            return None;
        };
        let id = bulk(id)?;
        let mut entry = Entry {
            job: JobId {
                partition,
                entry: String::from_utf8(id.to_vec()).ok()?,
            },
            api: String::new(),
            group: String::new(),
            body: Bytes::new(),
            request_id: String::new(),
            deadline_ms: 0,
            asynchronous: false,
        };
        for pair in fields.chunks(2) {
            let [name, value] = pair else { return None };
            let text = || String::from_utf8(bulk(value)?.to_vec()).ok();
            match bulk(name)? {
                b"a" => entry.api = text()?,
                b"g" => entry.group = text()?,
                b"b" => entry.body = Bytes::copy_from_slice(bulk(value)?),
                b"r" => entry.request_id = text()?,
                b"d" => entry.deadline_ms = text()?.parse().ok()?,
                b"m" => entry.asynchronous = bulk(value)? == b"a",
                _ => {}
            }
        }
        (!entry.api.is_empty() && !entry.group.is_empty()).then_some(entry)
    }
}

/// The id of a stream entry `[id, ...]`, whether or not its fields are still there.
pub(super) fn id_of(value: &Value) -> Option<String> {
    let Value::Array(parts) = value else {
        return None;
    };
    let id = bulk(parts.first()?)?;
    String::from_utf8(id.to_vec()).ok()
}

/// The bytes of a bulk or simple string.
pub(super) fn bulk(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// A job's answer, as its result key keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// `done` (Tencent answered ErrorCode 0) or `failed` (anything else).
    pub state: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// `x-timgate-error`, for the gateway's own answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `Retry-After`, in seconds, when the answer had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The body (Tencent's, or the gateway's in Tencent's shape).
    pub body: String,
}

impl Stored {
    /// What `response` says, kept: its status, reason, Retry-After and body; `ok` when Tencent
    /// answered ErrorCode 0.
    pub fn of(response: &Response<Body>, body: &[u8], ok: bool) -> Stored {
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        Stored {
            state: if ok { "done" } else { "failed" }.to_string(),
            status: response.status().as_u16(),
            reason: header(ERROR_HEADER).map(str::to_string),
            retry_after: header(header::RETRY_AFTER.as_str()).and_then(|v| v.parse().ok()),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// The response a waiting caller gets: the one the owner built, again.
    pub fn response(&self) -> Response<Body> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = json_response(status, Bytes::from(self.body.clone()));
        let headers = response.headers_mut();
        if let Some(value) = self
            .reason
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok())
        {
            headers.insert(ERROR_HEADER, value);
        }
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        response
    }

    /// The body as JSON, for a job's state (a string when it is not JSON).
    pub fn answer(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| self.body.clone().into())
    }
}
