//! The manifests under deploy/kubernetes as data: every YAML file, the kustomizations that tie them
//! together, each kustomization rendered, and the small lookups the checks need (kinds, selectors,
//! named ports, Secret values, quantities).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value};

use crate::tools;

/// One YAML file and its documents.
pub(crate) struct File {
    /// Relative to the repository root.
    pub path: PathBuf,
    /// Its documents, in order.
    pub docs: Vec<Value>,
}

/// A kustomization rendered: what `kubectl apply -k` would send.
pub(crate) struct Rendered {
    /// Its directory, relative to deploy/kubernetes (e.g. `shared`).
    pub name: String,
    /// The documents.
    pub docs: Vec<Value>,
}

/// Everything under deploy/kubernetes.
pub(crate) struct Manifests {
    /// Every YAML file, kustomizations included.
    pub files: Vec<File>,
    /// Every kustomization rendered, or `None` where no kustomize is installed.
    pub rendered: Option<Vec<Rendered>>,
}

/// deploy/kubernetes.
pub(crate) fn root() -> PathBuf {
    tools::repo().join("deploy/kubernetes")
}

/// Every file under `dir` whose name ends with one of `exts`, sorted.
pub(crate) fn walk(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a deploy directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if exts
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The manifests, parsed once for all the tests of this binary; `None` without python3.
pub(crate) fn manifests() -> Option<&'static Manifests> {
    static MANIFESTS: OnceLock<Option<Manifests>> = OnceLock::new();
    let python = tools::python()?;
    let manifests = MANIFESTS.get_or_init(|| {
        let paths = walk(&root(), &["yaml", "yml"]);
        let parsed = tools::yaml_files(&python, &paths);
        let files: Vec<File> = paths
            .into_iter()
            .zip(parsed)
            .map(|(path, docs)| File {
                path: path
                    .strip_prefix(tools::repo())
                    .expect("under the repo")
                    .to_path_buf(),
                docs,
            })
            .collect();
        let rendered = tools::kustomize().map(|kustomize| {
            kustomization_dirs(&files)
                .into_iter()
                .map(|dir| render(&kustomize, &python, &dir))
                .collect()
        });
        Some(Manifests { files, rendered })
    });
    manifests.as_ref()
}

/// Whether `file` is a kustomization rather than a resource.
pub(crate) fn is_kustomization(file: &File) -> bool {
    file.path
        .file_name()
        .is_some_and(|n| n == "kustomization.yaml" || n == "kustomization.yml")
}

/// The directories to render: every kustomization but the components (`kind: Component`), which
/// render only as part of one (sidecar-native/ uses components/sidecar; tests/deploy/idioms.rs
/// uses both components in a kustomization of its own).
fn kustomization_dirs(files: &[File]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| is_kustomization(f))
        .filter(|f| {
            f.docs
                .first()
                .is_none_or(|d| str_at(d, &["kind"]) != "Component")
        })
        .map(|f| tools::repo().join(&f.path).parent().expect("a dir").into())
        .collect()
}

fn render(kustomize: &[PathBuf], python: &Path, dir: &Path) -> Rendered {
    let name = dir
        .strip_prefix(root())
        .expect("under deploy/kubernetes")
        .display()
        .to_string();
    let docs = render_with(kustomize, python, dir);
    Rendered { name, docs }
}

fn render_with(kustomize: &[PathBuf], python: &Path, dir: &Path) -> Vec<Value> {
    let out = tools::run(Command::new(&kustomize[0]).args(&kustomize[1..]).arg(dir));
    assert!(
        out.status.success(),
        "kustomize cannot render {}:\n{}",
        dir.display(),
        tools::both(&out)
    );
    tools::yaml_text(python, &String::from_utf8_lossy(&out.stdout))
}

/// Any kustomization directory rendered (one a test wrote), or `None` where kustomize or python3
/// is missing and TIMGATE_SKIP_MISSING_TOOLS=1.
pub(crate) fn render_dir(dir: &Path) -> Option<Vec<Value>> {
    let python = tools::python()?;
    let kustomize = tools::kustomize()?;
    Some(render_with(&kustomize, &python, dir))
}

/// The files a kustomization names: `(resources, patches)`, as paths relative to the repo root.
/// Directory resources are left out: their own kustomization names their files.
pub(crate) fn references(file: &File) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = file.path.parent().expect("a dir");
    let doc = file.docs.first().cloned().unwrap_or(Value::Null);
    let paths = |values: Vec<&Value>| -> Vec<PathBuf> {
        values
            .into_iter()
            .filter_map(Value::as_str)
            .map(|p| normalize(&dir.join(p)))
            .filter(|p| !tools::repo().join(p).is_dir())
            .collect()
    };
    let list = |key: &str| -> Vec<&Value> {
        doc.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    };
    let resources = paths(list("resources"));
    let mut patches = paths(list("patchesStrategicMerge"));
    patches.extend(paths(
        list("patches")
            .into_iter()
            .filter_map(|p| p.get("path"))
            .collect(),
    ));
    (resources, patches)
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

// === documents ===

/// `doc[a][b]...` as a string, or "".
pub(crate) fn str_at<'a>(doc: &'a Value, path: &[&str]) -> &'a str {
    at(doc, path).and_then(Value::as_str).unwrap_or("")
}

/// `doc[a][b]...`.
pub(crate) fn at<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, key| v.get(key))
}

/// `doc[a][b]...` as a list (empty when absent).
pub(crate) fn list<'a>(doc: &'a Value, path: &[&str]) -> &'a [Value] {
    at(doc, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `kind/name`, for messages.
pub(crate) fn id(doc: &Value) -> String {
    format!(
        "{}/{}",
        str_at(doc, &["kind"]),
        str_at(doc, &["metadata", "name"])
    )
}

/// Whether `api_version` belongs to Kubernetes itself (core, `apps`, `*.k8s.io`, ...), whose
/// schemas kubernetes-validate has, rather than to a CRD (`monitoring.coreos.com/v1`, ...).
pub(crate) fn is_builtin(api_version: &str) -> bool {
    match api_version.split_once('/') {
        None => true,
        Some((group, _)) => !group.contains('.') || group.ends_with(".k8s.io"),
    }
}

/// The documents of `kind` in `docs`.
pub(crate) fn of_kind<'a>(
    docs: &'a [Value],
    kind: &str,
) -> impl Iterator<Item = &'a Value> + use<'a> {
    let kind = kind.to_string();
    docs.iter().filter(move |d| str_at(d, &["kind"]) == kind)
}

/// The document of `kind` called `name`.
pub(crate) fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    of_kind(docs, kind).find(|d| str_at(d, &["metadata", "name"]) == name)
}

/// Whether `labels` carry every pair of `selector` (an empty selector selects nothing here: none of
/// ours should be empty).
pub(crate) fn selects(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let (Some(Value::Object(selector)), Some(Value::Object(labels))) = (selector, labels) else {
        return false;
    };
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A workload with a pod template (or a bare Pod): the document and its pod spec and labels.
pub(crate) struct PodTemplate<'a> {
    /// The Deployment, StatefulSet, ...
    pub workload: &'a Value,
    /// `spec.template.spec`.
    pub spec: &'a Value,
    /// `spec.template.metadata.labels`.
    pub labels: Option<&'a Value>,
}

/// Every pod template in `docs`.
pub(crate) fn pod_templates(docs: &[Value]) -> Vec<PodTemplate<'_>> {
    docs.iter()
        .filter_map(|doc| {
            if str_at(doc, &["kind"]) == "Pod" {
                return Some(PodTemplate {
                    workload: doc,
                    spec: doc.get("spec")?,
                    labels: at(doc, &["metadata", "labels"]),
                });
            }
            Some(PodTemplate {
                workload: doc,
                spec: at(doc, &["spec", "template", "spec"])?,
                labels: at(doc, &["spec", "template", "metadata", "labels"]),
            })
        })
        .collect()
}

/// Every container of a pod spec, init containers first, with whether it is one.
pub(crate) fn containers(spec: &Value) -> impl Iterator<Item = (&Value, bool)> {
    list(spec, &["initContainers"])
        .iter()
        .map(|c| (c, true))
        .chain(list(spec, &["containers"]).iter().map(|c| (c, false)))
}

/// Whether a container runs the timgate image.
pub(crate) fn is_timgate(container: &Value) -> bool {
    let image = str_at(container, &["image"]);
    let repository = image.rsplit('/').next().unwrap_or("");
    repository == "timgate"
        || repository.starts_with("timgate:")
        || repository.starts_with("timgate@")
}

/// A container port given by number or by name, as a number, looked up in `containers`.
pub(crate) fn resolve_port<'a>(
    port: &Value,
    mut containers: impl Iterator<Item = &'a Value>,
) -> Option<u16> {
    match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => containers.find_map(|c| {
            list(c, &["ports"])
                .iter()
                .find(|p| str_at(p, &["name"]) == name)
                .and_then(|p| p.get("containerPort")?.as_u64())
                .and_then(|n| u16::try_from(n).ok())
        }),
        _ => None,
    }
}

/// A key of a Secret (`stringData`, else base64 `data`) or a ConfigMap (`data`).
pub(crate) fn data_value(doc: &Value, key: &str) -> Option<String> {
    if let Some(value) = at(doc, &["stringData", key]).and_then(Value::as_str) {
        return Some(value.to_string());
    }
    let value = at(doc, &["data", key]).and_then(Value::as_str)?;
    if str_at(doc, &["kind"]) == "Secret" {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("Secret data is base64");
        return Some(String::from_utf8(bytes).expect("Secret data is UTF-8"));
    }
    Some(value.to_string())
}

/// The keys of a Secret or ConfigMap.
pub(crate) fn data_keys(doc: &Value) -> BTreeSet<String> {
    ["data", "stringData"]
        .iter()
        .filter_map(|k| doc.get(*k).and_then(Value::as_object))
        .flat_map(Map::keys)
        .cloned()
        .collect()
}

/// A memory quantity (`192Mi`, `200M`, `1Gi`, `65536`) in bytes.
pub(crate) fn bytes(quantity: &str) -> Option<u64> {
    const SUFFIXES: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().ok().map(|n| n * factor);
        }
    }
    quantity.parse().ok()
}
