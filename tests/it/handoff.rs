//! Session handoff: a route may name another host than Postern's public URL (here `localhost` while the public
//! URL is `http://127.0.0.1:PORT`). A browser there signs in on the public host, which hands the session over
//! through a one-time link to `/oauth2/handoff` on the other host; the link sets that host's cookie and works
//! once, on that host only. Hosts no route names are never handed anything.
//!
//! A browser keeps cookies per host, so each test uses one jar per host: `public` for 127.0.0.1 and `local`
//! for localhost. Requests for localhost go to 127.0.0.1 with `Host: localhost:PORT`.

use http::StatusCode;
use postern::demo::{DEMO_POLICY, DemoOptions};
use url::Url;

use crate::support::client::RequestBuilder;
use crate::support::*;

async fn start_demo_with_a_localhost_route() -> TestDemo {
    start_demo_with(DemoOptions {
        policy: format!(
            r#"{DEMO_POLICY}
[[route]]
name = "local"
host = "localhost"
upstream = "http://127.0.0.1:8081"
allow = [{{ groups = ["eng"] }}]
"#
        ),
        ..demo_options()
    })
    .await
}

/// `localhost:PORT`: the other host, on Postern's port.
fn local_host(demo: &TestDemo) -> String {
    format!("localhost:{}", demo.addr.port())
}

/// A GET of `path_and_query` on the localhost host.
fn on_localhost<'a>(client: &'a Client, demo: &TestDemo, path_and_query: &str) -> RequestBuilder<'a> {
    client.get(demo.at(path_and_query)).header("host", &local_host(demo))
}

/// A GET of an absolute URL on any host, sent to Postern's address with that URL's `Host`.
fn visit<'a>(client: &'a Client, demo: &TestDemo, url: &str) -> RequestBuilder<'a> {
    let url = Url::parse(url).expect("an absolute URL");
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().expect("a host")),
        None => url.host_str().expect("a host").to_string(),
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    client.get(demo.at(&path)).header("host", &host)
}

/// A browser on localhost asks for `/page?q=1` and signs in as alice on the public host; returns the handoff
/// link the callback sends it to.
async fn sign_in_from_localhost(demo: &TestDemo, public: &Client, local: &Client) -> String {
    let r = on_localhost(local, demo, "/page?q=1").browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let start = r.location();
    let rd = format!("http://{}/page?q=1", local_host(demo));
    assert_eq!(start, format!("{}/oauth2/start?rd={}", demo.url, encode(&rd)));

    let r = public.get(&start).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let callback_url = authorize(public, &r.location(), "alice").await;
    let r = callback(public, &callback_url).await;
    assert_signed_in(&r, SESSION_COOKIE);
    let handoff = r.location();
    let prefix = format!("http://{}/oauth2/handoff?t=", local_host(demo));
    assert!(handoff.starts_with(&prefix), "the callback hands over to localhost: {handoff}");
    handoff
}

#[tokio::test]
async fn a_browser_on_a_route_host_signs_in_on_the_public_host_and_lands_on_its_page_signed_in() {
    let demo = start_demo_with_a_localhost_route().await;
    let (public, local) = (Client::new(), Client::new());
    let handoff = sign_in_from_localhost(&demo, &public, &local).await;

    let r = visit(&local, &demo, &handoff).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/page?q=1");
    let cookie = r.sets_cookie(SESSION_COOKIE).expect("the handoff sets localhost's session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None, "a host-only cookie");
    let up = on_localhost(&local, &demo, "/page?q=1").api().send().await.upstream();
    assert_eq!(up.uri(), "/page?q=1");
    assert_eq!(up.get("x-forwarded-user"), Some(user("alice").oid));
    assert_eq!(up.get("x-forwarded-email"), Some(user("alice").email));
}

#[tokio::test]
async fn a_handoff_link_works_once_and_a_replay_is_400_without_a_cookie() {
    let demo = start_demo_with_a_localhost_route().await;
    let (public, local) = (Client::new(), Client::new());
    let handoff = sign_in_from_localhost(&demo, &public, &local).await;
    let first = visit(&local, &demo, &handoff).browser().send().await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.text());

    let attacker = Client::new();
    let replay = visit(&attacker, &demo, &handoff).browser().send().await;

    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text());
    assert!(replay.set_cookies().is_empty(), "{:?}", replay.headers);
    assert!(attacker.cookie(SESSION_COOKIE).is_none());
    assert_eq!(on_localhost(&attacker, &demo, "/page").api().send().await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_handoff_link_presented_on_another_host_is_400_without_a_cookie() {
    let demo = start_demo_with_a_localhost_route().await;
    let (public, local) = (Client::new(), Client::new());
    let handoff = sign_in_from_localhost(&demo, &public, &local).await;
    let on_the_public_host = Url::parse(&handoff).expect("a URL");
    let path = format!("{}?{}", on_the_public_host.path(), on_the_public_host.query().unwrap_or_default());

    let elsewhere = Client::new();
    let r = elsewhere.get(demo.at(&path)).browser().send().await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    assert!(elsewhere.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_return_address_no_route_names_ends_on_the_public_host_not_in_a_handoff() {
    let demo = start_demo_with_a_localhost_route().await;
    // Another site; and localhost over another scheme than the public URL's.
    for rd in ["http://evil.example/", &format!("https://{}/page", local_host(&demo))] {
        let browser = Client::new();

        let r = sign_in_flow(&browser, &demo.url, rd, "alice").await;

        assert_signed_in(&r, SESSION_COOKIE);
        assert_eq!(r.location(), "/", "{rd}");
    }
}

#[tokio::test]
async fn a_browser_already_signed_in_on_the_public_host_is_handed_over_without_the_provider() {
    let demo = start_demo_with_a_localhost_route().await;
    let public = sign_in(&demo, "alice").await;
    let local = Client::new();
    let token_requests = demo.provider.token_requests();

    let r = on_localhost(&local, &demo, "/page?q=1").browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let r = public.get(r.location()).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let handoff = r.location();
    assert!(!handoff.contains("/authorize"), "{handoff}");
    assert!(handoff.starts_with(&format!("http://{}/oauth2/handoff?t=", local_host(&demo))), "{handoff}");
    assert!(r.sets_cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty(), "no sign-in was started");
    let r = visit(&local, &demo, &handoff).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/page?q=1");
    let up = on_localhost(&local, &demo, "/page?q=1").api().send().await.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some(user("alice").oid));
    assert_eq!(demo.provider.token_requests(), token_requests, "the provider was not asked again");
}

#[tokio::test]
async fn a_handoff_link_older_than_a_minute_is_400_without_a_cookie() {
    let demo = start_demo_with_a_localhost_route().await;
    let (public, local) = (Client::new(), Client::new());
    let handoff = sign_in_from_localhost(&demo, &public, &local).await;

    demo.shared.load().clock.advance(61);
    let r = visit(&local, &demo, &handoff).browser().send().await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
}

#[tokio::test]
async fn a_handoff_link_of_a_session_that_signed_out_meanwhile_is_400_without_a_cookie() {
    let demo = start_demo_with_a_localhost_route().await;
    let (public, local) = (Client::new(), Client::new());
    let handoff = sign_in_from_localhost(&demo, &public, &local).await;

    let out = public.get(demo.at("/oauth2/sign_out")).browser().send().await;
    assert_eq!(out.status, StatusCode::FOUND);
    let r = visit(&local, &demo, &handoff).browser().send().await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
}
