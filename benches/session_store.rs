//! The cost of a session lookup on the request path, per store backend: the in-memory store and the durable
//! SQLite store (a read on the blocking pool, then opening the sealed record). Also the cost of a save, which
//! waits for the disk. Run: `cargo bench --bench session_store`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::{identity, session_config};

use std::sync::Arc;
use std::time::Instant;

use postern::clock::Clock;
use postern::session::{SessionStore, Sessions};
use postern::store::sqlite::SqliteStore;

async fn measure(name: &str, store: Arc<dyn SessionStore>) {
    let config = session_config();
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
