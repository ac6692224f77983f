//! Cross-checks the UserSig module against the official npm package `tls-sig-api-v2` 1.0.2 and
//! an independent node `crypto`/`zlib` verifier (tests/usersig-node/crosscheck.js).
//!
//! Fails when node or npm is missing or the package cannot be installed (`.ci/tools` installs
//! them), unless TIMGATE_SKIP_MISSING_TOOLS=1 asks to skip it.

#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use timgate::tencent::usersig::{decode, generate, hmac_sig, verify};

const SDKAPPID: u64 = 1_400_000_000;
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const IDENTIFIER: &str = "administrator";
const EXPIRE: i64 = 86_400;
const NOW: i64 = 1_700_000_000;

struct Node {
    node: PathBuf,
    dir: PathBuf,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn npm_install(npm: &Path, dir: &Path) -> Result<(), String> {
    let mut why = String::new();
    for args in [
        &["ci", "--no-audit", "--no-fund"][..],
        &["install", "--no-audit", "--no-fund"],
    ] {
        match Command::new(npm).args(args).current_dir(dir).output() {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                why.push_str(&format!("`npm {}` failed: {}; ", args[0], err.trim()));
            }
            Err(e) => why.push_str(&format!("`npm {}` did not start: {e}; ", args[0])),
        }
    }
    Err(why)
}

fn setup() -> Result<Node, String> {
    let (Some(node), Some(npm)) = (find_on_path("node"), find_on_path("npm")) else {
        return Err("node not found".into());
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/usersig-node");
    if !dir.join("node_modules/tls-sig-api-v2").is_dir() {
        npm_install(&npm, &dir)?;
    }
    Ok(Node { node, dir })
}

/// The node tools, or `None` where they are missing and TIMGATE_SKIP_MISSING_TOOLS=1.
fn node() -> Option<&'static Node> {
    static SETUP: OnceLock<Result<Node, String>> = OnceLock::new();
    match SETUP.get_or_init(setup) {
        Ok(n) => Some(n),
        Err(why) => {
            tools::missing(why);
            None
        }
    }
}

fn run(n: &Node, args: &[&str]) -> Output {
    Command::new(&n.node)
        .arg("crosscheck.js")
        .args(args)
        .current_dir(&n.dir)
        .output()
        .expect("node starts")
}

#[test]
fn official_package_usersig_verifies_in_rust() {
    let Some(n) = node() else { return };
    let out = run(
        n,
        &[
            "gen",
            "1400000000",
            KEY,
            IDENTIFIER,
            "86400",
            "1700000000000",
        ],
    );
    assert!(
        out.status.success(),
        "gen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let official = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    let d = verify(&official, SDKAPPID, IDENTIFIER, KEY, NOW + 10).expect("rust verifies");
    assert_eq!(
        d.sig,
        hmac_sig(SDKAPPID, IDENTIFIER, KEY, NOW, EXPIRE, None)
    );
    assert_eq!(decode(&official), Ok(d.clone()));
    assert_eq!((d.version.as_str(), d.time, d.expire), ("2.0", NOW, EXPIRE));
    assert_eq!(d.userbuf, None);
}

#[test]
fn rust_usersig_verifies_in_node() {
    let Some(n) = node() else { return };
    let ours = generate(SDKAPPID, IDENTIFIER, KEY, NOW, EXPIRE);
    let out = run(n, &["verify", &ours, "1400000000", KEY, IDENTIFIER]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node refused our usersig: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn tampered_rust_usersig_fails_node_verify() {
    let Some(n) = node() else { return };
    let other_key = generate(SDKAPPID, IDENTIFIER, "not-the-key", NOW, EXPIRE);
    let out = run(n, &["verify", &other_key, "1400000000", KEY, IDENTIFIER]);
    assert!(
        !out.status.success(),
        "node accepted a usersig signed with another key"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature mismatch"));
    let other_user = generate(SDKAPPID, "someone", KEY, NOW, EXPIRE);
    let out = run(n, &["verify", &other_user, "1400000000", KEY, IDENTIFIER]);
    assert!(
        !out.status.success(),
        "node accepted a usersig for another identifier"
    );
}
