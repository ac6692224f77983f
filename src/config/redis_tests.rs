//! Table tests for `limits.redis_*`: which mode a configuration names, and each way of getting
//! one wrong refused by key, never showing a password.

use std::time::Duration;

use crate::config::{Backend, Config, ConfigError, RedisMode, RedisTarget};

const IDENTITY: &str = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";

fn target(toml: &str) -> Result<RedisTarget, ConfigError> {
    let layer = format!("[limits]\nbackend = \"redis\"\n{toml}");
    let config = Config::from_toml_layers(&[IDENTITY, &layer])?;
    match config.limits.backend {
        Backend::Redis(target) => Ok(target),
        Backend::Local => panic!("a redis backend"),
    }
}

fn problems(toml: &str) -> Vec<String> {
    target(toml).expect_err("refused").problems
}

/// A file holding a PEM certificate, for the file keys.
fn some_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let certified = rcgen::generate_simple_self_signed(vec!["h".to_string()]).expect("rcgen");
    std::fs::write(file.path(), certified.cert.pem()).expect("write");
    file
}

#[test]
fn each_mode_is_named_with_its_urls_passwords_masked() {
    let file = some_file();
    let f = file.path().display();
    for (toml, described) in [
        (
            "redis_url = \"redis://:hunter22@h:6379\"".to_string(),
            "standalone redis://:***@h:6379",
        ),
        (
            format!("redis_url = \"rediss://u:hunter22@h:6380\"\nredis_ca_file = \"{f}\""),
            "TLS rediss://u:***@h:6380",
        ),
        (
            format!(
                "redis_url = \"rediss://h\"\nredis_cert_file = \"{f}\"\nredis_key_file = \"{f}\""
            ),
            "mutual TLS rediss://h",
        ),
        (
            "redis_sentinels = [\"redis://s1:26379\", \"redis://:hunter22@s2:26379\"]\n\
             redis_sentinel_master = \"mymaster\""
                .to_string(),
            "Sentinel master \"mymaster\" via redis://s1:26379, redis://:***@s2:26379",
        ),
        (
            "redis_cluster_nodes = [\"rediss://a:7000\", \"rediss://b:7000\"]".to_string(),
            "Cluster over TLS seeds rediss://a:7000, rediss://b:7000",
        ),
    ] {
        let target = target(&toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
        assert_eq!(target.describe(), described, "{toml}");
        assert_eq!(format!("{target:?}"), described, "Debug says the same");
        assert!(!described.contains("hunter22"));
    }
    let sentinel = target("redis_sentinels = [\"redis://s:1\"]\nredis_sentinel_master = \"m\"");
    // No Debug on the mode: it would print the URLs' passwords.
    assert!(
        sentinel.expect("valid").mode
            == RedisMode::Sentinel {
                sentinels: vec!["redis://s:1".into()],
                master: "m".into()
            }
    );
}

#[test]
fn the_timeout_is_200_ms_by_default_and_taken_within_bounds() {
    let url = "redis_url = \"redis://h\"\n";
    assert_eq!(
        target(url).expect("valid").timeout,
        Duration::from_millis(200)
    );
    let set = format!("{url}redis_timeout_ms = 50");
    assert_eq!(
        target(&set).expect("valid").timeout,
        Duration::from_millis(50)
    );
    for bad in [0, 5001] {
        let toml = format!("{url}redis_timeout_ms = {bad}");
        assert_eq!(
            problems(&toml),
            [format!(
                "limits.redis_timeout_ms: {bad} is outside 1..=5000"
            )]
        );
    }
}

#[test]
fn a_mode_half_given_or_two_modes_at_once_are_refused_by_key() {
    for (toml, key) in [
        (
            "redis_url = \"redis://h\"\nredis_cluster_nodes = [\"redis://a:1\"]",
            "limits.redis_url: set one of redis_url",
        ),
        (
            "redis_sentinels = [\"redis://s:1\"]",
            "limits.redis_sentinel_master: redis_sentinels and redis_sentinel_master go together",
        ),
        (
            "redis_url = \"redis://h\"\nredis_sentinel_master = \"m\"",
            "limits.redis_sentinel_master: redis_sentinels and redis_sentinel_master go together",
        ),
        (
            "",
            "limits.redis_url: required when limits.backend = \"redis\"",
        ),
        (
            "redis_cluster_nodes = [\"redis://a:1\", \"rediss://b:1\"]",
            "limits.redis_cluster_nodes: \"rediss://b:1\": every URL is rediss:// (TLS) or none is",
        ),
        (
            "redis_cluster_nodes = [\"unix:///run/redis.sock\"]",
            "limits.redis_cluster_nodes: \"unix:///run/redis.sock\" is not a Redis URL (scheme \"unix\")",
        ),
    ] {
        let problems = problems(toml);
        assert!(
            problems.iter().any(|p| p.starts_with(key)),
            "{toml}: {problems:?}"
        );
    }
}

#[test]
fn tls_files_without_tls_half_a_client_pair_and_missing_files_are_refused_by_key() {
    let file = some_file();
    let f = file.path().display();
    let not_pem = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(not_pem.path(), "a password, not a CA\n").expect("write");
    for (toml, expected) in [
        (
            format!("redis_url = \"redis://h\"\nredis_ca_file = \"{f}\""),
            "limits.redis_ca_file: only used with rediss:// URLs (Redis over TLS)".to_string(),
        ),
        (
            format!("redis_url = \"rediss://h\"\nredis_cert_file = \"{f}\""),
            "limits.redis_cert_file: redis_cert_file and redis_key_file go together (mutual TLS)"
                .to_string(),
        ),
        (
            "redis_url = \"redis://h\"\nredis_password_file = \"/nonexistent/pw\"".to_string(),
            "limits.redis_password_file: cannot read /nonexistent/pw".to_string(),
        ),
        (
            format!(
                "redis_url = \"rediss://h\"\nredis_ca_file = \"{}\"",
                not_pem.path().display()
            ),
            format!(
                "limits.redis_ca_file: {}: no certificate found",
                not_pem.path().display()
            ),
        ),
    ] {
        let problems = problems(&toml);
        assert!(
            problems.iter().any(|p| p.starts_with(&expected)),
            "{toml}: {problems:?}"
        );
    }
}

#[test]
fn urls_in_the_lists_are_masked_in_every_problem() {
    let problems =
        problems("redis_sentinels = [\"http://u:hunter22@s:1\"]\nredis_sentinel_master = \"m\"");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("\"http://u:***@s:1\" is not a Redis URL")),
        "{problems:?}"
    );
    assert!(
        problems.iter().all(|p| !p.contains("hunter22")),
        "{problems:?}"
    );
}
