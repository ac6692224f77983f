//! One timgate container as its pod would run it: the configuration rebuilt from the mounted
//! ConfigMap and Secret and the container's environment, run through the real binary's
//! `check-config`, then compared with the container's ports, probes, security context, resources
//! and the pod's grace period.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::binary::{self, HEALTHZ, IDLE_RSS_BYTES, QUEUED_REQUEST_BYTES, READYZ};
use crate::kube::{self, PodTemplate, at, list, str_at};

/// What one timgate container turned out to be, for the checks of each variant.
#[derive(Debug)]
pub struct Summary {
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

/// Where a mounted file or an environment value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Literal,
    ConfigMap,
    Secret,
}

/// Checks one timgate container of `pod`; appends what is wrong to `problems`.
pub fn check(
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
    let files = mounted_files(docs, pod.spec, container, &mut p);
    let env = environment(docs, container, &mut p);

    let Some(config_path) = config_arg(container) else {
        p("no --config FILE in command/args: mount the ConfigMap and pass its file".into());
        return None;
    };
    let Some((Source::ConfigMap, toml)) = files.get(&config_path).cloned() else {
        p(format!(
            "--config {} is not a file of a mounted ConfigMap",
            config_path.display()
        ));
        return None;
    };
    let python = crate::tools::python()?;
    let mut config = defaults.clone();
    merge(&mut config, &crate::tools::toml(&python, &toml));
    for (name, (value, _)) in &env {
        if let Some(key) = binary::env_key(name) {
            set(&mut config, defaults, &key, value);
        }
    }
    let value = |section: &str, key: &str| config[section][key].clone();

    // The SecretKey: from a Secret, as a mounted file or an env var; never inline in a ConfigMap.
    let key_file = value("tencent", "secret_key_file");
    let key_file = key_file.as_str().unwrap_or("");
    let inline_from_secret =
        env.get("TIMGATE__TENCENT__SECRET_KEY").map(|(_, s)| *s) == Some(Source::Secret);
    if value("tencent", "secret_key")
        .as_str()
        .is_some_and(|k| !k.is_empty())
        && !inline_from_secret
    {
        p(
            "tencent.secret_key is set outside a Secret: use secret_key_file (a mounted Secret)"
                .into(),
        );
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let local = |path: &Path| tmp.path().join(path.strip_prefix("/").unwrap_or(path));
    for (path, (_, content)) in &files {
        std::fs::create_dir_all(local(path).parent().expect("a dir")).expect("mkdir");
        std::fs::write(local(path), content).expect("write a mounted file");
    }
    let mut run_env: Vec<(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with("TIMGATE__"))
        .map(|(name, (value, _))| (name.clone(), value.clone()))
        .collect();
    for (key, var) in [
        ("secret_key_file", "SECRET_KEY_FILE"),
        ("ca_file", "CA_FILE"),
    ] {
        let path = value("tencent", key);
        let path = path.as_str().unwrap_or("");
        if path.is_empty() {
            continue;
        }
        match files.get(Path::new(path)) {
            Some((Source::Secret, _)) => {}
            Some(_) if key == "ca_file" => {}
            Some(_) => p(format!(
                "tencent.{key} {path} is mounted, but not from a Secret"
            )),
            None => p(format!("tencent.{key} {path} is not a mounted file")),
        }
        let target = local(Path::new(path)).display().to_string();
        run_env.push((format!("TIMGATE__TENCENT__{var}"), target));
    }
    if key_file.is_empty() && !inline_from_secret {
        p("no SecretKey: set tencent.secret_key_file to a mounted Secret's file".into());
    }

    let out = binary::check_config(&local(&config_path), &run_env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        p(format!(
            "check-config exits {:?}:\n{}",
            out.status.code(),
            crate::tools::both(&out)
        ));
        return None;
    }
    let Some((listen, admin)) = binary::printed_listeners(&stdout) else {
        p(format!("check-config printed no listeners:\n{stdout}"));
        return None;
    };

    check_ports_and_probes(container, listen, admin, &mut p);
    let proxy_service = check_exposure(docs, pod, listen, &config, &mut p);
    check_security(pod.spec, container, &mut p);
    check_resources(container, &config, &mut p);
    check_lifecycle(pod, container, init, &config, &mut p);

    let replicas = at(pod.workload, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let backend = value("limits", "backend")
        .as_str()
        .unwrap_or("")
        .to_string();
    if backend == "redis" {
        let share = value("limits", "fallback_share").as_f64().unwrap_or(1.0);
        if share * replicas as f64 > 1.0 + 1e-9 {
            p(format!(
                "limits.fallback_share {share} x {replicas} replicas is over 1: without Redis the \
                 replicas together would exceed Tencent's limits"
            ));
        }
    }
    Some(Summary {
        workload: kube::id(pod.workload),
        native_sidecar: init && str_at(container, &["restartPolicy"]) == "Always",
        beside_caller: kube::containers(pod.spec).any(|(c, _)| !kube::is_timgate(c)),
        replicas,
        listen,
        backend,
        tokens_from_secret: env.get("TIMGATE__SERVER__AUTH_TOKENS").map(|(_, s)| *s)
            == Some(Source::Secret),
        proxy_service,
    })
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
                "{probe} path {path:?}: want {want:?}; src/admin.rs serves {served:?}"
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

/// Memory sized from the measurements: the request above the idle RSS, the limit above a full
/// queue (`limits.max_queued`).
fn check_resources(container: &Value, config: &Value, p: &mut impl FnMut(String)) {
    let memory = |kind: &str| kube::bytes(str_at(container, &["resources", kind, "memory"]));
    let max_queued = config["limits"]["max_queued"].as_u64().unwrap_or(0);
    let full = IDLE_RSS_BYTES + max_queued * QUEUED_REQUEST_BYTES;
    match memory("requests") {
        Some(request) if request >= IDLE_RSS_BYTES => {}
        other => p(format!(
            "resources.requests.memory {other:?} is under the idle RSS ({IDLE_RSS_BYTES} B)"
        )),
    }
    match memory("limits") {
        Some(limit) if limit >= full => {}
        other => p(format!(
            "resources.limits.memory {other:?} is under a full queue: {IDLE_RSS_BYTES} B idle + \
             {max_queued} queued x {QUEUED_REQUEST_BYTES} B = {full} B"
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

/// `--config FILE` or `--config=FILE` in the container's command and args.
fn config_arg(container: &Value) -> Option<PathBuf> {
    let words: Vec<&str> = list(container, &["command"])
        .iter()
        .chain(list(container, &["args"]))
        .filter_map(Value::as_str)
        .collect();
    words
        .iter()
        .enumerate()
        .find_map(|(i, word)| match word.strip_prefix("--config") {
            Some("") => words.get(i + 1).map(PathBuf::from),
            Some(rest) => rest.strip_prefix('=').map(PathBuf::from),
            None => None,
        })
}

/// Every file the container sees from a ConfigMap or Secret volume, by its path in the container.
fn mounted_files(
    docs: &[Value],
    spec: &Value,
    container: &Value,
    p: &mut impl FnMut(String),
) -> BTreeMap<PathBuf, (Source, String)> {
    let mut files = BTreeMap::new();
    for mount in list(container, &["volumeMounts"]) {
        let name = str_at(mount, &["name"]);
        let Some(volume) = list(spec, &["volumes"])
            .iter()
            .find(|v| str_at(v, &["name"]) == name)
        else {
            p(format!("volumeMount {name} has no volume"));
            continue;
        };
        let (source, kind, object) = if let Some(cm) = volume.get("configMap") {
            (Source::ConfigMap, "ConfigMap", str_at(cm, &["name"]))
        } else if let Some(secret) = volume.get("secret") {
            (Source::Secret, "Secret", str_at(secret, &["secretName"]))
        } else {
            continue;
        };
        let Some(doc) = kube::named(docs, kind, object) else {
            p(format!(
                "volume {name} mounts {kind} {object}, which is not deployed with it"
            ));
            continue;
        };
        let items: Vec<(String, String)> = match volume
            .get(if source == Source::Secret {
                "secret"
            } else {
                "configMap"
            })
            .and_then(|v| v.get("items"))
            .and_then(Value::as_array)
        {
            Some(items) => items
                .iter()
                .map(|i| {
                    (
                        str_at(i, &["key"]).to_string(),
                        str_at(i, &["path"]).to_string(),
                    )
                })
                .collect(),
            None => kube::data_keys(doc)
                .into_iter()
                .map(|k| (k.clone(), k))
                .collect(),
        };
        let mount_path = PathBuf::from(str_at(mount, &["mountPath"]));
        let sub_path = str_at(mount, &["subPath"]);
        for (key, path) in items {
            let Some(content) = kube::data_value(doc, &key) else {
                p(format!("{kind} {object} has no key {key}"));
                continue;
            };
            if sub_path.is_empty() {
                files.insert(mount_path.join(path), (source, content));
            } else if sub_path == path {
                files.insert(mount_path.clone(), (source, content));
            }
        }
    }
    files
}

/// The container's environment: literal values and those taken from Secrets and ConfigMaps.
fn environment(
    docs: &[Value],
    container: &Value,
    p: &mut impl FnMut(String),
) -> BTreeMap<String, (String, Source)> {
    let mut env = BTreeMap::new();
    let lookup = |kind: &str, name: &str, key: &str| {
        kube::named(docs, kind, name).and_then(|doc| kube::data_value(doc, key))
    };
    for from in list(container, &["envFrom"]) {
        let prefix = str_at(from, &["prefix"]);
        for (field, kind, source) in [
            ("configMapRef", "ConfigMap", Source::ConfigMap),
            ("secretRef", "Secret", Source::Secret),
        ] {
            let name = str_at(from, &[field, "name"]);
            if let Some(doc) = from.get(field).and_then(|_| kube::named(docs, kind, name)) {
                for key in kube::data_keys(doc) {
                    let value = kube::data_value(doc, &key).unwrap_or_default();
                    env.insert(format!("{prefix}{key}"), (value, source));
                }
            } else if from.get(field).is_some() {
                p(format!("envFrom {kind} {name} is not deployed with it"));
            }
        }
    }
    for var in list(container, &["env"]) {
        let name = str_at(var, &["name"]).to_string();
        if let Some(value) = var.get("value").and_then(Value::as_str) {
            env.insert(name, (value.to_string(), Source::Literal));
            continue;
        }
        for (field, kind, source) in [
            ("secretKeyRef", "Secret", Source::Secret),
            ("configMapKeyRef", "ConfigMap", Source::ConfigMap),
        ] {
            let Some(reference) = at(var, &["valueFrom", field]) else {
                continue;
            };
            let (object, key) = (str_at(reference, &["name"]), str_at(reference, &["key"]));
            match lookup(kind, object, key) {
                Some(value) => {
                    env.insert(name.clone(), (value, source));
                }
                None => p(format!(
                    "env {name}: {kind} {object} key {key} is not deployed with it"
                )),
            }
        }
    }
    env
}

/// Lays `overlay`'s tables over `base`'s, key by key.
fn merge(base: &mut Value, overlay: &Value) {
    let (Value::Object(base), Value::Object(overlay)) = (base, overlay) else {
        return;
    };
    for (section, table) in overlay {
        match (base.get_mut(section), table) {
            (Some(Value::Object(into)), Value::Object(from)) => {
                into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                base.insert(section.clone(), table.clone());
            }
        }
    }
}

/// Sets `section.key` from an environment string, typed like its default (lists comma-separated).
fn set(config: &mut Value, defaults: &Value, key: &str, raw: &str) {
    let Some((section, name)) = key.split_once('.') else {
        return;
    };
    let value = match &defaults[section][name] {
        Value::Array(_) => Value::from(raw.split(',').map(str::to_string).collect::<Vec<_>>()),
        Value::Number(n) if n.is_f64() => raw.parse::<f64>().map_or(Value::from(raw), Value::from),
        Value::Number(_) => raw.parse::<u64>().map_or(Value::from(raw), Value::from),
        Value::Bool(_) => raw.parse::<bool>().map_or(Value::from(raw), Value::from),
        _ => Value::from(raw),
    };
    if let Some(table) = config.get_mut(section).and_then(Value::as_object_mut) {
        table.insert(name.to_string(), value);
    }
}
