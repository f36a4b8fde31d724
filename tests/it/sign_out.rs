//! Signing out ends the session on Postern (the old cookie is worthless from then on, even if someone kept a
//! copy) and at the provider.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn sign_out_clears_the_cookie_and_sends_the_browser_to_the_providers_logout() {
    let demo = start_demo().await;
    let alice = user("alice");
    let browser = sign_in(&demo, "alice").await;

    let r = browser.get(demo.at("/oauth2/sign_out?rd=/reports")).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(r.removes_cookie(SESSION_COOKIE), "{:?}", r.headers);
    assert!(browser.cookie(SESSION_COOKIE).is_none());
    let logout = r.location();
    assert!(logout.starts_with(&format!("{}/logout?", demo.provider.issuer())), "{logout}");
    assert_eq!(
        query_param(&logout, "post_logout_redirect_uri").as_deref(),
        Some(demo.at("/oauth2/signed_out").as_str())
    );
    assert_eq!(query_param(&logout, "state").as_deref(), Some("/reports"));
    // The hint is the ID token alice signed in with.
    let hint = query_param(&logout, "id_token_hint").expect("an id_token_hint");
    let payload = hint.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON claims");
    assert_eq!(claims["oid"], alice.oid);
    assert_eq!(claims["aud"], demo.provider.config().client_id);
    assert_eq!(claims["iss"], demo.provider.issuer());

    // The provider returns the browser to Postern's signed-out page, which offers to sign in again.
    let r = browser.get(&logout).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
    let page = browser.get(r.location()).browser().send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("/oauth2/start?rd=%2Freports"), "{}", page.text());
}

#[tokio::test]
async fn after_sign_out_a_kept_copy_of_the_old_session_cookie_no_longer_works() {
    let demo = start_demo().await;
    let browser = sign_in(&demo, "alice").await;
    let kept = browser.copy_with_cookies();
    assert_eq!(kept.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    let r = browser.get(demo.at("/oauth2/sign_out")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);

    // A browser with the old cookie is sent to sign in again...
    let r = kept.get(demo.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().starts_with(&format!("{}/authorize?", demo.provider.issuer())), "{}", r.location());
    // ...an API client with it gets 401...
    let r = kept.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // ...and userinfo knows nobody.
    let r = kept.get(demo.at("/oauth2/userinfo")).api().send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_without_a_session_still_clears_the_cookie_and_redirects() {
    let demo = start_demo().await;

    let r = Client::new().get(demo.at("/oauth2/sign_out")).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.removes_cookie(SESSION_COOKIE));
    let logout = r.location();
    assert!(query_param(&logout, "id_token_hint").is_none(), "{logout}");
    assert_eq!(query_param(&logout, "state").as_deref(), Some("/"));
}
