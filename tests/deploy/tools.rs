//! The external tools the deploy checks shell out to (hadolint, yamllint, kubernetes-validate,
//! kustomize, python3 for YAML and TOML): running them and reading what they print. Finding them,
//! and failing without them, is tests/support/tools.rs's job.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub(crate) use crate::outside::{find, missing, python, repo};

/// `find(name)`, or `missing(name)` and `None`.
pub(crate) fn require(name: &str) -> Option<PathBuf> {
    let found = find(name);
    if found.is_none() {
        missing(name);
    }
    found
}

/// Runs `command` and returns its output, panicking only if it cannot be started.
pub(crate) fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Both streams of `output`, for assertion messages.
pub(crate) fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Parses YAML (PyYAML's safe loader) and TOML (tomllib) into JSON, so the test needs no YAML or
/// TOML crate of its own.
const PY_PARSE: &str = r#"
import json, sys
if sys.argv[1] == "yaml":
    import yaml
    texts = [sys.stdin.read()] if len(sys.argv) == 2 else [open(p, encoding="utf-8").read() for p in sys.argv[2:]]
    out = [[d for d in yaml.safe_load_all(t) if d is not None] for t in texts]
else:
    import tomllib
    out = tomllib.loads(sys.stdin.read())
json.dump(out, sys.stdout, default=str)
"#;

fn python_parse(python: &Path, mode: &str, files: &[PathBuf], stdin: Option<&str>) -> Value {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(python)
        .args(["-c", PY_PARSE, mode])
        .args(files)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut pipe = child.stdin.take().expect("stdin piped");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write to python3");
    drop(pipe);
    let out = child.wait_with_output().expect("python3 runs");
    assert!(
        out.status.success(),
        "parsing {mode} {files:?} failed:\n{}",
        both(&out)
    );
    serde_json::from_slice(&out.stdout).expect("python3 prints JSON")
}

/// The YAML documents of each file, in order.
pub(crate) fn yaml_files(python: &Path, files: &[PathBuf]) -> Vec<Vec<Value>> {
    if files.is_empty() {
        return Vec::new();
    }
    let parsed = python_parse(python, "yaml", files, None);
    serde_json::from_value(parsed).expect("a list of lists of documents")
}

/// The YAML documents of a text (a rendered kustomization).
pub(crate) fn yaml_text(python: &Path, text: &str) -> Vec<Value> {
    let parsed = python_parse(python, "yaml", &[], Some(text));
    let mut texts: Vec<Vec<Value>> = serde_json::from_value(parsed).expect("one list of documents");
    texts.pop().expect("one text")
}

/// A TOML document as JSON.
pub(crate) fn toml(python: &Path, text: &str) -> Value {
    python_parse(python, "toml", &[], Some(text))
}

/// How to render a kustomization here: `kubectl kustomize` or a standalone `kustomize build`.
pub(crate) fn kustomize() -> Option<Vec<PathBuf>> {
    static KUSTOMIZE: OnceLock<Option<Vec<PathBuf>>> = OnceLock::new();
    let found = KUSTOMIZE.get_or_init(|| {
        if let Some(kubectl) = find("kubectl") {
            return Some(vec![kubectl, "kustomize".into()]);
        }
        find("kustomize").map(|k| vec![k, "build".into()])
    });
    if found.is_none() {
        missing("kustomize (kubectl kustomize)");
    }
    found.clone()
}
