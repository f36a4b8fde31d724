//! Front-channel logout (`/oauth2/frontchannel_logout?sid=…&iss=…`): when a user signs out at the provider,
//! the provider loads this URL in a hidden frame, without Postern's cookie; Postern ends exactly the sessions
//! created by that provider sign-in (its `sid`), and nothing for another issuer or without a `sid`.
//!
//! The development provider gives every sign-in its own `sid`. The tests learn a session's `sid` the way an
//! upstream could: the route sends it in a header built from the ID token's claims (`{claims.sid}`).

use http::StatusCode;
use postern::demo::DemoOptions;

use crate::support::*;

async fn start_demo_that_shows_the_sid() -> TestDemo {
    start_demo_with(DemoOptions {
        policy: format!(
            r#"{DEMO_GROUPS}
[[route]]
name = "tools"
host = "*"
upstream = "http://127.0.0.1:8081"
headers = {{ "X-Provider-Sid" = "{{claims.sid}}" }}
allow = [{{ groups = ["eng"] }}]
"#
        ),
        ..demo_options()
    })
    .await
}

/// The provider's `sid` of `browser`'s session.
async fn sid(demo: &TestDemo, browser: &Client) -> String {
    let up = browser.get(demo.at("/")).api().send().await.upstream();
    up.get("x-provider-sid").expect("the route sends the sid").to_string()
}

async fn status(demo: &TestDemo, browser: &Client) -> StatusCode {
    browser.get(demo.at("/")).api().send().await.status
}

/// The provider's request, from a hidden frame: no Postern cookie comes with it.
async fn frontchannel_logout(demo: &TestDemo, query: &str) -> Resp {
    Client::new().get(demo.at(&format!("/oauth2/frontchannel_logout?{query}"))).browser().send().await
}

#[tokio::test]
async fn frontchannel_logout_ends_exactly_the_sessions_of_that_provider_sign_in() {
    let demo = start_demo_that_shows_the_sid().await;
    let alice_first = sign_in(&demo, "alice").await;
    let alice_first_copy = alice_first.copy_with_cookies();
    let alice_second = sign_in(&demo, "alice").await;
    let bob = sign_in(&demo, "bob").await;
    let first_sid = sid(&demo, &alice_first).await;
    assert_ne!(first_sid, sid(&demo, &alice_second).await, "each sign-in has its own sid");

    let r = frontchannel_logout(&demo, &format!("sid={}&iss={}", encode(&first_sid), encode(&demo.provider.issuer())))
        .await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(status(&demo, &alice_first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&demo, &alice_first_copy).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&demo, &alice_second).await, StatusCode::OK, "alice's other sign-in goes on");
    assert_eq!(status(&demo, &bob).await, StatusCode::OK);
}

#[tokio::test]
async fn frontchannel_logout_for_another_issuer_is_400_and_ends_nothing() {
    let demo = start_demo_that_shows_the_sid().await;
    let alice = sign_in(&demo, "alice").await;
    let alice_sid = sid(&demo, &alice).await;

    for iss in ["https://login.evil.example/v2.0", &format!("{}/", demo.provider.issuer())] {
        let r = frontchannel_logout(&demo, &format!("sid={}&iss={}", encode(&alice_sid), encode(iss))).await;

        assert_eq!(r.status, StatusCode::BAD_REQUEST, "iss {iss}: {}", r.text());
        assert_eq!(status(&demo, &alice).await, StatusCode::OK, "iss {iss}");
    }
}

#[tokio::test]
async fn frontchannel_logout_without_a_sid_is_400_and_ends_nothing() {
    let demo = start_demo_that_shows_the_sid().await;
    let alice = sign_in(&demo, "alice").await;
    let iss = encode(&demo.provider.issuer());

    for query in [format!("iss={iss}"), format!("sid=&iss={iss}"), String::new()] {
        let r = frontchannel_logout(&demo, &query).await;

        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query:?}: {}", r.text());
        assert_eq!(status(&demo, &alice).await, StatusCode::OK, "{query:?}");
    }
}

#[tokio::test]
async fn frontchannel_logout_for_a_sid_nobody_has_ends_nothing() {
    let demo = start_demo_that_shows_the_sid().await;
    let alice = sign_in(&demo, "alice").await;

    let r = frontchannel_logout(&demo, &format!("sid=not-a-sid&iss={}", encode(&demo.provider.issuer()))).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(status(&demo, &alice).await, StatusCode::OK);
}

#[tokio::test]
async fn frontchannel_logout_still_ends_a_session_after_its_tokens_were_refreshed() {
    let demo = start_demo_that_shows_the_sid().await;
    let alice = sign_in(&demo, "alice").await;
    let alice_sid = sid(&demo, &alice).await;
    let token_requests = demo.provider.token_requests();
    // The ID token lives an hour; Postern refreshes it within the last minute.
    demo.shared.load().clock.advance(3600 - 30);
    assert_eq!(status(&demo, &alice).await, StatusCode::OK);
    assert!(demo.provider.token_requests() > token_requests, "the session was refreshed");

    let r = frontchannel_logout(&demo, &format!("sid={}&iss={}", encode(&alice_sid), encode(&demo.provider.issuer())))
        .await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(status(&demo, &alice).await, StatusCode::UNAUTHORIZED);
}
