//! The durable store as an operator meets it: the real binary (`postern serve`) keeps sessions, the SCIM
//! directory and revocations in its database file; a write it acknowledged survives `kill -9` and a restart;
//! the admin CLI works on the same file while the server runs, and the server honours what it did.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use postern::demo::provider::GROUP_ENG;
use postern::demo::{DEMO_POLICY, DEMO_POLICY_UPSTREAM};
use serde_json::json;

use crate::scim::Scim;
use crate::support::files::{Listen, Stack, TempDir, free_port, start_stack, write_config};
use crate::support::from_files::{SCIM_CONFIG, SCIM_TOKEN};
use crate::support::*;

/// The child process, killed when dropped (also when a test panics).
struct ChildGuard {
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the config for `port` (SCIM on, the default embedded store beside the config) and returns its path.
fn config(dir: &TempDir, stack: &Stack, port: u16) -> PathBuf {
    dir.write("scim.token", &format!("{SCIM_TOKEN}\n"));
    dir.write("policies/policy.toml", &DEMO_POLICY.replace(DEMO_POLICY_UPSTREAM, &stack.echo.url()));
    let path = write_config(dir, Listen::Http(port), &stack.provider);
    let text = std::fs::read_to_string(&path).expect("the config was written");
    dir.write("postern.toml", &format!("{text}\n{SCIM_CONFIG}"))
}

/// Starts `postern serve` for `dir` on a free port; returns it and its URL.
async fn serve(dir: &TempDir, stack: &Stack) -> (ChildGuard, String) {
    for attempt in 0..3 {
        let port = free_port();
        let config = config(dir, stack, port);
        let log = dir.path().join(format!("postern-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("POSTERN_LOG", "warn")
            .env_remove("POSTERN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("postern starts");
        let mut guard = ChildGuard { child, log };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = guard.child.try_wait() {
                eprintln!("postern exited with {status} (attempt {attempt}):\n{}", guard.log());
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                // Only our child knows this SCIM secret.
                let r = Scim::at(&url).get("/ServiceProviderConfig").await;
                if r.status == StatusCode::OK {
                    return (guard, url);
                }
            }
            assert!(Instant::now() < deadline, "postern did not start listening:\n{}", guard.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("postern serve did not start");
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("POSTERN_LOG", "error")
        .env_remove("POSTERN_CONFIG")
        .output()
        .expect("postern runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (up to 5 s) until `client`'s next request to `url` is answered `status`.
async fn until_status(client: &Client, url: &str, status: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = client.get(format!("{url}/")).api().send().await.status;
        if got == status {
            return;
        }
        assert!(Instant::now() < deadline, "still {got}, not {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_the_cli_works_beside_the_running_server() {
    let stack = start_stack().await;
    let dir = TempDir::new("durable");
    let (first, url) = serve(&dir, &stack).await;
    let scim = Scim::at(&url);
    let bob = user("bob");

    let bob_id = scim.create_user(bob.email, bob.oid).await;
    let eng = scim.create_group("eng", GROUP_ENG).await;
    scim.add_member(&eng, &bob_id).await;
    let alice = sign_in_at(&url, "alice").await;
    assert_eq!(alice.get(format!("{url}/")).api().send().await.status, StatusCode::OK);
    let carol_id = scim.create_user("carol@example.com", user("carol").oid).await;
    let r =
        scim.patch(&format!("/Users/{carol_id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(r.status, StatusCode::OK);
    // Acknowledged: now the process dies without any chance to flush or shut down.
    let first_log = first.log.clone();
    first.kill_9();
    // The audit log named who was cut off, and by which SCIM call; it never holds the secret.
    let log = std::fs::read_to_string(first_log).unwrap_or_default();
    let line = log.lines().find(|l| l.contains("user-revoked")).unwrap_or_else(|| panic!("no audit line:\n{log}"));
    assert!(line.contains("audit"), "{line}");
    assert!(line.contains("carol@example.com") && line.contains(user("carol").oid), "{line}");
    assert!(line.contains(&format!("PATCH /scim/v2/Users/{carol_id}")), "{line}");
    assert!(!log.contains(SCIM_TOKEN), "the SCIM secret is in the log");

    let (second, url) = serve(&dir, &stack).await;
    let scim = Scim::at(&url);
    let carol = scim.get(&format!("/Users/{carol_id}")).await;
    assert_eq!(carol.status, StatusCode::OK, "{}\n{}", carol.text(), second.log());
    assert_eq!(carol.json()["active"], false, "the deactivation survived");
    let group = scim.get(&format!("/Groups/{eng}")).await.json();
    assert_eq!(group["members"], json!([{"value": bob_id}]), "the membership survived");
    assert_eq!(alice.get(format!("{url}/")).api().send().await.status, StatusCode::OK, "the session survived");
    let r = sign_in_flow(&Client::new(), &url, "/", "carol").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the revocation survived");

    // The CLI, on the same file, while the server runs.
    let config = dir.path().join("postern.toml");
    let out = cli(&config, &["sessions", "list", "--user", "alice@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = stdout(&out);
    assert!(listed.contains(user("alice").oid) && listed.contains("1 session"), "{listed}");
    let out = cli(&config, &["sessions", "list", "--json"]);
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let handle = sessions[0]["handle"].as_str().expect("a handle").to_string();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&alice.cookie(SESSION_COOKIE).unwrap_or_default()));

    let bob_browser = sign_in_at(&url, "bob").await;
    assert_eq!(bob_browser.get(format!("{url}/")).api().send().await.status, StatusCode::OK);
    let out = cli(&config, &["users", "disable", "bob@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("1 session ended"), "{}", stdout(&out));
    // The running server re-checks the file ten times a second.
    let started = Instant::now();
    until_status(&bob_browser, &url, StatusCode::UNAUTHORIZED).await;
    eprintln!("time from `postern users disable` exiting to the first refused request: {:?}", started.elapsed());
    assert_eq!(scim.get(&format!("/Users/{bob_id}")).await.json()["active"], false);

    let out = cli(&config, &["users", "enable", "bob@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The server re-reads the directory within a quarter of a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = sign_in_flow(&Client::new(), &url, "/", "bob").await;
        if r.status == StatusCode::FOUND {
            break;
        }
        assert!(Instant::now() < deadline, "bob can sign in again once enabled: {}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let out = cli(&config, &["sessions", "revoke", "--session", &handle]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    until_status(&alice, &url, StatusCode::UNAUTHORIZED).await;
    let out = cli(&config, &["sessions", "revoke", "--session", &handle]);
    assert!(!out.status.success(), "revoking it again finds nothing");
    drop(second);
}

#[test]
fn the_cli_refuses_an_in_memory_store_and_says_why() {
    let dir = TempDir::new("cli-memory");
    dir.write("client_secret", "x");
    let config = dir.write(
        "postern.toml",
        "[server]\npublic_url = \"http://127.0.0.1:1\"\nlisten = [\"127.0.0.1:1\"]\n[oidc]\nissuer = \"http://127.0.0.1:2\"\nclient_id = \"c\"\nclient_secret = { file = \"client_secret\" }\n[store]\nkind = \"memory\"\n",
    );
    let out = cli(&config, &["sessions", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin API"), "{}", String::from_utf8_lossy(&out.stderr));
}
