//! What `postern serve --log-format json` writes: one JSON object per line; one `audit` event per decision
//! with the request id, route, subject, decision and status; the request id the upstream received; and never a
//! cookie, a token or a secret. A trusted front proxy's `X-Request-Id` is kept; anyone else's is replaced.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use postern::demo::DEMO_POLICY;
use serde_json::Value;

use crate::support::files::{Listen, TempDir, free_port, start_stack, write_config};
use crate::support::*;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn json_logs_carry_one_audit_event_per_decision_and_never_a_cookie_token_or_secret() {
    let stack = start_stack().await;
    let dir = TempDir::new("logs");
    dir.write("policies/demo.toml", &DEMO_POLICY.replace("http://127.0.0.1:8081", &stack.echo.url()));
    let port = free_port();
    let config = write_config(&dir, Listen::Http(port), &stack.provider);
    let log_path = dir.path().join("postern.log");
    let child = Command::new(env!("CARGO_BIN_EXE_postern"))
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env("POSTERN_LOG", "info")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("a log file"))
        .spawn()
        .expect("postern starts");
    let mut child = Killed(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            child.0.try_wait().expect("status").is_none(),
            "{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "postern did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let alice = sign_in_at(&url, "alice").await;
    let session_cookie = alice.cookie(SESSION_COOKIE).expect("a session");
    let allowed = alice.get(format!("{url}/page")).api().header("x-request-id", "client-chosen-id").send().await;
    assert_eq!(allowed.status, StatusCode::OK);
    let upstream_request_id = allowed.upstream().get("x-request-id").expect("a request id").to_string();
    assert_ne!(upstream_request_id, "client-chosen-id", "a client that is not a trusted proxy does not choose it");
    let token = client_credentials_token(&stack.provider).await;
    let refused = Client::new().get(format!("{url}/admin")).bearer(&token).send().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad_token = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(Client::new().get(format!("{url}/")).bearer(&bad_token).send().await.status, StatusCode::UNAUTHORIZED);

    // Let the log reach the file, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(child);
    let log = std::fs::read_to_string(&log_path).expect("the log");

    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let audit: Vec<&Value> = events.iter().filter(|e| e["target"] == "audit").collect();
    let field = |e: &Value, name: &str| {
        e["fields"][name].as_str().map(str::to_string).or_else(|| e[name].as_str().map(str::to_string))
    };
    let allowed_event = audit
        .iter()
        .find(|e| field(e, "request_id").as_deref() == Some(upstream_request_id.as_str()))
        .unwrap_or_else(|| panic!("an audit event for request {upstream_request_id}:\n{log}"));
    assert_eq!(field(allowed_event, "subject").as_deref(), Some(user("alice").oid), "{allowed_event}");
    assert_eq!(field(allowed_event, "decision").as_deref(), Some("allow"), "{allowed_event}");
    assert_eq!(field(allowed_event, "route").as_deref(), Some("demo"), "{allowed_event}");
    assert!(
        audit
            .iter()
            .any(|e| field(e, "decision").as_deref() == Some("deny")
                && field(e, "route").as_deref() == Some("demo-admin")),
        "the refused bearer request has a deny event:\n{log}"
    );

    for secret in
        [session_cookie.as_str(), token.as_str(), bad_token.as_str(), stack.provider.config().client_secret.as_str()]
    {
        assert!(!log.contains(secret), "the log contains a secret value");
    }
    // Not even a token's signature part (the most distinctive piece).
    let signature = token.rsplit('.').next().expect("a JWT");
    assert!(!log.contains(signature), "the log contains a token's signature");
}

#[tokio::test]
async fn a_trusted_proxys_request_id_is_kept_and_passed_to_the_upstream() {
    let postern = crate::support::from_files::start_postern(crate::support::from_files::Options {
        server_extra: r#"trusted_proxies = ["127.0.0.1"]"#.to_string(),
        ..Default::default()
    })
    .await;

    let r = Client::new().get(postern.at("/public")).api().header("x-request-id", "lb-4f2a9c").send().await;

    assert_eq!(r.upstream().get("x-request-id"), Some("lb-4f2a9c"));
}
