//! Reads a body in one pass of serde_json's parser into what the validator reads of it: the
//! top-level object's fields, `GroupAttr`'s entries and their `key` and `value`, strings borrowed
//! from the body where they have no escapes. Everything else is parsed and checked exactly as
//! `serde_json::from_slice::<Value>` would check it (same errors, same depth limit), but not kept.
//! It also notes the first key repeated in an object the validator reads (the top level, each
//! `GroupAttr` entry): serde_json keeps the last copy of a repeated key, the body is forwarded
//! byte for byte, and which copy Tencent reads is undocumented, so without this the gateway could
//! check and pace one copy while Tencent obeys the other.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Most bytes of a repeated key quoted back: an unknown key may be as long as the body.
const SHOWN_KEY_BYTES: usize = 64;

/// Above this many keys an object's repeats are found with a set instead of a scan.
const SCANNED_KEYS: usize = 16;

/// The first key that appears twice in one object the validator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Repeated {
    key: String,
    /// `None` for the top level, else the `GroupAttr` entry's index.
    entry: Option<usize>,
}

impl fmt::Display for Repeated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.key.len().min(SHOWN_KEY_BYTES);
        while !self.key.is_char_boundary(end) {
            end -= 1;
        }
        let cut = if end < self.key.len() { "..." } else { "" };
        write!(f, "key {:?}{cut} appears twice in ", &self.key[..end])?;
        match self.entry {
            None => f.write_str("the body"),
            Some(i) => write!(f, "GroupAttr[{i}]"),
        }
    }
}

/// A JSON value as far as the validator reads it.
#[derive(Debug)]
pub(super) enum Json<'a> {
    Null,
    Bool,
    Number,
    Str(Cow<'a, str>),
    /// The elements, for an array the validator reads (`GroupAttr`, `To_Account`).
    Array(Vec<Json<'a>>),
    /// The fields, for an object the validator reads (the body, a `GroupAttr` entry).
    Object(Fields<'a>),
    /// An array or object the validator does not look inside: its type name.
    Unread(&'static str),
}

impl Json<'_> {
    /// The JSON type's name, for messages.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "boolean",
            Json::Number => "number",
            Json::Str(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
            Json::Unread(name) => name,
        }
    }
}

/// An object's fields in body order, each key once (the first copy of a repeated key).
#[derive(Debug, Default)]
pub(super) struct Fields<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Fields<'a> {
    /// The value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// What the validator reads of a body: `Top` reads the object's fields (and, with `entries`,
/// `GroupAttr`'s entries); `Shape` only whether it is an object (an API whose fields the gateway
/// never reads: no field of it can differ between what the gateway checked and what Tencent
/// reads, so its repeats pass as serde_json passes them).
#[derive(Clone, Copy)]
pub(super) enum Reads {
    Top { entries: bool },
    Shape,
}

/// Parses `body` as one JSON value, as `serde_json::from_slice` does (same errors, same depth
/// limit, trailing bytes refused), keeping what `reads` says and the first repeated key of the
/// objects it reads.
pub(super) fn parse(
    body: &[u8],
    reads: Reads,
) -> Result<(Json<'_>, Option<Repeated>), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut repeated = None;
    let level = match reads {
        Reads::Top { entries } => Level::Top { entries },
        Reads::Shape => Level::Leaf,
    };
    let reader = Reader {
        level,
        repeated: &mut repeated,
    };
    let value = reader.deserialize(&mut de)?;
    de.end()?;
    Ok((value, repeated))
}

/// Where in the body a value sits, which decides what of it is kept.
#[derive(Clone, Copy)]
enum Level {
    /// The whole body; `entries` when the API reads `GroupAttr`.
    Top { entries: bool },
    /// A top-level field's value: scalars and an array's elements are kept (as leaves).
    Field,
    /// The value of the top-level `GroupAttr`.
    Attrs,
    /// One element of `GroupAttr`.
    Entry(usize),
    /// Scalars kept; an array's or object's inside checked, not kept.
    Leaf,
}

/// Reads one value at its level, recording the first repeat it meets.
struct Reader<'r> {
    level: Level,
    repeated: &'r mut Option<Repeated>,
}

impl Reader<'_> {
    fn note(&mut self, key: &str) {
        let entry = match self.level {
            Level::Entry(i) => Some(i),
            _ => None,
        };
        // Only the first: it is the one a caller reads the body from the top to find.
        if self.repeated.is_none() {
            *self.repeated = Some(Repeated {
                key: key.to_string(),
                entry,
            });
        }
    }

    /// The level of the value of field `key` in an object read at this level; `None` for a
    /// value the validator never reads.
    fn field_level(&self, key: &str) -> Option<Level> {
        match (self.level, key) {
            (Level::Top { entries: true }, "GroupAttr") => Some(Level::Attrs),
            (Level::Top { .. }, "GroupId" | "GroupAttr" | "To_Account") => Some(Level::Field),
            (Level::Entry(_), "key" | "value") => Some(Level::Leaf),
            _ => None,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Number)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let element = match self.level {
            Level::Attrs => None,
            Level::Field => Some(Level::Leaf),
            _ => {
                while seq.next_element_seed(Unread)?.is_some() {}
                return Ok(Json::Unread("array"));
            }
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(super::MAX_ATTRS));
        loop {
            let reader = Reader {
                level: element.unwrap_or(Level::Entry(items.len())),
                repeated: &mut *self.repeated,
            };
            match seq.next_element_seed(reader)? {
                Some(item) => items.push(item),
                None => return Ok(Json::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Json<'de>, A::Error> {
        if !matches!(self.level, Level::Top { .. } | Level::Entry(_)) {
            while map.next_key_seed(Key)?.is_some() {
                map.next_value_seed(Unread)?;
            }
            return Ok(Json::Unread("object"));
        }
        let mut fields = Fields::default();
        let mut seen: Option<crate::FastMap<Cow<'de, str>, ()>> = None;
        while let Some(key) = map.next_key_seed(Key)? {
            let value = match self.field_level(&key) {
                Some(level) => map.next_value_seed(Reader {
                    level,
                    repeated: &mut *self.repeated,
                })?,
                None => Json::Unread(map.next_value_seed(Unread)?),
            };
            let again = match &mut seen {
                Some(seen) => seen.insert(key.clone(), ()).is_some(),
                None => fields.0.iter().any(|(k, _)| *k == key),
            };
            if again {
                self.note(&key);
                continue;
            }
            fields.0.push((key, value));
            if seen.is_none() && fields.0.len() > SCANNED_KEYS {
                seen = Some(fields.0.iter().map(|(k, _)| (k.clone(), ())).collect());
            }
        }
        Ok(Json::Object(fields))
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A value the validator does not read: parsed and checked as serde_json checks a `Value`
/// (strings' UTF-8 and escapes, numbers' range, the depth limit), nothing kept but its type's
/// name. `IgnoredAny` would not do: serde_json skips it without those checks.
struct Unread;

impl<'de> DeserializeSeed<'de> for Unread {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unread {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok("boolean")
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok("number")
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok("string")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok("null")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Unread)?.is_some() {}
        Ok("array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(Unread)?;
        }
        Ok("object")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader accepts exactly what `serde_json::from_slice::<Value>` accepts, with the same
    /// error, whatever it keeps.
    fn agrees(body: &[u8]) {
        let serde = serde_json::from_slice::<serde_json::Value>(body).map_err(|e| e.to_string());
        for reads in [
            Reads::Top { entries: true },
            Reads::Top { entries: false },
            Reads::Shape,
        ] {
            let ours = parse(body, reads).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(
                ours,
                serde.as_ref().map(|_| ()).map_err(Clone::clone),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    const SAMPLE: &str = r#" {"GroupId":"g\u00e9","GroupAttr":[{"key":"k","value":"v\n","x":{"a":[1,-2.5e3,true,null]}},7],"To_Account":["a",{"b":1}],"Other":{"k":"\ud83d\ude00"}} "#;

    #[test]
    fn accepts_and_refuses_as_serde_json_on_every_cut_and_every_inserted_byte() {
        let body = SAMPLE.as_bytes();
        for end in 0..=body.len() {
            agrees(&body[..end]);
        }
        for at in 0..=body.len() {
            for byte in [
                b'"', b'\\', b'{', b']', b',', b':', b'1', b'e', b'.', 0x01, 0xff,
            ] {
                let mut bad = body.to_vec();
                bad.insert(at, byte);
                agrees(&bad);
            }
        }
    }

    #[test]
    fn accepts_and_refuses_as_serde_json_on_edge_cases() {
        let deep = |n: usize| format!("{{\"Other\":{}{}}}", "[".repeat(n), "]".repeat(n));
        for body in [
            deep(126),
            deep(127),
            deep(128),
            r#"{"GroupAttr":[{"key":"\ud800"}]}"#.to_string(),
            r#"{"Other":"\ud800"}"#.to_string(),
            r#"{"Other":1e400}"#.to_string(),
            r#"{"Other":-1e400}"#.to_string(),
            format!(r#"{{"Other":1{}}}"#, "0".repeat(400)),
            r#"{"Other":01}"#.to_string(),
            r#"{"a":1,"a":2}"#.to_string(),
            r#"{1:2}"#.to_string(),
        ] {
            agrees(body.as_bytes());
        }
        agrees(b"{\"Other\":\"\xff\"}");
        agrees(b"{\"\xc3\x28\":1}");
    }

    #[test]
    fn keeps_what_the_validator_reads_and_borrows_plain_strings() {
        let (value, repeated) =
            parse(SAMPLE.as_bytes(), Reads::Top { entries: true }).expect("valid JSON");
        assert!(repeated.is_none());
        let Json::Object(top) = value else {
            panic!("an object")
        };
        assert!(matches!(top.get("GroupId"), Some(Json::Str(Cow::Owned(id))) if id == "g\u{e9}"));
        assert_eq!(top.get("Other").map(Json::type_name), Some("object"));
        let Some(Json::Array(entries)) = top.get("GroupAttr") else {
            panic!("GroupAttr read")
        };
        let Json::Object(entry) = &entries[0] else {
            panic!("an entry")
        };
        assert!(matches!(
            entry.get("key"),
            Some(Json::Str(Cow::Borrowed("k")))
        ));
        assert_eq!(entry.get("x").map(Json::type_name), Some("object"));
        assert_eq!(entries[1].type_name(), "number");
        let Some(Json::Array(to)) = top.get("To_Account") else {
            panic!("To_Account read")
        };
        assert_eq!(to[1].type_name(), "object");
    }

    #[test]
    fn finds_repeats_in_small_and_large_objects_keeping_the_first_copy() {
        let mut keys: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        keys.push(r#""k33":"again""#.to_string());
        keys.push(r#""GroupId":"first""#.to_string());
        keys.push(r#""GroupId":"second""#.to_string());
        let body = format!("{{{}}}", keys.join(","));
        let (value, repeated) =
            parse(body.as_bytes(), Reads::Top { entries: true }).expect("valid JSON");
        assert_eq!(
            repeated.map(|r| r.to_string()).as_deref(),
            Some(r#"key "k33" appears twice in the body"#)
        );
        let Json::Object(top) = value else {
            panic!("an object")
        };
        assert!(matches!(top.get("GroupId"), Some(Json::Str(id)) if id == "first"));
        let (_, repeated) = parse(
            br#"{"GroupAttr":[{"key":"a"},{"key":"a","key":"b"}]}"#,
            Reads::Top { entries: true },
        )
        .expect("valid JSON");
        assert_eq!(
            repeated.map(|r| r.to_string()).as_deref(),
            Some(r#"key "key" appears twice in GroupAttr[1]"#)
        );
        let (_, repeated) = parse(br#"{"a":1,"a":2}"#, Reads::Shape).expect("valid JSON");
        assert!(repeated.is_none());
    }
}
