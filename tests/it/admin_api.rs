//! The admin API on the admin listener, for service-desk automation: list and end sessions, disable and
//! enable users. Only bearer tokens carrying an app role from `[admin_api] roles` get in.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

const ADMIN_ROLE: &str = "Postern.Admin";

async fn start() -> Postern {
    start_postern(Options { config_extra: format!("[admin_api]\nroles = [\"{ADMIN_ROLE}\"]\n"), ..Options::default() })
        .await
}

fn token(postern: &Postern, roles: &[&str], oid: &str) -> String {
    let provider = &postern.stack.provider;
    provider.mint_access_token(json!({"sub": "desk", "oid": oid, "tid": provider.config().tenant_id, "roles": roles}))
}

fn admin_token(postern: &Postern) -> String {
    token(postern, &[ADMIN_ROLE], "a1a1a1a1-0000-4000-8000-000000000001")
}

async fn call(postern: &Postern, method: Method, path: &str, token: Option<&str>) -> Resp {
    let client = Client::new();
    let mut r = client.request(method, postern.admin(path));
    if let Some(t) = token {
        r = r.bearer(t);
    }
    r.send().await
}

async fn status(client: &Client, postern: &Postern) -> StatusCode {
    client.get(postern.at("/")).api().send().await.status
}

#[tokio::test]
async fn only_tokens_with_an_admin_role_may_call_the_admin_api() {
    let postern = start().await;

    let none = call(&postern, Method::GET, "/api/sessions", None).await;
    let garbage = call(&postern, Method::GET, "/api/sessions", Some("not-a-token")).await;
    let no_role = call(&postern, Method::GET, "/api/sessions", Some(&token(&postern, &["Deploy.Write"], "x"))).await;
    let admin = call(&postern, Method::GET, "/api/sessions", Some(&admin_token(&postern))).await;

    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.header("www-authenticate").is_some());
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_role.status, StatusCode::FORBIDDEN);
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text());
}

#[tokio::test]
async fn without_an_admin_api_section_the_api_is_off() {
    let postern = start_postern(Options::default()).await;
    let r = call(&postern, Method::GET, "/api/sessions", Some(&admin_token(&postern))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_service_desk_lists_and_ends_sessions_and_disables_and_enables_users() {
    let postern = start().await;
    let admin = admin_token(&postern);
    let alice = sign_in_at(&postern.url, "alice").await;
    let bob = sign_in_at(&postern.url, "bob").await;

    // List: everyone, then one user; handles, never tickets.
    let all = call(&postern, Method::GET, "/api/sessions", Some(&admin)).await.json();
    assert_eq!(all["sessions"].as_array().map(Vec::len), Some(2), "{all}");
    let mine = call(&postern, Method::GET, "/api/sessions?user=alice%40example.com", Some(&admin)).await.json();
    let sessions = mine["sessions"].as_array().expect("a list").clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["subject"], user("alice").oid);
    let handle = sessions[0]["handle"].as_str().expect("a handle").to_string();

    // End one session by handle.
    let r = call(&postern, Method::DELETE, &format!("/api/sessions/{handle}"), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(status(&alice, &postern).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&bob, &postern).await, StatusCode::OK);
    let r = call(&postern, Method::DELETE, &format!("/api/sessions/{handle}"), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Disable bob, whom the directory does not know: sessions end, tokens and sign-ins are refused.
    let bob_token = postern.stack.provider.mint_access_token(json!({
        "sub": "b", "oid": user("bob").oid, "roles": ["Deploy.Write"]
    }));
    assert_eq!(Client::new().get(postern.at("/")).bearer(&bob_token).send().await.status, StatusCode::OK);
    let r = call(&postern, Method::POST, "/api/users/bob%40example.com/disable", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["sessions_ended"], 1);
    assert_eq!(status(&bob, &postern).await, StatusCode::UNAUTHORIZED);
    let r = sign_in_flow(&Client::new(), &postern.url, "/", "bob").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&postern, Method::POST, &format!("/api/users/{}/disable", user("bob").oid), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(Client::new().get(postern.at("/")).bearer(&bob_token).send().await.status, StatusCode::UNAUTHORIZED);

    // Enable: both names lifted, bob is back.
    for name in ["bob%40example.com", user("bob").oid] {
        let r = call(&postern, Method::POST, &format!("/api/users/{name}/enable"), Some(&admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(Client::new().get(postern.at("/")).bearer(&bob_token).send().await.status, StatusCode::OK);
    let bob = sign_in_at(&postern.url, "bob").await;
    assert_eq!(status(&bob, &postern).await, StatusCode::OK);
    let r = call(&postern, Method::POST, "/api/users/nobody/enable", Some(&admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // End all of one user's sessions.
    let r = call(&postern, Method::DELETE, "/api/sessions?user=bob%40example.com", Some(&admin)).await;
    assert_eq!(r.json()["sessions_ended"], Value::from(1));
    assert_eq!(status(&bob, &postern).await, StatusCode::UNAUTHORIZED);
}
