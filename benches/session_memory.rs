//! Memory of 100,000 live sessions with Entra-shaped identities (claims, groups, an ID token and a refresh
//! token each): Postern's RSS before and after, in the default store (`embedded`: the SQLite file, with its
//! bounded cache of recently used sessions) after every session was created and then used once, and in the
//! in-memory store. Each store is measured in a child process of its own, so one does not inherit the
//! other's heap. Run: `cargo bench --bench session_memory`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{identity, session_config};

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern::clock::Clock;
use postern::session::{SessionStore, Sessions};
use postern::state::State;
use postern::store::sqlite::SqliteStore;

const SESSIONS: u32 = 100_000;
const STORE_VAR: &str = "POSTERN_BENCH_SESSION_STORE";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Creates the sessions in `store` (64 sign-ins at a time), then looks each one up once.
async fn measure(name: &str, store: Arc<dyn SessionStore>) {
    let config = session_config();
    let sessions = Arc::new(Sessions::new(store, config, Clock::system()));
    let before = rss_kib();
    let started = Instant::now();
    let mut tickets = Vec::with_capacity(SESSIONS as usize);
    for chunk in (0..SESSIONS).collect::<Vec<_>>().chunks(64) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let s = sessions.create(identity(i), Some("x".repeat(1200)), Some("r".repeat(900))).await;
                    s.unwrap().id.expose().clone()
                })
            })
            .collect();
        for t in tasks {
            tickets.push(t.await.unwrap());
        }
    }
    let created = started.elapsed();
    for t in &tickets {
        assert!(sessions.get(t).await.unwrap().is_some(), "every session is there");
    }
    drop(tickets);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "session_memory {name}: {SESSIONS} sessions (created in {:.0?}, each used once): RSS {} MiB before, {} MiB after, {:.1} KiB per session",
        created,
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) as f64 / f64::from(SESSIONS)
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument means a filter for another bench.
    if std::env::args().skip(1).any(|a| a != "--bench") {
        return;
    }
    let Ok(which) = std::env::var(STORE_VAR) else {
        for which in ["embedded", "memory"] {
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .arg("--bench")
                .env(STORE_VAR, which)
                .status()
                .unwrap();
            assert!(status.success(), "the {which} measurement failed");
        }
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        if which == "memory" {
            measure("memory", State::memory_store()).await;
            return;
        }
        let dir = std::env::temp_dir().join(format!("postern-session-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("postern.db"), &[7; 32]).unwrap();
        measure("embedded (default)", Arc::new(store)).await;
        let size: u64 = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
        println!("session_memory embedded (default): database file and WAL {} MiB on disk", size >> 20);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
