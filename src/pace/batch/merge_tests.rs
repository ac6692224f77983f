use super::*;

fn attrs(pairs: &[(&str, &str)]) -> Attrs {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn grow(envelope: &Envelope, write: &Attrs) -> Option<Envelope> {
    envelope.with("@TGS#aHOT", write)
}

#[test]
fn union_keeps_every_key_once_and_the_later_value_wins() {
    let writes = [
        attrs(&[("song", "a"), ("host", "1")]),
        attrs(&[("viewers", "10")]),
        attrs(&[("song", "b")]),
        attrs(&[("viewers", "11"), ("song", "c")]),
    ];
    let merged = union(writes.iter().map(Vec::as_slice));
    assert_eq!(
        merged,
        vec![("song", "c"), ("host", "1"), ("viewers", "11")],
        "first-seen key order, last value"
    );
}

#[test]
fn the_merged_body_passes_the_validator_and_says_what_the_union_says() {
    let writes = [attrs(&[("a", "1")]), attrs(&[("b", "2"), ("a", "3")])];
    let merged = union(writes.iter().map(Vec::as_slice));
    let body = body("@TGS#aHOT", &merged).expect("body");
    let valid = validate::validate(ApiKind::ModifyGroupAttr, &body).expect("valid");
    assert_eq!(valid.group_id.as_deref(), Some("@TGS#aHOT"));
    assert_eq!(valid.attrs, attrs(&[("a", "3"), ("b", "2")]));
    assert!(is_plain(&body), "a merged body merges again");
}

#[test]
fn only_bodies_without_other_fields_merge() {
    let cases: &[(&str, bool)] = &[
        (
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}]}"#,
            true,
        ),
        (
            r#"{"GroupAttr":[{"value":"v","key":"k"}],"GroupId":"g"}"#,
            true,
        ),
        (
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}],"Extra":1}"#,
            false,
        ),
        (
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v","ttl":5}]}"#,
            false,
        ),
        (
            r#"{"GroupId":"g","GroupId":"h","GroupAttr":[{"key":"k","value":"v"}]}"#,
            false,
        ),
    ];
    for (body, plain) in cases {
        assert_eq!(is_plain(body.as_bytes()), *plain, "{body}");
    }
}

#[test]
fn a_write_that_would_make_17_keys_does_not_fit() {
    let mut envelope = Envelope::default();
    for i in 0..16 {
        envelope = grow(&envelope, &attrs(&[(&format!("k{i}"), "v")])).expect("fits");
    }
    // An existing key still fits; a 17th does not.
    assert!(grow(&envelope, &attrs(&[("k3", "w")])).is_some());
    assert!(grow(&envelope, &attrs(&[("k16", "v")])).is_none());
}

#[test]
fn a_write_that_would_pass_16000_value_bytes_does_not_fit() {
    let big = "x".repeat(4000);
    let mut envelope = Envelope::default();
    for i in 0..4 {
        envelope = grow(&envelope, &attrs(&[(&format!("k{i}"), &big)])).expect("fits");
    }
    assert!(grow(&envelope, &attrs(&[("k4", "y")])).is_none());
    assert!(
        grow(&envelope, &attrs(&[("k0", "short")])).is_some(),
        "a key already there at 4000 bytes stays within the limit"
    );
}

#[test]
fn the_envelope_counts_a_shrunk_value_at_its_longest_so_any_member_may_leave() {
    // k0..k3 at 4000 bytes, then k0 shrunk to 1 byte: the latest union is 12,001 bytes, but if
    // the shrinking write left, k0 would be 4000 again. A further 3,000-byte key must not join.
    let big = "x".repeat(4000);
    let mut envelope = Envelope::default();
    for i in 0..4 {
        envelope = grow(&envelope, &attrs(&[(&format!("k{i}"), &big)])).expect("fits");
    }
    let envelope = grow(&envelope, &attrs(&[("k0", "s")])).expect("fits");
    assert!(grow(&envelope, &attrs(&[("k9", &"y".repeat(3000))])).is_none());
}

#[test]
fn a_key_or_value_the_validator_refuses_never_fits() {
    let envelope = Envelope::default();
    assert!(grow(&envelope, &attrs(&[(&"k".repeat(33), "v")])).is_none());
    assert!(grow(&envelope, &attrs(&[("k", &"v".repeat(4001))])).is_none());
    assert!(grow(&envelope, &attrs(&[("k", "v")])).is_some());
}
