//! The merging rules of coalescing, pure: which modify bodies may merge at all, whether one more
//! write fits a batch, the union of a batch's writes (each key once, the later write's value
//! winning), and the body of the merged upstream call. The payload rules themselves are
//! `validate`'s: a merge is judged by running the validator on a merged body, never re-stated.

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::error::Error;
use crate::tencent::catalogue::ApiKind;
use crate::validate;

/// The attributes one write sets, in payload order.
pub(crate) type Attrs = Vec<(String, String)>;

/// A modify body with nothing a merged body would drop.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plain {
    #[serde(rename = "GroupId")]
    _group_id: IgnoredAny,
    #[serde(rename = "GroupAttr")]
    _attrs: Vec<PlainAttr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainAttr {
    #[serde(rename = "key")]
    _key: IgnoredAny,
    #[serde(rename = "value")]
    _value: IgnoredAny,
}

/// Whether a valid modify body holds only what a merged body carries (`GroupId`, and
/// `GroupAttr` entries of `key` and `value`). A body with any other field goes upstream alone,
/// as a barrier: merging it would silently drop what the caller sent.
pub(crate) fn is_plain(body: &[u8]) -> bool {
    serde_json::from_slice::<Plain>(body).is_ok()
}

/// The union of `writes` applied in order: each key once, at the position of its first write,
/// with the value of its last write.
pub(crate) fn union<'a>(
    writes: impl IntoIterator<Item = &'a [(String, String)]>,
) -> Vec<(&'a str, &'a str)> {
    let mut merged: Vec<(&str, &str)> = Vec::new();
    for (key, value) in writes.into_iter().flatten() {
        match merged.iter_mut().find(|(k, _)| *k == key.as_str()) {
            Some(slot) => slot.1 = value,
            None => merged.push((key, value)),
        }
    }
    merged
}

/// The body of one `modify_group_attr` writing `attrs` to `group`.
pub(crate) fn body(group: &str, attrs: &[(&str, &str)]) -> Result<Bytes, Error> {
    let entries: Vec<Value> = attrs
        .iter()
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    serde_json::to_vec(&json!({"GroupId": group, "GroupAttr": entries}))
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("building a merged body: {e}")))
}

/// The most a batch's merged body can weigh: every key its writes set, each at the longest value
/// any of them gave it. Members leave a batch on deadlines and hang-ups, and a leaving later
/// write can bring back an earlier, longer value; a batch whose envelope passes validation
/// passes it with any of its members gone, so the body built at the send is always valid.
#[derive(Debug, Default, Clone)]
pub(crate) struct Envelope {
    longest: Attrs,
}

impl Envelope {
    /// The envelope with `attrs` added, if the result still passes the validator as a modify of
    /// `group`; `None` means the write does not fit and the batch stops before it.
    pub(crate) fn with(&self, group: &str, attrs: &[(String, String)]) -> Option<Envelope> {
        let mut grown = self.clone();
        for (key, value) in attrs {
            match grown.longest.iter_mut().find(|(k, _)| k == key) {
                Some(slot) if slot.1.len() < value.len() => slot.1.clone_from(value),
                Some(_) => {}
                None => grown.longest.push((key.clone(), value.clone())),
            }
        }
        let view: Vec<(&str, &str)> = grown
            .longest
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = body(group, &view).ok()?;
        validate::validate(ApiKind::ModifyGroupAttr, &body)
            .is_ok()
            .then_some(grown)
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
