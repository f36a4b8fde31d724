//! Memory of live sessions in the default (in-memory) store: RSS before and after creating 100,000 sessions
//! with Entra-shaped identities (claims, groups, an ID token and a refresh token each).
//! Run: `cargo bench --bench session_memory`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use postern::clock::Clock;
use postern::config::SessionConfig;
use postern::identity::{Identity, Proof};
use postern::session::Sessions;
use postern::state::State;
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes --bench; any other argument means a filter for another bench.
    if std::env::args().skip(1).any(|a| a != "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let config = SessionConfig {
            secret: None,
            previous_secrets: Vec::new(),
            idle_timeout: Duration::from_secs(8 * 3600),
            max_lifetime: Duration::from_secs(24 * 3600),
            refresh_before: Duration::from_secs(60),
        };
        let sessions = Sessions::new(State::memory_store(), config, Clock::system());
        let before = rss_kib();
        let n = 100_000u32;
        for i in 0..n {
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
            let identity = Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session);
            let id_token = "x".repeat(1200);
            sessions.create(identity, Some(id_token), Some("r".repeat(900))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib();
        println!(
            "session_memory: {n} sessions: RSS {} MiB before, {} MiB after, {:.1} KiB per session",
            before / 1024,
            after / 1024,
            (after - before) as f64 / f64::from(n)
        );
    });
}
