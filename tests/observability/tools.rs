//! The outside tools the observability checks run: promtool, and python3 with PyYAML to read
//! YAML (the crate has no YAML parser). A missing tool fails its check, unless
//! TIMGATE_SKIP_MISSING_TOOLS=1 (tests/support/tools.rs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root, where the deploy files are.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether promtool can run (else the check fails, or skips under TIMGATE_SKIP_MISSING_TOOLS=1).
pub(crate) fn promtool() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    *PRESENT.get_or_init(|| crate::support::tools::runs("promtool"))
}

/// A python3 with PyYAML (else as for promtool).
fn python() -> Option<PathBuf> {
    crate::support::tools::python()
}

/// Whether a python3 with PyYAML is there (else as for promtool).
pub(crate) fn pyyaml() -> bool {
    python().is_some()
}

/// Runs promtool from the repository root with `stdin`, and fails with its whole output unless
/// it exits 0 (its lint findings exit 3).
pub(crate) fn promtool_ok(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// A YAML file as JSON, through PyYAML.
pub(crate) fn yaml(path: &Path) -> Value {
    let script = "import yaml,json,sys; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let python = python().expect("python3 with PyYAML: check pyyaml() first");
    let out = Command::new(python)
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 starts");
    assert!(
        out.status.success(),
        "{} does not parse: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}
