//! Through the gateway: every payload Tencent would refuse is answered locally with Tencent's code
//! and shape, and the emulator behind it receives nothing.

mod support;

use serde_json::json;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::emulator::EmulatorConfig;

const MODIFY: &str = "group_open_http_svc/modify_group_attr";
const SET: &str = "group_open_http_svc/set_group_attr";
const DELETE: &str = "group_open_http_svc/delete_group_attr";
const GET: &str = "group_open_attr_http_svc/get_group_attr";
const CLEAR: &str = "group_open_http_svc/clear_group_attr";

fn attrs(n: usize, value_len: usize) -> serde_json::Value {
    let list: Vec<_> = (0..n)
        .map(|i| json!({"key": format!("k{i}"), "value": "v".repeat(value_len)}))
        .collect();
    serde_json::Value::Array(list)
}

#[tokio::test]
async fn refused_payloads_never_reach_the_upstream() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    // Room for the 100,000-entry GroupAttr (about 3 MB).
    let big = "[server]\nmax_body_bytes = 8388608\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), big]).await;
    let client = Client::new();
    let (modify, set, delete, get, clear) = (MODIFY, SET, DELETE, GET, CLEAR);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, i64, &str)> = vec![
        (modify, b"".to_vec(), 60003, "invalid_json"),
        (
            modify,
            b"{\"GroupId\": \"g\", // comment\n}".to_vec(),
            60003,
            "invalid_json",
        ),
        (modify, b"[1,2]".to_vec(), 60003, "invalid_json"),
        (
            modify,
            b"{\"GroupId\":\"g\"} trailing".to_vec(),
            60003,
            "invalid_json",
        ),
        (
            modify,
            b"{\"GroupId\":\"\xc3\x28\"}".to_vec(),
            60003,
            "invalid_json",
        ),
        (get, deep.into_bytes(), 60003, "invalid_json"),
        (
            modify,
            json!({"GroupId": "g"}).to_string().into_bytes(),
            10004,
            "invalid_param",
        ),
        (
            modify,
            json!({"GroupId": "g", "GroupAttr": []})
                .to_string()
                .into_bytes(),
            10004,
            "invalid_param",
        ),
        (
            modify,
            json!({"GroupId": "g", "GroupAttr": [{"key": "k", "value": 1}]})
                .to_string()
                .into_bytes(),
            10004,
            "invalid_param",
        ),
        (
            set,
            json!({"GroupId": 12, "GroupAttr": attrs(1, 1)})
                .to_string()
                .into_bytes(),
            10004,
            "invalid_param",
        ),
        (
            delete,
            json!({"GroupId": "g", "GroupAttr": [{"value": "v"}]})
                .to_string()
                .into_bytes(),
            10004,
            "invalid_param",
        ),
        (
            get,
            json!({"GroupId": "x".repeat(49)}).to_string().into_bytes(),
            10015,
            "invalid_group_id",
        ),
        (
            clear,
            json!({"GroupId": ""}).to_string().into_bytes(),
            10015,
            "invalid_group_id",
        ),
        (
            modify,
            json!({"GroupId": "g", "GroupAttr": [{"key": "\u{4e2d}".repeat(11), "value": "v"}]})
                .to_string()
                .into_bytes(),
            10045,
            "key_too_long",
        ),
        (
            set,
            json!({"GroupId": "g", "GroupAttr": attrs(1, 4001)})
                .to_string()
                .into_bytes(),
            10046,
            "value_too_long",
        ),
        (
            modify,
            json!({"GroupId": "g", "GroupAttr": attrs(17, 1)})
                .to_string()
                .into_bytes(),
            10047,
            "too_many_attrs",
        ),
        (
            modify,
            json!({"GroupId": "g", "GroupAttr": attrs(100_000, 0)})
                .to_string()
                .into_bytes(),
            10047,
            "too_many_attrs",
        ),
        (
            set,
            json!({"GroupId": "g", "GroupAttr": attrs(5, 3201)})
                .to_string()
                .into_bytes(),
            10048,
            "values_too_large",
        ),
    ];
    for (api, body, code, reason) in cases {
        let answer = client.post(&gateway.url(api), body).await;
        assert_eq!(answer.status, 200, "{api} {code}");
        assert_eq!(answer.code(), code, "{api}: {:?}", answer.json());
        assert_eq!(answer.json()["ActionStatus"], "FAIL");
        assert_eq!(answer.reason(), Some(reason));
    }
    assert_eq!(
        emulator.state.received(),
        0,
        "no refused payload reached the upstream"
    );

    // The limits themselves pass: 16 keys and 16000 bytes in all.
    let answer = client
        .post(
            &gateway.url(set),
            json!({"GroupId": "g", "GroupAttr": attrs(16, 1000)}).to_string(),
        )
        .await;
    assert_eq!(answer.code(), 0, "{:?}", answer.json());
    assert_eq!(emulator.state.received(), 1);
    let text = String::from_utf8_lossy(
        &support::Client::new()
            .get(&format!("http://{}/metrics", gateway.admin))
            .await
            .body,
    )
    .into_owned();
    assert!(
        text.contains("timgate_rejections_total{reason=\"invalid_json\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("timgate_rejections_total{reason=\"too_many_attrs\"} 2"),
        "{text}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn error_info_names_the_field_its_size_and_the_limit() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let mut list = attrs(3, 1).as_array().expect("array").clone();
    list.push(json!({"key": "k".repeat(33), "value": "v"}));
    let body = json!({"GroupId": "g", "GroupAttr": list}).to_string();
    let answer = Client::new()
        .post(&gateway.url("group_open_http_svc/modify_group_attr"), body)
        .await;
    assert_eq!(
        answer.json(),
        json!({"ActionStatus": "FAIL", "ErrorCode": 10045, "ErrorInfo": "GroupAttr[3].key is 33 bytes; the limit is 32"})
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_key_repeated_in_an_object_the_gateway_reads_is_refused_and_never_forwarded() {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    let client = Client::new();
    let (modify, set, delete, get, clear) = (MODIFY, SET, DELETE, GET, CLEAR);
    // Each would pass every rule if only one copy were read: the validator and the pacer read
    // one, Tencent may read the other.
    let cases: &[(&str, &str, &str)] = &[
        (
            modify,
            r#"{"GroupId":"@TGS#hot","GroupId":"@TGS#a1","GroupAttr":[{"key":"k","value":"v"}]}"#,
            r#"key "GroupId" appears twice in the body"#,
        ),
        (
            set,
            r#"{"GroupId":"g","GroupAttr":[{"key":"k","value":"v"}],"GroupAttr":[{"key":"k","value":"w"}]}"#,
            r#"key "GroupAttr" appears twice in the body"#,
        ),
        (
            modify,
            r#"{"GroupId":"g","GroupAttr":[{"key":"a","value":"v"},{"key":"k","value":"v","value":"w"}]}"#,
            r#"key "value" appears twice in GroupAttr[1]"#,
        ),
        (
            delete,
            r#"{"GroupId":"g","GroupAttr":[{"key":"a","key":"b"}]}"#,
            r#"key "key" appears twice in GroupAttr[0]"#,
        ),
        (
            get,
            r#"{"GroupId":"a","Group\u0049d":"b"}"#,
            r#"key "GroupId" appears twice in the body"#,
        ),
        (
            clear,
            r#"{"GroupId":"g","Extra":1,"Extra":2}"#,
            r#"key "Extra" appears twice in the body"#,
        ),
    ];
    for (api, body, info) in cases {
        let answer = client.post(&gateway.url(api), body.to_string()).await;
        assert_eq!(answer.status, 200, "{api} {body}");
        assert_eq!(answer.reason(), Some("duplicate_key"), "{api} {body}");
        assert_eq!(answer.code(), 10004, "{api} {body}");
        assert_eq!(answer.json()["ActionStatus"], "FAIL");
        let shown = answer.json()["ErrorInfo"]
            .as_str()
            .expect("info")
            .to_string();
        assert!(shown.starts_with(info), "{shown:?} for {body}");
    }
    assert_eq!(
        emulator.state.received(),
        0,
        "no body with a repeated key reached the upstream"
    );
    let text = String::from_utf8_lossy(
        &Client::new()
            .get(&format!("http://{}/metrics", gateway.admin))
            .await
            .body,
    )
    .into_owned();
    assert!(
        text.contains(&format!(
            "timgate_rejections_total{{reason=\"duplicate_key\"}} {}",
            cases.len()
        )),
        "{text}"
    );

    // A repeated key in an object the gateway does not read (an unknown field's value) is
    // forwarded untouched, as every unknown field is.
    let nested = r#"{"GroupId":"g","Ext":{"x":1,"x":2}}"#;
    let answer = client.post(&gateway.url(get), nested).await;
    assert_eq!(answer.reason(), None, "{:?}", answer.json());
    assert_eq!(emulator.state.received(), 1);
    gateway.shutdown().await;
}
