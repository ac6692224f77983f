//! `timgate emulate --tls-cert` with the certificate a user makes first: an ordinary self-signed
//! one (`openssl req -x509`, which marks it a CA: basicConstraints CA:TRUE), and the gateway
//! trusting that same file (`tencent.ca_file`). Before, the gateway refused it as the server's own
//! certificate (webpki's CaUsedAsEndEntity) and every call failed 502.

mod binary;
#[path = "support/tools.rs"]
mod tools;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use binary::{Killed, free_port, gateway_env, spawn};
use tokio::time::Instant;

/// Starts `timgate emulate` over TLS with `cert` and `key`; returns it and its https address.
fn emulator(cert: &Path, key: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_timgate"))
        .args(["emulate", "--listen", &free_port().to_string()])
        .arg("--tls-cert")
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timgate starts");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let child = Killed(child);
    let url = line
        .trim()
        .strip_prefix("emulator listening on ")
        .unwrap_or_else(|| panic!("emulate printed {line:?}"))
        .to_string();
    assert!(url.starts_with("https://"), "{url}");
    (child, url)
}

/// The answer (status, body) of one group write through a gateway that trusts `cert` alone.
fn write_through_gateway(emulator_url: &str, cert: &Path) -> (String, String) {
    let (proxy, admin) = (free_port(), free_port());
    let addr = emulator_url
        .trim_start_matches("https://")
        .parse()
        .expect("an address");
    let mut env = gateway_env(addr, proxy, admin);
    for (key, value) in &mut env {
        if *key == "TIMGATE__TENCENT__BASE_URL" {
            *value = emulator_url.to_string();
        }
    }
    env.push(("TIMGATE__TENCENT__CA_FILE", cert.display().to_string()));
    let _gateway = spawn(None, &[], &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = curl(&["-s", &format!("http://{admin}/readyz")]);
        if ready.contains(r#""status":"ready""#) {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        "-X",
        "POST",
        &format!("http://{proxy}/v4/group_open_http_svc/modify_group_attr"),
        "-d",
        r#"{"GroupId":"@TGS#aTLS","GroupAttr":[{"key":"k","value":"v"}]}"#,
    ]);
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", "000"));
    (status.to_string(), body.to_string())
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(args)
        .output()
        .expect("curl runs (.ci/tools installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_served_and_trusted(cert: &Path, key: &Path) {
    let (_emulator, url) = emulator(cert, key);
    let (status, body) = write_through_gateway(&url, cert);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains(r#""ActionStatus":"OK""#), "{body}");
}

/// `openssl req -x509 -newkey <newkey>` as its manual shows it, in `dir`.
fn openssl_self_signed(
    dir: &Path,
    newkey: &[&str],
) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if !tools::runs("openssl") {
        return None;
    }
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(newkey)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("CA:TRUE"),
        "openssl made no CA certificate:\n{text}"
    );
    Some((cert, key))
}

#[test]
fn an_openssl_req_x509_rsa_certificate_serves_and_is_trusted_as_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some((cert, key)) = openssl_self_signed(dir.path(), &["-newkey", "rsa:2048"]) {
        assert_served_and_trusted(&cert, &key);
    }
}

#[test]
fn an_openssl_req_x509_ec_certificate_serves_and_is_trusted_as_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    if let Some((cert, key)) = openssl_self_signed(dir.path(), &newkey) {
        assert_served_and_trusted(&cert, &key);
    }
}

#[test]
fn an_rcgen_self_signed_ca_certificate_serves_and_is_trusted_as_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    assert_served_and_trusted(&cert_path, &key_path);
}
