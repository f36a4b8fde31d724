//! Bypass attempts against an admins-only route, through the running proxy: however bob (eng, not admins)
//! spells the path, the host or the request target, the request is judged by the route its normalised form
//! belongs to, and he never reaches the upstream on an admin path. Every route tells the upstream its name, so
//! the tests also see which route served an allowed request — glob routes included.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use postern::demo::DemoOptions;

use crate::support::*;

/// `tools` (eng, every host), `tools-admin` (admins, `/admin`), two glob routes for admins and a host of its
/// own for admins, each naming itself to the upstream in `X-Route`.
async fn start_demo_with_admin_routes() -> TestDemo {
    let route = |name: &str, host: &str, path: &str, group: &str| {
        format!(
            r#"
[[route]]
name = "{name}"
host = "{host}"
path = "{path}"
upstream = "http://127.0.0.1:8081"
headers = {{ "X-Route" = "{name}" }}
allow = [{{ groups = ["{group}"] }}]
"#
        )
    };
    let policy = [
        DEMO_GROUPS.to_string(),
        route("tools", "*", "/", "eng"),
        route("tools-admin", "*", "/admin", "admins"),
        route("project-settings", "*", "/projects/*/settings", "admins"),
        route("api-admin", "*", "/api/**/admin", "admins"),
        route("secret", "secret.test", "/", "admins"),
    ]
    .concat();
    start_demo_with(DemoOptions { policy, ..demo_options() }).await
}

/// Asserts that bob was refused by a policy decision (not merely by a broken request), so the upstream never
/// saw the request.
fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.text());
    assert_eq!(r.json()["error"], "groups-unauthorized", "{what}");
}

const ADMIN_SPELLINGS: &[&str] = &[
    "/admin",
    "/%61dmin",
    "/%61%64%6d%69%6e/users",
    "//admin",
    "///admin/users",
    "/admin/../admin",
    "/x/../admin",
    "/./admin",
    "/admin/.",
    "/%2e/admin",
    "/x/%2e%2e/admin",
    "/admin%2Fusers",
    "/x%2F..%2Fadmin",
    "/x%5C..%5Cadmin",
];

#[tokio::test]
async fn bob_is_refused_on_every_spelling_of_the_admin_path() {
    let demo = start_demo_with_admin_routes().await;
    let bob = sign_in(&demo, "bob").await;

    for path in ADMIN_SPELLINGS {
        let r = bob.get(demo.at(path)).api().send().await;
        assert_refused(&r, path);
    }
}

#[tokio::test]
async fn every_spelling_of_the_admin_path_is_served_by_the_admin_route() {
    let demo = start_demo_with_admin_routes().await;
    let alice = sign_in(&demo, "alice").await;

    for path in ADMIN_SPELLINGS {
        let up = alice.get(demo.at(path)).api().send().await.upstream();
        assert_eq!(up.get("x-route"), Some("tools-admin"), "{path}");
        assert!(up.uri().starts_with("/admin") || up.uri().starts_with("/x%"), "{path} reached {}", up.uri());
    }
}

/// Paths are case-sensitive (as the tools behind Postern treat them): `/ADMIN` is not `/admin`, so it belongs
/// to the main route, and the upstream receives exactly `/ADMIN`.
#[tokio::test]
async fn admin_in_capitals_is_another_path_served_by_the_main_route_as_written() {
    let demo = start_demo_with_admin_routes().await;
    let bob = sign_in(&demo, "bob").await;

    let up = bob.get(demo.at("/ADMIN")).api().send().await.upstream();

    assert_eq!(up.uri(), "/ADMIN");
    assert_eq!(up.get("x-route"), Some("tools"));
}

#[tokio::test]
async fn a_host_spelled_with_a_trailing_dot_a_port_or_capitals_keeps_its_own_route() {
    let demo = start_demo_with_admin_routes().await;
    let bob = sign_in(&demo, "bob").await;

    for host in ["secret.test", "secret.test.", "secret.test:8443", "secret.test.:80", "SECRET.Test", "Secret.TEST.:1"]
    {
        let r = bob.get(demo.at("/")).api().header("host", host).send().await;
        assert_refused(&r, host);
    }
    let other = bob.get(demo.at("/")).api().header("host", "other.test").send().await.upstream();
    assert_eq!(other.get("x-route"), Some("tools"), "bob is welcome elsewhere");
}

/// Sends one raw HTTP/1.1 request with `target` in its request line and returns the status and body.
async fn raw_request(addr: SocketAddr, target: &str, host: &str, cookie: &str) -> (u16, String) {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {SESSION_COOKIE}={cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a read timeout");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
    .await
    .expect("the raw client ran")
}

/// With an absolute-form target (`GET http://host/path`), the target's host and path are what is routed and
/// judged; the `Host` header cannot point the decision elsewhere.
#[tokio::test]
async fn an_absolute_form_request_target_is_judged_on_its_own_host_and_path() {
    let demo = start_demo_with_admin_routes().await;
    let bob = sign_in(&demo, "bob").await;
    let cookie = bob.cookie(SESSION_COOKIE).expect("signed in");
    let here = demo.addr.to_string();

    for (target, host) in [
        (format!("http://{here}/admin"), here.as_str()),
        (format!("http://{here}/%61dmin/users"), here.as_str()),
        (format!("http://{here}//admin"), here.as_str()),
        ("http://secret.test/".to_string(), "other.test"),
        ("http://secret.test./x".to_string(), here.as_str()),
    ] {
        let (status, body) = raw_request(demo.addr, &target, host, &cookie).await;
        assert_eq!(status, 403, "{target} (Host: {host}): {body}");
        assert!(body.contains("groups-unauthorized"), "{target}: {body}");
    }
    let (status, body) = raw_request(demo.addr, &format!("http://{here}/projects"), "secret.test", &cookie).await;
    assert_eq!(status, 200, "the target's host, not Host, chose the route: {body}");
}

#[tokio::test]
async fn glob_routes_choose_the_right_route_end_to_end() {
    let demo = start_demo_with_admin_routes().await;
    let alice = sign_in(&demo, "alice").await;
    let bob = sign_in(&demo, "bob").await;

    for (path, route) in [
        ("/projects/web/settings", "project-settings"),
        ("/projects/web/settings/general", "project-settings"),
        ("/projects/web/settings/", "project-settings"),
        ("/projects/web", "tools"),
        ("/projects/settings", "tools"),
        ("/projects/web/settingsx", "tools"),
        ("/projects/a/b/settings", "tools"),
        ("/api/admin", "api-admin"),
        ("/api/v4/admin", "api-admin"),
        ("/api/v4/x/admin/users", "api-admin"),
        ("/api/v4/administrator", "tools"),
        ("/api/v4/projects", "tools"),
        ("/admin", "tools-admin"),
    ] {
        let up = alice.get(demo.at(path)).api().send().await.upstream();
        assert_eq!(up.get("x-route"), Some(route), "{path}");
        assert_eq!(up.uri(), path);

        let r = bob.get(demo.at(path)).api().send().await;
        if route == "tools" {
            assert_eq!(r.upstream().get("x-route"), Some("tools"), "{path}");
        } else {
            assert_refused(&r, path);
        }
    }
    for path in ["/projects/%77eb/settings", "/projects//web/settings", "/api/v4/%2E/admin", "/api/v4%2Fadmin"] {
        let r = bob.get(demo.at(path)).api().send().await;
        assert_refused(&r, path);
    }
}

/// Servlet containers (Jetty under Jenkins, Tomcat, Spring) drop `;parameters` from path segments, so they read
/// `/admin;x=1` as `/admin` and `/admin;/users` as `/admin/users`. Postern matches these paths literally, under
/// the main route, and forwards them as they are.
#[tokio::test]
async fn bob_is_refused_on_the_admin_path_with_path_parameters() {
    let demo = start_demo_with_admin_routes().await;
    let bob = sign_in(&demo, "bob").await;

    for path in ["/admin;x=1", "/admin;/users", "/admin;jsessionid=1/users"] {
        let r = bob.get(demo.at(path)).api().send().await;
        assert_ne!(r.status, StatusCode::OK, "{path} reached the upstream as {}", r.upstream().uri());
    }
}

/// A path forwarded under `/admin` whose `..` appears only once `%2F`, `%5C`, `%25` or a `;parameter` is read
/// (`/admin/..%2F..%2Fpublic`) would be judged under one prefix by Postern and acted on under another by some
/// upstream: it is refused with 400 before any route is chosen, for everyone. So is such a spelling of
/// Postern's own namespace.
#[tokio::test]
async fn a_path_that_climbs_out_of_admin_only_once_decoded_is_refused() {
    let demo = start_demo_with_admin_routes().await;
    let alice = sign_in(&demo, "alice").await;

    for path in [
        "/admin/..%2F..%2Fpublic",
        "/admin/..%5Cpublic",
        "/admin/..;x=1/public",
        "/admin/%252e%252e/public",
        "/x/..%2Foauth2/auth",
    ] {
        let r = alice.get(demo.at(path)).api().send().await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "bad-path", "{path}");
    }
}

/// Postern's own namespace spelled with dot segments or encodings reaches neither Postern's endpoint nor the
/// upstream: the request is refused with 404.
#[tokio::test]
async fn postern_endpoints_in_disguise_reach_neither_postern_nor_the_upstream() {
    let demo = start_demo_with_admin_routes().await;
    let alice = sign_in(&demo, "alice").await;

    for path in
        ["/x/../oauth2/userinfo", "//oauth2/userinfo", "/%6Fauth2/userinfo", "/a/../.well-known/postern/jwks.json"]
    {
        let r = alice.get(demo.at(path)).api().send().await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "no-such-endpoint", "{path}");
    }
    let plain = alice.get(demo.at("/oauth2/userinfo")).api().send().await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text());
}
