//! The REST API catalogue: each API Tencent documents a limit for, with that limit, its unit,
//! whether it is safe to send twice, and where each fact comes from. Adding an API is one row.

/// The period a limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Any second.
    Second,
    /// Any minute.
    Minute,
}

impl Per {
    /// The period's length.
    pub fn duration(self) -> std::time::Duration {
        match self {
            Per::Second => std::time::Duration::from_secs(1),
            Per::Minute => std::time::Duration::from_secs(60),
        }
    }

    /// "second" or "minute", for messages and the README.
    pub fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Calls.
    Calls,
    /// Recipients (`To_Account` entries), at most `most` per call. timgate paces such an API in
    /// recipients: each call costs as many units as its `To_Account` names.
    Recipients {
        /// The most recipients one call may name.
        most: u32,
    },
}

/// An API's limit: `count` units per period, and for some a cap on the calls of a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Units allowed in any period.
    pub count: u32,
    /// The period.
    pub per: Per,
    /// What is counted.
    pub unit: Unit,
    /// Calls allowed in any 24 hours, beside the rate (push to all users or by tag).
    pub daily: Option<u32>,
}

impl Limit {
    /// `count` calls a second.
    pub const fn calls_per_second(count: u32) -> Limit {
        Limit {
            count,
            per: Per::Second,
            unit: Unit::Calls,
            daily: None,
        }
    }

    /// The same limit with another count (a limit raised in the console).
    pub fn with_count(self, count: u32) -> Limit {
        Limit { count, ..self }
    }

    /// The most units one call may count: 1, or the most recipients it may name.
    pub fn most(self) -> u32 {
        match self.unit {
            Unit::Calls => 1,
            Unit::Recipients { most } => most.max(1),
        }
    }

    /// Calls allowed in any period: the count, or for recipients the count over the most one
    /// call may carry (at least one), which is what calls of the most recipients get.
    pub fn calls(self) -> u32 {
        match self.unit {
            Unit::Calls => self.count,
            Unit::Recipients { most } => (self.count / most.max(1)).max(1),
        }
    }
}

/// An API's documented limit: the app's standard per-API rate (`limits.app_per_second`, 200
/// unless raised in the console), or one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// The standard rate: `limits.app_per_second` calls a second.
    Standard,
    /// A limit of its own.
    Own(Limit),
}

/// One row of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// `service/command`.
    pub name: &'static str,
    /// Its documented limit.
    pub rate: Rate,
    /// Whether sending it twice leaves the same state as sending it once, so that an attempt
    /// whose answer may have been lost can be sent again.
    pub idempotent: bool,
    /// Where the limit and the idempotency come from (tencent-im-api.md's sources).
    pub source: &'static str,
}

/// A group's messages allowed in any second (10023 beyond; tencent-im-api.md §8.2, §8.3).
pub const GROUP_MESSAGES_PER_SECOND: u32 = 40;

/// The most accounts one `batchsendmsg` may name (trtc.io 34920).
pub const MOST_RECIPIENTS: u32 = 500;

/// Pushes to all users or by tag allowed a day on the free and trial editions (§8.3): the lower
/// of the two documented caps, since which edition an app has is not in its configuration.
pub const DAILY_PUSHES: u32 = 10;

const STD: Rate = Rate::Standard;
/// The push service's attribute and tag APIs (§8.3).
const PUSH_ATTRS: Rate = Rate::Own(Limit::calls_per_second(100));
/// Their source: the notice, and the push API pages (CN 269/45935-45943).
const PUSH: &str = "CN 269/93324, 269/45935-45943; tencent-im-api.md §8.3";
/// CN 269/93324, "API call frequency charging notice" (2025-07-08), with §8.3's reading.
const NOTICE: &str = "CN 269/93324; tencent-im-api.md §8.3";

/// Every API with a documented limit. An API missing here may be allowed only with a limit of
/// its own in `[limits.api]`, and is never sent twice.
#[rustfmt::skip]
pub const APIS: &[Api] = &[
    // Group attributes: absolute writes and a read.
    Api { name: "group_open_attr_http_svc/get_group_attr", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/modify_group_attr", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/set_group_attr", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/delete_group_attr", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/clear_group_attr", rate: STD, idempotent: true, source: NOTICE },
    // Group management: a second create makes a second group; a member change is absolute.
    Api { name: "group_open_http_svc/create_group", rate: STD, idempotent: false, source: NOTICE },
    Api { name: "group_open_http_svc/destroy_group", rate: STD, idempotent: false, source: NOTICE },
    Api { name: "group_open_http_svc/add_group_member", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/delete_group_member", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/get_group_info", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/get_group_member_info", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/get_joined_group_list", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/get_role_in_group", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "group_open_http_svc/group_msg_get_simple", rate: STD, idempotent: true, source: NOTICE },
    // Messages: 200 messages a second, one per call; a re-send is a second message.
    Api { name: "openim/sendmsg", rate: STD, idempotent: false, source: NOTICE },
    Api { name: "group_open_http_svc/send_group_msg", rate: STD, idempotent: false, source: NOTICE },
    Api { name: "group_open_http_svc/send_group_system_notification", rate: STD, idempotent: false, source: NOTICE },
    // 12,000 messages a minute, each recipient counted, at most 500 per call (since 2023-08-01).
    Api {
        name: "openim/batchsendmsg",
        rate: Rate::Own(Limit { count: 12_000, per: Per::Minute, unit: Unit::Recipients { most: MOST_RECIPIENTS }, daily: None }),
        idempotent: false,
        source: "CN 269/93324; trtc.io 34920; tencent-im-api.md §8.3",
    },
    // Accounts and profiles: absolute writes and reads.
    Api { name: "im_open_login_svc/account_import", rate: STD, idempotent: true, source: "trtc.io 34953; tencent-im-api.md §8.3" },
    Api { name: "profile/portrait_set", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "profile/portrait_get", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "openim/query_online_status", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "sns/black_list_get", rate: STD, idempotent: true, source: NOTICE },
    Api { name: "openim/get_c2c_unread_msg_num", rate: STD, idempotent: true, source: NOTICE },
    // Push to all users or by tag: 1 a second, and 10 a day on the free and trial editions (100 on
    // standard and advanced: raise it in [limits.api_daily]). A re-send is a second push.
    Api {
        name: "all_member_push/im_push",
        rate: Rate::Own(Limit { count: 1, per: Per::Second, unit: Unit::Calls, daily: Some(DAILY_PUSHES) }),
        idempotent: false,
        source: "CN 269/93324, 269/45934; tencent-im-api.md §8.3",
    },
    // The push service's app attribute names and user attributes and tags: 100 a second.
    Api { name: "all_member_push/im_set_attr_name", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_get_attr_name", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_set_attr", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_get_attr", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_remove_attr", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_add_tag", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_get_tag", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_remove_tag", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
    Api { name: "all_member_push/im_remove_all_tags", rate: PUSH_ATTRS, idempotent: true, source: PUSH },
];

/// The catalogue's row for `name`.
pub fn find(name: &str) -> Option<&'static Api> {
    APIS.iter().find(|api| api.name == name)
}

/// Whether `name` may be sent again after an attempt whose answer may have been lost: only a
/// catalogued API documented as idempotent.
pub fn is_idempotent(name: &str) -> bool {
    find(name).is_some_and(|api| api.idempotent)
}

#[cfg(test)]
#[path = "apis_tests.rs"]
mod tests;
