//! Several replicas on one Redis, as a company runs Postern behind a load balancer: real `postern serve`
//! processes sharing a real `redis-server` (started here on a free port, in a temp dir). A session made on one
//! replica is used on another; a sign-out or a revocation on one holds on all within a second; when Redis goes
//! away the replicas fail closed (503, not ready) without panicking, and they resume by themselves when it is
//! back. Without redis-server installed these tests say so and pass, unless POSTERN_REQUIRE_REDIS=1 (CI).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use postern::demo::provider::GROUP_ENG;
use postern::demo::{DEMO_POLICY, DEMO_POLICY_UPSTREAM};
use serde_json::json;

use crate::scim::Scim;
use crate::support::files::{Listen, Stack, TempDir, free_port, start_stack, write_config};
use crate::support::from_files::{SCIM_CONFIG, SCIM_TOKEN};
use crate::support::*;

/// A `redis-server` child on a fixed port in its own directory; killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    persist: bool,
}

impl Redis {
    /// Starts one on a free port, or `None` (with a notice) when redis-server is missing and
    /// POSTERN_REQUIRE_REDIS=1 is not set. `persist`: append-only file, fsync on every write.
    fn start(persist: bool) -> Option<Redis> {
        for _ in 0..5 {
            let mut redis = Redis { child: None, port: free_port(), dir: TempDir::new("redis"), persist };
            match redis.spawn() {
                Ok(true) => return Some(redis),
                Ok(false) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    assert!(
                        std::env::var("POSTERN_REQUIRE_REDIS").as_deref() != Ok("1"),
                        "redis-server is not installed, and POSTERN_REQUIRE_REDIS=1 requires it"
                    );
                    eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
                    return None;
                }
                Err(e) => panic!("cannot start redis-server: {e}"),
            }
        }
        panic!("redis-server did not start on any of five free ports");
    }

    /// Starts redis-server on `self.port`; false when it exited (the port was taken).
    fn spawn(&mut self) -> std::io::Result<bool> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd.arg("--dir").arg(self.dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(true);
            }
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(false)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as when its node dies.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `postern serve` replica, killed when dropped.
struct Replica {
    child: Child,
    log: PathBuf,
    url: String,
    admin: String,
}

impl Replica {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_alive(&mut self) {
        assert!(matches!(self.child.try_wait(), Ok(None)), "the replica exited:\n{}", self.log());
        assert!(!self.log().contains("panicked"), "the replica panicked:\n{}", self.log());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a replica for `dir` (shared session key, policies and SCIM secret) on the Redis at `redis_url`.
async fn replica(dir: &TempDir, stack: &Stack, redis_url: &str, name: &str) -> Replica {
    replica_with(dir, stack, redis_url, name, &[]).await
}

/// [`replica`], with each `(from, to)` of `edits` replaced in its config.
async fn replica_with(dir: &TempDir, stack: &Stack, redis_url: &str, name: &str, edits: &[(&str, &str)]) -> Replica {
    dir.write("scim.token", &format!("{SCIM_TOKEN}\n"));
    dir.write("policies/policy.toml", &DEMO_POLICY.replace(DEMO_POLICY_UPSTREAM, &stack.echo.url()));
    for _ in 0..3 {
        let (port, admin_port) = (free_port(), free_port());
        let base = write_config(dir, Listen::Http(port), &stack.provider);
        let text = std::fs::read_to_string(&base).expect("the config was written").replace(
            "shutdown_grace = \"1s\"",
            &format!("shutdown_grace = \"1s\"\nadmin_listen = \"127.0.0.1:{admin_port}\""),
        );
        let text = format!("{text}\n{SCIM_CONFIG}\n[store]\nkind = \"redis\"\nurl = \"{redis_url}\"\n");
        let text = edits.iter().fold(text, |t, (from, to)| t.replace(from, to));
        let config = dir.write(&format!("postern-{name}.toml"), &text);
        let log = dir.path().join(format!("postern-{name}-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_postern"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("POSTERN_LOG", "info")
            .env_remove("POSTERN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("postern starts");
        let mut r = Replica {
            child,
            log,
            url: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                eprintln!("replica {name} exited with {status}:\n{}", r.log());
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", admin_port)).await.is_ok()
                && Client::new().get(format!("{}/readyz", r.admin)).send().await.status == StatusCode::OK
            {
                return r;
            }
            assert!(Instant::now() < deadline, "replica {name} did not become ready:\n{}", r.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("replica {name} did not start");
}

/// With Entra group overage, the first replica's Graph lookup serves the others (through Redis, for the
/// `[graph] cache_ttl`): dave signs in on A, then again on B, and Graph is asked once.
#[tokio::test]
async fn one_graph_lookup_serves_every_replica() {
    let Some(redis) = Redis::start(false) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("graph-replicas");
    let graph = format!("[graph]\nbase_url = \"{}\"\n\n[store]", stack.provider.graph_base_url());
    let a = replica_with(&dir, &stack, &redis.url(), "a", &[("[store]", &graph)]).await;
    let b = replica_with(&dir, &stack, &redis.url(), "b", &[("[store]", &graph)]).await;
    let on_a = sign_in_at(&a.url, "dave").await; // 250 groups: his ID token names none
    let r = on_a.get(format!("{}/", a.url)).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(stack.provider.graph_lookups(), 1);
    let on_b = sign_in_at(&b.url, "dave").await; // a session of B's own: B resolves his groups itself
    let r = on_b.get(format!("{}/", b.url)).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(stack.provider.graph_lookups(), 1, "B used A's lookup");
}

/// Polls `client` on `url` until it is answered `status`; returns how long that took (at most `limit`).
async fn until_status(client: &Client, url: &str, status: StatusCode, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let got = client.get(format!("{url}/")).api().send().await.status;
        if got == status {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {got} after {limit:?}, not {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_session_from_one_replica_works_on_another_and_sign_out_or_revocation_on_one_holds_on_all() {
    let Some(redis) = Redis::start(false) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("replicas");
    let a = replica(&dir, &stack, &redis.url(), "a").await;
    let b = replica(&dir, &stack, &redis.url(), "b").await;

    // Signed in through A, used through B (and back).
    let alice = sign_in_at(&a.url, "alice").await;
    for url in [&b.url, &a.url, &b.url] {
        let r = alice.get(format!("{url}/")).api().send().await;
        assert_eq!(r.status, StatusCode::OK, "{url}: {}", r.text());
    }

    // Signed out on A: the same cookie is refused on B, which had the session cached.
    let kept = alice.copy_with_cookies();
    let r = alice.get(format!("{}/oauth2/sign_out", a.url)).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
    let delay = until_status(&kept, &b.url, StatusCode::UNAUTHORIZED, Duration::from_secs(1)).await;
    eprintln!("sign-out on replica A to refusal on replica B: {delay:?}");

    // A user deactivated over SCIM on A is refused on B within a second.
    let scim = Scim::at(&a.url);
    let bob = user("bob");
    let bob_id = scim.create_user(bob.email, bob.oid).await;
    let eng = scim.create_group("eng", GROUP_ENG).await;
    scim.add_member(&eng, &bob_id).await;
    let bob_browser = sign_in_at(&b.url, "bob").await;
    assert_eq!(bob_browser.get(format!("{}/", b.url)).api().send().await.status, StatusCode::OK);
    let r =
        scim.patch(&format!("/Users/{bob_id}"), json!([{"op": "Replace", "path": "active", "value": "False"}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let started = Instant::now();
    let delay = until_status(&bob_browser, &b.url, StatusCode::UNAUTHORIZED, Duration::from_secs(1)).await;
    eprintln!("SCIM deactivation on replica A to refusal on replica B: {delay:?}");
    // And B refuses bob a new sign-in within the second too: its copy of the directory follows A's write.
    loop {
        let r = sign_in_flow(&Client::new(), &b.url, "/", "bob").await;
        if r.status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(delay + started.elapsed() < Duration::from_secs(1), "B still lets bob sign in: {}", r.status);
    }
    eprintln!("SCIM deactivation on replica A to a refused sign-in on replica B: {:?}", started.elapsed());

    // SCIM on B sees what A wrote.
    let r = Scim::at(&b.url).get(&format!("/Users/{bob_id}")).await;
    assert_eq!(r.json()["active"], false);
    drop((a, b));
    drop(redis);
}

#[tokio::test]
async fn redis_down_fails_closed_and_not_ready_without_a_panic_and_service_resumes_by_itself() {
    let Some(mut redis) = Redis::start(true) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("redis-down");
    let mut a = replica(&dir, &stack, &redis.url(), "a").await;
    let alice = sign_in_at(&a.url, "alice").await;
    assert_eq!(alice.get(format!("{}/", a.url)).api().send().await.status, StatusCode::OK);

    redis.kill();
    // A request with a session is refused with a clear 503, not sent to sign in again.
    until_status(&alice, &a.url, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5)).await;
    let page = alice.get(format!("{}/", a.url)).browser().send().await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.text().contains("store-unavailable"), "{}", page.text());
    let started = Instant::now();
    loop {
        let r = Client::new().get(format!("{}/readyz", a.admin)).send().await;
        if r.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(r.text().contains("redis"), "{}", r.text());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still ready with Redis down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = Client::new().get(format!("{}/metrics", a.admin)).send().await.text();
    assert!(metrics.contains("postern_store_errors_total{op="), "{metrics}");
    // Anonymous requests still get the sign-in redirect; nothing panics while Redis is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.assert_alive();

    assert!(redis.spawn().expect("redis-server restarts"), "redis-server restarts on its port");
    let started = Instant::now();
    let delay = until_status(&alice, &a.url, StatusCode::OK, Duration::from_secs(10)).await;
    eprintln!("Redis back to the first served request: {delay:?}");
    loop {
        if Client::new().get(format!("{}/readyz", a.admin)).send().await.status == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New sign-ins work again too.
    let bob = sign_in_at(&a.url, "bob").await;
    assert_eq!(bob.get(format!("{}/", a.url)).api().send().await.status, StatusCode::OK);
    a.assert_alive();
    let log = a.log();
    assert!(log.contains("the redis store is unreachable"), "{log}");
    assert!(!log.contains(&alice.cookie(SESSION_COOKIE).unwrap_or_default()), "a cookie in the log");
}

#[tokio::test]
async fn two_replicas_refreshing_one_session_at_once_spend_its_refresh_token_once() {
    let Some(redis) = Redis::start(false) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("refresh-race");
    // Tokens live an hour; refreshing two hours before they expire makes every request refresh.
    let edits = [("[session]\n", "[session]\nrefresh_before = \"2h\"\n")];
    let a = replica_with(&dir, &stack, &redis.url(), "a", &edits).await;
    let b = replica_with(&dir, &stack, &redis.url(), "b", &edits).await;
    let alice = sign_in_at(&a.url, "alice").await;

    // Both replicas (twice each) need the refresh at the same moment. The provider rotates refresh tokens
    // and refuses a spent one: were it spent twice, one replica would end the session.
    let urls = [&a.url, &b.url, &a.url, &b.url];
    let answers =
        futures_util::future::join_all(urls.iter().map(|url| alice.get(format!("{url}/")).api().send())).await;
    for (url, r) in urls.iter().zip(&answers) {
        assert_eq!(r.status, StatusCode::OK, "{url}: {}\nA:\n{}\nB:\n{}", r.text(), a.log(), b.log());
    }
    // The session lives on, with the tokens of the one refresh, on both.
    for url in [&b.url, &a.url] {
        assert_eq!(alice.get(format!("{url}/")).api().send().await.status, StatusCode::OK, "{url}");
    }
    let logs = format!("{}{}", a.log(), b.log());
    assert!(!logs.contains("refresh failed; session ended"), "{logs}");
    eprintln!(
        "refreshes that waited for the other replica: {}",
        logs.matches("another replica is refreshing this session").count()
    );
}

#[tokio::test]
async fn rotating_the_cookie_and_signing_keys_logs_nobody_out_across_replicas() {
    let Some(redis) = Redis::start(false) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("rotation");
    dir.write("old.key", "the old session key: not a secret, for integration tests only\n");
    dir.write("new.key", "the new session key: not a secret, for integration tests only\n");
    dir.write("old.pem", &postern::assertion::generate_key_pem().unwrap());
    dir.write("new.pem", &postern::assertion::generate_key_pem().unwrap());
    let session = "secret = { file = \"session.key\" }";
    // A still runs the old keys; B is rolled out with the new ones, the old ones as previous.
    let old = [(session, "secret = { file = \"old.key\" }\n[assertion]\nsigning_key = \"old.pem\"")];
    let rotated = [(
        session,
        "secret = { file = \"new.key\" }\nprevious_secrets = [{ file = \"old.key\" }]\n[assertion]\nsigning_key = \"new.pem\"\nprevious_signing_keys = [\"old.pem\"]",
    )];
    let a = replica_with(&dir, &stack, &redis.url(), "a", &old).await;
    let b = replica_with(&dir, &stack, &redis.url(), "b", &rotated).await;

    // A cookie sealed with the old key, and its session, work on the rotated replica.
    let alice = sign_in_at(&a.url, "alice").await;
    let r = alice.get(format!("{}/", b.url)).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Sessions begun on the rotated replica work there (sealed with the new key).
    let bob = sign_in_at(&b.url, "alice").await;
    assert_eq!(bob.get(format!("{}/", b.url)).api().send().await.status, StatusCode::OK);

    // B's JWKS still holds A's key, so upstreams verify assertions from both replicas against one JWKS.
    let kids = |url: &str| {
        let url = format!("{url}/.well-known/postern/jwks.json");
        async move {
            let jwks = Client::new().get(url).send().await.json();
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect::<Vec<_>>()
        }
    };
    let (a_kids, b_kids) = (kids(&a.url).await, kids(&b.url).await);
    assert_eq!(a_kids.len(), 1);
    assert_eq!(b_kids.len(), 2, "{b_kids:?}");
    assert!(b_kids.contains(&a_kids[0]), "{b_kids:?} lacks {a_kids:?}");
    assert_ne!(b_kids[0], a_kids[0], "B signs with its new key");
}

#[tokio::test]
async fn with_a_grace_a_session_verified_a_moment_ago_outlives_a_redis_outage_for_the_grace_only() {
    let Some(mut redis) = Redis::start(false) else { return };
    let stack = start_stack().await;
    let dir = TempDir::new("grace");
    let url = redis.url();
    let edits = [("kind = \"redis\"\n", "kind = \"redis\"\ngrace = \"3s\"\n")];
    let mut a = replica_with(&dir, &stack, &url, "a", &edits).await;
    let alice = sign_in_at(&a.url, "alice").await;
    let verified = Instant::now();
    assert_eq!(alice.get(format!("{}/", a.url)).api().send().await.status, StatusCode::OK);

    redis.kill();
    let killed = Instant::now();
    // Verified a moment ago: served through the grace, even once the replica knows Redis is away.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = alice.get(format!("{}/", a.url)).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}\n{}", r.text(), a.log());
    assert_eq!(Client::new().get(format!("{}/readyz", a.admin)).send().await.status, StatusCode::SERVICE_UNAVAILABLE);
    // Then it fails closed like everything else.
    let waited = until_status(&alice, &a.url, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10)).await;
    eprintln!(
        "grace of 3 s: the session was refused {:?} after Redis died, {:?} after its last verification",
        killed.elapsed(),
        verified.elapsed()
    );
    assert!(verified.elapsed() >= Duration::from_secs(3), "refused after {waited:?}, before the grace ended");
    a.assert_alive();
}
