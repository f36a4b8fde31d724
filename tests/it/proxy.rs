//! Forwarding: what reaches the upstream (and what never does), WebSockets, upstream failures, answers to
//! clients without a session, and the HTTPS listener.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use postern::clock::Clock;
use postern::demo::{DEMO_POLICY, DEMO_POLICY_UPSTREAM, DemoOptions};
use postern::server::Listener;
use postern::state::State;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::support::files::{Listen, Stack, TempDir, free_port, start_stack, write_config};
use crate::support::*;

/// The demo's routes (which include a public one at /public), plus one to a closed port and one with a 1 s
/// timeout.
fn proxy_policy() -> String {
    let closed = free_port();
    format!(
        r#"{DEMO_POLICY}
[[route]]
name = "down"
host = "*"
path = "/down"
upstream = "http://127.0.0.1:{closed}"
public = true

[[route]]
name = "slow"
host = "*"
path = "/slow"
upstream = "http://127.0.0.1:8081"
timeout = "1s"
public = true
"#
    )
}

async fn start_proxy_demo() -> TestDemo {
    start_demo_with(DemoOptions { policy: proxy_policy(), ..demo_options() }).await
}

#[tokio::test]
async fn client_forged_identity_headers_never_reach_the_upstream() {
    let demo = start_demo().await;
    let alice = user("alice");
    let browser = sign_in(&demo, "alice").await;

    let up = browser
        .get(demo.at("/"))
        .api()
        .header("x-forwarded-user", "admin")
        .header("X-Forwarded-Email", "admin@evil.example")
        .header("x-forwarded-preferred-username", "admin")
        .header("x-forwarded-groups", "9e2a4f6b-0000-0000-0000-000000000002")
        .header("x-postern-jwt-assertion", "forged.assertion.value")
        .header("x-auth-request-user", "admin")
        .header("x-forwarded-access-token", "forged")
        .send()
        .await
        .upstream();

    // `get` also fails when a header arrives twice (the forged copy next to Postern's).
    assert_eq!(up.get("x-forwarded-user"), Some(alice.oid));
    assert_eq!(up.get("x-forwarded-email"), Some(alice.email));
    assert_eq!(up.get("x-forwarded-preferred-username"), Some(alice.email));
    assert!(up.get("x-forwarded-groups").is_some_and(|g| g.contains(postern::demo::provider::GROUP_ENG)));
    assert_ne!(up.get("x-postern-jwt-assertion"), Some("forged.assertion.value"));
    assert!(up.get("x-postern-jwt-assertion").is_some());
    assert_eq!(up.get("x-auth-request-user"), None);
    assert_eq!(up.get("x-forwarded-access-token"), None);
}

#[tokio::test]
async fn on_a_public_route_forged_identity_headers_are_removed_and_none_are_added() {
    let demo = start_proxy_demo().await;

    let up = Client::new()
        .get(demo.at("/public/page"))
        .api()
        .header("x-forwarded-user", "admin")
        .header("x-forwarded-groups", "admins")
        .header("x-postern-jwt-assertion", "forged")
        .send()
        .await
        .upstream();

    assert_eq!(up.uri(), "/public/page");
    for name in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-postern-jwt-assertion",
    ] {
        assert_eq!(up.get(name), None, "{name}");
    }
}

#[tokio::test]
async fn hop_by_hop_headers_and_headers_named_in_connection_are_not_forwarded() {
    let demo = start_demo().await;
    let browser = sign_in(&demo, "alice").await;

    let up = browser
        .get(demo.at("/"))
        .api()
        .header("connection", "keep-alive, X-Secret-Hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("proxy-connection", "keep-alive")
        .header("x-kept", "yes")
        .send()
        .await
        .upstream();

    for name in ["x-secret-hop", "keep-alive", "te", "proxy-authorization", "proxy-connection"] {
        assert_eq!(up.get(name), None, "{name} was forwarded");
    }
    assert!(up.all("connection").iter().all(|v| !v.to_ascii_lowercase().contains("x-secret-hop")));
    assert_eq!(up.get("x-kept"), Some("yes"));
}

#[tokio::test]
async fn x_forwarded_headers_are_set_by_postern_not_taken_from_the_client() {
    let demo = start_demo().await;
    let browser = sign_in(&demo, "alice").await;

    let up = browser
        .get(demo.at("/"))
        .api()
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=6.6.6.6;proto=https")
        .send()
        .await
        .upstream();

    assert_eq!(up.get("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(up.get("x-forwarded-proto"), Some("http"));
    assert_eq!(up.get("x-forwarded-host"), Some(demo.addr.to_string().as_str()));
    assert_eq!(up.get("forwarded"), None);
    assert!(up.get("x-request-id").is_some_and(|id| !id.is_empty()));
}

/// Opens a WebSocket to `addr` through Postern with `cookie`, sends a text and a binary message, and returns
/// what came back; or the handshake's HTTP status when it was refused.
fn websocket_round_trip(addr: SocketAddr, cookie: Option<String>) -> Result<Vec<tungstenite::Message>, StatusCode> {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a read timeout");
    let mut request = format!("ws://{addr}/socket").into_client_request().expect("a request");
    if let Some(cookie) = cookie {
        request.headers_mut().insert("cookie", cookie.parse().expect("header text"));
    }
    let (mut ws, _) = match tungstenite::client(request, stream) {
        Ok(ok) => ok,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            return Err(response.status());
        }
        Err(e) => panic!("the WebSocket handshake failed: {e}"),
    };
    ws.send(tungstenite::Message::text("hello through postern")).expect("send");
    let text = ws.read().expect("read");
    ws.send(tungstenite::Message::binary(vec![0u8, 1, 2, 254, 255])).expect("send");
    let binary = ws.read().expect("read");
    let _ = ws.close(None);
    Ok(vec![text, binary])
}

#[tokio::test]
async fn a_websocket_with_a_session_is_echoed_through_postern() {
    let demo = start_demo().await;
    let browser = sign_in(&demo, "alice").await;
    let cookie = format!("{SESSION_COOKIE}={}", browser.cookie(SESSION_COOKIE).expect("signed in"));
    let addr = demo.addr;

    let echoed = tokio::task::spawn_blocking(move || websocket_round_trip(addr, Some(cookie)))
        .await
        .expect("the WebSocket client ran");

    assert_eq!(
        echoed,
        Ok(vec![
            tungstenite::Message::text("hello through postern"),
            tungstenite::Message::binary(vec![0u8, 1, 2, 254, 255]),
        ])
    );
}

#[tokio::test]
async fn a_websocket_without_a_session_is_refused_with_401() {
    let demo = start_demo().await;
    let addr = demo.addr;

    let result =
        tokio::task::spawn_blocking(move || websocket_round_trip(addr, None)).await.expect("the WebSocket client ran");

    assert_eq!(result, Err(StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn an_unreachable_upstream_gives_a_502_page() {
    let demo = start_proxy_demo().await;

    let page = Client::new().get(demo.at("/down")).browser().send().await;
    let json = Client::new().get(demo.at("/down")).api().send().await;

    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    assert!(page.text().contains("request id"), "{}", page.text());
    assert_eq!(json.status, StatusCode::BAD_GATEWAY);
    assert_eq!(json.json()["error"], "upstream-unreachable");
}

#[tokio::test]
async fn an_upstream_slower_than_the_route_timeout_gives_504() {
    let demo = start_proxy_demo().await;

    let quick = Client::new().get(demo.at("/slow?ms=1")).api().send().await;
    let slow = Client::new().get(demo.at("/slow?ms=3000")).api().send().await;

    assert_eq!(quick.status, StatusCode::OK);
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{}", slow.text());
    assert_eq!(slow.json()["error"], "upstream-timeout");
}

#[tokio::test]
async fn a_client_that_is_not_a_browser_gets_401_json_with_a_bearer_challenge() {
    let demo = start_demo().await;

    for accept in ["application/json", "*/*"] {
        let r = Client::new().get(demo.at("/api/things")).header("accept", accept).send().await;

        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "Accept: {accept}");
        assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{:?}", r.headers);
        assert_eq!(r.json()["error"], "unauthenticated");
        assert!(r.sets_cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty());
    }
}

#[tokio::test]
async fn a_post_without_a_session_gets_401_not_a_redirect_to_sign_in() {
    let demo = start_demo().await;

    let api = Client::new()
        .post(demo.at("/api/things"))
        .header("content-type", "application/json")
        .body(r#"{"name":"x"}"#)
        .send()
        .await;
    let browser = Client::new()
        .post(demo.at("/form"))
        .browser()
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await;

    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["error"], "unauthenticated");
    assert_eq!(browser.status, StatusCode::UNAUTHORIZED);
    assert!(browser.header("location").is_none());
    assert!(browser.text().contains("/oauth2/start"), "{}", browser.text());
}

/// Postern from a config file with an HTTPS listener using the fixture certificate, in front of an in-process
/// provider and echo upstream.
struct HttpsPostern {
    url: String,
    stack: Stack,
    _dir: TempDir,
    _stop: watch::Sender<bool>,
}

async fn start_https_postern() -> HttpsPostern {
    let stack = start_stack().await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = tcp.local_addr().expect("an address").port();
    let dir = TempDir::new("https");
    dir.write("policies/demo.toml", &DEMO_POLICY.replace(DEMO_POLICY_UPSTREAM, &stack.echo.url()));
    let path = write_config(&dir, Listen::Https(port), &stack.provider);
    let (config, _) = postern::config::load(&path, &|_| None).expect("the config is valid");
    let (policy, _) = postern::policy::load_dir(&config.policies_dir).expect("the policy is valid");
    let tls = config.server.tls.clone().expect("tls files");
    let acceptor = postern::server::tls::acceptor(&tls.cert, &tls.key).expect("the fixture cert");
    let state = State::build(config, policy, State::memory_store(), Clock::system()).expect("the state builds");
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = async move {
        let _ = stopped.changed().await;
    };
    let _ = postern::app::launch(state, vec![Listener { tcp, tls: Some(acceptor) }], shutdown);
    HttpsPostern { url: format!("https://127.0.0.1:{port}"), stack, _dir: dir, _stop: stop }
}

#[tokio::test]
async fn the_https_listener_speaks_http2_when_offered_and_http1_1_otherwise() {
    let postern = start_https_postern().await;
    let jwks = format!("{}/.well-known/postern/jwks.json", postern.url);

    let h2 = Client::http2().get(&jwks).send().await;
    let h1 = Client::new().get(&jwks).send().await;

    assert_eq!(h2.status, StatusCode::OK);
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h1.status, StatusCode::OK);
    assert_eq!(h1.version, http::Version::HTTP_11);
}

#[tokio::test]
async fn sign_in_over_https_uses_host_prefixed_secure_cookies() {
    let postern = start_https_postern().await;
    let alice = user("alice");
    for browser in [Client::http2(), Client::new()] {
        let start = browser.get(format!("{}/oauth2/start?rd=%2Fdocs", postern.url)).browser().send().await;
        assert_eq!(start.status, StatusCode::FOUND, "{}", start.text());
        let login = start.sets_cookies_starting_with("__Host-postern-login-");
        assert_eq!(login.len(), 1, "{:?}", start.headers);
        let login = start.sets_cookie(&login[0]).expect("set");
        assert_eq!(login.secure(), Some(true));
        assert_eq!(login.path(), Some("/"));
        assert_eq!(login.domain(), None);

        let back = authorize(&browser, &start.location(), "alice").await;
        assert!(back.starts_with(&format!("{}/oauth2/callback?", postern.url)));
        let r = callback(&browser, &back).await;

        assert_signed_in(&r, "__Host-postern");
        assert_eq!(r.location(), "/docs");
        let session = r.sets_cookie("__Host-postern").expect("set");
        assert_eq!(session.secure(), Some(true));
        assert_eq!(session.http_only(), Some(true));
        assert_eq!(session.path(), Some("/"));
        assert_eq!(session.domain(), None);
        assert!(r.sets_cookie(SESSION_COOKIE).is_none());

        let up = browser.get(format!("{}/docs", postern.url)).api().send().await.upstream();
        assert_eq!(up.get("x-forwarded-user"), Some(alice.oid));
        assert_eq!(up.get("x-forwarded-proto"), Some("https"));
        assert_eq!(up.get("cookie"), None, "Postern's cookies stay with Postern");
        assert!(postern.stack.provider.token_requests() > 0, "the code was exchanged");
    }
}

#[tokio::test]
async fn path_tricks_do_not_get_bob_into_the_admin_route() {
    let demo = start_demo().await;
    let bob = sign_in(&demo, "bob").await;

    for path in ["/admin", "/%61dmin", "//admin", "/x/../admin", "/./admin/", "/%2e%2e/admin", "/a/b/../../admin/x"] {
        let r = bob.get(demo.at(path)).api().send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn the_upstream_receives_the_normalised_path_and_the_query_unchanged() {
    let demo = start_demo().await;
    let alice = sign_in(&demo, "alice").await;

    let up = alice.get(demo.at("/x/../admin/./%61bc?q=a%20b&path=%2F..%2F&x=1")).api().send().await.upstream();

    assert_eq!(up.uri(), "/admin/abc?q=a%20b&path=%2F..%2F&x=1");
}

#[tokio::test]
async fn identity_headers_spelled_with_underscores_never_reach_the_upstream() {
    let demo = start_proxy_demo().await;
    let alice = sign_in(&demo, "alice").await;

    for (client, path) in [(&alice, "/"), (&Client::new(), "/public/x")] {
        let up = client
            .get(demo.at(path))
            .api()
            .header("x_forwarded_user", "admin")
            .header("X_Forwarded_Groups", "9e2a4f6b-0000-0000-0000-000000000002")
            .header("x_forwarded_email", "admin@evil.example")
            .header("x_postern_jwt_assertion", "forged")
            .send()
            .await
            .upstream();

        let smuggled: Vec<&(String, String)> = up.headers.iter().filter(|(name, _)| name.contains('_')).collect();
        assert!(smuggled.is_empty(), "{path}: the upstream received {smuggled:?}");
    }
}

/// The host a request was routed on is the host the upstream is told about: with an absolute-form request
/// target (RFC 9112 §3.2.2) the Host header is ignored, so it cannot name another site than the one the
/// policy judged.
#[tokio::test]
async fn an_absolute_form_request_cannot_route_on_one_host_and_forward_another() {
    let demo = start_demo_with(DemoOptions {
        policy: format!(
            r#"{DEMO_GROUPS}
[[route]]
name = "open"
host = "open.test"
upstream = "http://127.0.0.1:8081"
public = true

[[route]]
name = "secret"
host = "secret.test"
upstream = "http://127.0.0.1:8081"
allow = [{{ groups = ["admins"] }}]
"#
        ),
        ..demo_options()
    })
    .await;
    let addr = demo.addr;

    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a read timeout");
        stream
            .write_all(
                b"GET http://open.test/page HTTP/1.1\r\nHost: secret.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            )
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("the raw client ran");

    let status = answer.split(' ').nth(1).unwrap_or_default();
    if status == "200" {
        let json = &answer[answer.find('{').expect("JSON")..=answer.rfind('}').expect("JSON")];
        let json: serde_json::Value = serde_json::from_str(json).expect("the echo's JSON");
        let hosts: Vec<String> = json["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|pair| {
                let name = pair[0].as_str().unwrap_or_default().to_ascii_lowercase();
                name == "host" || name == "x-forwarded-host"
            })
            .map(|pair| pair[1].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            hosts.iter().all(|h| !h.contains("secret.test")),
            "routed as open.test (public) but the upstream was told {hosts:?}"
        );
    } else {
        assert!(status.starts_with('4'), "{answer}");
    }
}
