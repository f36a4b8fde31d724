//! Services and CI jobs present `Authorization: Bearer <JWT>`. A request with a bearer header is judged on the
//! token alone: a valid token that a rule allows goes through; a valid token no rule allows is 403
//! `insufficient_scope`; anything else is 401 `invalid_token` (RFC 6750), whatever cookies come with it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use postern::demo::provider::{DEMO_APP_OID, DEMO_APP_ROLES, Misbehaviour};
use serde_json::{Value, json};

use crate::support::*;

/// A client-credentials token from the provider's `/token`, as a service would get one.
async fn client_credentials_token(demo: &TestDemo) -> String {
    let config = demo.provider.config();
    let basic = STANDARD.encode(format!("{}:{}", config.client_id, config.client_secret));
    let r = Client::new()
        .post(format!("{}/token", demo.provider.issuer()))
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&scope={}", encode("api://postern/.default")))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["access_token"].as_str().expect("an access token").to_string()
}

/// The claims of an app-only token, which a test then spoils one way or another.
fn app_claims(overrides: Value) -> Value {
    let mut claims = json!({
        "sub": "postern-demo",
        "azp": "postern-demo",
        "oid": DEMO_APP_OID,
        "roles": DEMO_APP_ROLES,
        "idtyp": "app",
    });
    if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            c.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// Asserts a 401 `invalid_token` answer, whose description contains `hint`.
fn assert_invalid_token(r: &Resp, hint: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let challenge = r.header("www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let description = r.json()["error_description"].as_str().unwrap_or_default().to_string();
    assert!(description.to_lowercase().contains(hint), "the description {description:?} mentions {hint:?}");
    assert!(challenge.contains("error_description="), "{challenge}");
}

/// `token` with its header replaced by `header` and its signature by `signature`.
fn reheader(token: &str, header: Value, signature: &[u8]) -> String {
    let claims = token.split('.').nth(1).expect("a JWT");
    format!("{}.{claims}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn a_client_credentials_token_with_the_deploy_role_reaches_the_upstream() {
    let demo = start_demo().await;
    let token = client_credentials_token(&demo).await;

    let r = Client::new().get(demo.at("/deploy")).bearer(&token).send().await;

    let up = r.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some(DEMO_APP_OID));
    assert!(up.get("x-postern-jwt-assertion").is_some(), "services get an assertion too");
    assert_eq!(up.get("authorization"), None, "the token was meant for Postern, not the upstream");
}

#[tokio::test]
async fn a_valid_token_on_a_route_that_allows_only_groups_is_403_insufficient_scope() {
    let demo = start_demo().await;
    let token = client_credentials_token(&demo).await;

    let r = Client::new().get(demo.at("/admin")).bearer(&token).send().await;

    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let challenge = r.header("www-authenticate").expect("a challenge");
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert_eq!(r.json()["error"], "insufficient_scope");
}

#[tokio::test]
async fn a_token_for_another_audience_is_401_invalid_token_naming_the_audience() {
    let demo = start_demo().await;
    let token = demo.provider.mint_access_token(app_claims(json!({"aud": "api://some-other-service"})));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "audience");
}

#[tokio::test]
async fn an_expired_token_is_401_invalid_token() {
    let demo = start_demo().await;
    let t = now();
    let token = demo.provider.mint_access_token(app_claims(json!({"exp": t - 600, "iat": t - 4200, "nbf": t - 4200})));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "expired");
}

#[tokio::test]
async fn a_token_from_an_untrusted_issuer_is_401_invalid_token() {
    let demo = start_demo().await;
    let token = demo.provider.mint_access_token(app_claims(json!({"iss": "http://127.0.0.1:1"})));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "issuer");
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_401_invalid_token() {
    let demo = start_demo().await;
    let valid = demo.provider.mint_access_token(app_claims(json!({})));
    let token = reheader(&valid, json!({"alg": "none", "typ": "JWT"}), b"");

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "");
}

#[tokio::test]
async fn a_token_hmac_signed_with_the_providers_public_key_is_401_invalid_token() {
    let demo = start_demo().await;
    let valid = demo.provider.mint_access_token(app_claims(json!({})));
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": demo.provider.current_kid()});
    let claims = valid.split('.').nth(1).expect("a JWT");
    let input = format!("{}.{claims}", URL_SAFE_NO_PAD.encode(header.to_string()));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, demo.provider.public_key_pem().as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "");
}

#[tokio::test]
async fn a_token_with_a_broken_signature_is_401_invalid_token() {
    let demo = start_demo().await;
    let valid = demo.provider.mint_access_token(app_claims(json!({})));
    let (signed, signature) = valid.rsplit_once('.').expect("a JWT");
    let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    signature[10] ^= 0x01;
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "signature");
}

#[tokio::test]
async fn a_garbage_token_is_401_invalid_token() {
    let demo = start_demo().await;
    for garbage in ["not-a-jwt", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9.e30"] {
        let r = Client::new().get(demo.at("/")).bearer(garbage).send().await;
        assert_invalid_token(&r, "");
    }
}

#[tokio::test]
async fn an_oversized_token_is_401_even_when_properly_signed() {
    let demo = start_demo().await;
    let token = demo.provider.mint_access_token(app_claims(json!({"padding": "a".repeat(20 * 1024)})));
    assert!(token.len() > 20 * 1024);

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "large");
}

#[tokio::test]
async fn an_id_token_presented_as_a_bearer_token_is_401() {
    let demo = start_demo().await;
    // Issued for Postern's client id (its aud), not for the API audience bearer tokens must carry.
    let id_token = demo.provider.mint_id_token("alice", json!({}));

    let r = Client::new().get(demo.at("/")).bearer(&id_token).send().await;

    assert_invalid_token(&r, "audience");
}

#[tokio::test]
async fn a_bad_bearer_token_with_a_valid_session_cookie_is_401() {
    let demo = start_demo().await;
    let alice = sign_in(&demo, "alice").await;
    assert_eq!(alice.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    let r = alice.get(demo.at("/")).bearer("garbage").send().await;

    assert_invalid_token(&r, "");
    // A browser navigating is judged the same way: no redirect to sign in, no session fallback.
    let r = alice.get(demo.at("/")).browser().bearer("garbage").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_accepted_before_is_refused_once_it_expires() {
    let demo = start_demo().await;
    let token = client_credentials_token(&demo).await;
    assert_eq!(Client::new().get(demo.at("/")).bearer(&token).send().await.status, StatusCode::OK);

    // An hour's lifetime plus the minute of leeway, on Postern's clock.
    demo.shared.load().clock.advance(3600 + 61);
    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "expired");
}

#[tokio::test]
async fn a_token_signed_with_the_providers_new_key_is_accepted_after_a_rotation() {
    let demo = start_demo().await;
    let before = client_credentials_token(&demo).await;
    assert_eq!(Client::new().get(demo.at("/")).bearer(&before).send().await.status, StatusCode::OK);

    demo.provider.rotate_signing_key();
    let after = client_credentials_token(&demo).await;
    let r = Client::new().get(demo.at("/")).bearer(&after).send().await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Refetching keys for an unknown `kid` is rate-limited (once per `jwks_refetch_interval`, 1 s in the demo), so
/// a token with a brand-new `kid` can be refused while the limit holds. Once it has passed, the same token must
/// work: the refusal was about Postern's key cache, not about the token.
#[tokio::test]
async fn a_token_refused_while_key_refetch_was_rate_limited_is_accepted_once_the_limit_passes() {
    let demo = start_demo().await;
    let valid = demo.provider.mint_access_token(app_claims(json!({})));
    assert_eq!(Client::new().get(demo.at("/")).bearer(&valid).send().await.status, StatusCode::OK);
    // Someone sends a token with a made-up kid: Postern refetches the keys, which uses up the rate limit.
    let signature = URL_SAFE_NO_PAD.decode(valid.rsplit('.').next().expect("a JWT")).expect("base64url");
    let made_up = reheader(&valid, json!({"alg": "RS256", "typ": "JWT", "kid": "made-up"}), &signature);
    assert_invalid_token(&Client::new().get(demo.at("/")).bearer(&made_up).send().await, "");
    // Right then the provider rotates its key, and a service presents a token signed with the new one.
    demo.provider.rotate_signing_key();
    let fresh = demo.provider.mint_access_token(app_claims(json!({})));
    let _refused_while_rate_limited = Client::new().get(demo.at("/")).bearer(&fresh).send().await;

    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // The new key can be fetched now: another token signed with it is accepted...
    let other = demo.provider.mint_access_token(app_claims(json!({"jti": "another-token"})));
    let control = Client::new().get(demo.at("/")).bearer(&other).send().await;
    assert_eq!(control.status, StatusCode::OK, "{}", control.text());
    // ...and so must the token refused a moment ago be.
    let r = Client::new().get(demo.at("/")).bearer(&fresh).send().await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_token_not_valid_yet_is_401_invalid_token() {
    let demo = start_demo().await;
    let token = demo.provider.mint_access_token(app_claims(json!({"nbf": now() + 3600})));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_invalid_token(&r, "not valid yet");
}

#[tokio::test]
async fn a_failed_key_refetch_keeps_the_keys_postern_already_has() {
    let demo = start_demo().await;
    let valid = demo.provider.mint_access_token(app_claims(json!({})));
    assert_eq!(Client::new().get(demo.at("/")).bearer(&valid).send().await.status, StatusCode::OK);
    demo.provider.set_misbehaviour(Misbehaviour::JwksGarbage);

    // A token naming an unknown key makes Postern refetch the keys, and the provider answers garbage.
    let signature = URL_SAFE_NO_PAD.decode(valid.rsplit('.').next().expect("a JWT")).expect("base64url");
    let made_up = reheader(&valid, json!({"alg": "RS256", "typ": "JWT", "kid": "made-up"}), &signature);
    assert_invalid_token(&Client::new().get(demo.at("/")).bearer(&made_up).send().await, "");

    // The keys Postern had still verify tokens and sign-ins.
    let other = demo.provider.mint_access_token(app_claims(json!({"jti": "another-token"})));
    let r = Client::new().get(demo.at("/")).bearer(&other).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let browser = Client::new();
    assert_signed_in(&sign_in_flow(&browser, &demo.url, "/", "alice").await, SESSION_COOKIE);
}
