//! Reads a body into `serde_json` values in one pass, noting the first key repeated in an object
//! the validator reads (the top level, each `GroupAttr` entry). serde_json keeps the last copy of
//! a repeated key, the body is forwarded byte for byte, and which copy Tencent reads is
//! undocumented: without this, the gateway could check and pace one copy while Tencent obeys the
//! other.

use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Most bytes of a repeated key quoted back: an unknown key may be as long as the body.
const SHOWN_KEY_BYTES: usize = 64;

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

/// Parses `body` as one JSON value, as `serde_json::from_slice` does (same errors, same depth
/// limit, trailing bytes refused), and reports the first repeated key of the top-level object and,
/// when `entries`, of each `GroupAttr` entry. Objects below those are read as serde_json reads
/// them: the validator never looks inside them, so no copy of theirs is checked or paced.
pub(super) fn parse(
    body: &[u8],
    entries: bool,
) -> Result<(Value, Option<Repeated>), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut repeated = None;
    let reader = Reader {
        level: Level::Top { entries },
        repeated: &mut repeated,
    };
    let value = reader.deserialize(&mut de)?;
    de.end()?;
    Ok((value, repeated))
}

/// Where in the body a value sits, which decides whether its keys are compared.
#[derive(Clone, Copy)]
enum Level {
    /// The whole body; `entries` when the API reads `GroupAttr`.
    Top { entries: bool },
    /// The value of the top-level `GroupAttr`.
    Attrs,
    /// One element of `GroupAttr`.
    Entry(usize),
}

/// Builds a [`Value`] at one level, recording the first repeat it meets.
struct Reader<'a> {
    level: Level,
    repeated: &'a mut Option<Repeated>,
}

impl Reader<'_> {
    fn note(&mut self, key: &str) {
        let entry = match self.level {
            Level::Top { .. } => None,
            Level::Entry(i) => Some(i),
            Level::Attrs => return,
        };
        // Only the first: it is the one a caller reads the body from the top to find.
        if self.repeated.is_none() {
            *self.repeated = Some(Repeated {
                key: key.to_string(),
                entry,
            });
        }
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Level::Attrs = self.level else {
            return Value::deserialize(SeqAccessDeserializer::new(seq));
        };
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(super::MAX_ATTRS));
        loop {
            let entry = Reader {
                level: Level::Entry(items.len()),
                repeated: &mut *self.repeated,
            };
            match seq.next_element_seed(entry)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let attrs = match self.level {
            Level::Top { entries } => entries,
            Level::Entry(_) => false,
            Level::Attrs => return Value::deserialize(MapAccessDeserializer::new(map)),
        };
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if attrs && key == "GroupAttr" {
                map.next_value_seed(Reader {
                    level: Level::Attrs,
                    repeated: &mut *self.repeated,
                })?
            } else {
                map.next_value::<Value>()?
            };
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => self.note(slot.key()),
            }
        }
        Ok(Value::Object(object))
    }
}
