//! The dashboard's queries: where they are, which metric names they use, and how Grafana's
//! variables become plain PromQL for promtool.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::tools::root;

/// The dashboard's JSON model.
pub(crate) fn dashboard() -> Value {
    let path = root().join("deploy/grafana/timgate.json");
    let text = std::fs::read_to_string(&path).expect("dashboard exists");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every string under an `expr` key, at any depth (rows may nest panels).
fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Every query of every panel, as Grafana sends it (variables unexpanded).
pub(crate) fn dashboard_exprs() -> Vec<String> {
    let mut out = Vec::new();
    exprs(&dashboard()["panels"], &mut out);
    out
}

/// The `timgate_*` names in a query or a file: each `timgate_` not inside a longer identifier.
pub(crate) fn metric_names(text: &str) -> BTreeSet<String> {
    metric_names_with(text, "timgate_")
}

/// The names starting with `prefix` in a query or a file, each not inside a longer identifier.
pub(crate) fn metric_names_with(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.match_indices(prefix)
        .filter(|(at, _)| !text[..*at].ends_with(ident))
        .map(|(at, _)| {
            let rest = &text[at..];
            rest[..rest.find(|c| !ident(c)).unwrap_or(rest.len())].to_string()
        })
        .collect()
}

/// A dashboard query as plain PromQL: Grafana's variables replaced by what they stand for.
pub(crate) fn as_promql(expr: &str) -> String {
    let promql = [
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("${api}", ".*"),
        ("$api", ".*"),
        ("$namespace", ".*"),
        ("$job", ".*"),
        ("$pod", ".*"),
    ]
    .iter()
    .fold(expr.to_string(), |e, (var, value)| e.replace(var, value));
    assert!(!promql.contains('$'), "an unknown variable in {expr}");
    promql
}

/// The matchers every metric selector of the dashboard carries, so that one namespace, job or pod
/// can be picked out of a shared Prometheus.
pub(crate) const SCOPE: &str = r#"namespace=~"$namespace", job=~"$job", pod=~"$pod""#;

/// The metric selectors of a query that lack [`SCOPE`]: each `timgate_*` or `process_*` name
/// must be followed by `{` and the scope.
pub(crate) fn unscoped(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut missing = Vec::new();
    for prefix in ["timgate_", "process_"] {
        for (at, _) in expr.match_indices(prefix) {
            if expr[..at].ends_with(ident) {
                continue;
            }
            let rest = &expr[at..];
            let end = rest.find(|c| !ident(c)).unwrap_or(rest.len());
            if !rest[end..].starts_with(&format!("{{{SCOPE}")) {
                missing.push(rest[..end].to_string());
            }
        }
    }
    missing
}
