//! How the objects of one rendered kustomization point at each other: Services at pods and named
//! ports, ServiceMonitors at Services and /metrics, PodMonitors at pods' admin ports,
//! PodDisruptionBudgets at workloads; and the shape
//! of CRD objects, whose schemas kubernetes-validate does not have.

use serde_json::Value;

use crate::binary::{self, METRICS};
use crate::kube::{self, at, list, str_at};

/// Appends to `problems` what is wrong with the Services, ServiceMonitors and PDBs of `docs`.
/// `admin_port` is the binary's admin port: what a ServiceMonitor must end up scraping. A render
/// without any workload (a base) is judged only on what it holds: its pods come from overlays.
pub(crate) fn check(docs: &[Value], admin_port: u16, problems: &mut Vec<String>) {
    let pods = kube::pod_templates(docs);
    for monitor in kube::of_kind(docs, "ServiceMonitor") {
        check_monitor(docs, monitor, admin_port, problems);
    }
    if pods.is_empty() {
        return;
    }
    for monitor in kube::of_kind(docs, "PodMonitor") {
        check_pod_monitor(monitor, &pods, admin_port, problems);
    }
    for svc in kube::of_kind(docs, "Service") {
        let selected: Vec<_> = pods
            .iter()
            .filter(|pod| kube::selects(at(svc, &["spec", "selector"]), pod.labels))
            .collect();
        if selected.is_empty() {
            problems.push(format!(
                "{}: its selector matches no pod template",
                kube::id(svc)
            ));
        }
        for port in list(svc, &["spec", "ports"]) {
            let target = port.get("targetPort").or_else(|| port.get("port"));
            for pod in &selected {
                let containers = kube::containers(pod.spec).map(|(c, _)| c);
                if target
                    .and_then(|t| kube::resolve_port(t, containers))
                    .is_none()
                {
                    problems.push(format!(
                        "{}: targetPort {target:?} is no container port of {}",
                        kube::id(svc),
                        kube::id(pod.workload)
                    ));
                }
            }
        }
    }
    for pdb in kube::of_kind(docs, "PodDisruptionBudget") {
        let selector = at(pdb, &["spec", "selector", "matchLabels"]);
        let matched: Vec<_> = pods
            .iter()
            .filter(|pod| kube::selects(selector, pod.labels))
            .collect();
        if matched.is_empty() {
            problems.push(format!(
                "{}: its selector matches no pod template",
                kube::id(pdb)
            ));
        }
        for pod in matched {
            let replicas = at(pod.workload, &["spec", "replicas"])
                .and_then(Value::as_u64)
                .unwrap_or(1);
            let min = at(pdb, &["spec", "minAvailable"]).and_then(Value::as_u64);
            if replicas < 2 || min.is_some_and(|min| min >= replicas) {
                problems.push(format!(
                    "{}: {} has {replicas} replica(s), so the budget would block every node drain",
                    kube::id(pdb),
                    kube::id(pod.workload)
                ));
            }
        }
    }
}

/// Every endpoint scrapes /metrics through a named port of a selected Service that leads to the
/// admin port.
fn check_monitor(docs: &[Value], monitor: &Value, admin_port: u16, problems: &mut Vec<String>) {
    let id = kube::id(monitor);
    let selector = at(monitor, &["spec", "selector", "matchLabels"]);
    let services: Vec<&Value> = kube::of_kind(docs, "Service")
        .filter(|svc| kube::selects(selector, at(svc, &["metadata", "labels"])))
        .collect();
    if services.is_empty() {
        problems.push(format!(
            "{id}: spec.selector.matchLabels matches no Service"
        ));
    }
    let served = binary::admin_paths();
    let endpoints = list(monitor, &["spec", "endpoints"]);
    if endpoints.is_empty() {
        problems.push(format!("{id}: no endpoints"));
    }
    for endpoint in endpoints {
        let path = at(endpoint, &["path"])
            .and_then(Value::as_str)
            .unwrap_or(METRICS);
        if path != METRICS || !served.contains(path) {
            problems.push(format!(
                "{id}: path {path:?}; src/admin/mod.rs serves metrics at {METRICS}"
            ));
        }
        let port_name = str_at(endpoint, &["port"]);
        for svc in &services {
            let Some(port) = list(svc, &["spec", "ports"])
                .iter()
                .find(|p| str_at(p, &["name"]) == port_name)
            else {
                problems.push(format!(
                    "{id}: {} has no port named {port_name:?}",
                    kube::id(svc)
                ));
                continue;
            };
            let target = port.get("targetPort").or_else(|| port.get("port"));
            for pod in kube::pod_templates(docs) {
                if !kube::selects(at(svc, &["spec", "selector"]), pod.labels) {
                    continue;
                }
                let containers = kube::containers(pod.spec).map(|(c, _)| c);
                let resolved = target.and_then(|t| kube::resolve_port(t, containers));
                if resolved != Some(admin_port) {
                    problems.push(format!(
                        "{id}: port {port_name} leads to {resolved:?} in {}, not the admin port {admin_port}",
                        kube::id(pod.workload)
                    ));
                }
            }
        }
    }
}

/// A CRD object (no schema here): a `group/version` apiVersion, a kind, a DNS-1123 name.
pub(crate) fn check_crd(doc: &Value, problems: &mut Vec<String>) {
    let api_version = str_at(doc, &["apiVersion"]);
    let kind = str_at(doc, &["kind"]);
    let name = str_at(doc, &["metadata", "name"]);
    let version_ok = api_version.split_once('/').is_some_and(|(group, version)| {
        group.contains('.')
            && group.split('.').all(dns_label)
            && version.starts_with('v')
            && version[1..].starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if !version_ok {
        problems.push(format!(
            "{kind}/{name}: apiVersion {api_version:?} is not group/version"
        ));
    }
    if !kind.starts_with(|c: char| c.is_ascii_uppercase())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        problems.push(format!("{api_version}: kind {kind:?} is not a Kind"));
    }
    if name.is_empty() || name.len() > 253 || !name.split('.').all(dns_label) {
        problems.push(format!(
            "{kind}: metadata.name {name:?} is not a DNS-1123 subdomain"
        ));
    }
}

/// A PodMonitor selects timgate pods and scrapes METRICS on a named port that is the admin port.
fn check_pod_monitor(
    monitor: &Value,
    pods: &[kube::PodTemplate<'_>],
    admin_port: u16,
    problems: &mut Vec<String>,
) {
    let selected: Vec<_> = pods
        .iter()
        .filter(|pod| {
            kube::selects(
                at(monitor, &["spec", "selector", "matchLabels"]),
                pod.labels,
            )
        })
        .collect();
    if selected.is_empty() {
        problems.push(format!("{}: selects no pod template", kube::id(monitor)));
    }
    let endpoints = list(monitor, &["spec", "podMetricsEndpoints"]);
    if endpoints.is_empty() {
        problems.push(format!("{}: no podMetricsEndpoints", kube::id(monitor)));
    }
    for endpoint in endpoints {
        if str_at(endpoint, &["path"]) != METRICS {
            problems.push(format!("{}: path is not {METRICS}", kube::id(monitor)));
        }
        let port = endpoint.get("port").cloned().unwrap_or(Value::Null);
        for pod in &selected {
            let containers = kube::containers(pod.spec).map(|(c, _)| c);
            let resolved = kube::resolve_port(&port, containers);
            if resolved != Some(admin_port) {
                problems.push(format!(
                    "{}: port {port} of {} is {resolved:?}, not the admin port {admin_port}",
                    kube::id(monitor),
                    kube::id(pod.workload)
                ));
            }
        }
    }
}

/// A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, at most 63.
fn dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}
