//! Bearer tokens from more than one issuer: a second development provider plays a GitLab instance whose CI ID
//! tokens Postern trusts through `[[bearer.issuers]]`. Each issuer's tokens verify only with that issuer's
//! keys; policies decide on GitLab's claims; a key the issuer removed stops working; and a token naming its
//! own key source (`jku`) is refused without Postern ever fetching from it.

use http::StatusCode;
use postern::demo::provider::{DEMO_APP_OID, DEMO_APP_ROLES, DevProvider, DevProviderConfig, Tamper};
use postern::demo::{DEMO_POLICY, DemoOptions};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::support::*;

const CI_AUDIENCE: &str = "https://deploy.example.test";

/// Another development provider on loopback, serving until the test's runtime ends.
async fn another_provider() -> DevProvider {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let config = DevProviderConfig { access_token_audience: CI_AUDIENCE.to_string(), ..DevProviderConfig::default() };
    DevProvider::start(listener, config, std::future::pending()).await.expect("the provider starts")
}

/// The demo, also trusting `gitlab` for tokens with audience [`CI_AUDIENCE`], with a bearer-only route for
/// deployments that only CI jobs of `platform/*` projects on protected refs may call.
async fn start_with_gitlab(gitlab: &DevProvider) -> TestDemo {
    let issuer = gitlab.issuer();
    start_demo_with(DemoOptions {
        config_extra: format!("[[bearer.issuers]]\nissuer = \"{issuer}\"\naudiences = [\"{CI_AUDIENCE}\"]\n"),
        policy: format!(
            r#"{DEMO_POLICY}
[[route]]
name = "ci-deploy"
host = "*"
path = "/api/deploy"
upstream = "http://127.0.0.1:8081"
auth = ["bearer"]
allow = [{{ issuer = "{issuer}", claims = {{ project_path = "platform/*", ref_protected = "true" }} }}]
"#
        ),
        ..demo_options()
    })
    .await
}

/// A GitLab CI ID token (the claims GitLab puts in one) with `overrides` merged over it.
fn ci_token(gitlab: &DevProvider, overrides: Value) -> String {
    let mut claims = json!({
        "sub": "project_path:platform/api:ref_type:branch:ref:main",
        "namespace_path": "platform",
        "project_path": "platform/api",
        "ref": "main",
        "ref_type": "branch",
        "ref_protected": "true",
        "pipeline_source": "push",
    });
    if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            c.insert(k.clone(), v.clone());
        }
    }
    gitlab.mint_access_token(claims)
}

fn deploy(demo: &TestDemo, token: &str) -> impl std::future::Future<Output = Resp> {
    let client = Client::new();
    let url = demo.at("/api/deploy/api");
    let token = token.to_string();
    async move { client.post(url).bearer(&token).body("").send().await }
}

#[tokio::test]
async fn a_gitlab_ci_token_deploys_only_for_a_platform_project_on_a_protected_ref() {
    let gitlab = another_provider().await;
    let demo = start_with_gitlab(&gitlab).await;

    let allowed = deploy(&demo, &ci_token(&gitlab, json!({}))).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
    let up = allowed.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some("project_path:platform/api:ref_type:branch:ref:main"));

    for (overrides, why) in [
        (json!({"project_path": "someone/api"}), "another project"),
        (json!({"ref_protected": "false"}), "an unprotected ref"),
        (json!({"project_path": null}), "no project"),
    ] {
        let r = deploy(&demo, &ci_token(&gitlab, overrides)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{why}: {}", r.text());
        let challenge = r.header("www-authenticate").unwrap_or_default().to_string();
        assert!(challenge.contains("insufficient_scope"), "{why}: {challenge}");
    }
    let wrong_audience = deploy(&demo, &ci_token(&gitlab, json!({"aud": "https://elsewhere.example.test"}))).await;
    assert_eq!(wrong_audience.status, StatusCode::UNAUTHORIZED, "{}", wrong_audience.text());
}

#[tokio::test]
async fn a_token_naming_one_trusted_issuer_but_signed_with_another_trusted_issuers_key_is_refused() {
    let gitlab = another_provider().await;
    let demo = start_with_gitlab(&gitlab).await;
    let app = json!({"oid": DEMO_APP_OID, "roles": DEMO_APP_ROLES, "sub": "postern-demo"});
    let audience = demo.provider.config().access_token_audience.clone();
    // The control: the sign-in provider's own token is accepted.
    let own = demo.provider.mint_access_token(app.clone());
    assert_eq!(Client::new().get(demo.at("/deploy")).bearer(&own).send().await.status, StatusCode::OK);

    // GitLab's key, the sign-in provider's name and audience.
    let mut forged = app.clone();
    forged["iss"] = json!(demo.provider.issuer());
    forged["aud"] = json!(audience);
    let r = Client::new().get(demo.at("/deploy")).bearer(&gitlab.mint_access_token(forged)).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    // The sign-in provider's key, GitLab's name.
    let r = deploy(&demo, &demo.provider.mint_access_token(json!({"iss": gitlab.issuer(), "aud": CI_AUDIENCE, "project_path": "platform/api", "ref_protected": "true"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
}

#[tokio::test]
async fn a_key_the_issuer_removed_is_refused_once_postern_has_refetched_the_keys() {
    let gitlab = another_provider().await;
    let demo = start_with_gitlab(&gitlab).await;
    let used = ci_token(&gitlab, json!({"jti": "used"}));
    let unused = ci_token(&gitlab, json!({"jti": "unused"}));
    assert_eq!(deploy(&demo, &used).await.status, StatusCode::OK);

    // GitLab rotates and stops publishing the old key; a token signed with the new key makes Postern refetch
    // (at most once per jwks_refetch_interval, 1 s here).
    gitlab.rotate_signing_key();
    gitlab.retire_old_keys();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let fresh = ci_token(&gitlab, json!({"jti": "fresh"}));
    let r = deploy(&demo, &fresh).await;
    assert_eq!(r.status, StatusCode::OK, "the new key is fetched: {}", r.text());

    let r = deploy(&demo, &unused).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a token signed with the removed key: {}", r.text());
}

#[tokio::test]
async fn a_jku_header_pointing_at_an_attackers_keys_is_never_followed() {
    let attacker = another_provider().await;
    let demo = start_demo().await;
    // The attacker signs a token for Postern's audience in the sign-in provider's name with its own key, and
    // points `jku` (and `x5u`) at its own key set.
    attacker.set_tamper(Tamper::Header(
        json!({"jku": format!("{}/jwks", attacker.issuer()), "x5u": format!("{}/jwks", attacker.issuer())}),
    ));
    let token = attacker.mint_id_token(
        "alice",
        json!({
            "iss": demo.provider.issuer(),
            "aud": demo.provider.config().access_token_audience,
            "roles": DEMO_APP_ROLES,
        }),
    );
    let jwks_before = attacker.jwks_requests();

    let r = Client::new().get(demo.at("/deploy")).bearer(&token).send().await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(attacker.jwks_requests(), jwks_before, "Postern never fetched the attacker's keys");
}
