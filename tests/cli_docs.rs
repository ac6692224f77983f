//! `timgate completions <shell>` and `timgate man`, made from the clap definitions: each script
//! names every subcommand and option, bash's completes a real command line, and the man pages
//! render with groff where it is installed.

use std::process::{Command, Output};

#[path = "support/tools.rs"]
mod tools;

const SUBCOMMANDS: [&str; 5] = ["emulate", "usersig", "check-config", "completions", "man"];

fn timgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_timgate"))
        .args(args)
        .output()
        .expect("timgate runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8")
}

#[test]
fn completions_for_every_shell_name_every_subcommand_and_option() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&timgate(&["completions", shell]));
        // fish spells options `-l config`, the others `--config`.
        for word in SUBCOMMANDS.iter().chain(&["config", "demo", "tls-cert"]) {
            assert!(script.contains(word), "{shell}'s script lacks {word}");
        }
    }
    let unknown = timgate(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("possible values"));
}

/// What bash completes after `line` (its last word being completed) with timgate's script loaded.
fn bash_completes(line: &str) -> Vec<String> {
    let script = stdout(&timgate(&["completions", "bash"]));
    let words: Vec<&str> = line.split(' ').collect();
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
         COMP_POINT={point}; _timgate timgate '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.join(" "),
        cword = words.len() - 1,
        point = line.len(),
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .expect("bash runs");
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_subcommands_and_their_options() {
    assert_eq!(bash_completes("timgate em"), ["emulate"]);
    assert_eq!(bash_completes("timgate check"), ["check-config"]);
    assert_eq!(bash_completes("timgate emulate --tls-c"), ["--tls-cert"]);
    let shells = bash_completes("timgate completions ");
    assert!(shells.contains(&"zsh".to_string()), "{shells:?}");
}

#[test]
fn man_prints_the_page_and_writes_one_per_subcommand() {
    let page = stdout(&timgate(&["man"]));
    assert!(page.contains(".TH timgate 1"), "{page}");
    for word in ["\\-\\-config", "\\-\\-demo"] {
        assert!(page.contains(word), "the page lacks {word}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("UTF-8 path");
    stdout(&timgate(&["man", "--dir", path]));
    let mut written: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut want: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|c| format!("timgate-{c}.1"))
        .chain(["timgate.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(written, want);
    let emulate = std::fs::read_to_string(dir.path().join("timgate-emulate.1")).expect("page");
    assert!(emulate.contains("\\-\\-tls\\-cert"), "{emulate}");
    if !tools::runs("groff") {
        return;
    }
    let out = Command::new("groff")
        // Plain text: no bold or underline sequences in what is searched.
        .args(["-man", "-Tutf8", "-ww", "-P-cbou"])
        .arg(dir.path().join("timgate.1"))
        .output()
        .expect("groff runs");
    let text = stdout(&out);
    assert!(
        text.contains("SUBCOMMANDS") && text.contains("check-config"),
        "{text}"
    );
    assert!(
        out.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
