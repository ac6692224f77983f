//! One timgate container as its pod would run it: the configuration rebuilt from the mounted
//! ConfigMap and Secret and the container's environment, run through the real binary's
//! `check-config`, then compared with the container's ports, probes, security context, resources
//! and the pod's grace period.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use crate::binary::{
    self, HEALTHZ, HELD_CALLER_BYTES, IDLE_RSS_BYTES, MIN_HELD_CALLERS, READYZ, REFUSE_AT,
};
use crate::kube::{self, PodTemplate, at, list, str_at};
use crate::runtime::{self, Runtime, Source};
use crate::tools;

/// What one timgate container turned out to be, for the checks of each variant.
#[derive(Debug)]
pub(crate) struct Summary {
    /// `kind/name` of its workload.
    pub workload: String,
    /// An init container with `restartPolicy: Always`.
    pub native_sidecar: bool,
    /// Its pod also runs containers that are not timgate (a caller).
    pub beside_caller: bool,
    /// The workload's replicas.
    pub replicas: u64,
    /// `server.listen` as the binary printed it.
    pub listen: SocketAddr,
    /// `limits.backend`.
    pub backend: String,
    /// `server.auth_tokens` comes from a Secret.
    pub tokens_from_secret: bool,
    /// A Service sends to the proxy port.
    pub proxy_service: bool,
}

/// Checks one timgate container of `pod`; appends what is wrong to `problems`.
pub(crate) fn check(
    docs: &[Value],
    pod: &PodTemplate<'_>,
    container: &Value,
    init: bool,
    defaults: &Value,
    problems: &mut Vec<String>,
) -> Option<Summary> {
    let at_name = format!(
        "{} container {}",
        kube::id(pod.workload),
        str_at(container, &["name"])
    );
    let mut p = |msg: String| problems.push(format!("{at_name}: {msg}"));
    let runtime = Runtime::of(docs, pod.spec, container, &mut p);
    let Some(config_path) = runtime::config_arg(container) else {
        p("no --config FILE in command/args: mount the ConfigMap and pass its file".into());
        return None;
    };
    let Some((Source::ConfigMap, toml)) = runtime.files.get(&config_path) else {
        p(format!(
            "--config {} is not a file of a mounted ConfigMap",
            config_path.display()
        ));
        return None;
    };
    let config = runtime.config(defaults, &tools::toml(&tools::python()?, toml));
    check_secret_key(&runtime, &config, &mut p);
    check_redis_files(&runtime, &config, &mut p);
    let (listen, admin) = run_check_config(&runtime, &config_path, &config, &mut p)?;
    check_ports_and_probes(container, listen, admin, &mut p);
    let proxy_service = check_exposure(docs, pod, listen, &config, &mut p);
    check_security(pod.spec, container, &mut p);
    check_resources(container, &config, &mut p);
    check_lifecycle(pod, container, init, &config, &mut p);
    let replicas = at(pod.workload, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .unwrap_or(1);
    check_fallback(&config, replicas, &mut p);
    Some(Summary {
        workload: kube::id(pod.workload),
        native_sidecar: init && str_at(container, &["restartPolicy"]) == "Always",
        beside_caller: kube::containers(pod.spec).any(|(c, _)| !kube::is_timgate(c)),
        replicas,
        listen,
        backend: config["limits"]["backend"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        tokens_from_secret: runtime.env_source("TIMGATE__SERVER__AUTH_TOKENS")
            == Some(Source::Secret),
        proxy_service,
    })
}

/// The SecretKey comes from a Secret, as a mounted file or an env var; never from a ConfigMap or a
/// literal.
fn check_secret_key(runtime: &Runtime, config: &Value, p: &mut impl FnMut(String)) {
    let from_env = runtime.env_source("TIMGATE__TENCENT__SECRET_KEY") == Some(Source::Secret);
    let inline = config["tencent"]["secret_key"].as_str().unwrap_or("");
    if !inline.is_empty() && !from_env {
        p(
            "tencent.secret_key is set outside a Secret: use secret_key_file (a mounted Secret)"
                .into(),
        );
    }
    let file = config["tencent"]["secret_key_file"].as_str().unwrap_or("");
    match runtime.files.get(Path::new(file)) {
        _ if file.is_empty() && (from_env || !inline.is_empty()) => {}
        _ if file.is_empty() => {
            p("no SecretKey: set tencent.secret_key_file to a mounted Secret's file".into())
        }
        Some((Source::Secret, _)) => {}
        Some(_) => p(format!(
            "tencent.secret_key_file {file} is mounted, but not from a Secret"
        )),
        None => p(format!(
            "tencent.secret_key_file {file} is not a mounted file"
        )),
    }
}

/// The keys that name a file the pod mounts: `check-config` reads them where they were laid out.
const FILE_KEYS: [(&str, &str); 6] = [
    ("tencent", "secret_key_file"),
    ("tencent", "ca_file"),
    ("limits", "redis_ca_file"),
    ("limits", "redis_cert_file"),
    ("limits", "redis_key_file"),
    ("limits", "redis_password_file"),
];

/// The Redis password and the client key come from a mounted Secret; the CA and the client
/// certificate from any mounted file (a ConfigMap will do: they are not secret).
fn check_redis_files(runtime: &Runtime, config: &Value, p: &mut impl FnMut(String)) {
    for (key, secret) in [
        ("redis_password_file", true),
        ("redis_key_file", true),
        ("redis_ca_file", false),
        ("redis_cert_file", false),
    ] {
        let file = config["limits"][key].as_str().unwrap_or("");
        match runtime.files.get(Path::new(file)) {
            _ if file.is_empty() => {}
            Some((Source::Secret, _)) => {}
            Some(_) if !secret => {}
            Some(_) => p(format!(
                "limits.{key} {file} is mounted, but not from a Secret"
            )),
            None => p(format!("limits.{key} {file} is not a mounted file")),
        }
    }
}

/// Runs the real binary's `check-config` on the container's files and environment, laid out in a
/// temporary directory (file paths in the configuration follow them); returns the listeners it
/// printed.
fn run_check_config(
    runtime: &Runtime,
    config_path: &Path,
    config: &Value,
    p: &mut impl FnMut(String),
) -> Option<(SocketAddr, SocketAddr)> {
    let tmp = tempfile::tempdir().expect("temp dir");
    runtime.materialize(tmp.path());
    let mut env = runtime.timgate_env();
    for (section, key) in FILE_KEYS {
        if let Some(path) = config[section][key].as_str().filter(|p| !p.is_empty()) {
            let moved = runtime::local(tmp.path(), Path::new(path));
            let var = format!("TIMGATE__{section}__{key}").to_ascii_uppercase();
            env.push((var, moved.display().to_string()));
        }
    }
    let out = binary::check_config(&runtime::local(tmp.path(), config_path), &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        p(format!(
            "check-config exits {:?}:\n{}",
            out.status.code(),
            tools::both(&out)
        ));
        return None;
    }
    let listeners = binary::printed_listeners(&stdout);
    if listeners.is_none() {
        p(format!("check-config printed no listeners:\n{stdout}"));
    }
    listeners
}

/// With Redis, each replica's fallback share times the replicas stays within Tencent's limits:
/// `"auto"` is one over the replicas seen alive, a number is checked against `replicas`.
fn check_fallback(config: &Value, replicas: u64, p: &mut impl FnMut(String)) {
    if config["limits"]["backend"] != "redis" || config["limits"]["fallback_share"] == "auto" {
        return;
    }
    let share = config["limits"]["fallback_share"].as_f64().unwrap_or(1.0);
    if share * replicas as f64 > 1.0 + 1e-9 {
        p(format!(
            "limits.fallback_share {share} x {replicas} replicas is over 1: without Redis the \
             replicas together would exceed Tencent's limits"
        ));
    }
}

/// Container ports for both listeners; liveness, readiness (and startup) probes on the admin port.
fn check_ports_and_probes(
    container: &Value,
    listen: SocketAddr,
    admin: SocketAddr,
    p: &mut impl FnMut(String),
) {
    let declared: Vec<u64> = list(container, &["ports"])
        .iter()
        .filter_map(|port| port.get("containerPort")?.as_u64())
        .collect();
    for (what, addr) in [("server.listen", listen), ("server.admin_listen", admin)] {
        if !declared.contains(&u64::from(addr.port())) {
            p(format!(
                "no containerPort {} for {what} {addr}",
                addr.port()
            ));
        }
    }
    if !admin.ip().is_unspecified() {
        p(format!(
            "server.admin_listen {admin}: the kubelet and Prometheus reach the pod IP, so 0.0.0.0"
        ));
    }
    let served = binary::admin_paths();
    for (probe, want) in [
        ("livenessProbe", Some(HEALTHZ)),
        ("readinessProbe", Some(READYZ)),
        ("startupProbe", None),
    ] {
        let Some(get) = at(container, &[probe, "httpGet"]) else {
            if want.is_some() {
                p(format!("no {probe}.httpGet"));
            }
            continue;
        };
        let path = str_at(get, &["path"]);
        if want.is_some_and(|w| w != path) || !served.contains(path) {
            p(format!(
                "{probe} path {path:?}: want {want:?}; src/admin/mod.rs serves {served:?}"
            ));
        }
        let port = get
            .get("port")
            .and_then(|port| kube::resolve_port(port, std::iter::once(container)));
        if port != Some(admin.port()) {
            p(format!(
                "{probe} port {:?} is not the admin port {}",
                get.get("port"),
                admin.port()
            ));
        }
    }
}

/// A proxy behind a Service must listen beyond loopback, and one reachable beyond the pod must
/// demand bearer tokens. Returns whether a Service sends to the proxy port.
fn check_exposure(
    docs: &[Value],
    pod: &PodTemplate<'_>,
    listen: SocketAddr,
    config: &Value,
    p: &mut impl FnMut(String),
) -> bool {
    let served_by_service = kube::of_kind(docs, "Service")
        .filter(|svc| kube::selects(at(svc, &["spec", "selector"]), pod.labels))
        .flat_map(|svc| list(svc, &["spec", "ports"]))
        .filter_map(|port| {
            let target = port.get("targetPort").or_else(|| port.get("port"))?;
            kube::resolve_port(target, kube::containers(pod.spec).map(|(c, _)| c))
        })
        .any(|port| port == listen.port());
    if served_by_service && listen.ip().is_loopback() {
        p(format!(
            "a Service sends to the proxy port, but server.listen is {listen}"
        ));
    }
    let tokens = config["server"]["auth_tokens"]
        .as_array()
        .map_or(0, Vec::len);
    if !listen.ip().is_loopback() && tokens == 0 {
        p(format!(
            "server.listen {listen} is reachable beyond the pod, but server.auth_tokens is empty"
        ));
    }
    served_by_service
}

/// Non-root, read-only, no privilege escalation, no capabilities, the runtime's seccomp profile.
fn check_security(spec: &Value, container: &Value, p: &mut impl FnMut(String)) {
    let sc = container
        .get("securityContext")
        .cloned()
        .unwrap_or(Value::Null);
    let pod_sc = spec.get("securityContext").cloned().unwrap_or(Value::Null);
    let either = |key: &str| sc.get(key).or_else(|| pod_sc.get(key)).cloned();
    if either("runAsNonRoot") != Some(Value::Bool(true)) {
        p("securityContext.runAsNonRoot is not true".into());
    }
    if either("seccompProfile")
        .as_ref()
        .map(|s| str_at(s, &["type"]))
        != Some("RuntimeDefault")
    {
        p("securityContext.seccompProfile.type is not RuntimeDefault".into());
    }
    if sc.get("readOnlyRootFilesystem") != Some(&Value::Bool(true)) {
        p("securityContext.readOnlyRootFilesystem is not true".into());
    }
    if sc.get("allowPrivilegeEscalation") != Some(&Value::Bool(false)) {
        p("securityContext.allowPrivilegeEscalation is not false".into());
    }
    if !list(&sc, &["capabilities", "drop"]).contains(&Value::from("ALL")) {
        p("securityContext.capabilities.drop lacks ALL".into());
    }
}

/// Memory sized from the measurements: the request above the idle RSS; the limit, which
/// timgate takes as its memory budget, lets at least `MIN_HELD_CALLERS` callers wait before
/// refusals start; and a configured budget never exceeds the limit (else the kubelet could
/// kill the process before the budget's refusals begin).
fn check_resources(container: &Value, config: &Value, p: &mut impl FnMut(String)) {
    let memory = |kind: &str| kube::bytes(str_at(container, &["resources", kind, "memory"]));
    match memory("requests") {
        Some(request) if request >= IDLE_RSS_BYTES => {}
        other => p(format!(
            "resources.requests.memory {other:?} is under the idle RSS ({IDLE_RSS_BYTES} B)"
        )),
    }
    let room = |limit: u64| (limit as f64 * REFUSE_AT) as u64 - IDLE_RSS_BYTES.min(limit);
    let needed = MIN_HELD_CALLERS * HELD_CALLER_BYTES;
    match memory("limits") {
        Some(limit) if room(limit) >= needed => {
            let budget = config["server"]["memory_limit_bytes"].as_u64().unwrap_or(0);
            if budget > limit {
                p(format!(
                    "server.memory_limit_bytes {budget} is over resources.limits.memory {limit}"
                ));
            }
        }
        other => p(format!(
            "resources.limits.memory {other:?} leaves under {needed} B ({MIN_HELD_CALLERS} \
             waiting callers x {HELD_CALLER_BYTES} B) below the refusal line ({REFUSE_AT} of \
             the limit, less {IDLE_RSS_BYTES} B idle)"
        )),
    }
}

/// A native sidecar needs `restartPolicy: Always` (timgate never exits), and the grace period
/// must outlast the preStop sleep plus `server.shutdown_grace_ms`.
fn check_lifecycle(
    pod: &PodTemplate<'_>,
    container: &Value,
    init: bool,
    config: &Value,
    p: &mut impl FnMut(String),
) {
    if init && str_at(container, &["restartPolicy"]) != "Always" {
        p("an init container without restartPolicy: Always would hold the pod forever".into());
    }
    let grace_s = pod
        .spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    let sleep_s = at(container, &["lifecycle", "preStop", "sleep", "seconds"])
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let drain_ms = config["server"]["shutdown_grace_ms"].as_u64().unwrap_or(0);
    if grace_s * 1000 <= sleep_s * 1000 + drain_ms {
        p(format!(
            "terminationGracePeriodSeconds {grace_s} is not above the preStop sleep ({sleep_s} s) \
             plus server.shutdown_grace_ms ({drain_ms} ms)"
        ));
    }
}
