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

/// Regions and their REST API base URLs (tencent-im-api.md §1.5).
pub const REGIONS: &[(&str, &str)] = &[
    ("china", "https://console.tim.qq.com"),
    ("singapore", "https://adminapisgp.im.qcloud.com"),
    ("seoul", "https://adminapikr.im.qcloud.com"),
    ("tokyo", "https://adminapijpn.im.qcloud.com"),
    ("frankfurt", "https://adminapiger.im.qcloud.com"),
    ("india", "https://adminapiind.im.qcloud.com"),
    ("usa", "https://adminapiusa.im.qcloud.com"),
    ("jakarta", "https://adminapiidn.im.qcloud.com"),
];

/// The base URL of a region, if the region is known.
pub fn region_base_url(region: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(name, _)| *name == region)
        .map(|(_, url)| *url)
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
