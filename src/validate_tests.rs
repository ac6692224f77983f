//! Table tests for the payload rules, with the boundaries on both sides.

use super::*;
use serde_json::json;

const MODIFY: ApiKind = ApiKind::ModifyGroupAttr;
const SET: ApiKind = ApiKind::SetGroupAttr;
const DELETE: ApiKind = ApiKind::DeleteGroupAttr;
const GET: ApiKind = ApiKind::GetGroupAttr;
const CLEAR: ApiKind = ApiKind::ClearGroupAttr;

fn code(kind: ApiKind, body: &[u8]) -> i64 {
    match validate(kind, body) {
        Ok(_) => 0,
        Err(invalid) => invalid.code(),
    }
}

fn info(kind: ApiKind, body: &[u8]) -> String {
    validate(kind, body)
        .expect_err("refused")
        .info()
        .to_string()
}

fn attrs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let list: Vec<_> = pairs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    json!({"GroupId": "g1", "GroupAttr": list})
        .to_string()
        .into_bytes()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[test]
fn accepts_a_plain_modify_and_keeps_group_and_attrs() {
    let v = validate(MODIFY, &attrs(&[("song", "intro"), ("seat", "3")])).expect("valid");
    assert_eq!(v.group_id.as_deref(), Some("g1"));
    assert_eq!(
        v.attrs,
        vec![("song".into(), "intro".into()), ("seat".into(), "3".into())]
    );
}

#[test]
fn refuses_bodies_that_are_not_json_objects_with_60003() {
    let cases: &[&[u8]] = &[
        b"",
        b"  ",
        b"{",
        b"[]",
        b"3",
        b"null",
        b"\"s\"",
        b"{} x",
        b"{}{}",
        b"\xff\xfe",
        b"{\"GroupId\":\"\xff\"}",
        b"{\"GroupId\":\"a\"",
        b"{'GroupId':'a'}",
    ];
    for body in cases {
        for kind in [MODIFY, SET, DELETE, GET, CLEAR, ApiKind::Other] {
            assert_eq!(code(kind, body), 60003, "{kind:?} {body:?}");
        }
    }
    assert_eq!(info(GET, b""), "body is empty; expected a JSON object");
    assert_eq!(
        info(GET, b"[1]"),
        "body is a JSON array; expected an object"
    );
}

#[test]
fn the_seed_pages_sample_with_comments_and_a_full_width_comma_is_60003() {
    let sample = "{\n \"GroupId\": \"@TGS#aC5SZEAEF\",\n \"GroupAttr\":[\n {\n \"key\":\"attr_key\", //Attribute key\n \"value\":\"attr_val\"\n }\u{ff0c}\n ]\n}";
    assert_eq!(code(MODIFY, sample.as_bytes()), 60003);
}

#[test]
fn other_apis_need_only_a_json_object() {
    assert_eq!(
        code(ApiKind::Other, br#"{"anything": [1, {"x": null}]}"#),
        0
    );
    assert_eq!(code(ApiKind::Other, b"{}"), 0);
}

#[test]
fn group_id_rules_give_10015_and_type_errors_give_10004() {
    let gid = |id: serde_json::Value| json!({"GroupId": id}).to_string().into_bytes();
    let cases: &[(serde_json::Value, i64)] = &[
        (json!("a"), 0),
        (json!("@TGS#aC5SZEAEF"), 0),
        (json!("x".repeat(48)), 0),
        (json!(" ~printable ASCII! "), 0),
        (json!("x".repeat(49)), 10015),
        (json!(""), 10015),
        (json!("tab\there"), 10015),
        (json!("nul\u{0}"), 10015),
        (json!("del\u{7f}"), 10015),
        (json!("\u{e9}t\u{e9}"), 10015),
        (json!(7), 10004),
        (json!(null), 10004),
        (json!(["a"]), 10004),
        (json!({"id": "a"}), 10004),
        (json!(true), 10004),
    ];
    for (id, want) in cases {
        for kind in [GET, CLEAR] {
            assert_eq!(code(kind, &gid(id.clone())), *want, "{kind:?} {id}");
        }
    }
    assert_eq!(code(GET, b"{}"), 10004);
    assert_eq!(info(GET, b"{}"), "GroupId is missing");
    assert_eq!(
        info(GET, &gid(json!("x".repeat(49)))),
        "GroupId is 49 bytes; the limit is 48"
    );
    assert_eq!(
        info(GET, &gid(json!(3))),
        "GroupId must be a string, not number"
    );
}

#[test]
fn key_value_count_and_total_limits_hold_at_the_boundary_and_break_one_past_it() {
    let k32 = "k".repeat(32);
    let k33 = "k".repeat(33);
    let v4000 = "v".repeat(4000);
    let v4001 = "v".repeat(4001);
    for kind in [MODIFY, SET] {
        assert_eq!(code(kind, &attrs(&[(&k32, "v")])), 0);
        assert_eq!(code(kind, &attrs(&[(&k33, "v")])), 10045);
        assert_eq!(code(kind, &attrs(&[("k", &v4000)])), 0);
        assert_eq!(code(kind, &attrs(&[("k", &v4001)])), 10046);
        let k16 = keys(16);
        let pairs: Vec<_> = k16.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(code(kind, &attrs(&pairs)), 0);
        let k17 = keys(17);
        let pairs: Vec<_> = k17.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(code(kind, &attrs(&pairs)), 10047);
        // 16000 bytes in all: four values of 4000; then one byte more.
        let four = keys(4);
        let pairs: Vec<_> = four.iter().map(|k| (k.as_str(), v4000.as_str())).collect();
        assert_eq!(code(kind, &attrs(&pairs)), 0);
        let five = keys(5);
        let mut pairs: Vec<_> = four.iter().map(|k| (k.as_str(), v4000.as_str())).collect();
        pairs.push((five[4].as_str(), "v"));
        assert_eq!(code(kind, &attrs(&pairs)), 10048);
    }
    assert_eq!(
        info(
            MODIFY,
            &attrs(&[("a", "b"), ("c", "d"), ("e", "f"), (&k33, "v")])
        ),
        "GroupAttr[3].key is 33 bytes; the limit is 32"
    );
    assert_eq!(
        info(SET, &attrs(&[("k", &v4001)])),
        "GroupAttr[0].value is 4001 bytes; the limit is 4000"
    );
}

#[test]
fn sizes_are_utf8_bytes_not_characters() {
    let ten = "\u{4e2d}".repeat(10); // 30 bytes
    let eleven = "\u{4e2d}".repeat(11); // 33 bytes
    assert_eq!(code(MODIFY, &attrs(&[(&ten, "v")])), 0);
    assert_eq!(code(MODIFY, &attrs(&[(&eleven, "v")])), 10045);
    assert_eq!(
        code(
            DELETE,
            &json!({"GroupId": "g", "GroupAttr": [{"key": eleven}]})
                .to_string()
                .into_bytes()
        ),
        10045
    );
    // 1333 three-byte characters are 3999 bytes; one more is 4002.
    assert_eq!(code(MODIFY, &attrs(&[("k", &"\u{4e2d}".repeat(1333))])), 0);
    assert_eq!(
        code(MODIFY, &attrs(&[("k", &"\u{4e2d}".repeat(1334))])),
        10046
    );
    // An escaped character counts as its decoded bytes: "\u00e9" is 2 bytes, not 6.
    let escaped = format!(
        r#"{{"GroupId":"g","GroupAttr":[{{"key":"{}","value":"v"}}]}}"#,
        "\\u00e9".repeat(16)
    );
    assert_eq!(code(MODIFY, escaped.as_bytes()), 0);
}

#[test]
fn wrong_types_and_shapes_in_group_attr_give_10004() {
    let body = |attr: serde_json::Value| {
        json!({"GroupId": "g", "GroupAttr": attr})
            .to_string()
            .into_bytes()
    };
    let cases = [
        json!(null),
        json!("k=v"),
        json!({"key": "k", "value": "v"}),
        json!([]),
        json!([null]),
        json!(["k"]),
        json!([[]]),
        json!([{"key": 1, "value": "v"}]),
        json!([{"key": null, "value": "v"}]),
        json!([{"key": ["k"], "value": "v"}]),
        json!([{"key": {"k": 1}, "value": "v"}]),
        json!([{"value": "v"}]),
        json!([{"key": "k"}]),
        json!([{"key": "k", "value": 1}]),
        json!([{"key": "k", "value": null}]),
        json!([{"key": "k", "value": {"nested": "v"}}]),
        json!([{"key": "", "value": "v"}]),
    ];
    for attr in cases {
        assert_eq!(code(MODIFY, &body(attr.clone())), 10004, "{attr}");
        assert_eq!(code(SET, &body(attr.clone())), 10004, "{attr}");
    }
    assert_eq!(code(MODIFY, br#"{"GroupId":"g"}"#), 10004);
    assert_eq!(
        info(MODIFY, &body(json!([{"key": "k", "value": 1}]))),
        "GroupAttr[0].value must be a string, not number"
    );
    assert_eq!(
        info(MODIFY, &body(json!([]))),
        "GroupAttr is empty; it needs at least one entry"
    );
}

#[test]
fn delete_needs_keys_only_and_ignores_values_and_count_limits() {
    let body = |attr: serde_json::Value| {
        json!({"GroupId": "g", "GroupAttr": attr})
            .to_string()
            .into_bytes()
    };
    assert_eq!(code(DELETE, &body(json!([{"key": "a"}, {"key": "b"}]))), 0);
    assert_eq!(
        code(DELETE, &body(json!([{"key": "a", "value": 3}]))),
        0,
        "a value is not read on delete"
    );
    assert_eq!(code(DELETE, &body(json!([{"key": 3}]))), 10004);
    assert_eq!(code(DELETE, &body(json!([]))), 10004);
    let many: Vec<_> = keys(40).into_iter().map(|k| json!({"key": k})).collect();
    assert_eq!(code(DELETE, &body(json!(many))), 0);
}

#[test]
fn a_key_repeated_in_one_write_is_refused_as_ambiguous() {
    let refused =
        validate(MODIFY, &attrs(&[("a", "1"), ("b", "2"), ("a", "3")])).expect_err("ambiguous");
    assert_eq!(refused.code(), 10004);
    assert_eq!(
        refused.info(),
        r#"GroupAttr[2].key "a" repeats GroupAttr[0].key"#
    );
    let del = json!({"GroupId": "g", "GroupAttr": [{"key": "a"}, {"key": "a"}]})
        .to_string()
        .into_bytes();
    assert_eq!(code(DELETE, &del), 10004);
}

fn reason(kind: ApiKind, body: &[u8]) -> &'static str {
    validate(kind, body).expect_err("refused").reason()
}

#[test]
fn a_json_key_repeated_at_the_top_or_in_an_entry_is_refused_as_duplicate_key() {
    let cases: &[(ApiKind, &str, &str)] = &[
        (
            MODIFY,
            r#"{"GroupId":"@TGS#hot","GroupId":"@TGS#a1","GroupAttr":[{"key":"k","value":"v"}]}"#,
            r#"key "GroupId" appears twice in the body"#,
        ),
        (
            SET,
            r#"{"GroupAttr":[{"key":"k","value":"v"}],"GroupId":"g","GroupAttr":[]}"#,
            r#"key "GroupAttr" appears twice in the body"#,
        ),
        (
            MODIFY,
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v","key":"j"}]}"#,
            r#"key "key" appears twice in GroupAttr[0]"#,
        ),
        (
            SET,
            r#"{"GroupId":"g","GroupAttr":[{"key":"a","value":"1"},{"value":"2","key":"b","value":"3"}]}"#,
            r#"key "value" appears twice in GroupAttr[1]"#,
        ),
        (
            DELETE,
            r#"{"GroupId":"g","GroupAttr":[{"key":"a","key":"b"}]}"#,
            r#"key "key" appears twice in GroupAttr[0]"#,
        ),
        (
            GET,
            r#"{"GroupId":"g","GroupId":"g"}"#,
            r#"key "GroupId" appears twice in the body"#,
        ),
        // Escapes are decoded before keys are compared, as any JSON reader would.
        (
            CLEAR,
            r#"{"GroupId":"g","Group\u0049d":"h"}"#,
            r#"key "GroupId" appears twice in the body"#,
        ),
        // Unknown keys too: the body is forwarded whole, so every copy reaches Tencent.
        (
            MODIFY,
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v","x":1,"x":2}]}"#,
            r#"key "x" appears twice in GroupAttr[0]"#,
        ),
    ];
    for (kind, body, want) in cases {
        let refused = validate(*kind, body.as_bytes()).expect_err(body);
        assert_eq!(
            (refused.code(), refused.reason()),
            (10004, "duplicate_key"),
            "{kind:?} {body}"
        );
        assert!(
            refused.info().starts_with(want),
            "{:?} for {body}",
            refused.info()
        );
    }
}

#[test]
fn a_repeated_key_is_judged_after_the_json_and_before_every_other_rule() {
    // Not JSON at all still says so, wherever the repeat is.
    assert_eq!(code(MODIFY, br#"{"GroupId":"g","GroupId":"h","#), 60003);
    // Either copy alone would break a rule (empty GroupId; 33-byte key): the repeat is named,
    // since which copy Tencent would judge is unknown.
    assert_eq!(
        reason(GET, br#"{"GroupId":"","GroupId":"g"}"#),
        "duplicate_key"
    );
    let long = format!(
        r#"{{"GroupId":"g","GroupAttr":[{{"key":"{}","key":"k","value":"v"}}]}}"#,
        "k".repeat(33)
    );
    assert_eq!(reason(MODIFY, long.as_bytes()), "duplicate_key");
    // The first repeat in the body is the one named.
    assert!(
        info(
            MODIFY,
            br#"{"GroupId":"g","GroupAttr":[{"key":"k","key":"k","value":"v"}],"GroupId":"g"}"#
        )
        .starts_with(r#"key "key" appears twice in GroupAttr[0]"#)
    );
}

#[test]
fn a_repeated_key_the_gateway_does_not_read_passes_untouched() {
    // Below an unknown field, inside a value, or in GroupAttr where the API does not read it.
    assert_eq!(
        code(
            GET,
            br#"{"GroupId":"g","Ext":{"a":1,"a":2},"List":[{"b":1,"b":2}]}"#
        ),
        0
    );
    assert_eq!(
        code(
            GET,
            br#"{"GroupId":"g","GroupAttr":[{"key":"a","key":"b"}]}"#
        ),
        0
    );
    assert_eq!(
        code(
            MODIFY,
            br#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v","Ext":{"z":1,"z":2}}]}"#
        ),
        0
    );
    // Other APIs get the JSON-object check alone: the gateway reads none of their fields.
    assert_eq!(code(ApiKind::Other, br#"{"To":"a","To":"b"}"#), 0);
}

#[test]
fn a_huge_repeated_key_is_named_shortened() {
    let key = "\u{4e2d}".repeat(1000); // 3000 bytes
    let body = format!(r#"{{"GroupId":"g","{key}":1,"{key}":2}}"#);
    let shown = info(GET, body.as_bytes());
    assert!(shown.len() < 200, "{shown}");
    assert!(shown.starts_with("key \"\u{4e2d}\u{4e2d}"), "{shown}");
}

#[test]
fn unknown_fields_pass_untouched() {
    let body =
        br#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v","Future":1}],"NewField":{"x":[1]}}"#;
    assert_eq!(code(MODIFY, body), 0);
}

#[test]
fn hostile_sizes_and_depths_are_answered_not_crashed() {
    // 100,000 entries: refused for count without building 100,000 pairs.
    let entries = vec![json!({"key": "k", "value": "v"}); 100_000];
    let body = json!({"GroupId": "g", "GroupAttr": entries})
        .to_string()
        .into_bytes();
    assert_eq!(code(MODIFY, &body), 10047);
    // 100,000 levels of nesting: the parser's depth limit answers 60003, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(code(MODIFY, deep.as_bytes()), 60003);
    let deep_value = format!(
        r#"{{"GroupId":"g","GroupAttr":[{{"key":"k","value":{}1{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(code(MODIFY, deep_value.as_bytes()), 60003);
    // Escaped control characters are legal JSON; in a GroupId they are not printable ASCII.
    assert_eq!(
        code(
            MODIFY,
            br#"{"GroupId":"g","GroupAttr":[{"key":"k\u0001","value":"\n\t\u0000"}]}"#
        ),
        0
    );
    assert_eq!(code(GET, br#"{"GroupId":"a\u0007b"}"#), 10015);
    // Raw (unescaped) control characters inside a string are not JSON.
    assert_eq!(code(GET, b"{\"GroupId\":\"a\x01b\"}"), 60003);
}

#[test]
fn batchsendmsg_names_1_to_500_userid_strings() {
    const BATCH: ApiKind = ApiKind::BatchSendMsg;
    let body = |n: usize| {
        let to: Vec<String> = (0..n).map(|i| format!("\"u{i}\"")).collect();
        format!(r#"{{"To_Account":[{}],"MsgBody":[]}}"#, to.join(","))
    };
    assert_eq!(code(BATCH, body(1).as_bytes()), 0);
    assert_eq!(code(BATCH, body(500).as_bytes()), 0);
    for refused in [body(0), body(501)] {
        let err = validate(BATCH, refused.as_bytes()).expect_err("refused");
        assert_eq!(err.reason(), "too_many_recipients", "{}", err.info());
    }
    assert_eq!(code(BATCH, br#"{"To_Account":["a",7]}"#), 60015);
    assert_eq!(code(BATCH, br#"{"To_Account":"a"}"#), 60015);
    assert_eq!(code(BATCH, br#"{"MsgBody":[]}"#), 60015);
}

#[test]
fn send_group_msg_names_its_group_for_the_message_lane() {
    let kind = ApiKind::SendGroupMsg;
    let body = br#"{"GroupId":"@TGS#room","Random":1,"MsgBody":[]}"#;
    let validated = validate(kind, body).expect("valid");
    assert_eq!(validated.group_id.as_deref(), Some("@TGS#room"));
    assert_eq!(code(kind, br#"{"Random":1}"#), 10004);
}
