//! The command line around policies and keys: `postern check` runs the `*.test.toml` policy tests beside the
//! policies (each case on a line; a failure with its file:line, expected and actual, and the rule that
//! decided), `postern explain` shows how one request is decided, and `--help`, `version` and `keygen` do what
//! an operator reading them expects.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::files::TempDir;

const POLICY: &str = r#"[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"
sre = "0d7c2a91-0000-0000-0000-000000000003"

[[route]]
name = "tools"
host = "tools.example.com"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["eng"] }]

[[route]]
name = "tools-admin"
host = "tools.example.com"
path = "/admin"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["admins"] }, { groups = ["sre"], mfa = true }]

[[route]]
name = "wiki-api"
host = "wiki.example.com"
path = "/api"
upstream = "http://10.0.0.6:8080"
allow = [{ groups = ["eng"] }]

[[route]]
name = "wiki-docs"
host = "wiki.example.com"
path = "/docs"
methods = ["GET"]
upstream = "http://10.0.0.6:8080"
public = true
"#;

const PASSING_CASES: &str = r#"[[case]]
name = "bob (eng) reaches the tools"
request = "https://tools.example.com/explore"
identity = { groups = ["eng"] }
expect = "allow"
route = "tools"

[[case]]
name = "bob (eng) cannot reach admin"
request = "GET https://tools.example.com/admin/users"
identity = { groups = ["eng"] }
expect = "deny"
route = "tools-admin"
reason = "groups-unauthorized"

[[case]]
name = "nobody reaches the wiki docs without signing in"
request = "https://wiki.example.com/docs/start"
expect = "allow"
reason = "public"
"#;

const FAILING_CASES: &str = r#"[[case]]
name = "alice (admins) reaches admin"
request = "https://tools.example.com/admin"
identity = { groups = ["admins"] }
expect = "allow"

[[case]]
name = "eng is kept out of the tools"
request = "https://tools.example.com/explore"
identity = { groups = ["eng"] }
expect = "deny"
"#;

/// A temp dir with `postern.toml`, its secrets and `policies/tools.toml`.
fn config_dir() -> (TempDir, PathBuf) {
    let dir = TempDir::new("cli-policy");
    dir.write("client_secret", "not-a-real-secret");
    dir.write("session.key", "test session key: not a secret, for integration tests only\n");
    dir.write("policies/tools.toml", POLICY);
    let config = dir.write(
        "postern.toml",
        r#"[server]
public_url = "https://devtools.example.com"
listen = ["127.0.0.1:8080"]

[oidc]
issuer = "https://login.example.com/tenant/v2.0"
client_id = "abc"
client_secret = { file = "client_secret" }

[session]
secret = { file = "session.key" }
"#,
    );
    (dir, config)
}

fn postern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .env_remove("POSTERN_CONFIG")
        .env_remove("POSTERN_LOG")
        .env_remove("POSTERN_LOG_FORMAT")
        .output()
        .expect("postern runs")
}

fn run(args: &[&str], config: &Path) -> Output {
    let mut all = args.to_vec();
    let config = config.to_str().expect("a UTF-8 path");
    all.extend(["--config", config]);
    postern(&all)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all_output(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

/// The 1-based line of the `n`th (0-based) `[[case]]` of `text`.
fn case_line(text: &str, n: usize) -> usize {
    let at = text.match_indices("[[case]]").nth(n).expect("the case exists").0;
    text[..at].matches('\n').count() + 1
}

#[test]
fn check_runs_passing_policy_tests_prints_each_case_and_the_count() {
    let (dir, config) = config_dir();
    let cases = dir.write("policies/tools.test.toml", PASSING_CASES);

    let out = run(&["check"], &config);

    assert!(out.status.success(), "{}", all_output(&out));
    let text = stdout(&out);
    for (n, name) in [
        "bob (eng) reaches the tools",
        "bob (eng) cannot reach admin",
        "nobody reaches the wiki docs without signing in",
    ]
    .iter()
    .enumerate()
    {
        let head = format!("{}:{} case \"{name}\": ok", cases.display(), case_line(PASSING_CASES, n));
        assert!(text.contains(&head), "expected {head:?} in:\n{text}");
    }
    assert!(text.contains("3 policy test cases passed"), "{text}");
    assert!(text.contains("OK"), "{text}");
}

#[test]
fn check_reports_a_failing_policy_test_with_its_position_expected_actual_and_deciding_rule() {
    let (dir, config) = config_dir();
    let cases = dir.write("policies/tools.test.toml", FAILING_CASES);
    let policy = dir.path().join("policies/tools.toml");

    let out = run(&["check"], &config);

    assert!(!out.status.success(), "{}", all_output(&out));
    let text = all_output(&out);
    let passing =
        format!("{}:{} case \"alice (admins) reaches admin\": ok", cases.display(), case_line(FAILING_CASES, 0));
    assert!(text.contains(&passing), "{text}");
    let failing = format!("{}:{} case \"eng is kept out of the tools\"", cases.display(), case_line(FAILING_CASES, 1));
    assert!(text.contains(&format!("{failing}: expected deny, got allow")), "{text}");
    assert!(text.contains("expected: deny"), "{text}");
    let rule = format!(
        "{}:{} allow[0]",
        policy.display(),
        POLICY.lines().position(|l| l.contains("\"eng\"")).expect("a rule") + 1
    );
    assert!(text.contains(&format!("actual:   allow by {rule} on route tools")), "expected {rule} in:\n{text}");
    assert!(text.lines().any(|l| l.contains(&rule) && l.contains("✓") && l.contains("⇒ decides")), "{text}");
    assert!(text.contains("1 of 2 policy test cases failed"), "{text}");
    assert!(!stdout(&out).contains("OK"), "{text}");
}

#[test]
fn explain_shows_the_route_each_rule_and_a_deny_for_eng_on_admin() {
    let (_dir, config) = config_dir();

    let out = run(&["explain", "--url", "https://tools.example.com/admin", "--group", "eng"], &config);

    assert!(out.status.success(), "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("route:    tools-admin ("), "{text}");
    assert!(text.lines().any(|l| l.contains("allow[0]") && l.contains("groups [admins] ✗")), "{text}");
    assert!(text.lines().any(|l| l.contains("allow[1]") && l.contains("groups [sre] ✗")), "{text}");
    assert!(text.contains("decision: DENY (groups-unauthorized)"), "{text}");
}

#[test]
fn explain_shows_the_rule_that_allows_admins_on_admin() {
    let (_dir, config) = config_dir();

    let out = run(&["explain", "--url", "https://tools.example.com/admin/users", "--group", "admins"], &config);

    assert!(out.status.success(), "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.lines().any(|l| l.contains("allow[0]") && l.contains("✓") && l.contains("⇒ decides")), "{text}");
    assert!(text.contains("decision: ALLOW (allowed) by "), "{text}");
}

#[test]
fn explain_anonymous_says_nobody_is_signed_in_and_denies_as_unauthenticated() {
    let (_dir, config) = config_dir();

    let out = run(&["explain", "--url", "https://tools.example.com/admin", "--anonymous"], &config);

    assert!(out.status.success(), "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("identity: nobody signed in"), "{text}");
    assert!(text.contains("route:    tools-admin ("), "{text}");
    assert!(text.contains("decision: DENY (unauthenticated)"), "{text}");
}

#[test]
fn explain_for_a_url_no_route_covers_lists_the_routes_that_were_considered() {
    let (_dir, config) = config_dir();

    let out = run(&["explain", "--url", "https://wiki.example.com/admin", "--group", "eng"], &config);
    let post =
        run(&["explain", "--method", "POST", "--url", "https://wiki.example.com/docs/x", "--group", "eng"], &config);
    let elsewhere = run(&["explain", "--url", "https://nowhere.example.com/", "--group", "eng"], &config);

    let text = stdout(&out);
    assert!(text.contains("route:    none"), "{text}");
    assert!(text.contains("routes for host wiki.example.com, none covering GET /admin"), "{text}");
    for candidate in ["wiki-api", "wiki-docs"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(candidate)), "{candidate} in:\n{text}");
    }
    assert!(text.contains("decision: DENY (no-route)"), "{text}");
    let post = stdout(&post);
    assert!(post.lines().any(|l| l.trim_start().starts_with("wiki-docs") && l.contains("GET")), "{post}");
    let elsewhere = stdout(&elsewhere);
    assert!(elsewhere.contains("no route is for host nowhere.example.com"), "{elsewhere}");
    assert!(elsewhere.contains("tools.example.com") && elsewhere.contains("wiki.example.com"), "{elsewhere}");
}

/// Subcommands and their flags (global flags aside).
const SUBCOMMANDS: &[(&str, &[&str])] = &[
    ("serve", &["--config"]),
    ("demo", &["--listen"]),
    ("check", &["--config"]),
    ("explain", &["--config", "--method", "--url", "--group", "--role", "--claims", "--auth", "--anonymous"]),
    ("keygen", &["--out-dir", "--force"]),
    ("version", &[]),
];

#[test]
fn top_level_help_lists_every_subcommand_and_the_global_flags() {
    let out = postern(&["--help"]);

    assert!(out.status.success());
    let text = stdout(&out);
    for (sub, _) in SUBCOMMANDS {
        assert!(text.lines().any(|l| l.trim_start().starts_with(&format!("{sub} "))), "{sub} in:\n{text}");
    }
    for flag in ["--log-format", "--log ", "--version"] {
        assert!(text.contains(flag), "{flag} in:\n{text}");
    }
    assert!(text.contains("Examples:"), "{text}");
}

#[test]
fn top_level_help_shows_an_example_of_every_subcommand() {
    let out = postern(&["--help"]);

    let text = stdout(&out);
    let examples = text.split("Examples:").nth(1).expect("an Examples section");
    for (sub, _) in SUBCOMMANDS {
        assert!(
            examples.lines().any(|l| l.trim_start().starts_with(&format!("postern {sub}"))),
            "no example of {sub} in:\n{examples}"
        );
    }
}

#[test]
fn every_subcommand_help_names_each_of_its_flags_and_shows_an_example() {
    for (sub, flags) in SUBCOMMANDS.iter().filter(|(sub, _)| *sub != "version") {
        let out = postern(&[sub, "--help"]);

        assert!(out.status.success(), "{sub}");
        let text = stdout(&out);
        for flag in *flags {
            assert!(text.contains(flag), "{sub} --help names {flag}:\n{text}");
        }
        assert!(text.contains(&format!("Example: postern {sub}")), "{sub} --help shows an example:\n{text}");
    }
}

#[test]
fn every_example_in_a_subcommand_help_stands_on_its_own_line() {
    for (sub, _) in SUBCOMMANDS.iter().filter(|(sub, _)| *sub != "version") {
        let out = postern(&[sub, "--help"]);

        let text = stdout(&out);
        for line in text.lines().filter(|l| l.contains("Example: ")) {
            assert!(line.trim_start().starts_with("Example: "), "{sub} --help: an example inside a line: {line:?}");
            assert_eq!(line.matches("Example: ").count(), 1, "{sub} --help: two examples on one line: {line:?}");
        }
    }
}

#[test]
fn version_prints_the_package_version() {
    let expected = format!("postern {}", env!("CARGO_PKG_VERSION"));

    let sub = postern(&["version"]);
    let flag = postern(&["--version"]);

    assert!(sub.status.success());
    assert_eq!(stdout(&sub).trim(), expected);
    assert_eq!(stdout(&flag).trim(), expected);
}

#[cfg(unix)]
#[test]
fn keygen_writes_owner_only_keys_that_a_config_can_use() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, _) = config_dir();
    let keys = dir.path().join("keys");

    let out = postern(&["keygen", "--out-dir", keys.to_str().expect("a UTF-8 path")]);

    assert!(out.status.success(), "{}", all_output(&out));
    for name in ["session.key", "signing.pem"] {
        let mode = std::fs::metadata(keys.join(name)).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
    let pem = std::fs::read_to_string(keys.join("signing.pem")).expect("readable");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    // The keys work where the printed snippet says to put them.
    let config = dir.write(
        "keyed.toml",
        r#"[server]
public_url = "https://devtools.example.com"
listen = ["127.0.0.1:8080"]

[oidc]
issuer = "https://login.example.com/tenant/v2.0"
client_id = "abc"
client_secret = { file = "client_secret" }

[session]
secret = { file = "keys/session.key" }

[assertion]
signing_key = "keys/signing.pem"
"#,
    );
    let check = run(&["check"], &config);
    assert!(check.status.success(), "{}", all_output(&check));
}

#[test]
fn keygen_refuses_to_overwrite_existing_keys_without_force() {
    let dir = TempDir::new("keygen");
    let out_dir = dir.path().to_str().expect("a UTF-8 path").to_string();
    assert!(postern(&["keygen", "--out-dir", &out_dir]).status.success());
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("written");
    let (session, signing) = (read("session.key"), read("signing.pem"));

    let again = postern(&["keygen", "--out-dir", &out_dir]);

    assert!(!again.status.success(), "{}", all_output(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{}", all_output(&again));
    assert_eq!(read("session.key"), session, "the session key is untouched");
    assert_eq!(read("signing.pem"), signing, "the signing key is untouched");

    let forced = postern(&["keygen", "--out-dir", &out_dir, "--force"]);

    assert!(forced.status.success(), "{}", all_output(&forced));
    assert_ne!(read("session.key"), session, "--force writes a new session key");
    assert_ne!(read("signing.pem"), signing, "--force writes a new signing key");
}
