//! Signing in through the whole OpenID Connect flow, and what the upstream sees afterwards.

use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn an_unauthenticated_browser_is_sent_to_the_provider_and_returns_to_the_page_it_asked_for() {
    let demo = start_demo().await;
    let client = Client::new();

    let r = client.get(demo.at("/some/page?x=1")).browser().send().await;

    assert_eq!(r.status, StatusCode::FOUND);
    let authorize_url = r.location();
    assert!(authorize_url.starts_with(&format!("{}/authorize?", demo.provider.issuer())), "{authorize_url}");
    assert_eq!(query_param(&authorize_url, "redirect_uri").as_deref(), Some(demo.at("/oauth2/callback").as_str()));
    assert_eq!(query_param(&authorize_url, "code_challenge_method").as_deref(), Some("S256"));
    for name in ["state", "nonce", "code_challenge"] {
        assert!(
            query_param(&authorize_url, name).is_some_and(|v| v.len() >= 32),
            "{name} is sent and long: {authorize_url}"
        );
    }
    let login_cookies = r.sets_cookies_starting_with(LOGIN_COOKIE_PREFIX);
    assert_eq!(login_cookies.len(), 1, "{:?}", r.headers);
    let login_cookie = r.sets_cookie(&login_cookies[0]).expect("set");
    assert_eq!(login_cookie.http_only(), Some(true));
    assert_eq!(login_cookie.same_site(), Some(cookie::SameSite::Lax));

    let callback_url = authorize(&client, &authorize_url, "alice").await;
    let r = callback(&client, &callback_url).await;

    assert_signed_in(&r, SESSION_COOKIE);
    assert_eq!(r.location(), "/some/page?x=1");
    assert!(r.removes_cookie(&login_cookies[0]), "the login cookie is removed: {:?}", r.headers);
    assert!(client.cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty());
    let session = r.sets_cookie(SESSION_COOKIE).expect("set");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.path(), Some("/"));
}

#[tokio::test]
async fn a_signed_in_user_reaches_the_upstream_with_identity_headers() {
    let demo = start_demo().await;
    let alice = user("alice");
    let client = sign_in(&demo, "alice").await;

    let up = client.get(demo.at("/whoami")).api().send().await.upstream();

    assert_eq!(up.uri(), "/whoami");
    assert_eq!(up.get("x-forwarded-user"), Some(alice.oid));
    assert_eq!(up.get("x-forwarded-email"), Some(alice.email));
    assert_eq!(up.get("x-forwarded-preferred-username"), Some(alice.email));
    let mut groups: Vec<&str> = up.get("x-forwarded-groups").expect("groups are forwarded").split(',').collect();
    groups.sort_unstable();
    let mut expected = alice.groups.to_vec();
    expected.sort_unstable();
    assert_eq!(groups, expected);
}

#[tokio::test]
async fn the_identity_assertion_verifies_with_the_published_postern_keys() {
    let demo = start_demo().await;
    let alice = user("alice");
    let client = sign_in(&demo, "alice").await;
    let up = client.get(demo.at("/")).api().send().await.upstream();
    let assertion = up.get("x-postern-jwt-assertion").expect("an assertion is sent");

    let jwks = Client::new().get(demo.at("/.well-known/postern/jwks.json")).send().await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwks: JwkSet = serde_json::from_slice(&jwks.body).expect("a JWKS");
    let header = jsonwebtoken::decode_header(assertion).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::ES256);
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid).expect("the assertion's kid is published"),
        None => jwks.keys.first().expect("a key is published"),
    };
    let key = DecodingKey::from_jwk(jwk).expect("a usable key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[demo.url.as_str()]);
    validation.set_audience(&[demo.echo.url()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .expect("the assertion verifies with Postern's published key")
        .claims;

    assert_eq!(claims["sub"], alice.oid);
    assert_eq!(claims["email"], alice.email);
    let iat = claims["iat"].as_u64().expect("iat");
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp > iat && exp - iat <= 300, "iat {iat}, exp {exp}");

    // The check above is real: the same assertion for another audience does not verify.
    let mut other = validation.clone();
    other.set_audience(&["http://127.0.0.1:1"]);
    assert!(jsonwebtoken::decode::<Value>(assertion, &key, &other).is_err());
}

#[tokio::test]
async fn postern_cookies_are_not_forwarded_upstream_but_the_tools_own_cookies_are() {
    let demo = start_demo().await;
    let client = sign_in(&demo, "alice").await;
    client.set_cookie("theme", "dark");
    client.set_cookie("_gitlab_session", "abc123");
    client.set_cookie("postern-login-stale", "whatever");

    let up = client.get(demo.at("/")).api().send().await.upstream();

    let mut names: Vec<String> =
        up.all("cookie").iter().flat_map(|v| v.split(';')).map(|pair| pair.trim().to_string()).collect();
    names.sort();
    assert_eq!(names, ["_gitlab_session=abc123", "theme=dark"]);
}

#[tokio::test]
async fn bob_is_refused_on_admin_with_a_page_naming_the_route_and_him() {
    let demo = start_demo().await;
    let bob = sign_in(&demo, "bob").await;

    let r = bob.get(demo.at("/admin/settings")).browser().send().await;

    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{:?}", r.headers);
    let page = r.text();
    assert!(page.contains("demo-admin"), "{page}");
    assert!(page.contains(user("bob").email), "{page}");
    // He is in eng, so the rest of the tool is open to him.
    let r = bob.get(demo.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn carol_who_is_in_no_group_is_refused_everywhere() {
    let demo = start_demo().await;
    let carol = sign_in(&demo, "carol").await;

    for path in ["/", "/admin"] {
        let r = carol.get(demo.at(path)).browser().send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
        assert!(r.text().contains(user("carol").email));
        let r = carol.get(demo.at(path)).api().send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.text());
    }
}

#[tokio::test]
async fn userinfo_shows_the_signed_in_identity_as_json() {
    let demo = start_demo().await;
    let alice = user("alice");
    let client = sign_in(&demo, "alice").await;

    let r = client.get(demo.at("/oauth2/userinfo")).api().send().await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let info = r.json();
    assert_eq!(info["user"], alice.oid);
    assert_eq!(info["oid"], alice.oid);
    assert_eq!(info["email"], alice.email);
    assert_eq!(info["preferred_username"], alice.email);
    assert_eq!(info["name"], alice.display_name);
    assert_eq!(info["auth"], "session");
    assert_eq!(info["issuer"], demo.provider.issuer());
    let groups: Vec<&str> = info["groups"].as_array().expect("groups").iter().filter_map(Value::as_str).collect();
    for g in alice.groups {
        assert!(groups.contains(g), "{info}");
    }
}

#[tokio::test]
async fn userinfo_without_a_session_is_401() {
    let demo = start_demo().await;

    let r = Client::new().get(demo.at("/oauth2/userinfo")).api().send().await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(r.json()["error"], "unauthenticated");
}

/// Two tabs of one browser start signing in before either comes back: each has its own login cookie, so
/// both complete, whichever returns first, each to its own page.
#[tokio::test]
async fn two_tabs_signing_in_at_once_both_complete_in_either_order() {
    let demo = start_demo().await;
    for reverse in [false, true] {
        let browser = Client::new();
        let tab_a = begin_sign_in(&browser, &demo.url, "/tab-a").await;
        let tab_b = begin_sign_in(&browser, &demo.url, "/tab-b").await;
        assert_eq!(browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).len(), 2, "one login cookie per tab");
        let back_a = authorize(&browser, &tab_a, "alice").await;
        let back_b = authorize(&browser, &tab_b, "alice").await;
        let mut returns = vec![(back_a, "/tab-a"), (back_b, "/tab-b")];
        if reverse {
            returns.reverse();
        }

        for (url, page) in returns {
            let r = callback(&browser, &url).await;
            assert_signed_in(&r, SESSION_COOKIE);
            assert_eq!(r.location(), page);
        }

        assert!(browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty());
        let r = browser.get(demo.at("/")).api().send().await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn starting_more_than_four_sign_ins_leaves_at_most_four_login_cookies() {
    let demo = start_demo().await;
    let browser = Client::new();
    let mut newest = String::new();

    for i in 0..7 {
        newest = begin_sign_in(&browser, &demo.url, &format!("/page-{i}")).await;
        let pending = browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).len();
        assert!(pending <= 4, "{pending} login cookies after {} starts", i + 1);
    }

    assert_eq!(browser.cookies_starting_with(LOGIN_COOKIE_PREFIX).len(), 4);
    // The newest sign-in is never the one dropped.
    let r = callback(&browser, &authorize(&browser, &newest, "alice").await).await;
    assert_signed_in(&r, SESSION_COOKIE);
    assert_eq!(r.location(), "/page-6");
}
