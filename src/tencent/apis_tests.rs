//! The catalogue's rows hold together: well-formed names, each once, limits that can be paced,
//! and the idempotency §8.3 documents.

use super::*;
use crate::tencent::catalogue::split_api;

#[test]
fn every_row_names_a_well_formed_api_once_with_a_source() {
    for (i, api) in APIS.iter().enumerate() {
        assert!(split_api(api.name).is_some(), "{}", api.name);
        assert!(!api.source.is_empty(), "{}", api.name);
        assert!(
            APIS[i + 1..].iter().all(|other| other.name != api.name),
            "{} twice",
            api.name
        );
        if let Rate::Own(limit) = api.rate {
            assert!(limit.count > 0 && limit.calls() > 0, "{}", api.name);
        }
    }
}

#[test]
fn batchsendmsg_is_paced_as_though_each_call_named_500_recipients() {
    let api = find("openim/batchsendmsg").expect("catalogued");
    let Rate::Own(limit) = api.rate else {
        panic!("batchsendmsg has its own limit");
    };
    assert_eq!((limit.count, limit.per), (12_000, Per::Minute));
    // 24 calls of 500 a minute are the 12,000 recipients; a raised limit scales with it.
    assert_eq!(limit.calls(), 24);
    assert_eq!(limit.with_count(30_000).calls(), 60);
    // A limit under one call's worth still lets one call a minute through.
    assert_eq!(limit.with_count(100).calls(), 1);
}

#[test]
fn only_what_cannot_duplicate_is_sent_twice() {
    for name in [
        "group_open_http_svc/create_group",
        "group_open_http_svc/destroy_group",
        "openim/sendmsg",
        "openim/batchsendmsg",
        "group_open_http_svc/send_group_msg",
        "group_open_http_svc/send_group_system_notification",
        // Not catalogued: never sent twice.
        "openim/importmsg",
        "group_open_http_svc/import_group_msg",
    ] {
        assert!(!is_idempotent(name), "{name}");
    }
    for name in [
        "group_open_http_svc/modify_group_attr",
        "group_open_http_svc/delete_group_attr",
        "group_open_attr_http_svc/get_group_attr",
        "group_open_http_svc/add_group_member",
        "im_open_login_svc/account_import",
        "profile/portrait_set",
    ] {
        assert!(is_idempotent(name), "{name}");
    }
}
