//! Table tests for `[limits]`: Redis URL schemes, the fallback share's two forms, the in-flight
//! bound's default.

use crate::config::{Backend, Config, ConfigError, LimitsConfig, RedisTarget, Share};

const IDENTITY: &str = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";

fn limits(toml: &str) -> Result<LimitsConfig, ConfigError> {
    Config::from_toml_layers(&[IDENTITY, toml]).map(|config| config.limits)
}

fn problems(toml: &str) -> Vec<String> {
    limits(toml).expect_err("refused").problems
}

#[test]
fn redis_urls_of_redis_s_schemes_are_taken() {
    for url in [
        "redis://127.0.0.1:6379",
        "redis://u:pw@h:1/2",
        "REDIS://h",
        "rediss://u:pw@h:6380",
        "unix:///run/redis.sock",
        "redis+unix:///run/redis.sock?db=1",
    ] {
        let toml = format!("[limits]\nbackend = \"redis\"\nredis_url = \"{url}\"\n");
        let limits = limits(&toml).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(limits.backend, Backend::Redis(RedisTarget::standalone(url)));
    }
}

#[test]
fn a_url_of_another_scheme_is_refused_naming_the_key_and_the_schemes_never_the_password() {
    for (url, shown) in [
        (
            "http://u:hunter22@x",
            "\"http://u:***@x\" is not a Redis URL (scheme \"http\")",
        ),
        (
            "https://x:1",
            "\"https://x:1\" is not a Redis URL (scheme \"https\")",
        ),
        (
            "valkey://x",
            "\"valkey://x\" is not a Redis URL (scheme \"valkey\")",
        ),
        (
            "127.0.0.1:6379",
            "\"127.0.0.1:6379\" is not a Redis URL (no scheme)",
        ),
    ] {
        for backend in ["redis", "local"] {
            let toml = format!("[limits]\nbackend = \"{backend}\"\nredis_url = \"{url}\"\n");
            let problems = problems(&toml);
            assert_eq!(problems.len(), 1, "{problems:?}");
            let problem = &problems[0];
            assert!(
                problem.starts_with(&format!("limits.redis_url: {shown}")),
                "{problem}"
            );
            assert!(
                problem.contains(
                    "redis://host[:port][/db], rediss://host[:port][/db], unix:///path or \
                     redis+unix:///path"
                ),
                "{problem}"
            );
            assert!(!problem.contains("hunter22"), "{problem}");
        }
    }
    // The redis crate's own checks still follow the scheme's.
    let bad_db = problems("[limits]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter22@h/x\"");
    assert_eq!(bad_db.len(), 1, "{bad_db:?}");
    assert!(
        bad_db[0].starts_with(
            "limits.redis_url: \"redis://u:***@h/x\" cannot be used: Invalid database number"
        ),
        "{bad_db:?}"
    );
}

#[test]
fn the_fallback_share_is_auto_by_default_or_a_number_in_0_to_1() {
    assert_eq!(limits("").expect("defaults").fallback_share, Share::Auto);
    for (value, share) in [
        ("\"auto\"", Share::Auto),
        ("\"AUTO\"", Share::Auto),
        ("0.33", Share::Fixed(0.33)),
        ("1", Share::Fixed(1.0)),
        ("1.0", Share::Fixed(1.0)),
        // As an environment variable arrives when the config crate does not parse it.
        ("\"0.5\"", Share::Fixed(0.5)),
    ] {
        let toml = format!("[limits]\nfallback_share = {value}\n");
        assert_eq!(limits(&toml).expect(value).fallback_share, share, "{value}");
    }
}

#[test]
fn a_bad_fallback_share_is_refused_naming_the_key() {
    for (value, why) in [
        (
            "\"half\"",
            "\"half\" is neither \"auto\" nor a number in (0, 1]",
        ),
        ("0", "0 is outside (0, 1]"),
        ("1.5", "1.5 is outside (0, 1]"),
        ("-0.5", "-0.5 is outside (0, 1]"),
        ("\"nan\"", "NaN is outside (0, 1]"),
    ] {
        let toml = format!("[limits]\nfallback_share = {value}\n");
        assert_eq!(
            problems(&toml),
            [format!("limits.fallback_share: {why}")],
            "{value}"
        );
    }
    let typed = problems("[limits]\nfallback_share = true\n");
    assert!(
        typed[0].contains("limits.fallback_share") && typed[0].contains("\"auto\""),
        "{typed:?}"
    );
}

#[test]
fn max_in_flight_per_api_is_0_derived_by_default_and_taken_as_given() {
    assert_eq!(limits("").expect("defaults").max_in_flight_per_api, 0);
    let toml = "[limits]\nmax_in_flight_per_api = 50\n";
    assert_eq!(limits(toml).expect("valid").max_in_flight_per_api, 50);
    let negative = problems("[limits]\nmax_in_flight_per_api = -1\n");
    assert!(
        negative[0].contains("limits.max_in_flight_per_api"),
        "{negative:?}"
    );
}

#[test]
fn an_api_outside_the_catalogue_is_allowed_only_with_a_limit_of_its_own() {
    let allow = "[apis]\nallow = [\"openim/importmsg\"]\n";
    let refused = problems(allow);
    assert!(
        refused
            .iter()
            .any(|p| p.contains("openim/importmsg") && p.contains("[limits.api]")),
        "{refused:?}"
    );
    let given = format!("{allow}[limits.api]\n\"openim/importmsg\" = 50\n");
    let limits = limits(&given).expect("valid");
    let limit = limits.limit_of("openim/importmsg").expect("its own");
    assert_eq!(
        (limit.count, limit.per),
        (50, crate::tencent::apis::Per::Second)
    );
}

#[test]
fn a_limit_in_limits_api_keeps_the_catalogues_unit_and_must_name_an_allowed_api() {
    let allow = "[apis]\nallow = [\"openim/batchsendmsg\", \"group_open_http_svc/create_group\"]\n";
    let raised = format!("{allow}[limits.api]\n\"openim/batchsendmsg\" = 24000\n");
    let limits = limits(&raised).expect("valid");
    let batch = limits.limit_of("openim/batchsendmsg").expect("catalogued");
    assert_eq!((batch.count, batch.calls()), (24_000, 48));
    // A standard API follows app_per_second.
    let create = limits
        .limit_of("group_open_http_svc/create_group")
        .expect("catalogued");
    assert_eq!(create.count, 200);
    for (toml, key) in [
        (
            "[limits.api]\n\"openim/sendmsg\" = 10\n",
            "not in apis.allow",
        ),
        ("[limits.api]\n\"openim/batchsendmsg\" = 0\n", "positive"),
        (
            "[limits.api]\n\"openim/batchsendmsg\" = 400\n",
            "up to 500 a call: give at least 500",
        ),
    ] {
        let found = problems(&format!("{allow}{toml}"));
        assert!(found.iter().any(|p| p.contains(key)), "{found:?}");
    }
}

#[test]
fn a_daily_cap_comes_from_the_catalogue_or_limits_api_daily() {
    let allow = "[apis]\nallow = [\"all_member_push/im_push\", \"openim/sendmsg\"]\n";
    let given = limits(allow).expect("valid");
    let push = given
        .limit_of("all_member_push/im_push")
        .expect("catalogued");
    assert_eq!(
        (push.count, push.daily),
        (1, Some(10)),
        "the free edition's 10 a day"
    );
    let sendmsg = given.limit_of("openim/sendmsg").expect("catalogued");
    assert_eq!(sendmsg.daily, None);
    let raised = format!("{allow}[limits.api_daily]\n\"all_member_push/im_push\" = 100\n");
    let push = limits(&raised)
        .expect("valid")
        .limit_of("all_member_push/im_push");
    assert_eq!(push.expect("catalogued").daily, Some(100));
    let wrong = format!("{allow}[limits.api_daily]\n\"openim/importmsg\" = 5\n");
    let found = problems(&wrong);
    assert!(
        found
            .iter()
            .any(|p| p.contains("limits.api_daily") && p.contains("not in apis.allow")),
        "{found:?}"
    );
}
