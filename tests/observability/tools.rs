//! The outside tools the observability checks run: promtool, and python3 with PyYAML to read
//! YAML (the crate has no YAML parser). Missing tools skip a check, or fail it under
//! `TIMGATE_REQUIRE_TOOLS=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The repository root, where the deploy files are.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Whether `what` is available; if not, prints why the check is skipped, or fails under
/// `TIMGATE_REQUIRE_TOOLS=1`.
fn available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("TIMGATE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("TIMGATE_REQUIRE_TOOLS=1 but {what} was not found");
    }
    println!("skipped: {what} not found");
    false
}

/// Whether promtool can run (else the check skips, or fails under TIMGATE_REQUIRE_TOOLS=1).
pub(crate) fn promtool() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    available(
        "promtool",
        *PRESENT.get_or_init(|| runs("promtool", &["--version"])),
    )
}

/// Whether python3 can import PyYAML (else as for promtool).
pub(crate) fn pyyaml() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    available(
        "python3 with PyYAML",
        *PRESENT.get_or_init(|| runs("python3", &["-c", "import yaml"])),
    )
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
    let out = Command::new("python3")
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
