//! The cost of a session lookup on the request path, per store backend: the in-memory store and the durable
//! SQLite store (a read on the blocking pool, then opening the sealed record). Also the cost of a save, which
//! waits for the disk. Run: `cargo bench --bench session_store`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern::clock::Clock;
use postern::config::SessionConfig;
use postern::identity::{Identity, Proof};
use postern::session::{SessionStore, Sessions};
use postern::store::sqlite::SqliteStore;
use serde_json::json;

fn identity(i: u32) -> Identity {
    let claims = json!({
        "iss": "https://login.microsoftonline.com/8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a/v2.0",
        "sub": format!("AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bb{i:08}"),
        "oid": format!("00000000-0000-0000-66f3-{i:012}"),
        "tid": "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a",
        "name": format!("User {i}"), "preferred_username": format!("user{i}@example.com"),
        "groups": ["5b1c3d2e-0000-0000-0000-000000000001", "9e2a4f6b-0000-0000-0000-000000000002"],
        "amr": ["pwd", "mfa"], "exp": 1_800_003_600u64,
    });
    Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session)
}

async fn measure(name: &str, store: Arc<dyn SessionStore>) {
    let config = SessionConfig {
        secret: None,
        previous_secrets: Vec::new(),
        idle_timeout: Duration::from_secs(8 * 3600),
        max_lifetime: Duration::from_secs(24 * 3600),
        refresh_before: Duration::from_secs(60),
    };
    let sessions = Sessions::new(store, config, Clock::system());
    let n = 200u32;
    let started = Instant::now();
    let mut tickets = Vec::new();
    for i in 0..n {
        let s = sessions.create(identity(i), Some("x".repeat(1200)), Some("r".repeat(900))).await.unwrap();
        tickets.push(s.id.expose().clone());
    }
    let save = started.elapsed() / n;
    let rounds = 20_000usize;
    let started = Instant::now();
    for i in 0..rounds {
        assert!(sessions.get(&tickets[i % tickets.len()]).await.unwrap().is_some());
    }
    let get = started.elapsed() / rounds as u32;
    println!("session_store {name}: get {get:?} per lookup, save {save:?} per sign-in");
}

fn main() {
    if std::env::args().skip(1).any(|a| a != "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        measure("memory", postern::state::State::memory_store()).await;
        let path = std::env::temp_dir().join(format!("postern-bench-{}.db", std::process::id()));
        measure("sqlite", Arc::new(SqliteStore::open(&path, &[7; 32]).unwrap())).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    });
}
