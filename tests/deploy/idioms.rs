//! The kustomize idioms deploy/kubernetes follows, checked by rendering with the real kustomize:
//! `kubectl apply -k` sends no Secret (the operator makes them; example/ generates a fake one under
//! a hashed name), the configuration is a generated ConfigMap whose name changes with its content
//! (so the pods roll), and components/sidecar adds timgate to a Deployment of one's own, names
//! prefixed and references rewritten, with components/podmonitor in place of the ServiceMonitor.

use std::path::Path;

use serde_json::{Value, json};

use crate::kube::{self, list, str_at};
use crate::{binary, pod, tools, wiring};

/// The Secrets the operator creates (deploy/README.md says how), with a key and a stand-in value
/// for the checks that run the binary on a pod's files.
pub(crate) const OPERATOR_SECRETS: [(&str, &str, &str); 3] = [
    ("timgate-secret-key", "secret-key", "a-test-secret-key"),
    ("timgate-auth-tokens", "tokens", "token-a,token-b"),
    (
        "timgate-redis-password",
        "password",
        "a-test-redis-password",
    ),
];

/// `docs` with a stand-in for each operator-made Secret they do not hold, as the cluster would
/// have it once the operator has followed deploy/README.md.
pub(crate) fn with_operator_secrets(docs: &[Value]) -> Vec<Value> {
    let mut out = docs.to_vec();
    for (name, key, value) in OPERATOR_SECRETS {
        if kube::named(docs, "Secret", name).is_none() {
            out.push(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {key: value},
            }));
        }
    }
    out
}

/// Every name a pod template mounts or reads from `kind` (`Secret` or `ConfigMap`).
fn referenced(docs: &[Value], kind: &str) -> Vec<String> {
    let (volume, field, env) = match kind {
        "Secret" => ("secret", "secretName", "secretKeyRef"),
        _ => ("configMap", "name", "configMapKeyRef"),
    };
    let mut names = Vec::new();
    for pod in kube::pod_templates(docs) {
        for v in list(pod.spec, &["volumes"]) {
            names.extend(v.get(volume).map(|s| str_at(s, &[field]).to_string()));
        }
        for (container, _) in kube::containers(pod.spec) {
            for var in list(container, &["env"]) {
                let name = str_at(var, &["valueFrom", env, "name"]);
                if !name.is_empty() {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn apply_k_sends_no_secret_and_deploy_readme_says_how_to_make_each() {
    let Some(manifests) = kube::manifests() else {
        return;
    };
    let Some(rendered) = manifests.rendered.as_ref() else {
        return;
    };
    let readme = std::fs::read_to_string(tools::repo().join("deploy/README.md")).expect("README");
    for overlay in rendered.iter().filter(|r| r.name != "example") {
        let secrets: Vec<String> = kube::of_kind(&overlay.docs, "Secret")
            .map(kube::id)
            .collect();
        assert!(
            secrets.is_empty(),
            "{}: `kubectl apply -k` would overwrite the operator's {secrets:?}",
            overlay.name
        );
        for name in referenced(&overlay.docs, "Secret") {
            assert!(
                OPERATOR_SECRETS.iter().any(|(n, _, _)| *n == name),
                "{}: Secret {name} is neither deployed nor one the operator makes",
                overlay.name
            );
            let create = format!("kubectl create secret generic {name}");
            assert!(
                readme.contains(&create),
                "deploy/README.md lacks `{create}`"
            );
        }
    }
}

#[test]
fn example_generates_its_secret_under_a_hashed_name_its_pods_mount() {
    let Some(docs) = kube::render_dir(&kube::root().join("example")) else {
        return;
    };
    let secrets: Vec<&Value> = kube::of_kind(&docs, "Secret").collect();
    assert_eq!(secrets.len(), 1, "example/ generates one Secret");
    let name = str_at(secrets[0], &["metadata", "name"]);
    let hash = name.strip_prefix("timgate-secret-key-").unwrap_or("");
    assert!(hash.len() >= 8, "no content hash in {name}");
    let file = std::fs::read_to_string(kube::root().join("example/secret-key.example"))
        .expect("the example key");
    assert_eq!(kube::data_value(secrets[0], "secret-key"), Some(file));
    assert_eq!(referenced(&docs, "Secret"), vec![name.to_string()]);
}

/// The ConfigMap timgate-config's generated name in `docs`, checked to be the one every pod mounts.
fn config_name(docs: &[Value]) -> String {
    let names: Vec<String> = kube::of_kind(docs, "ConfigMap")
        .map(|d| str_at(d, &["metadata", "name"]).to_string())
        .filter(|n| n.contains("timgate-config-"))
        .collect();
    assert_eq!(names.len(), 1, "one generated timgate-config: {names:?}");
    let mounted: Vec<String> = referenced(docs, "ConfigMap")
        .into_iter()
        .filter(|n| n.contains("timgate-config"))
        .collect();
    assert!(!mounted.is_empty() && mounted.iter().all(|m| *m == names[0]));
    names[0].clone()
}

/// Copies the directory `from` into `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

#[test]
fn a_config_change_renames_the_configmap_so_the_pods_roll() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let copy = tmp.path().join("kubernetes");
    copy_dir(&kube::root(), &copy);
    for (overlay, toml) in [("sidecar-native", "base"), ("shared", "shared")] {
        let Some(before) = kube::render_dir(&copy.join(overlay)) else {
            return;
        };
        let file = copy.join(toml).join("timgate.toml");
        let mut text = std::fs::read_to_string(&file).expect("timgate.toml");
        text.push_str("# a change\n");
        std::fs::write(&file, text).expect("write timgate.toml");
        let after = kube::render_dir(&copy.join(overlay)).expect("rendered once already");
        let (old, new) = (config_name(&before), config_name(&after));
        assert_ne!(old, new, "{overlay}: same ConfigMap name after a change");
    }
}

/// A service's own Deployment, as its team wrote it before timgate.
const APP_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: orders-api}
  template:
    metadata:
      labels: {app: orders-api}
    spec:
      terminationGracePeriodSeconds: 45
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
        - name: api
          image: registry.example.com/orders-api:2.3.1
          ports: [{name: http, containerPort: 8080}]
"#;

/// Renders a kustomization of one's own: `APP_DEPLOYMENT`, a namePrefix and `components`.
fn render_app(components: &[&str]) -> Option<Vec<Value>> {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(&kube::root(), &tmp.path().join("kubernetes"));
    let app = tmp.path().join("orders");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(app.join("deployment.yaml"), APP_DEPLOYMENT).expect("write");
    let components: String = components
        .iter()
        .map(|c| format!("  - ../kubernetes/components/{c}\n"))
        .collect();
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: orders-\n\
         resources:\n  - deployment.yaml\ncomponents:\n{components}"
    );
    std::fs::write(app.join("kustomization.yaml"), kustomization).expect("write");
    kube::render_dir(&app)
}

#[test]
fn the_sidecar_component_adds_timgate_to_ones_own_deployment_under_a_name_prefix() {
    let Some(docs) = render_app(&["sidecar"]) else {
        return;
    };
    let deployment = kube::named(&docs, "Deployment", "orders-api").expect("orders-api");
    let spec = &deployment["spec"]["template"]["spec"];
    let app = &list(spec, &["containers"])[0];
    assert_eq!(list(spec, &["containers"]).len(), 1, "the app's containers");
    assert_eq!(
        str_at(app, &["image"]),
        "registry.example.com/orders-api:2.3.1"
    );
    assert_eq!(
        spec["securityContext"]["runAsUser"], 10001,
        "the app's user"
    );
    let init = list(spec, &["initContainers"]);
    assert!(
        init.iter()
            .any(|c| kube::is_timgate(c) && str_at(c, &["restartPolicy"]) == "Always"),
        "no native timgate sidecar: {init:?}"
    );
    assert!(config_name(&docs).starts_with("orders-timgate-config-"));
    for (kind, name) in [
        ("Service", "orders-timgate-admin"),
        ("ServiceMonitor", "orders-timgate"),
    ] {
        assert!(kube::named(&docs, kind, name).is_some(), "no {kind} {name}");
    }
    // The pod as it would run, once the operator has made the SecretKey.
    let docs = with_operator_secrets(&docs);
    let python = tools::python().expect("found to render");
    let defaults = binary::defaults(&python);
    let (_, admin) = binary::default_listeners();
    let mut problems = Vec::new();
    for pod in kube::pod_templates(&docs) {
        for (container, init) in kube::containers(pod.spec).filter(|(c, _)| kube::is_timgate(c)) {
            pod::check(&docs, &pod, container, init, &defaults, &mut problems);
        }
    }
    wiring::check(&docs, admin.port(), &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_podmonitor_component_replaces_the_servicemonitor() {
    let Some(docs) = render_app(&["sidecar", "podmonitor"]) else {
        return;
    };
    assert!(kube::named(&docs, "PodMonitor", "orders-timgate").is_some());
    assert_eq!(kube::of_kind(&docs, "ServiceMonitor").count(), 0);
    assert!(kube::named(&docs, "Service", "orders-timgate-admin").is_none());
    let (_, admin) = binary::default_listeners();
    let mut problems = Vec::new();
    wiring::check(&docs, admin.port(), &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
