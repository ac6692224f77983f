//! Payload rules per API, checked before a request spends quota: pure functions over the body
//! bytes that either say what the pacer needs to know or which Tencent code the payload earns.
//! The body is read once (`validate_json.rs`), which also finds a key repeated in an object read.

use json::{Fields, Json, Reads};

use crate::error::gateway_code;
use crate::tencent::apis::MOST_RECIPIENTS;
use crate::tencent::catalogue::ApiKind;

/// Most bytes in a GroupId (tencent-im-api.md §4).
pub const MAX_GROUP_ID_BYTES: usize = 48;
/// Most bytes in an attribute key.
pub const MAX_KEY_BYTES: usize = 32;
/// Most bytes in an attribute value.
pub const MAX_VALUE_BYTES: usize = 4000;
/// Most attributes in one write.
pub const MAX_ATTRS: usize = 16;
/// Most bytes in all values of one write together.
pub const MAX_TOTAL_VALUE_BYTES: usize = 16000;

/// A payload Tencent would refuse: the code it would give and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{info}")]
pub struct Invalid {
    code: i64,
    reason: &'static str,
    info: String,
}

impl Invalid {
    fn new(code: i64, reason: &'static str, info: impl Into<String>) -> Invalid {
        Invalid {
            code,
            reason,
            info: info.into(),
        }
    }

    fn json(info: impl Into<String>) -> Invalid {
        Invalid::new(60003, "invalid_json", info)
    }

    fn param(info: impl Into<String>) -> Invalid {
        Invalid::new(10004, "invalid_param", info)
    }

    fn group_id(info: impl Into<String>) -> Invalid {
        Invalid::new(10015, "invalid_group_id", info)
    }

    /// Tencent's `ErrorCode` for this payload.
    pub fn code(&self) -> i64 {
        self.code
    }

    /// A stable snake_case name for headers and metric labels.
    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// What is wrong, naming the field, its size and the limit.
    pub fn info(&self) -> &str {
        &self.info
    }
}

/// What later stages need from a valid payload, so that none of them parses the body again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// The GroupId, for every attribute API.
    pub group_id: Option<String>,
    /// The attributes written, for modify and set, in payload order (coalescing reads them).
    pub attrs: Vec<(String, String)>,
    /// What the call counts against its API's limit: its recipients for `batchsendmsg`, else 1.
    pub units: u32,
}

/// Checks `body` against the rules of API `kind`.
pub fn validate(kind: ApiKind, body: &[u8]) -> Result<Validated, Invalid> {
    let not_json = |e: serde_json::Error| {
        if body.iter().all(u8::is_ascii_whitespace) {
            Invalid::json("body is empty; expected a JSON object")
        } else {
            Invalid::json(format!("body is not valid JSON: {e}"))
        }
    };
    // Other APIs get the object check alone: none of their fields is read, so none can differ
    // between what the gateway checked and what Tencent reads.
    let reads = match kind {
        ApiKind::Other => Reads::Shape,
        _ => Reads::Top {
            entries: reads_entries(kind),
        },
    };
    let (value, repeated) = json::parse(body, reads).map_err(not_json)?;
    if value.type_name() != "object" {
        return Err(Invalid::json(format!(
            "body is a JSON {}; expected an object",
            value.type_name()
        )));
    }
    // Before any other rule: with two copies of a key, which one to judge is Tencent's
    // undocumented choice, not the gateway's.
    if let Some(repeated) = repeated {
        return Err(Invalid::new(
            10004,
            "duplicate_key",
            format!("{repeated}; send each key once"),
        ));
    }
    let object = match value {
        Json::Object(fields) => fields,
        // `Reads::Shape`: an object, none of whose fields is read.
        _ => {
            return Ok(Validated {
                group_id: None,
                attrs: Vec::new(),
                units: 1,
            });
        }
    };
    let group_id = match kind {
        ApiKind::BatchSendMsg => {
            let units = check_recipients(&object)?;
            return Ok(Validated {
                group_id: None,
                attrs: Vec::new(),
                units,
            });
        }
        _ => check_group_id(&object)?,
    };
    // A group message is forwarded as it is once its GroupId is known: its lane is the group's.
    let attrs = match kind {
        ApiKind::ModifyGroupAttr | ApiKind::SetGroupAttr => check_attrs(&object, true)?,
        ApiKind::DeleteGroupAttr => {
            check_attrs(&object, false)?;
            Vec::new()
        }
        _ => Vec::new(),
    };
    Ok(Validated {
        group_id: Some(group_id),
        attrs,
        units: 1,
    })
}

/// `batchsendmsg`'s `To_Account`: 1 to [`MOST_RECIPIENTS`] UserIDs; returns how many. The pacer
/// counts each call as that many recipients, and a call naming more than Tencent takes would
/// fail after spending its turn.
fn check_recipients(object: &Fields<'_>) -> Result<u32, Invalid> {
    let Some(Json::Array(to)) = object.get("To_Account") else {
        return Err(Invalid::new(
            60015,
            "invalid_recipients",
            "To_Account must be an array of UserIDs",
        ));
    };
    if to.is_empty() || to.len() > MOST_RECIPIENTS as usize {
        return Err(Invalid::new(
            gateway_code::BODY_READ,
            "too_many_recipients",
            format!(
                "To_Account names {} accounts; batchsendmsg takes 1 to {MOST_RECIPIENTS}",
                to.len()
            ),
        ));
    }
    if let Some(bad) = to.iter().find(|id| !matches!(id, Json::Str(_))) {
        return Err(Invalid::new(
            60015,
            "invalid_recipients",
            format!(
                "To_Account holds a {}; each entry is a UserID string",
                bad.type_name()
            ),
        ));
    }
    Ok(to.len() as u32)
}

/// Whether the API reads `GroupAttr`, so that its entries' keys must each appear once.
fn reads_entries(kind: ApiKind) -> bool {
    matches!(
        kind,
        ApiKind::ModifyGroupAttr | ApiKind::SetGroupAttr | ApiKind::DeleteGroupAttr
    )
}

fn string_field<'a>(
    object: &'a Fields<'_>,
    field: &str,
    path: std::fmt::Arguments<'_>,
) -> Result<&'a str, Invalid> {
    match object.get(field) {
        Some(Json::Str(s)) => Ok(s),
        Some(other) => Err(Invalid::param(format!(
            "{path} must be a string, not {}",
            other.type_name()
        ))),
        None => Err(Invalid::param(format!("{path} is missing"))),
    }
}

fn check_group_id(object: &Fields<'_>) -> Result<String, Invalid> {
    let id = string_field(object, "GroupId", format_args!("GroupId"))?;
    if id.is_empty() {
        return Err(Invalid::group_id("GroupId is empty"));
    }
    if id.len() > MAX_GROUP_ID_BYTES {
        return Err(Invalid::group_id(format!(
            "GroupId is {} bytes; the limit is {MAX_GROUP_ID_BYTES}",
            id.len()
        )));
    }
    if let Some(at) = id.bytes().position(|b| !(0x20..=0x7e).contains(&b)) {
        return Err(Invalid::group_id(format!(
            "GroupId byte {at} is not printable ASCII"
        )));
    }
    Ok(id.to_string())
}

fn check_attrs(object: &Fields<'_>, with_values: bool) -> Result<Vec<(String, String)>, Invalid> {
    let entries = match object.get("GroupAttr") {
        Some(Json::Array(entries)) => entries,
        Some(other) => {
            return Err(Invalid::param(format!(
                "GroupAttr must be an array, not {}",
                other.type_name()
            )));
        }
        None => return Err(Invalid::param("GroupAttr is missing")),
    };
    if entries.is_empty() {
        return Err(Invalid::param(
            "GroupAttr is empty; it needs at least one entry",
        ));
    }
    if with_values && entries.len() > MAX_ATTRS {
        return Err(Invalid::new(
            10047,
            "too_many_attrs",
            format!(
                "GroupAttr has {} entries; the limit is {MAX_ATTRS}",
                entries.len()
            ),
        ));
    }
    let mut attrs = Vec::with_capacity(entries.len().min(MAX_ATTRS));
    let mut seen =
        crate::FastMap::with_capacity_and_hasher(entries.len().min(MAX_ATTRS), Default::default());
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        let Json::Object(entry) = entry else {
            return Err(Invalid::param(format!(
                "GroupAttr[{i}] must be an object, not {}",
                entry.type_name()
            )));
        };
        // The path is formatted only when it is named in an answer: at every entry of every
        // write it cost about a thousand instructions per request.
        let key = string_field(entry, "key", format_args!("GroupAttr[{i}].key"))?;
        if key.is_empty() {
            return Err(Invalid::param(format!("GroupAttr[{i}].key is empty")));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Invalid::new(
                10045,
                "key_too_long",
                format!(
                    "GroupAttr[{i}].key is {} bytes; the limit is {MAX_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        // A key twice in one write is ambiguous (which value wins?): refuse it rather than guess.
        if let Some(first) = seen.insert(key, i) {
            return Err(Invalid::param(format!(
                "GroupAttr[{i}].key {key:?} repeats GroupAttr[{first}].key"
            )));
        }
        if !with_values {
            continue;
        }
        let value = string_field(entry, "value", format_args!("GroupAttr[{i}].value"))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Invalid::new(
                10046,
                "value_too_long",
                format!(
                    "GroupAttr[{i}].value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        total += value.len();
        attrs.push((key.to_string(), value.to_string()));
    }
    if total > MAX_TOTAL_VALUE_BYTES {
        return Err(Invalid::new(
            10048,
            "values_too_large",
            format!(
                "GroupAttr values are {total} bytes in all; the limit is {MAX_TOTAL_VALUE_BYTES}"
            ),
        ));
    }
    Ok(attrs)
}

#[path = "validate_json.rs"]
mod json;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
