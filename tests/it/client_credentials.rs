//! Postern's own credentials at the token endpoint: a client secret with two accepted during a rotation (the
//! current, then the previous on `invalid_client`), secret files re-read without a restart, a certificate
//! (`private_key_jwt` with `x5t#S256`) that the development provider verifies, and a federated credential
//! read from a file (workload identity). Each is proven by a real sign-in.

use http::StatusCode;
use postern::demo::DemoOptions;
use postern::demo::provider::{DevProviderConfig, FEDERATED_AUDIENCE};
use serde_json::json;

use crate::support::files::TempDir;
use crate::support::*;

async fn start_with(provider: DevProviderConfig, credential: String) -> TestDemo {
    start_demo_with(DemoOptions { provider, credential: Some(credential), ..demo_options() }).await
}

fn toml_path(p: &std::path::Path) -> String {
    p.display().to_string().replace('\\', "\\\\")
}

fn secrets(dir: &TempDir, current: &str, previous: &str) -> String {
    format!(
        "client_secret = {{ file = \"{}\" }}\nclient_secret_previous = {{ file = \"{}\" }}",
        toml_path(&dir.write("current", current)),
        toml_path(&dir.write("previous", previous)),
    )
}

async fn signs_in(demo: &TestDemo, user: &str) -> bool {
    let r = sign_in_flow(&Client::new(), &demo.url, "/", user).await;
    r.status == StatusCode::FOUND && r.sets_cookie(SESSION_COOKIE).is_some()
}

#[tokio::test]
async fn during_a_secret_rotation_the_previous_secret_is_used_when_the_current_is_refused() {
    let dir = TempDir::new("rotation");
    let provider = DevProviderConfig { client_secret: "old-secret".into(), ..DevProviderConfig::default() };
    let demo = start_with(provider, secrets(&dir, "new-secret", "old-secret")).await;

    // The provider does not know the new secret yet: the previous one signs in.
    assert!(signs_in(&demo, "bob").await, "falls back to the previous secret");

    // The operator adds the new secret at the provider, then removes the old one.
    demo.provider.set_client_secrets(&["old-secret", "new-secret"]);
    assert!(signs_in(&demo, "bob").await);
    demo.provider.set_client_secrets(&["new-secret"]);
    assert!(signs_in(&demo, "bob").await, "the current secret alone");

    // Neither accepted: no session.
    demo.provider.set_client_secrets(&["unknown"]);
    let r = sign_in_flow(&Client::new(), &demo.url, "/", "bob").await;
    assert_sign_in_failed(&r);
    assert!(r.text().contains("token-request-refused"), "{}", r.text());
}

#[tokio::test]
async fn a_rewritten_secret_file_is_used_without_a_restart() {
    let dir = TempDir::new("secret-file");
    let demo = start_with(
        DevProviderConfig::default(),
        format!(
            "client_secret = {{ file = \"{}\" }}",
            toml_path(&dir.write("secret", &DevProviderConfig::default().client_secret))
        ),
    )
    .await;
    assert!(signs_in(&demo, "bob").await);

    demo.provider.set_client_secrets(&["rotated-secret"]);
    assert!(!signs_in(&demo, "bob").await, "the provider no longer takes the old secret");
    dir.write("secret", "rotated-secret\n");

    assert!(signs_in(&demo, "bob").await, "the new file content is read at the next token request");
}

fn certificate_credential(alg: &str) -> String {
    format!(
        "client_certificate = {{ cert = \"{}\", key = \"{}\", alg = \"{alg}\" }}",
        toml_path(&fixture("client_cert.pem")),
        toml_path(&fixture("client_key.pem"))
    )
}

#[tokio::test]
async fn a_private_key_jwt_client_assertion_is_verified_and_accepted_by_the_provider() {
    for alg in ["PS256", "RS256"] {
        let cert = std::fs::read_to_string(fixture("client_cert.pem")).unwrap();
        let provider = DevProviderConfig {
            client_certificate_pem: Some(cert),
            client_secret: "not-given-to-postern".into(),
            ..DevProviderConfig::default()
        };
        let demo = start_with(provider, certificate_credential(alg)).await;

        assert!(signs_in(&demo, "alice").await, "{alg}");

        assert!(demo.provider.client_assertions_accepted() >= 1, "{alg}");
    }
}

#[tokio::test]
async fn a_certificate_the_provider_does_not_know_cannot_sign_in() {
    let other = std::fs::read_to_string(fixture("other_client.pem")).unwrap();
    let provider = DevProviderConfig { client_certificate_pem: Some(other), ..DevProviderConfig::default() };
    let demo = start_with(provider, certificate_credential("PS256")).await;

    let r = sign_in_flow(&Client::new(), &demo.url, "/", "alice").await;

    assert_sign_in_failed(&r);
    assert_eq!(demo.provider.client_assertions_accepted(), 0);
}

#[tokio::test]
async fn the_certificate_also_gets_the_graph_token_for_group_overage() {
    let cert = std::fs::read_to_string(fixture("client_cert.pem")).unwrap();
    let provider = DevProviderConfig { client_certificate_pem: Some(cert), ..DevProviderConfig::default() };
    let demo = start_with(provider, certificate_credential("PS256")).await;
    let dave = sign_in(&demo, "dave").await;

    assert_eq!(dave.get(demo.at("/")).api().send().await.status, StatusCode::OK);

    assert_eq!(demo.provider.graph_lookups(), 1);
    assert!(demo.provider.client_assertions_accepted() >= 2, "the code exchange and the Graph token");
}

#[tokio::test]
async fn a_federated_credential_is_read_from_its_file_at_every_use() {
    let dir = TempDir::new("federated");
    let token_file = dir.write("azure-identity-token", "not yet written\n");
    let subject = "system:serviceaccount:tools:postern";
    let provider = DevProviderConfig { federated_subject: Some(subject.into()), ..DevProviderConfig::default() };
    let demo = start_with(provider, format!("federated_token_file = \"{}\"", toml_path(&token_file))).await;
    assert!(!signs_in(&demo, "bob").await, "the file holds no valid assertion yet");

    // What the kubelet would project into the pod: a short-lived token for Entra's token exchange audience.
    let issue = |sub: &str| demo.provider.mint_access_token(json!({"aud": FEDERATED_AUDIENCE, "sub": sub}));
    dir.write("azure-identity-token", &issue(subject));
    assert!(signs_in(&demo, "bob").await);

    dir.write("azure-identity-token", &issue("system:serviceaccount:other:intruder"));
    assert!(!signs_in(&demo, "bob").await, "another workload's token is refused");
}
