//! The emulated APIs' semantics, written from Tencent's pages independently of `validate.rs`, so
//! that tests of the gateway's own checks compare two readings, not one reading twice.

use serde_json::{Map, Value, json};

use super::state::{Attrs, Inner};

/// An answer: `ErrorCode` and `ErrorInfo`, plus fields for a successful get or create.
pub type Outcome = Result<Map<String, Value>, (i64, String)>;

fn fail<T>(code: i64, info: impl Into<String>) -> Result<T, (i64, String)> {
    Err((code, info.into()))
}

/// The GroupId of a payload, checked as Tencent checks it.
pub fn group_id(body: &Map<String, Value>) -> Result<&str, (i64, String)> {
    match body.get("GroupId") {
        Some(Value::String(id)) if id.is_empty() || id.len() > 48 => {
            fail(10015, "invalid group id")
        }
        Some(Value::String(id)) if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) => {
            fail(10015, "invalid group id")
        }
        Some(Value::String(id)) => Ok(id),
        _ => fail(10004, "GroupId is required and must be a string"),
    }
}

/// The attribute entries of a write, checked entry by entry (key 10045, value 10046).
fn entries(
    body: &Map<String, Value>,
    with_values: bool,
) -> Result<Vec<(String, String)>, (i64, String)> {
    let Some(Value::Array(list)) = body.get("GroupAttr") else {
        return fail(10004, "GroupAttr is required and must be an array");
    };
    if list.is_empty() {
        return fail(10004, "GroupAttr is empty");
    }
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let Some(Value::String(key)) = entry.get("key") else {
            return fail(10004, "attribute key must be a string");
        };
        if key.is_empty() {
            return fail(10004, "attribute key is empty");
        }
        if key.len() > 32 {
            return fail(10045, "attribute key over 32 bytes");
        }
        let value = if with_values {
            let Some(Value::String(value)) = entry.get("value") else {
                return fail(10004, "attribute value must be a string");
            };
            if value.len() > 4000 {
                return fail(10046, "attribute value over 4000 bytes");
            }
            value.clone()
        } else {
            String::new()
        };
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// The limits on a whole attribute set (10047, 10048).
fn check_set(attrs: &Attrs) -> Result<(), (i64, String)> {
    if attrs.len() > 16 {
        return fail(10047, "more than 16 attributes");
    }
    if attrs.values().map(String::len).sum::<usize>() > 16000 {
        return fail(10048, "attribute values over 16000 bytes in all");
    }
    Ok(())
}

/// Applies a group-attribute call to the group's attributes. The group exists already.
pub fn apply(command: &str, body: &Map<String, Value>, attrs: &mut Attrs) -> Outcome {
    match command {
        "get_group_attr" => {
            let list: Vec<Value> = attrs
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            let mut out = Map::new();
            out.insert("GroupAttrAry".into(), Value::Array(list));
            Ok(out)
        }
        "modify_group_attr" => {
            let mut next = attrs.clone();
            next.extend(entries(body, true)?);
            check_set(&next)?;
            *attrs = next;
            Ok(Map::new())
        }
        "set_group_attr" => {
            let next: Attrs = entries(body, true)?.into_iter().collect();
            check_set(&next)?;
            *attrs = next;
            Ok(Map::new())
        }
        "delete_group_attr" => {
            let keys = entries(body, false)?;
            if let Some((key, _)) = keys.iter().find(|(k, _)| !attrs.contains_key(k)) {
                return fail(10050, format!("attribute {key} does not exist"));
            }
            for (key, _) in keys {
                attrs.remove(&key);
            }
            Ok(Map::new())
        }
        "clear_group_attr" => {
            attrs.clear();
            Ok(Map::new())
        }
        _ => fail(60009, "unknown API"),
    }
}

/// The group types `create_group` takes (Work, Meeting: the new names of Private, ChatRoom).
const GROUP_TYPES: [&str; 7] = [
    "Public",
    "Private",
    "Work",
    "ChatRoom",
    "Meeting",
    "AVChatRoom",
    "Community",
];

/// Whether a group of `kind` supports attribute API `command`: every type supports get, modify,
/// set and delete; a Community group does not support clear (tencent-im-api.md §8.1, 1047/44189).
pub fn supports(kind: Option<&str>, command: &str) -> bool {
    !(kind == Some("Community") && command == "clear_group_attr")
}

/// `group_open_http_svc/create_group`: makes a group, with the given GroupId or a fresh one.
pub fn create_group(body: &Map<String, Value>, state: &mut Inner) -> Outcome {
    let id = match body.get("GroupId") {
        None => {
            state.next_group += 1;
            format!("@TGS#aEMU{:08}", state.next_group)
        }
        Some(_) => group_id(body)?.to_string(),
    };
    let (Some(Value::String(kind)), Some(Value::String(_))) = (body.get("Type"), body.get("Name"))
    else {
        return fail(10004, "Type and Name are required strings");
    };
    if !GROUP_TYPES.contains(&kind.as_str()) {
        return fail(
            10004,
            format!("Type {kind:?} is not one of {}", GROUP_TYPES.join(", ")),
        );
    }
    if state.groups.contains_key(&id) {
        return fail(10021, "group id already used");
    }
    state.groups.insert(id.clone(), Attrs::new());
    state.group_types.insert(id.clone(), kind.clone());
    let mut out = Map::new();
    out.insert("GroupId".into(), Value::String(id));
    Ok(out)
}

/// `group_open_http_svc/destroy_group`.
pub fn destroy_group(body: &Map<String, Value>, state: &mut Inner) -> Outcome {
    let id = group_id(body)?;
    state.group_types.remove(id);
    match state.groups.remove(id) {
        Some(_) => Ok(Map::new()),
        None => fail(10010, "group does not exist"),
    }
}
