//! How long a session lasts: it ends when unused for the idle timeout (8 h by default) and at its maximum
//! lifetime (24 h) however much it is used; with a refresh token it is refreshed shortly before the provider's
//! tokens expire, and a failed refresh ends it. Session cookies open only on the Postern that sealed them.
//!
//! Time moves through Postern's clock seam (`State::clock`); the provider keeps real time.

use http::StatusCode;
use postern::clock::Clock;
use postern::demo::DemoOptions;
use postern::demo::provider::Misbehaviour;

use crate::support::*;

const HOUR: i64 = 3600;

fn clock(demo: &TestDemo) -> Clock {
    demo.shared.load().clock.clone()
}

/// A demo whose sign-ins ask for no `offline_access`, so sessions carry no refresh token and live by their own
/// timeouts alone.
async fn start_demo_without_refresh_tokens() -> TestDemo {
    start_demo_with(DemoOptions {
        oidc_extra: r#"scopes = ["openid", "profile", "email"]"#.to_string(),
        ..demo_options()
    })
    .await
}

async fn status(client: &Client, demo: &TestDemo) -> StatusCode {
    client.get(demo.at("/")).api().send().await.status
}

#[tokio::test]
async fn a_session_unused_for_the_idle_timeout_ends_and_each_use_restarts_the_timeout() {
    let demo = start_demo_without_refresh_tokens().await;
    let clock = clock(&demo);
    let alice = sign_in(&demo, "alice").await;

    for _ in 0..2 {
        clock.advance(8 * HOUR - 60);
        assert_eq!(status(&alice, &demo).await, StatusCode::OK, "used within the idle timeout");
    }
    clock.advance(8 * HOUR + 1);

    assert_eq!(status(&alice, &demo).await, StatusCode::UNAUTHORIZED);
    let r = alice.get(demo.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().starts_with(&format!("{}/authorize?", demo.provider.issuer())));
}

#[tokio::test]
async fn a_session_in_constant_use_ends_at_its_maximum_lifetime() {
    let demo = start_demo_without_refresh_tokens().await;
    let clock = clock(&demo);
    let alice = sign_in(&demo, "alice").await;

    for _ in 0..3 {
        clock.advance(7 * HOUR);
        assert_eq!(status(&alice, &demo).await, StatusCode::OK);
    }
    // 21 h so far; the session was created 24 h ago after this.
    clock.advance(3 * HOUR + 1);

    assert_eq!(status(&alice, &demo).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_session_is_refreshed_shortly_before_its_tokens_expire_and_stays_signed_in() {
    let demo = start_demo().await;
    let alice = sign_in(&demo, "alice").await;
    let token_requests = demo.provider.token_requests();

    // The ID token lives an hour; Postern refreshes within the last minute.
    clock(&demo).advance(HOUR - 30);
    let r = alice.get(demo.at("/")).api().send().await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.upstream().get("x-forwarded-user"), Some(user("alice").oid));
    assert!(demo.provider.token_requests() > token_requests, "the refresh token was used");
    let info = alice.get(demo.at("/oauth2/userinfo")).api().send().await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json()["oid"], user("alice").oid);
}

#[tokio::test]
async fn a_failed_refresh_ends_the_session() {
    let demo = start_demo().await;
    let alice = sign_in(&demo, "alice").await;
    demo.provider.set_misbehaviour(Misbehaviour::TokenEndpointError);

    clock(&demo).advance(HOUR - 30);

    assert_eq!(status(&alice, &demo).await, StatusCode::UNAUTHORIZED);
    // Ended, not merely refused once: the provider behaving again does not bring it back.
    demo.provider.set_misbehaviour(Misbehaviour::None);
    assert_eq!(status(&alice, &demo).await, StatusCode::UNAUTHORIZED);
    let r = alice.get(demo.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_session_cookie_opens_only_on_the_postern_that_sealed_it() {
    let here = start_demo().await;
    let elsewhere = start_demo().await;
    let alice = sign_in(&here, "alice").await;
    let cookie = alice.cookie(SESSION_COOKIE).expect("signed in");

    let stranger = Client::new();
    stranger.set_cookie(SESSION_COOKIE, &cookie);

    assert_eq!(status(&stranger, &elsewhere).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&stranger, &here).await, StatusCode::OK, "the same cookie works where it was sealed");
}

#[tokio::test]
async fn a_tampered_session_cookie_does_not_open() {
    let demo = start_demo().await;
    let alice = sign_in(&demo, "alice").await;
    let cookie = alice.cookie(SESSION_COOKIE).expect("signed in");

    for position in [0, cookie.len() / 2, cookie.len() - 1] {
        let mut bytes = cookie.clone().into_bytes();
        bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
        let tampered = Client::new();
        tampered.set_cookie(SESSION_COOKIE, &String::from_utf8(bytes).expect("ASCII"));

        assert_eq!(status(&tampered, &demo).await, StatusCode::UNAUTHORIZED, "byte {position} changed");
    }
}

#[tokio::test]
async fn a_login_cookie_moved_into_the_session_cookie_does_not_open() {
    let demo = start_demo().await;
    let browser = Client::new();
    begin_sign_in(&browser, &demo.url, "/").await;
    let login = browser.cookies_starting_with(LOGIN_COOKIE_PREFIX);
    let value = browser.cookie(&login[0]).expect("a login cookie");

    let forger = Client::new();
    forger.set_cookie(SESSION_COOKIE, &value);

    assert_eq!(status(&forger, &demo).await, StatusCode::UNAUTHORIZED);
}
