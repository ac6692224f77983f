//! The APIs timgate validates in depth, the regional domains, and the name rules
//! (identifiers, `service/command`) that config checks and routing share.

/// What an API is, as far as validation and pacing care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    /// `group_open_attr_http_svc/get_group_attr`: a read.
    GetGroupAttr,
    /// `group_open_http_svc/modify_group_attr`: adds or updates keys.
    ModifyGroupAttr,
    /// `group_open_http_svc/set_group_attr`: replaces the whole set.
    SetGroupAttr,
    /// `group_open_http_svc/delete_group_attr`: removes keys.
    DeleteGroupAttr,
    /// `group_open_http_svc/clear_group_attr`: removes every key.
    ClearGroupAttr,
    /// `openim/batchsendmsg`: one message to up to 500 accounts.
    BatchSendMsg,
    /// `group_open_http_svc/send_group_msg`: a message to a group, 40 a second per group.
    SendGroupMsg,
    /// Any other allow-listed API: forwarded after the JSON check alone.
    Other,
}

impl ApiKind {
    /// The kind of a `service/command` name.
    pub fn of(name: &str) -> ApiKind {
        match name {
            "group_open_attr_http_svc/get_group_attr" => ApiKind::GetGroupAttr,
            "group_open_http_svc/modify_group_attr" => ApiKind::ModifyGroupAttr,
            "group_open_http_svc/set_group_attr" => ApiKind::SetGroupAttr,
            "group_open_http_svc/delete_group_attr" => ApiKind::DeleteGroupAttr,
            "group_open_http_svc/clear_group_attr" => ApiKind::ClearGroupAttr,
            "openim/batchsendmsg" => ApiKind::BatchSendMsg,
            "group_open_http_svc/send_group_msg" => ApiKind::SendGroupMsg,
            _ => ApiKind::Other,
        }
    }

    /// Whether this API writes a group's attributes, and so shares the group's 5-per-second budget.
    pub fn is_group_write(self) -> bool {
        matches!(
            self,
            ApiKind::ModifyGroupAttr
                | ApiKind::SetGroupAttr
                | ApiKind::DeleteGroupAttr
                | ApiKind::ClearGroupAttr
        )
    }
}

/// A region's REST API domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// The `tencent.region` name.
    pub name: &'static str,
    /// The main base URL.
    pub url: &'static str,
    /// The backup base URL, for when the main domain cannot be resolved or reached.
    pub backup: &'static str,
    /// Whether Tencent's current pages still list the region.
    pub listed: bool,
}

/// Regions and their REST API domains, main and backup (tencent-im-api.md §1.5, §8.1: the
/// RESTful API overview, 1047/34620, and its Tencent-hosted copy for Tokyo's backup). India is
/// gone from the overview's revisions since 2024-07: kept, with a warning.
#[rustfmt::skip]
pub const REGIONS: &[Region] = &[
    Region { name: "china", url: "https://console.tim.qq.com", backup: "https://adminapi.my-imcloud.com", listed: true },
    Region { name: "singapore", url: "https://adminapisgp.im.qcloud.com", backup: "https://adminapisgp.my-imcloud.com", listed: true },
    Region { name: "seoul", url: "https://adminapikr.im.qcloud.com", backup: "https://adminapikr.my-imcloud.com", listed: true },
    Region { name: "tokyo", url: "https://adminapijpn.im.qcloud.com", backup: "https://adminapijpn.my-imcloud.com", listed: true },
    Region { name: "frankfurt", url: "https://adminapiger.im.qcloud.com", backup: "https://adminapiger.my-imcloud.com", listed: true },
    Region { name: "india", url: "https://adminapiind.im.qcloud.com", backup: "https://adminapiind.my-imcloud.com", listed: false },
    Region { name: "usa", url: "https://adminapiusa.im.qcloud.com", backup: "https://adminapiusa.my-imcloud.com", listed: true },
    Region { name: "jakarta", url: "https://adminapiidn.im.qcloud.com", backup: "https://adminapiidn.my-imcloud.com", listed: true },
];

/// A region by name, if it is known.
pub fn region(name: &str) -> Option<&'static Region> {
    REGIONS.iter().find(|region| region.name == name)
}

/// Splits `service/command` into its parts when both are non-empty words of `[A-Za-z0-9_]`.
pub fn split_api(name: &str) -> Option<(&str, &str)> {
    let (service, command) = name.split_once('/')?;
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (word(service) && word(command)).then_some((service, command))
}

/// Checks a UserID as Tencent does: 1 to 32 bytes of printable ASCII.
pub fn check_identifier(identifier: &str) -> Result<(), String> {
    if identifier.is_empty() {
        return Err("must not be empty".into());
    }
    if identifier.len() > 32 {
        return Err(format!("is {} bytes; the limit is 32", identifier.len()));
    }
    if !identifier.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("must be printable ASCII".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_apis_share_the_group_budget_and_get_does_not() {
        assert!(ApiKind::of("group_open_http_svc/modify_group_attr").is_group_write());
        assert!(ApiKind::of("group_open_http_svc/clear_group_attr").is_group_write());
        assert!(!ApiKind::of("group_open_attr_http_svc/get_group_attr").is_group_write());
        // get lives under its own service name; the write service does not serve it.
        assert_eq!(
            ApiKind::of("group_open_http_svc/get_group_attr"),
            ApiKind::Other
        );
    }

    #[test]
    fn splits_only_well_formed_api_names() {
        assert_eq!(split_api("a_b/c1"), Some(("a_b", "c1")));
        for bad in ["", "/", "a/", "/b", "a/b/c", "a b/c", "a/b?x"] {
            assert_eq!(split_api(bad), None, "{bad}");
        }
    }

    #[test]
    fn identifier_rules_match_tencent() {
        assert!(check_identifier("administrator").is_ok());
        assert!(check_identifier(&"a".repeat(32)).is_ok());
        assert!(check_identifier(&"a".repeat(33)).is_err());
        assert!(check_identifier("").is_err());
        assert!(check_identifier("adm\u{e9}").is_err());
    }
}
