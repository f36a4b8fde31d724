//! `postern check`: accepts a good config with its policies and says OK; refuses a broken one, pointing at the
//! file, line and column of each problem.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::files::TempDir;

/// A valid config; `extra_server` is added at the end of `[server]`, `policies` is the policy directory.
fn config_text(extra_server: &str, policies: &Path) -> String {
    format!(
        r#"[server]
public_url = "https://devtools.example.com"
tls_listen = ["0.0.0.0:8443"]
tls = {{ cert = "{cert}", key = "{key}" }}
{extra_server}
[oidc]
issuer = "https://login.example.com/tenant/v2.0"
client_id = "abc"
client_secret = {{ file = "client_secret" }}

[session]
secret = {{ file = "session.key" }}

[policies]
dir = "{policies}"
"#,
        cert = crate::support::fixture("localhost.pem").display(),
        key = crate::support::fixture("localhost.key").display(),
        policies = policies.display(),
    )
}

/// A temp dir with secrets and `postern.toml` (built by `config_text`); returns the dir and the config path.
fn write(extra_server: &str, policies: Option<&Path>) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("check");
    dir.write("client_secret", "not-a-real-secret");
    dir.write("session.key", "test session key: not a secret, for integration tests only\n");
    let policies = policies.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("policies"));
    let path = dir.write("postern.toml", &config_text(extra_server, &policies));
    (dir, path)
}

fn check(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("POSTERN_CONFIG")
        .env_remove("POSTERN_LOG")
        .output()
        .expect("postern runs")
}

fn all_output(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("the needle is in the text");
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, column)
}

const GOOD_POLICY: &str = r#"[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"

[[route]]
name = "tools"
host = "tools.example.com"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["eng"] }]
"#;

#[test]
fn check_accepts_a_good_config_and_its_policies_and_prints_ok() {
    let (dir, config) = write("", None);
    dir.write("policies/tools.toml", GOOD_POLICY);

    let out = check(&config);

    assert!(out.status.success(), "{}", all_output(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
}

#[test]
fn check_reports_an_unknown_config_key_with_file_line_and_column() {
    let (dir, config) = write("listen_adress = [\"127.0.0.1:8080\"]\n", None);
    dir.write("policies/tools.toml", GOOD_POLICY);
    let text = std::fs::read_to_string(&config).expect("written");
    let (line, column) = position(&text, "listen_adress");

    let out = check(&config);

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:{line}:{column}", config.display());
    assert!(stderr.contains(&at), "expected {at} in:\n{stderr}");
    assert!(stderr.contains("listen_adress"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_reports_an_undefined_group_alias_in_a_policy_with_file_line_and_column() {
    let (dir, config) = write("", None);
    dir.write("policies/tools.toml", GOOD_POLICY);
    let broken = r#"[[route]]
name = "wiki"
host = "wiki.example.com"
upstream = "http://10.0.0.6:8080"
allow = [{ groups = ["ghosts"] }]
"#;
    let policy = dir.write("policies/wiki.toml", broken);
    let (line, column) = position(broken, "\"ghosts\"");

    let out = check(&config);

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:{line}:{column}", policy.display());
    assert!(stderr.contains(&at), "expected {at} in:\n{stderr}");
    assert!(stderr.contains("ghosts"), "{stderr}");
}

#[test]
fn check_accepts_the_policies_shipped_in_the_repository() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (_dir, config) = write("", Some(&shipped));

    let out = check(&config);

    assert!(out.status.success(), "{}", all_output(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

/// `check` reads what `serve` reads: a TLS certificate that is not one fails the check, naming it.
#[test]
fn check_refuses_a_tls_certificate_file_that_holds_no_certificate() {
    let (dir, config) = write("", None);
    dir.write("policies/tools.toml", GOOD_POLICY);
    let text = std::fs::read_to_string(&config).expect("written");
    let not_a_cert = dir.write("not-a-cert.pem", "hello\n");
    let text = text
        .replace(&crate::support::fixture("localhost.pem").display().to_string(), &not_a_cert.display().to_string());
    std::fs::write(&config, text).expect("rewritten");

    let out = check(&config);

    assert!(!out.status.success(), "{}", all_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls") && stderr.contains("not-a-cert.pem"), "{stderr}");
}

/// `check` reads what `serve` reads: a signing key that is not an ES256 key fails the check.
#[test]
fn check_refuses_an_assertion_signing_key_that_is_not_an_es256_key() {
    let (dir, config) = write("", None);
    dir.write("policies/tools.toml", GOOD_POLICY);
    dir.write("signing.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    let mut text = std::fs::read_to_string(&config).expect("written");
    text.push_str("\n[assertion]\nsigning_key = \"signing.pem\"\n");
    std::fs::write(&config, text).expect("rewritten");

    let out = check(&config);

    assert!(!out.status.success(), "{}", all_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("signing key"), "{stderr}");
}
