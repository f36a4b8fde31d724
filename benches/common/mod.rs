//! Fixtures shared by the session benches: an Entra-shaped identity and the default session lifetimes.
#![allow(dead_code)]

use std::time::Duration;

use postern::config::SessionConfig;
use postern::identity::{Identity, Proof};
use serde_json::json;

/// User `i`, with the claims an Entra ID token carries (two groups, MFA, a provider session id).
pub fn identity(i: u32) -> Identity {
    let claims = json!({
        "iss": "https://login.microsoftonline.com/8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a/v2.0",
        "sub": format!("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bb{i:08}"),
        "aud": "6cb04018-a3f5-46a7-b995-940c78f5aef3",
        "oid": format!("00000000-0000-0000-66f3-{i:012}"),
        "tid": "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a",
        "name": format!("User {i}"),
        "preferred_username": format!("user{i}@example.com"),
        "email": format!("user{i}@example.com"),
        "groups": ["5b1c3d2e-0000-0000-0000-000000000001", "9e2a4f6b-0000-0000-0000-000000000002"],
        "amr": ["pwd", "mfa"], "sid": format!("sid-{i}"), "ver": "2.0",
        "iat": 1_800_000_000u64, "nbf": 1_800_000_000u64, "exp": 1_800_003_600u64,
    });
    Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session)
}

/// Sessions of eight idle hours and a day at most.
pub fn session_config() -> SessionConfig {
    SessionConfig {
        secret: None,
        previous_secrets: Vec::new(),
        idle_timeout: Duration::from_secs(8 * 3600),
        max_lifetime: Duration::from_secs(24 * 3600),
        refresh_before: Duration::from_secs(60),
    }
}
