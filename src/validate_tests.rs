//! Table tests for the payload rules, with the boundaries on both sides.

use super::*;
use serde_json::json;

const MODIFY: ApiKind = ApiKind::ModifyGroupAttr;

fn code(kind: ApiKind, body: &[u8]) -> i64 {
    match validate(kind, body) {
        Ok(_) => 0,
        Err(invalid) => invalid.code(),
    }
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
    for body in [
        &b""[..],
        b"  ",
        b"{",
        b"[]",
        b"3",
        b"null",
        b"\"s\"",
        b"{} x",
        b"\xff\xfe",
    ] {
        assert_eq!(code(MODIFY, body), 60003, "{body:?}");
        assert_eq!(code(ApiKind::Other, body), 60003, "{body:?}");
    }
}
