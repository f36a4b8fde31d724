//! Forward-auth (`/oauth2/auth`): a proxy in front of Postern (nginx `auth_request`, Traefik `forwardAuth`)
//! asks whether the request it holds may pass, describing it with `X-Forwarded-Method`, `-Proto`, `-Host` and
//! `-Uri`. Postern answers 202 with the identity, 401 or 403 — and believes those headers only from
//! `trusted_proxies`, so a client talking to Postern directly cannot choose which URL gets authorised. The
//! last test puts a real nginx in front.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use postern::demo::provider::{GROUP_ADMINS, GROUP_ENG};

use crate::support::files::{TempDir, free_port};
use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

/// Postern with the demo policy (`demo`: eng on every host; `demo-admin`: admins on `/admin`), trusting
/// forward-auth requests from 127.0.0.1, where the tests (and nginx) run.
async fn start_behind_a_trusted_proxy() -> Postern {
    start_postern(Options { server_extra: r#"trusted_proxies = ["127.0.0.1"]"#.to_string(), ..Options::default() })
        .await
}

/// A forward-auth request for `GET https://tools.example.com{uri}` with `client`'s cookies.
async fn ask(client: &Client, postern: &str, uri: &str) -> Resp {
    client
        .get(format!("{postern}/oauth2/auth"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "tools.example.com")
        .header("x-forwarded-uri", uri)
        .send()
        .await
}

#[tokio::test]
async fn forward_auth_answers_202_with_the_identity_of_a_signed_in_user() {
    let postern = start_behind_a_trusted_proxy().await;
    let alice = user("alice");
    let browser = sign_in_at(&postern.url, "alice").await;

    let r = ask(&browser, &postern.url, "/some/page?x=1").await;

    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("x-auth-request-user"), Some(alice.oid));
    assert_eq!(r.header("x-auth-request-email"), Some(alice.email));
    // The same identity under the names upstreams read, for proxies that copy headers without renaming.
    assert_eq!(r.header("x-forwarded-user"), Some(alice.oid));
    assert_eq!(r.header("x-forwarded-email"), Some(alice.email));
    let mut groups: Vec<&str> = r.header("x-auth-request-groups").expect("groups").split(',').collect();
    groups.sort_unstable();
    let mut expected = vec![GROUP_ENG, GROUP_ADMINS];
    expected.sort_unstable();
    assert_eq!(groups, expected);
    let assertion = r.header("x-postern-jwt-assertion").expect("an identity assertion");
    assert_eq!(assertion.split('.').count(), 3, "a JWT: {assertion}");
}

#[tokio::test]
async fn forward_auth_without_a_session_is_401() {
    let postern = start_behind_a_trusted_proxy().await;

    let r = ask(&Client::new(), &postern.url, "/").await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.json()["error"], "unauthenticated");
    assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{:?}", r.headers);
    assert!(r.header("x-auth-request-user").is_none());
}

/// The proxy, not Postern, sends a browser to sign in: a browser's forward-auth request is not redirected.
#[tokio::test]
async fn forward_auth_never_redirects_a_browser_without_a_session() {
    let postern = start_behind_a_trusted_proxy().await;
    let browser = Client::new();

    let r = browser
        .get(postern.at("/oauth2/auth"))
        .browser()
        .header("x-forwarded-host", "tools.example.com")
        .header("x-forwarded-uri", "/page")
        .send()
        .await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.header("location").is_none(), "{:?}", r.headers);
    assert!(browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty(), "no sign-in was started");
}

/// For Traefik, Caddy and Envoy, which pass Postern's answer on to the browser: asked to, Postern sends a
/// browser without a session to sign in, returning to the original URL.
#[tokio::test]
async fn forward_auth_asked_to_redirect_sends_a_browser_to_sign_in_and_back_to_the_original_url() {
    let postern = start_behind_a_trusted_proxy().await;
    let public_host = postern.url.trim_start_matches("http://").to_string();

    let r = Client::new()
        .get(postern.at("/oauth2/auth?on_unauthenticated=redirect"))
        .browser()
        .header("x-forwarded-host", &public_host)
        .header("x-forwarded-uri", "/some/page?x=1")
        .send()
        .await;

    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let location = r.header("location").expect("a redirect");
    assert_eq!(location, format!("{}/oauth2/start?rd=%2Fsome%2Fpage%3Fx%3D1", postern.url));

    // An API client still gets 401, and so does a browser on a host no route names (no open redirect).
    let api = Client::new()
        .get(postern.at("/oauth2/auth?on_unauthenticated=redirect"))
        .api()
        .header("x-forwarded-host", &public_host)
        .header("x-forwarded-uri", "/some/page")
        .send()
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());
    let elsewhere = Client::new()
        .get(postern.at("/oauth2/auth?on_unauthenticated=redirect"))
        .browser()
        .header("x-forwarded-host", "evil.example.net")
        .header("x-forwarded-uri", "/")
        .send()
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED, "{}", elsewhere.text());
    assert!(elsewhere.header("location").is_none());
}

/// Envoy's HTTP `ext_authz` repeats the original request under a path prefix, with its own method and host.
#[tokio::test]
async fn forward_auth_in_envoy_form_decides_on_the_path_after_the_prefix() {
    let postern = start_behind_a_trusted_proxy().await;
    let alice = sign_in_at(&postern.url, "alice").await;
    let bob = sign_in_at(&postern.url, "bob").await;

    let allowed = alice.get(postern.at("/oauth2/auth/admin/reports?x=1")).api().send().await;
    assert_eq!(allowed.status, StatusCode::ACCEPTED, "{}", allowed.text());
    assert_eq!(allowed.header("x-auth-request-user"), Some(user("alice").oid));

    for path in ["/oauth2/auth/admin", "/oauth2/auth/%61dmin/x", "/oauth2/auth//admin", "/oauth2/auth/x/../admin"] {
        let refused = bob.get(postern.at(path)).api().send().await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {}", refused.text());
    }
    let bob_open = bob.get(postern.at("/oauth2/auth/")).api().send().await;
    assert_eq!(bob_open.status, StatusCode::ACCEPTED, "{}", bob_open.text());
    let nobody = Client::new().get(postern.at("/oauth2/auth/")).api().send().await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED, "{}", nobody.text());
}

#[tokio::test]
async fn forward_auth_accepts_a_bearer_token_the_route_allows_and_refuses_a_bad_one() {
    let postern = start_behind_a_trusted_proxy().await;
    let token = client_credentials_token(&postern.stack.provider).await;

    let service = Client::new();
    let ok = service
        .get(postern.at("/oauth2/auth"))
        .bearer(&token)
        .header("x-forwarded-host", "tools.example.com")
        .header("x-forwarded-uri", "/deploy")
        .send()
        .await;
    let admin = service
        .get(postern.at("/oauth2/auth"))
        .bearer(&token)
        .header("x-forwarded-host", "tools.example.com")
        .header("x-forwarded-uri", "/admin")
        .send()
        .await;
    let bad = service
        .get(postern.at("/oauth2/auth"))
        .bearer("not.a.jwt")
        .header("x-forwarded-host", "tools.example.com")
        .header("x-forwarded-uri", "/deploy")
        .send()
        .await;

    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text());
    assert_eq!(ok.header("x-auth-request-user"), Some(postern::demo::provider::DEMO_APP_OID));
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "{}", admin.text());
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{}", bad.text());
    assert_eq!(bad.json()["error"], "invalid_token");
}

#[tokio::test]
async fn forward_auth_refuses_bob_on_an_admin_uri_with_403() {
    let postern = start_behind_a_trusted_proxy().await;
    let bob = sign_in_at(&postern.url, "bob").await;

    let r = ask(&bob, &postern.url, "/admin/users").await;

    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"], "groups-unauthorized");
    assert!(r.header("x-auth-request-user").is_none());
}

#[tokio::test]
async fn forward_auth_decides_on_the_forwarded_uri_normalised_like_a_proxied_request() {
    let postern = start_behind_a_trusted_proxy().await;
    let bob = sign_in_at(&postern.url, "bob").await;

    let open = ask(&bob, &postern.url, "/").await;
    assert_eq!(open.status, StatusCode::ACCEPTED, "{}", open.text());
    assert_eq!(open.header("x-auth-request-user"), Some(user("bob").oid));

    for uri in ["/admin", "/admin?x=1", "/%61dmin", "//admin", "/x/../admin", "/admin%2Fusers"] {
        let r = ask(&bob, &postern.url, uri).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.text());
    }
}

/// Without the peer in `trusted_proxies`, a client could describe any request it likes (`X-Forwarded-Uri: /`
/// while it is really after `/admin`) and carry the answer to a proxy that caches or trusts it.
#[tokio::test]
async fn forward_auth_from_an_address_not_in_trusted_proxies_is_403_untrusted_proxy_even_with_a_valid_session() {
    let postern = start_postern(Options::default()).await;
    let alice = sign_in_at(&postern.url, "alice").await;
    assert_eq!(alice.get(postern.at("/")).api().send().await.status, StatusCode::OK, "the session is valid");

    let r = ask(&alice, &postern.url, "/").await;

    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.json()["error"], "untrusted-proxy");
    assert!(r.header("x-auth-request-user").is_none());
    assert!(r.header("x-postern-jwt-assertion").is_none());
}

// ---- nginx `auth_request` in front of Postern.

/// The nginx binary: on PATH, or where distributions put it (`/usr/sbin` is not on every user's PATH).
fn nginx_binary() -> Option<PathBuf> {
    let on_path = Command::new("which")
        .arg("nginx")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.or_else(|| ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].into_iter().map(PathBuf::from).find(|p| p.exists()))
}

/// nginx, or `None` (the test is skipped) when it is not installed and CI does not insist on it.
fn nginx_or_skip() -> Option<PathBuf> {
    let binary = nginx_binary();
    if binary.is_none() {
        assert!(
            !std::env::var("POSTERN_REQUIRE_NGINX").is_ok_and(|v| v == "1"),
            "POSTERN_REQUIRE_NGINX=1 but nginx is not installed"
        );
        println!("nginx not installed; skipping");
    }
    binary
}

/// Postern trusting proxies on 127.0.0.1, with the demo policy plus a route for eng on the tool host
/// `localhost` (so that Postern may send a browser back there after sign-in).
async fn start_behind_a_proxy_for_a_tool_on_localhost() -> Postern {
    start_postern(Options {
        server_extra: r#"trusted_proxies = ["127.0.0.1"]"#.to_string(),
        policy: format!(
            r#"{}
[[route]]
name = "tool"
host = "localhost"
upstream = "http://127.0.0.1:8081"
allow = [{{ groups = ["eng"] }}]
"#,
            postern::demo::DEMO_POLICY
        ),
        ..Options::default()
    })
    .await
}

/// A browser sent by the proxy to `start` (Postern's sign-in on the public host) signs in as alice, follows
/// the handoff link back to the tool host through the proxy at `proxy`, and lands on `page`.
async fn sign_in_through_the_handoff(
    public: &Client,
    local: &Client,
    start: &str,
    proxy: impl Fn(&str) -> String,
    tool_host: &str,
    page: &str,
) {
    let r = public.get(start).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let callback_url = authorize(public, &r.location(), "alice").await;
    let r = callback(public, &callback_url).await;
    assert_signed_in(&r, SESSION_COOKIE);
    let handoff = url::Url::parse(&r.location()).expect("a handoff URL");
    assert_eq!(handoff.path(), "/oauth2/handoff");
    let handoff_path = format!("{}?{}", handoff.path(), handoff.query().unwrap_or_default());
    let r = local.get(proxy(&handoff_path)).browser().header("host", tool_host).send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), page);
}

/// An nginx child process in the foreground, killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// nginx with `auth_request` against `postern`, proxying allowed requests to `echo`: the `location` blocks of
/// deploy/forward-auth/nginx.conf exactly as the README documents them, in a plain-HTTP server on loopback.
async fn start_nginx(binary: &Path, postern: SocketAddr, echo: &str) -> Nginx {
    let dir = TempDir::new("nginx");
    let port = free_port();
    let tmp = dir.path().display().to_string();
    let echo = echo.trim_start_matches("http://");
    let documented = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/forward-auth/nginx.conf"))
        .expect("deploy/forward-auth/nginx.conf");
    let locations = documented
        .split_once("# --- locations")
        .and_then(|(_, rest)| rest.split_once("# --- end of locations ---"))
        .map(|(locations, _)| locations.split_once('\n').map(|(_, l)| l).unwrap_or(locations))
        .expect("the locations markers in deploy/forward-auth/nginx.conf");
    let conf = format!(
        r#"daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream postern {{ server {postern}; }}
    upstream grafana {{ server {echo}; }}
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"#
    );
    let conf_path = dir.write("nginx.conf", &conf);
    let child = Command::new(binary)
        .arg("-p")
        .arg(format!("{tmp}/"))
        .arg("-e")
        .arg(format!("{tmp}/error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let mut nginx = Nginx { child, port, dir };
    // Wait until it listens (or has died, saying why in its error log).
    for _ in 0..200 {
        if let Ok(Some(status)) = nginx.child.try_wait() {
            panic!("nginx exited with {status}: {}", nginx.error_log());
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nginx did not listen on {port}: {}", nginx.error_log());
}

#[tokio::test]
async fn nginx_auth_request_lets_signed_in_users_through_and_refuses_the_rest() {
    let Some(binary) = nginx_or_skip() else { return };
    let postern = start_behind_a_trusted_proxy().await;
    let nginx = start_nginx(&binary, postern.addr, &postern.stack.echo.url()).await;
    // Cookies are for the host, whatever the port: signing in on Postern signs in behind nginx on 127.0.0.1.
    let alice = sign_in_at(&postern.url, "alice").await;
    let bob = sign_in_at(&postern.url, "bob").await;

    let through = alice.get(nginx.url("/admin/reports?x=1")).api().send().await;
    assert_eq!(through.status, StatusCode::OK, "{}\n{}", through.text(), nginx.error_log());
    let up = through.upstream();
    assert_eq!(up.uri(), "/admin/reports?x=1");
    assert_eq!(up.get("x-forwarded-user"), Some(user("alice").oid));

    let bob_open = bob.get(nginx.url("/")).api().send().await.upstream();
    assert_eq!(bob_open.get("x-forwarded-user"), Some(user("bob").oid));

    let nobody = Client::new().get(nginx.url("/")).api().send().await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED, "{}", nobody.text());

    // nginx sets X-Forwarded-Uri from the real request line, replacing whatever the client sent.
    let forged = bob.get(nginx.url("/admin")).api().header("x-forwarded-uri", "/").send().await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text());
    let forged_user =
        Client::new().get(nginx.url("/")).api().header("x-forwarded-user", user("alice").oid).send().await;
    assert_eq!(forged_user.status, StatusCode::UNAUTHORIZED, "{}", forged_user.text());
}

/// The whole browser journey through nginx on a tool host (`localhost`, while Postern's public URL is on
/// 127.0.0.1): not signed in → nginx asks Postern again for a redirect → sign-in on the public host → the
/// handoff link, served by Postern through nginx's `/oauth2/` location → the page, with alice's identity.
#[tokio::test]
async fn nginx_sends_a_browser_to_sign_in_and_back_to_its_page_on_the_tool_host() {
    let Some(binary) = nginx_or_skip() else { return };
    let postern = start_behind_a_proxy_for_a_tool_on_localhost().await;
    let nginx = start_nginx(&binary, postern.addr, &postern.stack.echo.url()).await;
    let tool_host = format!("localhost:{}", nginx.port);
    // One cookie jar per host, as a browser keeps them.
    let (public, local) = (Client::new(), Client::new());

    let r = local.get(nginx.url("/page?q=1")).browser().header("host", &tool_host).send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}\n{}", r.text(), nginx.error_log());
    let rd = format!("http://{tool_host}/page?q=1");
    assert_eq!(r.location(), format!("{}/oauth2/start?rd={}", postern.url, encode(&rd)));

    sign_in_through_the_handoff(&public, &local, &r.location(), |p| nginx.url(p), &tool_host, "/page?q=1").await;

    let page = local.get(nginx.url("/page?q=1")).api().header("host", &tool_host).send().await;
    assert_eq!(page.status, StatusCode::OK, "{}\n{}", page.text(), nginx.error_log());
    let up = page.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some(user("alice").oid));
    assert_eq!(up.get("x-forwarded-email"), Some(user("alice").email));
    assert!(up.get("x-postern-jwt-assertion").is_some_and(|a| a.split('.').count() == 3));
}

// ---- Caddy `forward_auth` in front of Postern, when Caddy is installed (CI does not insist on it).

/// The caddy binary, when installed.
fn caddy_binary() -> Option<PathBuf> {
    ["/usr/bin/caddy", "/usr/local/bin/caddy"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// deploy/forward-auth/Caddyfile as documented, with its addresses replaced by the test's.
#[tokio::test]
async fn caddy_forward_auth_as_documented_lets_a_signed_in_browser_through() {
    let Some(binary) = caddy_binary() else {
        println!("caddy not installed; skipping");
        return;
    };
    let postern = start_behind_a_proxy_for_a_tool_on_localhost().await;
    let dir = TempDir::new("caddy");
    let port = free_port();
    let documented = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/forward-auth/Caddyfile"))
        .expect("deploy/forward-auth/Caddyfile");
    let site = documented
        .replace("grafana.example.com {", &format!("http://localhost:{port} {{"))
        .replace("127.0.0.1:4180", &postern.addr.to_string())
        .replace("127.0.0.1:3000", postern.stack.echo.url().trim_start_matches("http://"));
    let caddyfile = dir.write("Caddyfile", &format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}"));
    let child = Command::new(binary)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy starts");
    let _caddy = Killed(child);
    let mut listening = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(listening, "caddy listens on {port}");
    let at = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let tool_host = format!("localhost:{port}");
    let (public, local) = (Client::new(), Client::new());

    // Not signed in: Caddy passes Postern's redirect to sign in on to the browser.
    let r = local.get(at("/page?q=1")).browser().header("host", &tool_host).send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let rd = format!("http://{tool_host}/page?q=1");
    assert_eq!(r.location(), format!("{}/oauth2/start?rd={}", postern.url, encode(&rd)));
    let api = local.get(at("/page")).api().header("host", &tool_host).send().await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());

    sign_in_through_the_handoff(&public, &local, &r.location(), at, &tool_host, "/page?q=1").await;

    // Signed in: through, with alice's identity and nothing the client forged.
    let page = local
        .get(at("/page?q=1"))
        .api()
        .header("host", &tool_host)
        .header("x-forwarded-preferred-username", "mallory")
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let up = page.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some(user("alice").oid));
    assert_eq!(up.get("x-forwarded-email"), Some(user("alice").email));
    assert_ne!(up.get("x-forwarded-preferred-username"), Some("mallory"));
    assert!(up.get("x-postern-jwt-assertion").is_some_and(|a| a.split('.').count() == 3));

    // Forged identity or forward-auth headers from a client get it nowhere.
    let forged = Client::new()
        .get(at("/"))
        .api()
        .header("host", &tool_host)
        .header("x-forwarded-user", user("alice").oid)
        .header("x-forwarded-uri", "/public")
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{}", forged.text());
}
