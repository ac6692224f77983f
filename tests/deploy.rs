//! deploy/ checked offline: the Dockerfile (hadolint, and its ports and user against the binary),
//! every YAML file (yamllint), every manifest and every rendered overlay (kubernetes-validate
//! against the 1.30 schemas; CRD kinds by shape), and every timgate container as its pod would run
//! it: config keys that exist, `check-config` passing on the mounted files, ports, probe paths,
//! security context, memory and grace period that match the binary.
//!
//! A missing tool fails its check with how to install it (`.ci/tools`), unless
//! TIMGATE_SKIP_MISSING_TOOLS=1 asks to skip it.

#[path = "deploy/binary.rs"]
mod binary;
#[path = "deploy/idioms.rs"]
mod idioms;
#[path = "deploy/kube.rs"]
mod kube;
#[path = "support/tools.rs"]
mod outside;
#[path = "deploy/pod.rs"]
mod pod;
#[path = "deploy/runtime.rs"]
mod runtime;
#[path = "deploy/tools.rs"]
mod tools;
#[path = "deploy/wiring.rs"]
mod wiring;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The Kubernetes version the manifests are validated against: native sidecars need 1.29, the
/// preStop sleep action 1.30.
const KUBERNETES_VERSION: &str = "1.30.0";

/// The overlays deploy/README.md documents, and what each must deploy (see `each_overlay_*`).
const OVERLAYS: [&str; 4] = ["sidecar-native", "sidecar-classic", "shared", "example"];

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// === the image ===

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(tools::repo().join("deploy/Dockerfile"))
        .expect("deploy/Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if let Some((word, rest)) = current.trim().split_once(char::is_whitespace) {
                    instructions.push((word.to_uppercase(), rest.trim().to_string()));
                }
                current.clear();
            }
        }
    }
    instructions
}

/// The arguments of every `word` instruction.
fn of<'a>(instructions: &'a [(String, String)], word: &'a str) -> impl Iterator<Item = &'a str> {
    instructions
        .iter()
        .filter(move |(w, _)| w == word)
        .map(|(_, rest)| rest.as_str())
}

#[test]
fn dockerfile_builds_a_small_non_root_image_exposing_both_listeners() {
    let instructions = dockerfile();
    let of = |word: &'static str| of(&instructions, word);
    let froms: Vec<&str> = of("FROM").collect();
    assert!(
        froms.len() >= 2 && froms[0].to_lowercase().contains(" as "),
        "not multi-stage: {froms:?}"
    );
    let runtime = froms.last().expect("a FROM");
    assert!(
        runtime.contains("distroless") || runtime.contains("-slim"),
        "runtime image {runtime}"
    );
    assert!(
        of("RUN").any(|run| run.contains("cargo build --release --locked")),
        "the build must be `cargo build --release --locked`"
    );
    let last_from = instructions
        .iter()
        .rposition(|(w, _)| w == "FROM")
        .expect("a FROM");
    let user = instructions[last_from..]
        .iter()
        .rfind(|(w, _)| w == "USER")
        .map(|(_, user)| user.split(':').next().unwrap_or("").to_string());
    assert!(
        user.as_deref()
            .is_some_and(|u| !u.is_empty() && u != "root" && u != "0"),
        "the runtime stage must set a non-root USER, got {user:?}"
    );
    assert!(
        of("COPY").any(|c| c.starts_with("config/default.toml ")),
        "config/default.toml is not baked in"
    );
    assert_eq!(
        of("HEALTHCHECK").count(),
        0,
        "Kubernetes probes do health checks, not the image"
    );
    let exposed: BTreeSet<u16> = of("EXPOSE")
        .flat_map(str::split_whitespace)
        .map(|p| {
            p.trim_end_matches("/tcp")
                .parse()
                .expect("EXPOSE takes port numbers")
        })
        .collect();
    let (listen, admin) = binary::default_listeners();
    assert_eq!(
        exposed,
        BTreeSet::from([listen.port(), admin.port()]),
        "EXPOSE vs config/default.toml"
    );
    assert!(
        !of("ENTRYPOINT").next().unwrap_or("").is_empty(),
        "no ENTRYPOINT"
    );

    let ignore =
        std::fs::read_to_string(tools::repo().join(".dockerignore")).expect(".dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim().trim_start_matches("**/").trim_end_matches('/'))
        .collect();
    for path in ["target", "node_modules", ".git"] {
        assert!(ignored.contains(path), ".dockerignore lacks {path}");
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tools::require("hadolint") else {
        return;
    };
    let out = tools::run(Command::new(hadolint).arg(tools::repo().join("deploy/Dockerfile")));
    assert!(out.status.success(), "hadolint:\n{}", tools::both(&out));
}

// === YAML ===

#[test]
fn yaml_under_deploy_passes_yamllint() {
    let files = kube::walk(&tools::repo().join("deploy"), &["yaml", "yml"]);
    assert!(
        files.len() >= 10,
        "expected the manifests under deploy/, found {files:?}"
    );
    let Some(yamllint) = tools::require("yamllint") else {
        return;
    };
    let out = tools::run(Command::new(yamllint).current_dir(tools::repo()).args([
        "--strict",
        "--format",
        "parsable",
        "-c",
        ".yamllint",
        "deploy",
    ]));
    assert!(out.status.success(), "yamllint:\n{}", tools::both(&out));
}

#[test]
fn every_manifest_is_applied_by_a_kustomization() {
    let Some(manifests) = kube::manifests() else {
        return;
    };
    let mut referenced = BTreeSet::new();
    let mut problems = Vec::new();
    for file in manifests.files.iter().filter(|f| kube::is_kustomization(f)) {
        let (resources, patches) = kube::references(file);
        for path in resources.into_iter().chain(patches) {
            if !tools::repo().join(&path).is_file() {
                problems.push(format!(
                    "{} names {}, which does not exist",
                    file.path.display(),
                    path.display()
                ));
            }
            referenced.insert(path);
        }
    }
    for file in manifests
        .files
        .iter()
        .filter(|f| !kube::is_kustomization(f))
    {
        if !referenced.contains(&file.path) {
            problems.push(format!(
                "{} is in no kustomization: `kubectl apply -k` would leave it out",
                file.path.display()
            ));
        }
    }
    assert_no_problems("kustomizations", &problems);
}

// === schemas ===

#[test]
fn manifests_pass_the_kubernetes_schemas_and_crds_their_shape() {
    let Some(manifests) = kube::manifests() else {
        return;
    };
    let patches: BTreeSet<PathBuf> = manifests
        .files
        .iter()
        .filter(|f| kube::is_kustomization(f))
        .flat_map(|f| kube::references(f).1)
        .collect();
    // Files as written (patches are partial objects: their result is checked in the render), and
    // each kustomization as rendered.
    let mut sets: Vec<(String, &[Value])> = manifests
        .files
        .iter()
        .filter(|f| !kube::is_kustomization(f) && !patches.contains(&f.path))
        .map(|f| {
            (
                f.path.display().to_string().replace('/', "_"),
                f.docs.as_slice(),
            )
        })
        .collect();
    for rendered in manifests.rendered.iter().flatten() {
        sets.push((
            format!("rendered_{}", rendered.name.replace('/', "_")),
            &rendered.docs,
        ));
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut builtin = Vec::new();
    let mut problems = Vec::new();
    for (label, docs) in &sets {
        for (i, doc) in docs.iter().enumerate() {
            let api_version = kube::str_at(doc, &["apiVersion"]);
            if api_version.is_empty() || kube::str_at(doc, &["kind"]).is_empty() {
                problems.push(format!("{label} document {i}: no apiVersion or kind"));
            } else if kube::is_builtin(api_version) {
                let path = tmp.path().join(format!("{label}.{i}.yaml"));
                std::fs::write(&path, doc.to_string()).expect("write a document");
                builtin.push(path);
            } else {
                wiring::check_crd(doc, &mut problems);
            }
        }
    }
    assert_no_problems("CRD objects", &problems);
    assert!(!builtin.is_empty(), "no Kubernetes objects found");
    let Some(validate) = tools::require("kubernetes-validate") else {
        return;
    };
    let out = tools::run(
        Command::new(validate)
            .args(["--strict", "--quiet", "-k", KUBERNETES_VERSION])
            .args(&builtin),
    );
    let output = tools::both(&out);
    // A built-in kind without a schema is a typo or an API version this Kubernetes no longer has.
    assert!(
        out.status.success() && !output.contains("Couldn't find schema"),
        "kubernetes-validate --strict -k {KUBERNETES_VERSION}:\n{output}"
    );
}

// === agreement with the binary ===

#[test]
fn admin_rs_serves_the_paths_the_manifests_use() {
    let served = binary::admin_paths();
    for path in [binary::HEALTHZ, binary::READYZ, binary::METRICS] {
        assert!(
            served.contains(path),
            "src/admin/mod.rs no longer serves {path}: {served:?}"
        );
    }
}

/// Every string in `value`, keys included, that starts with `TIMGATE__`.
fn timgate_vars(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.starts_with("TIMGATE__") => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| timgate_vars(v, out)),
        Value::Object(map) => {
            for (key, v) in map {
                if key.starts_with("TIMGATE__") {
                    out.insert(key.clone());
                }
                timgate_vars(v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn config_keys_in_manifests_exist_and_each_configmap_passes_check_config() {
    let Some(manifests) = kube::manifests() else {
        return;
    };
    let python = tools::python().expect("found with the manifests");
    let known = binary::keys(&binary::defaults(&python));
    let mut docs: Vec<(String, &Value)> = Vec::new();
    for file in &manifests.files {
        docs.extend(
            file.docs
                .iter()
                .map(|d| (file.path.display().to_string(), d)),
        );
    }
    for rendered in manifests.rendered.iter().flatten() {
        docs.extend(
            rendered
                .docs
                .iter()
                .map(|d| (format!("rendered {}", rendered.name), d)),
        );
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let secret = tmp.path().join("secret-key");
    std::fs::write(&secret, "a-test-secret-key").expect("write the key");
    // A PEM certificate for the keys that name one (the pod checks read the mounted ones).
    let pem = tmp.path().join("cert.pem");
    let certified = rcgen::generate_simple_self_signed(vec!["redis".to_string()]).expect("rcgen");
    std::fs::write(&pem, certified.cert.pem()).expect("write the certificate");
    let mut problems = Vec::new();
    let mut configs = 0;
    for (origin, doc) in &docs {
        let mut vars = BTreeSet::new();
        timgate_vars(doc, &mut vars);
        for var in vars {
            match binary::env_key(&var) {
                Some(key) if known.contains(&key) => {}
                _ => problems.push(format!(
                    "{origin}: {var} names no key of config/default.toml"
                )),
            }
        }
        if kube::str_at(doc, &["kind"]) != "ConfigMap" {
            continue;
        }
        let tomls = doc
            .get("data")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        for (key, text) in tomls.filter(|(k, _)| k.ends_with(".toml")) {
            configs += 1;
            let at = format!("{origin} {} key {key}", kube::id(doc));
            let text = text.as_str().unwrap_or("");
            let parsed = tools::toml(&python, text);
            for unknown in binary::keys(&parsed).difference(&known) {
                problems.push(format!(
                    "{at}: {unknown} is not a key of config/default.toml"
                ));
            }
            let file = tmp.path().join(format!("config-{configs}.toml"));
            std::fs::write(&file, text).expect("write the config");
            // The pod's mounted key file does not exist here; the pod checks follow the real path.
            let mut env = vec![(
                "TIMGATE__TENCENT__SECRET_KEY_FILE".to_string(),
                secret.display().to_string(),
            )];
            for (key, file) in [
                ("redis_password_file", &secret),
                ("redis_key_file", &secret),
                ("redis_ca_file", &pem),
                ("redis_cert_file", &pem),
            ] {
                if parsed["limits"][key]
                    .as_str()
                    .is_some_and(|p| !p.is_empty())
                {
                    let var = format!("TIMGATE__LIMITS__{}", key.to_ascii_uppercase());
                    env.push((var, file.display().to_string()));
                }
            }
            if parsed["tencent"]["sdkappid"].is_null() {
                env.push(("TIMGATE__TENCENT__SDKAPPID".into(), "1400000000".into()));
            }
            let out = binary::check_config(&file, &env);
            if !out.status.success() {
                problems.push(format!(
                    "{at}: check-config exits {:?}:\n{}",
                    out.status.code(),
                    tools::both(&out)
                ));
            }
        }
    }
    assert!(configs > 0, "no ConfigMap holds a .toml file");
    assert_no_problems("config keys", &problems);
}

/// One rendered overlay, checked: its timgate containers and the problems found with them and its
/// wiring.
struct Checked {
    name: String,
    summaries: Vec<pod::Summary>,
    problems: Vec<String>,
}

/// Every rendered overlay, checked once for the tests that read the result.
fn overlays() -> Option<&'static [Checked]> {
    static OVERLAYS: OnceLock<Vec<Checked>> = OnceLock::new();
    let manifests = kube::manifests()?;
    let python = tools::python()?;
    let rendered = manifests.rendered.as_ref()?;
    let checked = OVERLAYS.get_or_init(|| {
        let defaults = binary::defaults(&python);
        let (_, admin) = binary::default_listeners();
        rendered
            .iter()
            .map(|overlay| {
                let mut problems = Vec::new();
                let mut summaries = Vec::new();
                // The cluster as the operator has it: with the Secrets deploy/README.md makes.
                let docs = idioms::with_operator_secrets(&overlay.docs);
                for pod in kube::pod_templates(&docs) {
                    let timgates = kube::containers(pod.spec).filter(|(c, _)| kube::is_timgate(c));
                    for (container, init) in timgates {
                        summaries.extend(pod::check(
                            &docs,
                            &pod,
                            container,
                            init,
                            &defaults,
                            &mut problems,
                        ));
                    }
                }
                wiring::check(&docs, admin.port(), &mut problems);
                Checked {
                    name: overlay.name.clone(),
                    summaries,
                    problems,
                }
            })
            .collect()
    });
    Some(checked)
}

#[test]
fn timgate_containers_run_as_the_binary_expects() {
    let Some(overlays) = overlays() else { return };
    let problems: Vec<String> = overlays
        .iter()
        .flat_map(|c| c.problems.iter().map(move |p| format!("{}: {p}", c.name)))
        .collect();
    assert_no_problems("rendered overlays", &problems);
}

#[test]
fn each_overlay_deploys_its_variant() {
    let Some(overlays) = overlays() else { return };
    for name in OVERLAYS {
        let Some(checked) = overlays.iter().find(|c| c.name == name) else {
            panic!("no overlay deploy/kubernetes/{name}");
        };
        assert!(
            !checked.summaries.is_empty(),
            "{name} runs no timgate container"
        );
        for s in &checked.summaries {
            let at = format!("{name} {}", s.workload);
            match name {
                "sidecar-native" | "example" => {
                    assert!(s.native_sidecar && s.beside_caller, "{at}: {s:?}")
                }
                "sidecar-classic" => assert!(!s.native_sidecar && s.beside_caller, "{at}: {s:?}"),
                _ => assert!(
                    !s.beside_caller
                        && s.replicas > 1
                        && s.listen.ip().is_unspecified()
                        && s.backend == "redis"
                        && s.tokens_from_secret
                        && s.proxy_service,
                    "{at}: {s:?}"
                ),
            }
        }
    }
    let manifests = kube::manifests().expect("parsed");
    for rendered in manifests
        .rendered
        .iter()
        .flatten()
        .filter(|r| OVERLAYS.contains(&r.name.as_str()))
    {
        let kinds: BTreeSet<&str> = rendered
            .docs
            .iter()
            .map(|d| kube::str_at(d, &["kind"]))
            .collect();
        let mut want = vec!["ConfigMap", "Service", "ServiceMonitor", "Deployment"];
        if rendered.name == "shared" {
            want.push("PodDisruptionBudget");
        }
        for kind in want {
            assert!(kinds.contains(kind), "{} deploys no {kind}", rendered.name);
        }
    }
}

#[test]
fn deploy_readme_tells_how_to_build_and_apply_each_variant() {
    let readme =
        std::fs::read_to_string(tools::repo().join("deploy/README.md")).expect("deploy/README.md");
    assert!(
        readme.contains("docker build -f deploy/Dockerfile ."),
        "no build command"
    );
    for name in OVERLAYS.iter().chain(&["alerts"]) {
        let apply = format!("kubectl apply -k deploy/kubernetes/{name}");
        assert!(readme.contains(&apply), "deploy/README.md lacks `{apply}`");
    }
}
