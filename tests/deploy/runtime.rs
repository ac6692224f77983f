//! What a container sees when it runs: the files its ConfigMap and Secret volumes mount, its
//! environment with Secret and ConfigMap references resolved, and the timgate configuration these
//! make (the defaults, then the --config file, then TIMGATE__ variables, as the binary layers them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::binary;
use crate::kube::{self, at, list, str_at};

/// Where a mounted file or an environment value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Written in the manifest itself.
    Literal,
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

/// A container's files and environment.
pub(crate) struct Runtime {
    /// Every file mounted from a ConfigMap or Secret, by its path in the container.
    pub files: BTreeMap<PathBuf, (Source, String)>,
    /// Every environment variable, with its value and where it comes from.
    pub env: BTreeMap<String, (String, Source)>,
}

impl Runtime {
    /// What `container` of the pod `spec` sees, looking objects up in `docs`; reports references
    /// to objects that are not there.
    pub(crate) fn of(
        docs: &[Value],
        spec: &Value,
        container: &Value,
        p: &mut impl FnMut(String),
    ) -> Runtime {
        Runtime {
            files: mounted_files(docs, spec, container, p),
            env: environment(docs, container, p),
        }
    }

    /// Where the variable `name` comes from, if it is set.
    pub(crate) fn env_source(&self, name: &str) -> Option<Source> {
        self.env.get(name).map(|(_, source)| *source)
    }

    /// The configuration: `defaults` (config/default.toml as JSON), then `file` (the parsed
    /// --config TOML), then the TIMGATE__ variables.
    pub(crate) fn config(&self, defaults: &Value, file: &Value) -> Value {
        let mut config = defaults.clone();
        merge(&mut config, file);
        for (name, (value, _)) in &self.env {
            if let Some(key) = binary::env_key(name) {
                set(&mut config, defaults, &key, value);
            }
        }
        config
    }

    /// The TIMGATE__ variables, to run the binary with.
    pub(crate) fn timgate_env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter(|(name, _)| name.starts_with("TIMGATE__"))
            .map(|(name, (value, _))| (name.clone(), value.clone()))
            .collect()
    }

    /// Writes every mounted file under `root`, at [`local`] paths.
    pub(crate) fn materialize(&self, root: &Path) {
        for (path, (_, content)) in &self.files {
            let file = local(root, path);
            std::fs::create_dir_all(file.parent().expect("a dir")).expect("mkdir");
            std::fs::write(file, content).expect("write a mounted file");
        }
    }
}

/// The container path `path` under `root`.
pub(crate) fn local(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `--config FILE` or `--config=FILE` in the container's command and args.
pub(crate) fn config_arg(container: &Value) -> Option<PathBuf> {
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
