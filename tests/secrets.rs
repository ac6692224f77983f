//! Secrets never printed (issue 14): a malformed or mistyped `secret_key`, `auth_tokens` or
//! `redis_url` is reported by `check-config`, at start-up and by a SIGHUP reload, naming the key
//! or the line, and no output of the real binary ever holds the secret itself.

#[path = "secrets/running.rs"]
mod running;
#[path = "support/tools.rs"]
mod tools;

use std::process::{Command, Output, Stdio};
use std::time::Duration;
use tokio::time::Instant;

// Distinctive values, so that a substring search finds any echo of them.
const KEY: &str = "6c1ecbeec0a51752f31e7c80bc44685b8bf10eb8c832ffa9055bf5e6e37af370";
const TOKEN: &str = "ce15554d61b0e77aaaf3f363dcea95ba004068f5ca5bb186e7d492fabf7900a9";
const PASSWORD: &str = "eb6ba46ed047dca859cac5af2ad847b76dd5e2af9a9d5a525ddc8cab4247e1ff";

/// How long any one step may take before the test fails.
const BOUND: Duration = Duration::from_secs(20);

fn timgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_timgate"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIMGATE__") || k == "RUST_LOG")
    {
        command.env_remove(key);
    }
    command
}

/// The text with every secret masked, for failure messages.
fn masked(text: &str) -> String {
    [KEY, TOKEN, PASSWORD]
        .iter()
        .fold(text.to_string(), |text, secret| {
            text.replace(secret, "<SECRET>")
        })
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [KEY, TOKEN, PASSWORD] {
        assert!(
            !text.contains(secret),
            "{what} printed a secret:\n{}",
            masked(text)
        );
    }
}

/// A configuration file body with a mistake, and what the report of it must mention.
struct Case {
    name: &'static str,
    toml: String,
    names: &'static str,
}

fn cases() -> Vec<Case> {
    let t = "[tencent]\nsdkappid = 1\n";
    let redis = "[limits]\nbackend = \"redis\"\nredis_url";
    let mut cases = Vec::new();
    let mut case = |name, toml: String, names| cases.push(Case { name, toml, names });
    case(
        "key, no closing quote",
        format!("{t}secret_key = \"{KEY}\n"),
        "line 3, column 79",
    );
    case(
        "key, no quotes",
        format!("{t}secret_key = {KEY}\n"),
        "line 3, column 15",
    );
    case(
        "key, a list",
        format!("{t}secret_key = [\"{KEY}\"]\n"),
        "tencent.secret_key",
    );
    case(
        "token, a string",
        format!("[server]\nauth_tokens = \"{TOKEN}\""),
        "server.auth_tokens",
    );
    case(
        "token, ] missing",
        format!("[server]\nauth_tokens = [\"{TOKEN}\"\n{t}"),
        "line 3, column 1",
    );
    case(
        "token, \" missing",
        format!("[server]\nauth_tokens = [\"{TOKEN}]\n"),
        "line 2, column",
    );
    case(
        "url, \" missing",
        format!("{redis} = \"redis://:{PASSWORD}@h:1\n"),
        "line 3, column",
    );
    case(
        "url, a table",
        format!("{redis} = {{ url = \"redis://u:{PASSWORD}@h\" }}"),
        "limits.redis_url",
    );
    case(
        "url, a list",
        format!("{redis} = [\"redis://{PASSWORD}@h\"]\n"),
        "limits.redis_url",
    );
    let bad_db =
        format!("{t}secret_key = \"{KEY}\"\n{redis} = \"redis://u:{PASSWORD}@127.0.0.1/x\"");
    case(
        "url, bad database",
        bad_db,
        "limits.redis_url: \"redis://u:***@127.0.0.1/x\"",
    );
    case(
        "url, not a Redis scheme",
        format!("{t}secret_key = \"{KEY}\"\n{redis} = \"http://u:{PASSWORD}@127.0.0.1\""),
        "limits.redis_url: \"http://u:***@127.0.0.1\" is not a Redis URL (scheme \"http\"); \
         use redis://host[:port][/db], rediss://host[:port][/db], unix:///path or \
         redis+unix:///path",
    );
    let copied = format!("[server]\nlisten = \"{TOKEN}\"\nauth_tokens = [\"{TOKEN}\"]\n");
    case(
        "token copied into listen",
        copied,
        "server.listen: \"***\" is not",
    );
    cases
}

/// Runs the command to its end, within [`BOUND`].
fn finish(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timgate starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > BOUND {
            let _ = child.kill();
            panic!("timgate still running after {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn printed(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn check_config_and_start_up_report_a_bad_secret_line_without_its_value() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    for case in cases() {
        std::fs::write(&file, &case.toml).expect("write");
        for (how, args) in [
            ("check-config", &["check-config"][..]),
            ("start-up", &[][..]),
        ] {
            let output = finish(
                timgate()
                    .arg("--config")
                    .arg(&file)
                    .args(args)
                    .env("TIMGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
            );
            let text = printed(&output);
            let what = format!("{how} of {:?}", case.name);
            assert_eq!(output.status.code(), Some(64), "{what}: {}", masked(&text));
            assert!(
                text.contains(case.names),
                "{what} does not name {:?}:\n{}",
                case.names,
                masked(&text)
            );
            assert_no_secret(&what, &text);
        }
    }
}

/// The type error of a number's variable holding the SecretKey, with the key masked and the
/// variable named.
const USERSIG_TTL: &str = "tencent.usersig_ttl_secs: invalid type: string \"***\", expected an integer (set by TIMGATE__TENCENT__USERSIG_TTL_SECS)";

#[test]
fn environment_secrets_are_never_echoed() {
    let envs: [&[(&str, String)]; 2] = [
        // A secret pasted into a number's variable is echoed by the type error: masked.
        &[
            ("TIMGATE__TENCENT__SECRET_KEY", KEY.to_string()),
            ("TIMGATE__SERVER__AUTH_TOKENS", format!("{TOKEN},x")),
            ("TIMGATE__TENCENT__USERSIG_TTL_SECS", KEY.to_string()),
        ],
        &[
            ("TIMGATE__TENCENT__SDKAPPID", "1".to_string()),
            ("TIMGATE__TENCENT__SECRET_KEY", KEY.to_string()),
            ("TIMGATE__LIMITS__BACKEND", "redis".to_string()),
            (
                "TIMGATE__LIMITS__REDIS_URL",
                format!("redis://u:{PASSWORD}@127.0.0.1/x"),
            ),
        ],
    ];
    for (env, names) in envs.iter().zip([
        USERSIG_TTL,
        "limits.redis_url: \"redis://u:***@127.0.0.1/x\"",
    ]) {
        for args in [&["check-config"][..], &[][..]] {
            let output = finish(
                timgate()
                    .args(args)
                    .env("TIMGATE__SERVER__LISTEN", "127.0.0.1:0")
                    .env("TIMGATE__SERVER__ADMIN_LISTEN", "127.0.0.1:0")
                    .envs(env.iter().map(|(k, v)| (k, v))),
            );
            let text = printed(&output);
            assert_eq!(output.status.code(), Some(64), "{}", masked(&text));
            assert!(text.contains(names), "{names:?} missing: {}", masked(&text));
            assert_no_secret("the environment's check", &text);
        }
    }
    // A value that is not UTF-8 is named, never quoted (the config crate would quote it whole).
    use std::os::unix::ffi::OsStrExt;
    let raw = [KEY.as_bytes(), b"\xff"].concat();
    let not_utf8 = std::ffi::OsStr::from_bytes(&raw);
    let output = finish(
        timgate()
            .arg("check-config")
            .env("TIMGATE__TENCENT__SECRET_KEY", not_utf8),
    );
    let text = printed(&output);
    assert!(
        text.contains("secret_key\" contains non-Unicode data"),
        "{}",
        masked(&text)
    );
    assert_no_secret("a variable that is not UTF-8", &text);
}
