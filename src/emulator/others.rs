//! The emulated APIs beyond group attributes and group management: one-to-one and batch
//! messages, group messages with their 40-a-second limit per group (10023), account import, and
//! push with its attributes and tags, enough for the catalogue's limits to be tested end to end.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use super::apis::{Outcome, group_id};
use super::state::{Attrs, Inner};
use crate::tencent::apis::{GROUP_MESSAGES_PER_SECOND, MOST_RECIPIENTS};

/// The APIs this module answers.
pub(super) const OTHERS: &[&str] = &[
    "openim/sendmsg",
    "openim/batchsendmsg",
    "group_open_http_svc/send_group_msg",
    "im_open_login_svc/account_import",
    "all_member_push/im_push",
    "all_member_push/im_set_attr",
    "all_member_push/im_get_attr",
    "all_member_push/im_add_tag",
    "all_member_push/im_get_tag",
];

fn fail<T>(code: i64, info: impl Into<String>) -> Result<T, (i64, String)> {
    Err((code, info.into()))
}

/// The accounts a batch call names, as Tencent counts them against its per-minute limit (at
/// least one: a call that names none still counts as a call).
pub(super) fn recipients(body: &Value) -> u32 {
    match body.get("To_Account") {
        Some(Value::Array(to)) => u32::try_from(to.len()).unwrap_or(u32::MAX).max(1),
        _ => 1,
    }
}

/// Answers one call of `api` (one of [`OTHERS`]).
pub(super) fn other(
    api: &str,
    body: &Map<String, Value>,
    state: &mut Inner,
    now: Instant,
) -> Outcome {
    match api {
        "openim/sendmsg" => {
            account(body, "To_Account")?;
            Ok(sent(state))
        }
        "openim/batchsendmsg" => {
            let Some(Value::Array(to)) = body.get("To_Account") else {
                return fail(60015, "To_Account must be an array of UserIDs");
            };
            if to.is_empty()
                || to.len() > MOST_RECIPIENTS as usize
                || !to.iter().all(Value::is_string)
            {
                return fail(60015, "To_Account must name 1 to 500 UserIDs");
            }
            Ok(sent(state))
        }
        "group_open_http_svc/send_group_msg" => group_message(body, state, now),
        "im_open_login_svc/account_import" => {
            account(body, "UserID").or_else(|_| account(body, "Identifier"))?;
            Ok(Map::new())
        }
        "all_member_push/im_push" => {
            let mut out = sent(state);
            out.insert(
                "TaskId".into(),
                format!("emu_push_{}", state.next_group).into(),
            );
            Ok(out)
        }
        _ if api.starts_with("all_member_push/") => Ok(Map::new()),
        _ => fail(60009, "unknown API"),
    }
}

/// A UserID field: 1 to 32 bytes.
fn account<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, (i64, String)> {
    match body.get(field) {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 32 => Ok(id),
        _ => fail(60015, format!("{field} must be a UserID string")),
    }
}

/// A message's answer fields.
fn sent(state: &mut Inner) -> Map<String, Value> {
    state.next_group += 1;
    let mut out = Map::new();
    out.insert("MsgKey".into(), format!("emu_{}", state.next_group).into());
    out.insert("MsgTime".into(), crate::clock::unix_now().into());
    out
}

/// `send_group_msg`: at most [`GROUP_MESSAGES_PER_SECOND`] per group in any second, else 10023.
fn group_message(body: &Map<String, Value>, state: &mut Inner, now: Instant) -> Outcome {
    let id = group_id(body)?.to_string();
    if !state.groups.contains_key(&id) {
        state.groups.insert(id.clone(), Attrs::new());
    }
    // Apart from the group's attribute writes, which have their own budget.
    let window = state.group_windows.entry(format!("msg:{id}")).or_default();
    if !window.arrive(now, Duration::from_secs(1), GROUP_MESSAGES_PER_SECOND) {
        return fail(10023, "group message frequency over 40 a second");
    }
    let mut out = sent(state);
    out.insert("MsgSeq".into(), state.next_group.into());
    Ok(out)
}
