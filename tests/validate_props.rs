//! Property tests of the validator: it never panics on any bytes, and every payload it accepts
//! the emulator (an independent reading of Tencent's rules) accepts too.
//!
//! Longer runs: `PROPTEST_CASES=200000 cargo test --release --test validate_props`.

use proptest::prelude::*;
use serde_json::{Value, json};
use timgate::emulator::apis;
use timgate::tencent::catalogue::ApiKind;
use timgate::validate::validate;

const KINDS: [ApiKind; 6] = [
    ApiKind::GetGroupAttr,
    ApiKind::ModifyGroupAttr,
    ApiKind::SetGroupAttr,
    ApiKind::DeleteGroupAttr,
    ApiKind::ClearGroupAttr,
    ApiKind::Other,
];

fn command(kind: ApiKind) -> &'static str {
    match kind {
        ApiKind::GetGroupAttr => "get_group_attr",
        ApiKind::ModifyGroupAttr => "modify_group_attr",
        ApiKind::SetGroupAttr => "set_group_attr",
        ApiKind::DeleteGroupAttr => "delete_group_attr",
        ApiKind::ClearGroupAttr => "clear_group_attr",
        ApiKind::BatchSendMsg => "batchsendmsg",
        ApiKind::SendGroupMsg => "send_group_msg",
        ApiKind::Other => "other",
    }
}

const PIECES: [&str; 6] = ["a", "\u{e9}", "\u{4e2d}", "\u{1f600}", " ", "\""];

/// Strings near the limits: up to three runs of one-, two-, three- or four-byte characters (cheap
/// to generate, so the property runs many cases).
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec((0..PIECES.len(), 0..=max_chars / 2), 0..3).prop_map(|runs| {
        runs.into_iter()
            .map(|(piece, n)| PIECES[piece].repeat(n))
            .collect()
    })
}

/// Mostly well-formed values, sometimes the wrong type.
fn field(max_chars: usize) -> impl Strategy<Value = Value> {
    prop_oneof![
        40 => text(max_chars).prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<i32>().prop_map(|n| json!(n)),
        1 => Just(json!(["x"])),
    ]
}

/// A GroupId: mostly printable ASCII around the 48-byte limit, sometimes anything.
fn group_id() -> impl Strategy<Value = Value> {
    prop_oneof![
        9 => "[ -~]{1,50}".prop_map(Value::String),
        1 => field(60),
    ]
}

fn entry() -> impl Strategy<Value = Value> {
    let key = prop_oneof![6 => "[a-z0-9_]{1,34}".prop_map(Value::String), 1 => field(20)];
    // Large plain values too, so that totals cross 16000 bytes within 16 entries.
    let value =
        prop_oneof![3 => field(1500), 1 => (900..4100usize).prop_map(|n| json!("x".repeat(n)))];
    (key, value, 0..40u8).prop_map(|(key, value, drop)| {
        let mut object = serde_json::Map::new();
        if drop != 0 {
            object.insert("key".into(), key);
        }
        if drop != 1 {
            object.insert("value".into(), value);
        }
        Value::Object(object)
    })
}

fn payload() -> impl Strategy<Value = Value> {
    (group_id(), prop::collection::vec(entry(), 0..19), 0..20u8).prop_map(
        |(group_id, attrs, drop)| {
            let mut object = serde_json::Map::new();
            object.insert("GroupId".into(), group_id);
            if drop != 0 {
                object.insert("GroupAttr".into(), Value::Array(attrs));
            }
            Value::Object(object)
        },
    )
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    // 2000 cases by default; PROPTEST_CASES sets more for a long run.
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for kind in KINDS {
            let _ = validate(kind, &body);
        }
    }

    #[test]
    fn never_panics_on_mutated_json(payload in payload(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = payload.to_string().into_bytes();
        let at = cut.index(body.len().max(1)).min(body.len().saturating_sub(1));
        if !body.is_empty() {
            body[at] = byte;
        }
        for kind in KINDS {
            let _ = validate(kind, &body);
        }
    }

    #[test]
    fn what_the_gateway_accepts_the_emulator_accepts(payload in payload()) {
        let body = payload.to_string().into_bytes();
        let object = payload.as_object().expect("an object");
        for kind in KINDS.into_iter().filter(|k| *k != ApiKind::Other) {
            if validate(kind, &body).is_err() {
                continue;
            }
            prop_assert!(apis::group_id(object).is_ok(), "{kind:?} {payload}");
            let mut attrs = timgate::emulator::state::Attrs::new();
            if kind == ApiKind::DeleteGroupAttr {
                // Delete refuses keys the group does not hold (10050): give it them.
                for entry in payload["GroupAttr"].as_array().expect("accepted, so an array") {
                    attrs.insert(entry["key"].as_str().expect("accepted, so a string").to_string(), String::new());
                }
            }
            let outcome = apis::apply(command(kind), object, &mut attrs);
            prop_assert!(outcome.is_ok(), "{kind:?} accepted by the gateway, refused by the emulator: {outcome:?} {payload}");
        }
    }

    #[test]
    fn a_top_level_key_given_twice_is_refused_whatever_else_the_body_holds(payload in payload(), copy in group_id()) {
        // A second GroupId ahead of the first: every attribute API must refuse, never pick one.
        let body = payload.to_string();
        let body = format!("{{\"GroupId\":{copy},{}", &body[1..]);
        for kind in KINDS.into_iter().filter(|k| *k != ApiKind::Other) {
            let refused = validate(kind, body.as_bytes());
            prop_assert_eq!(refused.map_err(|e| e.reason()), Err("duplicate_key"), "{:?} {}", kind, body);
        }
    }
}

/// Guards the properties above against a generator that drifted to one side: modify payloads must
/// be accepted often and refused for every rule.
#[test]
fn the_generator_reaches_both_sides_of_every_rule() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut codes = std::collections::BTreeMap::<i64, usize>::new();
    for _ in 0..3000 {
        let payload = payload()
            .new_tree(&mut runner)
            .expect("generates")
            .current();
        let code = validate(ApiKind::ModifyGroupAttr, &payload.to_string().into_bytes())
            .map_or_else(|e| e.code(), |_| 0);
        *codes.entry(code).or_default() += 1;
    }
    assert!(codes[&0] >= 150, "too few accepted: {codes:?}");
    for code in [10004, 10015, 10045, 10046, 10047, 10048] {
        assert!(
            codes.get(&code).copied().unwrap_or(0) >= 5,
            "{code} rarely produced: {codes:?}"
        );
    }
}
