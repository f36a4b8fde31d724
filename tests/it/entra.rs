//! Microsoft Entra ID's behaviours, against the development provider in its Entra shapes: v1 and v2 tokens,
//! the multi-tenant `{tenantid}` issuer with its tenant allow-list, guests, and group overage resolved
//! through the provider's fake Microsoft Graph (cached per user, failing closed when Graph is down).

use http::StatusCode;
use postern::demo::DemoOptions;
use postern::demo::provider::{
    DevProviderConfig, GROUP_ENG, Misbehaviour, OTHER_TENANT, Tamper, TokenVersion, generated_group,
};
use serde_json::json;

use crate::support::*;

fn provider(multi_tenant: bool, token_version: TokenVersion) -> DevProviderConfig {
    DevProviderConfig { multi_tenant, token_version, ..DevProviderConfig::default() }
}

async fn start_entra(multi_tenant: bool, token_version: TokenVersion, oidc_extra: &str) -> TestDemo {
    start_demo_with(DemoOptions {
        provider: provider(multi_tenant, token_version),
        oidc_extra: oidc_extra.to_string(),
        ..demo_options()
    })
    .await
}

/// A user access token for the demo's API, as the provider would issue it after `user` signed in.
fn user_access_token(demo: &TestDemo, oid: &str, extra: serde_json::Value) -> String {
    let mut claims = json!({"sub": demo.provider.subject_for(oid), "oid": oid, "scp": "access_as_user",
        "tid": demo.provider.config().tenant_id});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    demo.provider.mint_access_token(claims)
}

#[tokio::test]
async fn v1_and_v2_single_and_multi_tenant_issuers_all_sign_in_and_accept_bearer_tokens() {
    for (multi, version) in
        [(false, TokenVersion::V2), (false, TokenVersion::V1), (true, TokenVersion::V2), (true, TokenVersion::V1)]
    {
        let demo = start_entra(multi, version, "").await;
        let issuer = demo.provider.issuer();
        assert_eq!(issuer.contains("{tenantid}"), multi, "{issuer}");

        let browser = sign_in(&demo, "bob").await;
        let up = browser.get(demo.at("/")).api().send().await.upstream();
        assert_eq!(up.get("x-forwarded-user"), Some(user("bob").oid), "{multi} {version:?}");
        assert_eq!(up.get("x-forwarded-preferred-username"), Some("bob@example.com"), "v1 upn, v2 preferred_username");

        let token = user_access_token(&demo, user("bob").oid, json!({"groups": [GROUP_ENG]}));
        let r = Client::new().get(demo.at("/")).bearer(&token).send().await;
        assert_eq!(r.status, StatusCode::OK, "{multi} {version:?}: {}", r.text());
    }
}

#[tokio::test]
async fn a_user_of_a_tenant_not_in_allowed_tenants_cannot_sign_in() {
    let demo = start_entra(true, TokenVersion::V2, "").await;

    // frank signs in to OTHER_TENANT, a real tenant of the same multi-tenant provider.
    let r = sign_in_flow(&Client::new(), &demo.url, "/", "frank").await;

    assert_sign_in_failed(&r);
    assert!(r.text().contains("tenant-not-allowed"), "{}", r.text());
}

#[tokio::test]
async fn a_user_of_an_allowed_second_tenant_signs_in() {
    let tenants = format!("allowed_tenants = [\"{}\", \"{OTHER_TENANT}\"]", DevProviderConfig::default().tenant_id);
    let demo = start_entra(true, TokenVersion::V2, &tenants).await;

    let frank = sign_in(&demo, "frank").await;

    let up = frank.get(demo.at("/")).api().send().await.upstream();
    assert_eq!(up.get("x-forwarded-user"), Some(user("frank").oid));
}

#[tokio::test]
async fn a_bearer_token_from_a_tenant_not_allowed_is_401() {
    let demo = start_entra(true, TokenVersion::V2, "").await;
    // Correctly signed, iss = the other tenant's issuer: only the allow-list stands in the way.
    let token = user_access_token(&demo, user("frank").oid, json!({"tid": OTHER_TENANT, "groups": [GROUP_ENG]}));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.json()["error_description"].as_str().unwrap_or_default().contains("tenant"), "{}", r.text());
}

#[tokio::test]
async fn a_tenantid_issuer_whose_tid_differs_from_the_iss_is_refused() {
    let tenants = format!("allowed_tenants = [\"{}\", \"{OTHER_TENANT}\"]", DevProviderConfig::default().tenant_id);
    let demo = start_entra(true, TokenVersion::V2, &tenants).await;
    let home = demo.provider.config().tenant_id.clone();

    // Both tenants are allowed; the token claims one tenant in tid and another in iss.
    let token = user_access_token(
        &demo,
        user("bob").oid,
        json!({"tid": home, "iss": demo.provider.issuer_for(OTHER_TENANT), "groups": [GROUP_ENG]}),
    );
    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(r.json()["error_description"].as_str().unwrap_or_default().contains("issuer"), "{}", r.text());

    // The same at sign-in.
    demo.provider.set_tamper(Tamper::Claims(json!({"iss": demo.provider.issuer_for(OTHER_TENANT)})));
    let r = sign_in_flow(&Client::new(), &demo.url, "/", "bob").await;
    assert_sign_in_failed(&r);
    assert!(r.text().contains("issuer-mismatch"), "{}", r.text());
}

#[tokio::test]
async fn a_multi_tenant_config_without_allowed_tenants_does_not_load() {
    let text = r#"
[server]
public_url = "http://127.0.0.1:8080"
listen = ["127.0.0.1:8080"]

[oidc]
issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
discovery_url = "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration"
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
client_secret = { env = "S" }
"#;
    let err = postern::config::from_text(std::path::Path::new("postern.toml"), text, &|_| Some("s".into()))
        .expect_err("a multi-tenant issuer needs allowed_tenants");
    assert!(err.to_string().contains("postern.toml:7:"), "{err}");
    assert!(err.to_string().contains("allowed_tenants"), "{err}");
}

async fn start_guest_policy_demo() -> TestDemo {
    start_demo_with(DemoOptions {
        policy: format!(
            r#"{DEMO_GROUPS}
[[route]]
name = "members"
host = "*"
upstream = "http://127.0.0.1:8081"
allow = [{{ groups = ["eng"], guest = false }}]

[[route]]
name = "partners"
host = "*"
path = "/partners"
upstream = "http://127.0.0.1:8081"
allow = [{{ guest = true }}]
"#
        ),
        ..demo_options()
    })
    .await
}

#[tokio::test]
async fn guests_are_told_apart_from_members_by_policy() {
    let demo = start_guest_policy_demo().await;
    let erin = sign_in(&demo, "erin").await; // eng, but a guest (acct = 1, idp = her home tenant)
    let bob = sign_in(&demo, "bob").await;

    let r = erin.get(demo.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("guest-unauthorized"), "{}", r.text());
    assert_eq!(bob.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    assert_eq!(erin.get(demo.at("/partners")).api().send().await.status, StatusCode::OK);
    assert_eq!(bob.get(demo.at("/partners")).api().send().await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn group_overage_is_resolved_through_graph_once_for_many_requests() {
    let demo = start_demo().await;
    let dave = sign_in(&demo, "dave").await; // 250 groups: his ID token has _claim_names instead of groups

    for _ in 0..10 {
        let r = dave.get(demo.at("/")).api().send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        // Only the groups a policy names go upstream, not all 250.
        assert_eq!(r.upstream().get("x-forwarded-groups"), Some(GROUP_ENG));
    }

    assert_eq!(demo.provider.graph_lookups(), 1, "one Graph lookup for ten requests");
    assert_eq!(demo.provider.graph_requests(), 3, "250 groups in pages of 100: every page followed");
    let admin = dave.get(demo.at("/admin")).api().send().await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "dave is not in admins");
    let me = dave.get(demo.at("/oauth2/userinfo")).api().send().await.json();
    assert_eq!(me["groups"].as_array().map(Vec::len), Some(250), "userinfo shows the groups policies see");
    assert_eq!(me["groups_unresolved"], false);
    assert_eq!(demo.provider.graph_lookups(), 1);
}

#[tokio::test]
async fn a_bearer_token_with_group_overage_is_resolved_through_graph_too() {
    let demo = start_demo().await;
    let dave = user("dave");
    assert!(dave.all_groups().contains(&generated_group(249)));
    let token = user_access_token(&demo, dave.oid, json!({"_claim_names": {"groups": "src1"}}));

    for _ in 0..3 {
        let r = Client::new().get(demo.at("/")).bearer(&token).send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(demo.provider.graph_lookups(), 1);
}

#[tokio::test]
async fn graph_down_with_nothing_cached_denies_with_a_clear_reason_and_recovers() {
    let demo = start_demo().await;
    let dave = sign_in(&demo, "dave").await;
    demo.provider.set_misbehaviour(Misbehaviour::GraphDown);

    let r = dave.get(demo.at("/")).browser().send().await;

    assert_eq!(r.status, StatusCode::FORBIDDEN, "fails closed");
    assert!(r.text().contains("groups-unavailable"), "{}", r.text());
    assert!(r.text().contains("Microsoft Graph"), "{}", r.text());
    let api = dave.get(demo.at("/")).api().send().await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);

    // A failure is not remembered: once Graph is back, the next request is allowed.
    demo.provider.set_misbehaviour(Misbehaviour::None);
    assert_eq!(dave.get(demo.at("/")).api().send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn graph_down_after_a_lookup_is_served_from_the_cache() {
    let demo = start_demo().await;
    let dave = sign_in(&demo, "dave").await;
    assert_eq!(dave.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    demo.provider.set_misbehaviour(Misbehaviour::GraphDown);

    assert_eq!(dave.get(demo.at("/")).api().send().await.status, StatusCode::OK);
    assert_eq!(demo.provider.graph_lookups(), 1);
}

#[tokio::test]
async fn graph_always_looks_up_users_whose_tokens_carry_groups() {
    let demo = start_demo_with(DemoOptions {
        config_extra: "[graph]\nbase_url = \"{provider_graph}\"\nalways = true\n".to_string(),
        ..demo_options()
    })
    .await;
    let bob = sign_in(&demo, "bob").await; // his token lists eng; Graph is asked anyway

    assert_eq!(bob.get(demo.at("/")).api().send().await.status, StatusCode::OK);
    assert_eq!(bob.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    assert_eq!(demo.provider.graph_lookups(), 1);
    let service = client_credentials_token(&demo.provider).await;
    assert_eq!(Client::new().get(demo.at("/")).bearer(&service).send().await.status, StatusCode::OK);
    assert_eq!(demo.provider.graph_lookups(), 1, "app-only tokens are not looked up");
}

#[tokio::test]
async fn a_key_published_for_another_issuer_does_not_verify_this_issuers_tokens() {
    let demo = start_entra(true, TokenVersion::V2, "").await;
    let bob = sign_in(&demo, "bob").await;
    assert_eq!(bob.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    // Like Entra's key for consumer accounts: a key whose JWKS entry names one concrete issuer.
    demo.provider.set_key_issuer(Some(demo.provider.issuer_for("9188040d-6c67-4c5b-b112-36a304b66dad")));
    demo.provider.rotate_signing_key();
    let token = user_access_token(&demo, user("bob").oid, json!({"groups": [GROUP_ENG]}));

    let r = Client::new().get(demo.at("/")).bearer(&token).send().await;

    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert!(
        r.json()["error_description"].as_str().unwrap_or_default().contains("not valid for its issuer"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn only_groups_that_policies_name_or_the_filter_matches_reach_the_upstream() {
    let demo = start_demo_with(DemoOptions {
        config_extra: "[upstream]\ngroup_filter = [\"0000d000-0000-4000-8000-00000000000*\"]\n".to_string(),
        ..demo_options()
    })
    .await;
    let dave = sign_in(&demo, "dave").await;

    let up = dave.get(demo.at("/")).api().send().await.upstream();

    let mut expected = vec![GROUP_ENG.to_string()];
    expected.extend((1..=9).map(generated_group));
    let header: Vec<String> = up.get("x-forwarded-groups").unwrap_or_default().split(',').map(str::to_string).collect();
    assert_eq!(header, expected, "eng (named by the policy) and the nine the filter matches, not 250");
    let assertion = up.get("x-postern-jwt-assertion").expect("an assertion");
    let payload = assertion.split('.').nth(1).expect("a JWT");
    use base64::Engine as _;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["groups"], json!(expected), "the assertion carries the same groups");
}

#[tokio::test]
async fn an_email_rule_matches_only_a_verified_email() {
    let demo = start_demo_with(DemoOptions {
        policy: r#"allow_email_identifiers = true

[[route]]
name = "by-email"
host = "*"
upstream = "http://127.0.0.1:8081"
allow = [{ emails = ["bob@example.com"] }]
"#
        .to_string(),
        ..demo_options()
    })
    .await;
    // Entra's email claim is not verified by default: the address alone lets nobody in.
    let unverified = sign_in(&demo, "bob").await;
    let r = unverified.get(demo.at("/")).browser().send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("email-unauthorized"), "{}", r.text());

    demo.provider.set_tamper(Tamper::Claims(json!({"xms_edov": true})));
    let verified = sign_in(&demo, "bob").await;
    assert_eq!(verified.get(demo.at("/")).api().send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn sign_out_sends_entra_the_id_token_hint_and_the_logout_hint() {
    let demo = start_demo().await;
    let bob = sign_in(&demo, "bob").await;

    let r = bob.get(demo.at("/oauth2/sign_out")).browser().send().await;

    let logout = r.location();
    assert!(query_param(&logout, "id_token_hint").is_some(), "{logout}");
    let expected = postern::demo::provider::login_hint(user("bob").oid, &demo.provider.config().tenant_id);
    assert_eq!(query_param(&logout, "logout_hint"), Some(expected), "the ID token's login_hint claim");
}
