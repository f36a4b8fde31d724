//! The sign-in callback refuses everything that is not the completion of a sign-in this browser started, with
//! an ID token the provider really issued for it: each refusal is an error page (never a redirect, so never a
//! loop) and never a session.

use http::StatusCode;
use postern::demo::provider::{Misbehaviour, Tamper};
use serde_json::{Value, json};

use crate::support::*;

/// Replaces the value of query parameter `name` in `url`.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.to_string() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

#[tokio::test]
async fn a_tampered_state_is_refused_and_no_session_is_created() {
    let demo = start_demo().await;
    let browser = Client::new();
    let callback_url = authorize(&browser, &begin_sign_in(&browser, &demo.url, "/").await, "alice").await;
    let state = query_param(&callback_url, "state").expect("a state");
    // Same login cookie (it is named after the state's first characters), different state.
    let mut tampered = state.clone();
    let last = tampered.pop().expect("not empty");
    tampered.push(if last == 'A' { 'B' } else { 'A' });

    let r = callback(&browser, &with_param(&callback_url, "state", &tampered)).await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_sign_in_failed(&r);
    // A state for which this browser has no login cookie at all is refused the same way.
    let other = Client::new();
    let r = callback(&other, &with_param(&callback_url, "state", "an-entirely-different-state-value")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_sign_in_failed(&r);
}

#[tokio::test]
async fn a_replayed_callback_is_refused_even_with_a_copy_of_the_login_cookie() {
    let demo = start_demo().await;
    let browser = Client::new();
    let callback_url = authorize(&browser, &begin_sign_in(&browser, &demo.url, "/").await, "alice").await;
    // Someone copies the browser's cookies and the callback URL before the browser uses them.
    let attacker = browser.copy_with_cookies();

    let first = callback(&browser, &callback_url).await;
    let replay = callback(&attacker, &callback_url).await;

    assert_signed_in(&first, SESSION_COOKIE);
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text());
    assert_sign_in_failed(&replay);
    assert!(attacker.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_callback_without_its_login_cookie_is_refused() {
    let demo = start_demo().await;
    let browser = Client::new();
    let callback_url = authorize(&browser, &begin_sign_in(&browser, &demo.url, "/").await, "alice").await;

    // A victim is sent the attacker's callback link (login CSRF): the victim's browser has no login cookie.
    let victim = Client::new();
    let r = callback(&victim, &callback_url).await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_sign_in_failed(&r);
    assert!(victim.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_provider_error_shows_a_page_with_the_request_id_and_a_way_to_try_again() {
    let demo = start_demo().await;
    let browser = Client::new();
    let authorize_url = begin_sign_in(&browser, &demo.url, "/reports").await;
    let state = query_param(&authorize_url, "state").expect("a state");

    let r = callback(
        &browser,
        &demo.at(&format!(
            "/oauth2/callback?error=access_denied&error_description=the+user+said+no&state={}",
            encode(&state)
        )),
    )
    .await;

    assert_sign_in_failed(&r);
    assert!(r.status.is_client_error(), "{}", r.status);
    let page = r.text();
    assert!(page.contains("access_denied"), "{page}");
    assert!(page.contains("request id"), "{page}");
    assert!(page.contains("Try again"), "{page}");
    assert!(page.contains("/oauth2/start?rd=%2Freports"), "the link starts over for the same page: {page}");
    assert!(browser.cookie(SESSION_COOKIE).is_none());
}

/// Signs in as alice while the provider issues ID tokens with `tamper`; the sign-in must fail.
async fn assert_id_token_refused(tamper: Tamper) {
    let demo = start_demo().await;
    demo.provider.set_tamper(tamper.clone());
    let browser = Client::new();

    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;

    assert_sign_in_failed(&r);
    assert!(browser.cookie(SESSION_COOKIE).is_none(), "{tamper:?} gave a session");
    let r = browser.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

fn claims(overrides: Value) -> Tamper {
    Tamper::Claims(overrides)
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"nonce": "x"}))).await;
}

#[tokio::test]
async fn an_id_token_without_a_nonce_is_refused_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"nonce": null}))).await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"aud": "some-other-client"}))).await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"iss": "http://127.0.0.1:1"}))).await;
}

#[tokio::test]
async fn an_expired_id_token_is_rejected_and_no_session_is_created() {
    // Beyond the 60 s leeway.
    let t = now();
    assert_id_token_refused(claims(json!({"exp": t - 300, "iat": t - 3900, "nbf": t - 3900}))).await;
}

#[tokio::test]
async fn an_id_token_not_valid_yet_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"nbf": now() + 3600}))).await;
}

#[tokio::test]
async fn an_id_token_issued_in_the_future_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(claims(json!({"iat": now() + 3600}))).await;
}

#[tokio::test]
async fn an_id_token_with_a_bad_signature_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(Tamper::BadSignature).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_id_token_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(Tamper::AlgNone).await;
}

#[tokio::test]
async fn an_id_token_hmac_signed_with_the_public_key_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(Tamper::Hs256WithPublicKey).await;
}

#[tokio::test]
async fn an_id_token_signed_by_a_foreign_key_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(Tamper::ForeignKey).await;
}

#[tokio::test]
async fn an_id_token_naming_an_unknown_key_is_rejected_and_no_session_is_created() {
    assert_id_token_refused(Tamper::UnknownKid).await;
}

#[tokio::test]
async fn an_id_token_without_a_kid_signed_by_a_published_key_is_accepted() {
    let demo = start_demo().await;
    demo.provider.set_tamper(Tamper::NoKid);
    let browser = Client::new();

    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;

    assert_signed_in(&r, SESSION_COOKIE);
    let r = browser.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn after_the_provider_rotates_its_key_a_new_sign_in_succeeds() {
    let demo = start_demo().await;
    let _first = sign_in(&demo, "alice").await;
    let fetches_before = demo.provider.jwks_requests();

    demo.provider.rotate_signing_key();
    demo.provider.retire_old_keys();
    let browser = Client::new();
    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;

    assert_signed_in(&r, SESSION_COOKIE);
    assert!(demo.provider.jwks_requests() > fetches_before, "the new key was fetched");
    let r = browser.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::OK);
}

/// The token endpoint fails with `misbehaviour`: the callback shows an error page (no redirect, no session);
/// once the provider behaves again, a fresh sign-in works.
async fn assert_token_endpoint_failure_is_survivable(misbehaviour: Misbehaviour) {
    let demo = start_demo().await;
    demo.provider.set_misbehaviour(misbehaviour);
    let browser = Client::new();

    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;

    assert_sign_in_failed(&r);
    assert!(r.text().contains("Try again"), "{}", r.text());
    assert!(browser.cookie(SESSION_COOKIE).is_none());

    demo.provider.set_misbehaviour(Misbehaviour::None);
    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;
    assert_signed_in(&r, SESSION_COOKIE);
}

#[tokio::test]
async fn a_token_endpoint_500_ends_on_an_error_page_and_a_later_sign_in_works() {
    assert_token_endpoint_failure_is_survivable(Misbehaviour::TokenEndpoint500).await;
}

#[tokio::test]
async fn a_garbage_token_response_ends_on_an_error_page_and_a_later_sign_in_works() {
    assert_token_endpoint_failure_is_survivable(Misbehaviour::TokenEndpointGarbage).await;
}

#[tokio::test]
async fn an_oauth_error_from_the_token_endpoint_ends_on_an_error_page_and_a_later_sign_in_works() {
    assert_token_endpoint_failure_is_survivable(Misbehaviour::TokenEndpointError).await;
}

#[tokio::test]
async fn sign_in_works_with_client_secret_post() {
    let demo = start_demo_with(postern::demo::DemoOptions {
        oidc_extra: "token_endpoint_auth = \"client_secret_post\"".to_string(),
        ..demo_options()
    })
    .await;
    let browser = Client::new();

    let r = sign_in_flow(&browser, &demo.url, "/", "alice").await;

    assert_signed_in(&r, SESSION_COOKIE);
    let r = browser.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_sign_in_that_took_longer_than_ten_minutes_is_refused() {
    let demo = start_demo().await;
    let browser = Client::new();
    let back = authorize(&browser, &begin_sign_in(&browser, &demo.url, "/").await, "alice").await;

    demo.shared.load().clock.advance(601);
    let r = callback(&browser, &back).await;

    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_sign_in_failed(&r);
}

#[tokio::test]
async fn an_id_token_issued_long_before_the_sign_in_started_is_refused() {
    // Valid for another hour, but minted an hour ago: not the answer to this sign-in.
    let t = now();
    assert_id_token_refused(claims(json!({"iat": t - 3600, "nbf": t - 3600, "auth_time": t - 3600}))).await;
}

#[tokio::test]
async fn while_the_provider_is_down_sign_in_ends_on_a_page_and_works_again_once_it_is_back() {
    let demo = start_demo().await;
    // Before Postern's start-up discovery has run (it is spawned on this test's runtime, which has not yielded).
    demo.provider.set_misbehaviour(Misbehaviour::DiscoveryDown);
    let browser = Client::new();

    let r = browser.get(demo.at("/")).browser().send().await;

    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(r.header("location").is_none());
    assert!(r.text().contains("Try again"), "{}", r.text());
    assert!(browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty());

    demo.provider.set_misbehaviour(Misbehaviour::None);
    // Postern waits a moment (2 s) before asking a provider that just failed again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_signed_in(&sign_in_flow(&browser, &demo.url, "/", "alice").await, SESSION_COOKIE);
}
