//! What SREs see, checked with the real tools: a scripted scenario through the gateway reads back
//! exactly in the exported counters; the /metrics exposition passes `promtool check metrics`; the
//! alert rules pass `promtool check rules` and their unit tests (deploy/prometheus); every query
//! of the Grafana dashboard (deploy/grafana/timgate.json) parses and names only exported metrics;
//! the PrometheusRule (deploy/kubernetes/base) carries exactly the groups of rules.yml.
//!
//! The checks that need `promtool` or python3 with PyYAML fail when those are missing, saying how
//! to install them, unless TIMGATE_SKIP_MISSING_TOOLS=1 asks to skip them.

#[path = "observability/exposition.rs"]
mod exposition;
#[path = "observability/queries.rs"]
mod queries;
#[path = "observability/scenario.rs"]
mod scenario;
mod support;
#[path = "observability/tools.rs"]
mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use exposition::Scrape;
use queries::{
    SCOPE, as_promql, dashboard, dashboard_exprs, metric_names, metric_names_with, unscoped,
};
use support::redis::Redis;
use support::{Client, Gateway, base_toml, tls_emulator};
use timgate::emulator::EmulatorConfig;
use tokio::time::Instant;
use tools::{promtool, promtool_ok, pyyaml, root, yaml};

/// The metrics a gateway exports only with `limits.backend = "redis"`.
const LIMITER_METRICS: [&str; 3] = [
    "timgate_limiter_backend_up",
    "timgate_limiter_fallback_total",
    "timgate_limiter_replicas",
];

/// Whether `name` is one of the durable queue's metrics, which only a gateway with
/// `queue.durable` exports (its partitions' series only while it owns them).
/// `timgate_queue_wait_seconds` is the in-memory lanes' wait, exported by every gateway.
fn is_queue_metric(name: &str) -> bool {
    name.starts_with("timgate_queue_") && !name.starts_with("timgate_queue_wait_seconds")
}

/// The metrics a gateway exports only with `tracing.enabled`, or named bearer tokens.
fn is_traced_metric(name: &str) -> bool {
    name.starts_with("timgate_trace_") || name == "timgate_caller_requests_total"
}

/// The /metrics of a gateway that traces (to a collector that is not there) and names its
/// callers, after one request with a named token.
async fn traced_scrape() -> Scrape {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let traced = "[server]\nauth_tokens = [\"billing:tok-1\"]\n\
                  [tracing]\nenabled = true\notlp_endpoint = \"http://127.0.0.1:1/v1/traces\"\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), traced]).await;
    let request = http::Request::post(gateway.url("group_open_http_svc/modify_group_attr"))
        .header("authorization", "Bearer tok-1")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"GroupId":"@TGS#o","GroupAttr":[{"key":"k","value":"v"}]}"#,
        )))
        .expect("request");
    assert_eq!(Client::new().send(request).await.code(), 0);
    let text = admin_get(&gateway, "/metrics").await.1;
    gateway.shutdown().await;
    Scrape::new(text)
}

/// A gateway whose Redis limiter points at a closed port, so that it paces on its fallback share.
async fn start_without_redis() -> (Gateway, timgate::emulator::Emulator) {
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let redis = "[limits]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n";
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), redis]).await;
    (gateway, emulator)
}

async fn admin_get(gateway: &Gateway, path: &str) -> (u16, String) {
    let answer = Client::new()
        .get(&format!("http://{}{path}", gateway.admin))
        .await;
    let body = String::from_utf8(answer.body.to_vec()).expect("utf-8");
    (answer.status.as_u16(), body)
}

/// The /metrics of a durable gateway on a redis-server of its own, once it owns all 16
/// partitions (the default) and exports their depth: the queue's per-partition gauges exist only
/// on an owner. `None` where redis-server is missing.
async fn durable_scrape() -> Option<Scrape> {
    let redis = Redis::start()?;
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let durable = format!(
        "[limits]\nbackend = \"redis\"\nredis_url = \"{}\"\n[queue]\ndurable = true\n",
        redis.url()
    );
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls)), &durable]).await;
    // Leases are taken at once, and each owner exports its depth as it starts reading; the bound
    // is for a loaded machine.
    let started = Instant::now();
    let text = loop {
        let (status, text) = admin_get(&gateway, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        let owns_all = text
            .lines()
            .any(|l| l == "timgate_queue_partitions_owned 16");
        if owns_all && text.contains("timgate_queue_depth{") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the durable gateway did not own every partition within 30 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    gateway.shutdown().await;
    drop(redis);
    Some(Scrape::new(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_scenario_reads_back_exactly_and_its_exposition_is_clean() {
    let scrape = Scrape::new(scenario::run().await);
    scenario::assert_counters(&scrape);
    let (gateway, _emulator) = start_without_redis().await;
    let shared = Scrape::new(admin_get(&gateway, "/metrics").await.1);
    gateway.shutdown().await;
    let durable = durable_scrape().await;
    let traced = traced_scrape().await;
    queries_name_only_exported_metrics(&scrape, (&shared, &traced), durable.as_ref());
    if promtool() {
        promtool_ok(&["check", "metrics"], scrape.text.as_bytes());
        promtool_ok(&["check", "metrics"], shared.text.as_bytes());
        promtool_ok(&["check", "metrics"], traced.text.as_bytes());
        if let Some(durable) = &durable {
            promtool_ok(&["check", "metrics"], durable.text.as_bytes());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_the_gateway_is_ready_says_degraded_and_exports_the_limiter_metrics() {
    let (gateway, _emulator) = start_without_redis().await;
    let (status, body) = admin_get(&gateway, "/readyz").await;
    assert_eq!(status, 200, "the fallback share serves: {body}");
    assert_eq!(body, r#"{"status":"ready","limiter":"degraded"}"#);
    let (_, text) = admin_get(&gateway, "/metrics").await;
    let scrape = Scrape::new(text);
    assert_eq!(scrape.get("timgate_limiter_backend_up", &[]), 0);
    assert!(scrape.find("timgate_limiter_fallback_total", &[]).is_some());
    assert_eq!(scrape.get("timgate_limiter_replicas", &[]), 1);
    gateway.shutdown().await;

    // The local backend: nothing shared to be up or away, so neither the body nor /metrics
    // speaks of a limiter.
    let (emulator, tls) = tls_emulator(EmulatorConfig::demo()).await;
    let gateway = Gateway::start(&[&base_toml(emulator.addr, Some(&tls))]).await;
    assert_eq!(
        admin_get(&gateway, "/readyz").await,
        (200, r#"{"status":"ready"}"#.to_string())
    );
    let (_, text) = admin_get(&gateway, "/metrics").await;
    assert!(!text.contains("timgate_limiter_"), "{text}");
    gateway.shutdown().await;
}

/// Every `timgate_*` name the dashboard's queries and variables and the alert rules use is in the
/// scrape (histogram suffixes aside); the limiter's, which only a Redis-backed gateway exports,
/// in `shared`'s; the durable queue's, which only a durable gateway exports, in `durable`'s
/// (skipped when there is none: redis-server is missing); the exporter's and the callers', in
/// `traced`'s.
fn queries_name_only_exported_metrics(
    scrape: &Scrape,
    (shared, traced): (&Scrape, &Scrape),
    durable: Option<&Scrape>,
) {
    let mut used = BTreeMap::<String, &str>::new();
    let template = dashboard()["templating"].to_string();
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/rules.yml")).expect("rules");
    for (source, text) in [
        ("the dashboard", dashboard_exprs().join("\n")),
        ("the dashboard's variables", template),
        ("rules.yml", rules),
    ] {
        for name in metric_names(&text) {
            used.entry(name).or_insert(source);
        }
    }
    // The standard process metrics, which carry no prefix, from every gateway.
    for name in metric_names_with(&dashboard_exprs().join("\n"), "process_") {
        assert!(
            scrape.exports(&name),
            "the dashboard uses {name}, not exported"
        );
    }
    if durable.is_none() {
        eprintln!("skipped: the durable queue's metrics, without redis-server");
    }
    for (name, source) in &used {
        let by = if LIMITER_METRICS.contains(&name.as_str()) {
            assert!(!scrape.exports(name), "{name} without Redis");
            shared
        } else if is_traced_metric(name) {
            assert!(
                !scrape.exports(name),
                "{name} without tracing or named tokens"
            );
            traced
        } else if is_queue_metric(name) {
            assert!(!scrape.exports(name), "{name} without queue.durable");
            assert!(!shared.exports(name), "{name} without queue.durable");
            match durable {
                Some(durable) => durable,
                None => continue,
            }
        } else {
            scrape
        };
        assert!(
            by.exports(name),
            "{source} uses {name}, which is not exported"
        );
    }
}

#[test]
fn the_dashboard_takes_its_datasource_scope_and_api_from_variables_and_covers_every_signal() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(
        (&datasource["type"], &datasource["query"]),
        (&json!("datasource"), &json!("prometheus"))
    );
    let api = variable("api");
    assert_eq!(api["type"], "query");
    assert_eq!(
        api["query"]["query"],
        format!("label_values(timgate_requests_total{{{SCOPE}}}, api)")
    );
    assert_eq!(api["datasource"]["uid"], "${datasource}");
    // Each scope variable lists what the one before it leaves, from timgate's own series.
    for (name, query) in [
        ("namespace", "label_values(timgate_build_info, namespace)"),
        (
            "job",
            r#"label_values(timgate_build_info{namespace=~"$namespace"}, job)"#,
        ),
        (
            "pod",
            r#"label_values(timgate_build_info{namespace=~"$namespace", job=~"$job"}, pod)"#,
        ),
    ] {
        let scope = variable(name);
        assert_eq!(scope["query"]["query"], query, "{name}");
        assert_eq!(
            (&scope["includeAll"], &scope["allValue"], &scope["multi"]),
            (&json!(true), &json!(".*"), &json!(true)),
            "{name}"
        );
    }
    for expr in dashboard_exprs() {
        assert_eq!(unscoped(&expr), Vec::<String>::new(), "unscoped in {expr}");
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("id")),
            "duplicate id"
        );
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("title");
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        assert!(
            !panel["description"].as_str().unwrap_or("").is_empty(),
            "{title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            assert!(!target["expr"].as_str().unwrap_or("").is_empty(), "{title}");
        }
    }
    let used = metric_names(&dashboard_exprs().join("\n"));
    for name in [
        "timgate_requests_total",
        "timgate_tencent_errors_total",
        "timgate_upstream_attempts_total",
        "timgate_limit_per_second",
        "timgate_lane_rate_per_second",
        "timgate_queued_requests",
        "timgate_queue_wait_seconds_bucket",
        "timgate_retries_total",
        "timgate_retry_budget_exhausted_total",
        "timgate_rejections_total",
        "timgate_throttles_total",
        "timgate_upstream_duration_seconds_bucket",
        "timgate_request_duration_seconds_bucket",
        "timgate_upstream_in_flight",
        "timgate_usersig_expiry_timestamp_seconds",
        "timgate_active_groups",
        "timgate_limiter_backend_up",
        "timgate_limiter_fallback_total",
        "timgate_coalesced_requests_total",
        "timgate_coalesce_batch_size_bucket",
        "timgate_queue_depth",
        "timgate_queue_oldest_age_seconds",
        "timgate_queue_accepted_total",
        "timgate_queue_async_results_total",
        "timgate_queue_lease_moves_total",
        "timgate_queue_redelivered_total",
        "timgate_queue_partitions_owned",
    ] {
        assert!(used.contains(name), "no panel shows {name}");
    }
    let exprs = dashboard_exprs().join("\n");
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
        assert!(exprs.contains(name), "no panel shows {name}");
    }
}

#[test]
fn every_dashboard_query_parses() {
    if !promtool() {
        return;
    }
    let rules: Vec<Value> = dashboard_exprs()
        .iter()
        .enumerate()
        .map(|(i, expr)| json!({"record": format!("dashboard:query_{i}"), "expr": as_promql(expr)}))
        .collect();
    assert!(rules.len() >= 20, "{} queries", rules.len());
    // JSON is YAML: promtool reads this file as a rules file.
    let file = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, file.to_string()).expect("write rules");
    let out = promtool_ok(&["check", "rules", path.to_str().expect("utf-8 path")], b"");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{out}"
    );
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if !promtool() {
        return;
    }
    let out = promtool_ok(&["check", "rules", "deploy/prometheus/rules.yml"], b"");
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
    let out = promtool_ok(&["test", "rules", "deploy/prometheus/rules_test.yml"], b"");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_says_how_bad_and_what_to_do_and_is_unit_tested_both_ways() {
    if !pyyaml() {
        return;
    }
    let rules = yaml(&root().join("deploy/prometheus/rules.yml"));
    let tests = yaml(&root().join("deploy/prometheus/rules_test.yml"));
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert tests"))
        .collect();
    let alerts: Vec<&Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(alerts.len(), 11);
    for alert in alerts {
        let name = alert["alert"].as_str().expect("alerting rules only");
        let severity = alert["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| s.len() > 20),
                "{name}: {key}"
            );
        }
        let mine = cases.iter().filter(|c| c["alertname"] == name);
        let fired: Vec<bool> = mine
            .map(|c| !c["exp_alerts"].as_array().expect("exp_alerts").is_empty())
            .collect();
        assert!(fired.contains(&true), "{name} is never shown to fire");
        assert!(
            fired.contains(&false),
            "{name} is never shown to stay quiet"
        );
    }
}

#[test]
fn the_prometheusrule_carries_exactly_the_groups_of_rules_yml() {
    if !pyyaml() {
        return;
    }
    let rules = yaml(&root().join("deploy/prometheus/rules.yml"));
    let resource = yaml(&root().join("deploy/kubernetes/alerts/prometheusrule.yaml"));
    assert_eq!(resource["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(resource["kind"], "PrometheusRule");
    assert!(resource["metadata"]["name"].is_string());
    assert_eq!(
        resource["spec"]["groups"], rules["groups"],
        "regenerate prometheusrule.yaml as its header says"
    );
    assert_eq!(
        resource["spec"].as_object().map(|s| s.len()),
        Some(1),
        "spec is groups only"
    );
}
