//! Outside tools the tests run (redis-server, promtool, python3 with PyYAML, hadolint, yamllint,
//! kubernetes-validate, kubectl, node, prlimit): where to find them, and what a test does when one
//! is missing. It fails, naming the tool and how to get it, unless the developer has chosen to skip
//! such checks with TIMGATE_SKIP_MISSING_TOOLS=1; a check that cannot run never passes silently.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The variable that turns a missing tool from a failure into a skip (printed on stderr).
pub(crate) const SKIP_VAR: &str = "TIMGATE_SKIP_MISSING_TOOLS";

/// The repository root.
pub(crate) fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `what` is missing: fails the test with how to install it, or, under
/// TIMGATE_SKIP_MISSING_TOOLS=1, says on stderr that the check is skipped and returns.
pub(crate) fn missing(what: &str) {
    let skip = std::env::var(SKIP_VAR).is_ok_and(|v| v == "1");
    assert!(
        skip,
        "{what} not found: this check needs it. `.ci/tools` installs every tool the tests use \
         (Debian packages, and the Python ones in .ci/venv, where the tests look); or set \
         {SKIP_VAR}=1 to skip the checks whose tools are missing"
    );
    eprintln!("skipped ({SKIP_VAR}=1): {what} not found");
}

/// Whether `program --version` (`program version` for openssl) succeeds; if not, [`missing`] and
/// `false`.
pub(crate) fn runs(program: &str) -> bool {
    let arg = if program == "openssl" {
        "version"
    } else {
        "--version"
    };
    let found = find(program).is_some_and(|path| {
        Command::new(path)
            .arg(arg)
            .output()
            .is_ok_and(|out| out.status.success())
    });
    if !found {
        missing(program);
    }
    found
}

/// .ci/venv/bin (made by .ci/tools), then PATH, then where pip puts scripts when they are not on
/// PATH: `~/.local/bin`, and python3's own scripts directories.
fn search_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let mut dirs = vec![repo().join(".ci/venv/bin")];
        if let Some(path) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&path));
        }
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

/// Every executable called `name` in the search directories, in order.
pub(crate) fn find_all(name: &str) -> impl Iterator<Item = PathBuf> + '_ {
    search_dirs()
        .iter()
        .map(move |dir| dir.join(name))
        .filter(|path| is_executable(path))
}

/// The first executable called `name` in the search directories.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    find_all(name).next()
}

/// The first python3 that has PyYAML and tomllib (3.11+), or `None` after [`missing`].
pub(crate) fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        find_all("python3").find(|python| {
            Command::new(python)
                .args(["-c", "import yaml, tomllib"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
    });
    if found.is_none() {
        missing("python3 (3.11+) with PyYAML");
    }
    found.clone()
}
