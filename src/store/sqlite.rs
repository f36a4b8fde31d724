//! The durable store: one SQLite file in WAL mode with `synchronous = FULL`, so a write is on disk before it is
//! acknowledged and survives `kill -9` and power loss. Other processes (the admin CLI) may open the same file
//! at the same time; a directory write starts with `BEGIN IMMEDIATE` and re-reads the directory when someone
//! else changed it, so no write is lost to a stale copy. Sessions are keyed by a hash of their ticket and
//! stored sealed (AES-256-GCM under the session key, bound to their row). All calls run on tokio's blocking
//! pool. Sessions read are kept in an in-process cache, so the request path costs a hash and a lookup, not a
//! database read (about 40 µs): every change this process makes updates or clears it, and when another
//! process (the admin CLI) commits, the directory poller's `reload_if_changed` clears it. Never logs a
//! session's content.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{ChangeFn, Committed, DirData, Resource, Revocation, Store, session_handle};
use crate::scim::ScimError;
use crate::session::cookie::CookieCodec;
use crate::session::{Session, SessionInfo, SessionStore, StoreError, StoreFuture};

/// Connections used for reads; SQLite in WAL mode lets them read while one writes.
const READERS: usize = 4;

/// The session cache's bound, in (estimated) bytes: with about 7 KiB an Entra session, some 5,500 sessions
/// used in the last quarter hour stay in memory; the others cost a database read (about 40 µs) when they come
/// back. This keeps Postern's memory flat however many sessions the file holds.
const CACHE_BYTES: u64 = 40 << 20;

/// The SQLite store. Cloning shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    sealer: CookieCodec,
    /// Sessions by handle, as last read or written by this process.
    cache: moka::sync::Cache<String, Arc<Session>>,
    /// Bumped (under the write lock) whenever sessions are removed; a read fills the cache only when no
    /// removal happened since it started, so an ended session is never put back.
    generation: std::sync::RwLock<u64>,
}

struct Writer {
    conn: Connection,
    /// `PRAGMA data_version` when this process last read the directory: it changes when another connection
    /// commits.
    seen_version: i64,
    /// The directory as of `seen_version`, so that a write need not read it all again.
    data: Option<Arc<DirData>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

fn err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{context}: {e}"))
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| err(&format!("cannot open {}", path.display()), e))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|e| err("busy_timeout", e))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(|e| err(&format!("cannot set up {}", path.display()), e))?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    handle TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    sub TEXT NOT NULL,
    user_name TEXT,
    sid TEXT,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    sealed TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_subject ON sessions (subject);
CREATE INDEX IF NOT EXISTS sessions_user_name ON sessions (user_name);
CREATE INDEX IF NOT EXISTS sessions_sid ON sessions (sid);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, resource TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, resource TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (key TEXT PRIMARY KEY, revocation TEXT NOT NULL);
";

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| err("store task", e))?
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`; `key` (at least 32 bytes) seals sessions.
    pub fn open(path: &Path, key: &[u8]) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_keys(path, &[key])
    }

    /// Opens the database at `path`; `keys[0]` seals sessions, every key opens them (key rotation).
    pub fn open_with_keys(path: &Path, keys: &[&[u8]]) -> Result<SqliteStore, StoreError> {
        if keys.first().is_none_or(|k| k.len() < 32) {
            return Err(StoreError("the session key must have at least 32 bytes".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&format!("cannot create {}", dir.display()), e))?;
        }
        let conn = connect(path)?;
        conn.execute_batch(SCHEMA).map_err(|e| err(&format!("cannot create the tables in {}", path.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Sessions are sealed, but the directory is personal data: owner only.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        let readers = (0..READERS).map(|_| connect(path).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        let seen_version = data_version(&conn)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(Writer { conn, seen_version, data: None }),
                readers,
                next_reader: AtomicUsize::new(0),
                sealer: CookieCodec::new(keys, true),
                cache: moka::sync::Cache::builder()
                    .weigher(|_, s: &Arc<Session>| estimated_size(s))
                    .max_capacity(CACHE_BYTES)
                    .time_to_idle(Duration::from_secs(15 * 60))
                    .build(),
                generation: std::sync::RwLock::new(0),
            }),
        })
    }
}

/// A session's memory, estimated: its tokens, its claims (held twice: as claims and as the identity's
/// fields), and the allocations around them.
fn estimated_size(s: &Session) -> u32 {
    fn value(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::String(s) => 32 + s.len(),
            serde_json::Value::Array(a) => 32 + a.iter().map(value).sum::<usize>(),
            serde_json::Value::Object(o) => 32 + o.iter().map(|(k, v)| 64 + k.len() + value(v)).sum::<usize>(),
            _ => 32,
        }
    }
    let tokens =
        s.id_token.as_ref().map_or(0, |t| t.expose().len()) + s.refresh_token.as_ref().map_or(0, |t| t.expose().len());
    let claims: usize = s.identity.claims.iter().map(|(k, v)| 64 + k.len() + value(v)).sum();
    u32::try_from(1024 + tokens + 2 * claims).unwrap_or(u32::MAX)
}

fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(|e| err("data_version", e))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves SQLite consistent (its transaction rolls back).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn generation(&self) -> u64 {
        *self.generation.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Caches `session` unless sessions were removed since `seen` (then the next read goes to the database).
    fn cache_if_current(&self, handle: String, session: Arc<Session>, seen: u64) {
        let g = self.generation.read().unwrap_or_else(|p| p.into_inner());
        if *g == seen {
            self.cache.insert(handle, session);
        }
    }

    /// After removing sessions from the database: forget cached ones (`None`: all of them).
    fn forget(&self, handle: Option<&str>) {
        let mut g = self.generation.write().unwrap_or_else(|p| p.into_inner());
        *g += 1;
        match handle {
            Some(h) => self.cache.invalidate(h),
            None => self.cache.invalidate_all(),
        }
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(c) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return c;
            }
        }
        lock(&self.readers[start % self.readers.len()])
    }

    fn seal(&self, handle: &str, session: &Session) -> Result<String, StoreError> {
        let json = serde_json::to_string(session).map_err(|e| err("cannot encode a session", e))?;
        self.sealer
            .seal_for(&format!("postern-session:{handle}"), &json)
            .ok_or_else(|| StoreError("cannot seal".into()))
    }

    fn open_sealed(&self, handle: &str, sealed: &str) -> Option<Session> {
        let json = self.sealer.open_for(&format!("postern-session:{handle}"), sealed)?;
        serde_json::from_str(&json).ok()
    }
}

fn read_directory(conn: &Connection) -> Result<DirData, StoreError> {
    let mut data = DirData::default();
    let mut stmt = conn.prepare("SELECT resource FROM users").map_err(|e| err("read users", e))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| err("read users", e))?;
    for row in rows {
        let r: Resource = serde_json::from_str(&row.map_err(|e| err("read users", e))?)
            .map_err(|e| err("a stored user is damaged", e))?;
        data.users.insert(r.id.clone(), Arc::new(r));
    }
    let mut stmt = conn.prepare("SELECT resource FROM groups").map_err(|e| err("read groups", e))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| err("read groups", e))?;
    for row in rows {
        let r: Resource = serde_json::from_str(&row.map_err(|e| err("read groups", e))?)
            .map_err(|e| err("a stored group is damaged", e))?;
        data.groups.insert(r.id.clone(), Arc::new(r));
    }
    let mut stmt = conn.prepare("SELECT revocation FROM revocations").map_err(|e| err("read revocations", e))?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| err("read revocations", e))?;
    for row in rows {
        let r: Revocation = serde_json::from_str(&row.map_err(|e| err("read revocations", e))?)
            .map_err(|e| err("a stored revocation is damaged", e))?;
        data.revocations.insert(r.key.clone(), r);
    }
    Ok(data)
}

const DELETE_BY_USER: &str =
    "DELETE FROM sessions WHERE subject = lower(?1) OR sub = lower(?1) OR user_name = lower(?1)";

impl SessionStore for SqliteStore {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<Session>>> {
        let inner = self.inner.clone();
        let handle = session_handle(id);
        Box::pin(async move {
            if let Some(s) = inner.cache.get(&handle) {
                return Ok(Some(s));
            }
            blocking(move || {
                let seen = inner.generation();
                let sealed: Option<String> = inner
                    .reader()
                    .query_row("SELECT sealed FROM sessions WHERE handle = ?1", [&handle], |r| r.get(0))
                    .optional()
                    .map_err(|e| err("load a session", e))?;
                // A session that does not open (sealed under another key) is no session.
                let session = sealed.and_then(|s| inner.open_sealed(&handle, &s)).map(Arc::new);
                if let Some(s) = &session {
                    inner.cache_if_current(handle, s.clone(), seen);
                }
                Ok(session)
            })
            .await
        })
    }

    fn save<'a>(&'a self, session: Session) -> StoreFuture<'a, ()> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            let seen = inner.generation();
            let handle = session_handle(session.id.expose());
            let sealed = inner.seal(&handle, &session)?;
            let id = &session.identity;
            let args = params![
                handle,
                id.subject,
                id.sub,
                id.preferred_username,
                session.sid,
                session.created_at as i64,
                session.last_seen as i64,
                session.expires_at as i64,
                sealed
            ];
            // A new sign-in inserts; a later save (use, refresh) only updates, so that a session ended meanwhile
            // (revoked by an admin, say) is not brought back.
            let sql = if session.last_seen == session.created_at {
                "INSERT OR REPLACE INTO sessions (handle, subject, sub, user_name, sid, created_at, last_seen, expires_at, sealed) VALUES (?1, lower(?2), lower(?3), lower(?4), ?5, ?6, ?7, ?8, ?9)"
            } else {
                "UPDATE sessions SET subject = lower(?2), sub = lower(?3), user_name = lower(?4), sid = ?5, created_at = ?6, last_seen = ?7, expires_at = ?8, sealed = ?9 WHERE handle = ?1"
            };
            let written = lock(&inner.writer).conn.execute(sql, args).map_err(|e| err("save a session", e))?;
            if written > 0 {
                inner.cache_if_current(handle, Arc::new(session), seen);
            }
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        let handle = session_handle(id);
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            lock(&inner.writer)
                .conn
                .execute("DELETE FROM sessions WHERE handle = ?1", [&handle])
                .map_err(|e| err("delete a session", e))?;
            inner.forget(Some(&handle));
            Ok(())
        }))
    }

    fn delete_by_sid<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, usize> {
        let inner = self.inner.clone();
        let sid = sid.to_string();
        Box::pin(blocking(move || {
            let n = lock(&inner.writer)
                .conn
                .execute("DELETE FROM sessions WHERE sid = ?1", [sid])
                .map_err(|e| err("delete sessions", e))?;
            inner.forget(None);
            Ok(n)
        }))
    }

    fn delete_by_user<'a>(&'a self, user: &'a str) -> StoreFuture<'a, usize> {
        let inner = self.inner.clone();
        let user = user.to_string();
        Box::pin(blocking(move || {
            let n = lock(&inner.writer).conn.execute(DELETE_BY_USER, [user]).map_err(|e| err("delete sessions", e))?;
            inner.forget(None);
            Ok(n)
        }))
    }

    fn delete_by_handle<'a>(&'a self, handle: &'a str) -> StoreFuture<'a, usize> {
        let inner = self.inner.clone();
        let handle = handle.to_ascii_lowercase();
        Box::pin(blocking(move || {
            let n = lock(&inner.writer)
                .conn
                .execute("DELETE FROM sessions WHERE handle = ?1", [&handle])
                .map_err(|e| err("delete a session", e))?;
            inner.forget(Some(&handle));
            Ok(n)
        }))
    }

    fn list<'a>(&'a self, user: Option<&'a str>) -> StoreFuture<'a, Vec<SessionInfo>> {
        let inner = self.inner.clone();
        let user = user.map(str::to_string);
        Box::pin(blocking(move || {
            let conn = inner.reader();
            let mut stmt = conn
                .prepare(
                    "SELECT handle, subject, user_name, created_at, last_seen, expires_at FROM sessions
                     WHERE ?1 IS NULL OR subject = lower(?1) OR sub = lower(?1) OR user_name = lower(?1)
                     ORDER BY created_at DESC, handle",
                )
                .map_err(|e| err("list sessions", e))?;
            let rows = stmt
                .query_map([user], |r| {
                    Ok(SessionInfo {
                        handle: r.get(0)?,
                        subject: r.get(1)?,
                        user_name: r.get(2)?,
                        created_at: r.get::<_, i64>(3)? as u64,
                        last_seen: r.get::<_, i64>(4)? as u64,
                        expires_at: r.get::<_, i64>(5)? as u64,
                    })
                })
                .map_err(|e| err("list sessions", e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| err("list sessions", e))
        }))
    }
}

impl Store for SqliteStore {
    fn load_directory(&self) -> Result<DirData, StoreError> {
        let mut w = lock(&self.inner.writer);
        let data = read_directory(&w.conn)?;
        w.seen_version = data_version(&w.conn)?;
        w.data = Some(Arc::new(data.clone()));
        Ok(data)
    }

    fn transact<'a>(&'a self, f: ChangeFn<ScimError>) -> StoreFuture<'a, Result<Committed, ScimError>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            let mut w = lock(&inner.writer);
            let (cached, seen) = (w.data.clone(), w.seen_version);
            let tx = w.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| err("begin", e))?;
            // The write lock is held, so what `f` sees is what it changes: the copy this process has, unless
            // another process committed since, and then the file's.
            let mut data = match cached {
                Some(d) if data_version(&tx)? == seen => (*d).clone(),
                _ => read_directory(&tx)?,
            };
            let change = match f(&data) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            for u in &change.put_users {
                tx.execute("INSERT OR REPLACE INTO users (id, resource) VALUES (?1, ?2)", params![u.id, enc(u)?])
                    .map_err(|e| err("write a user", e))?;
            }
            for id in &change.delete_users {
                tx.execute("DELETE FROM users WHERE id = ?1", [id]).map_err(|e| err("delete a user", e))?;
            }
            for g in &change.put_groups {
                tx.execute("INSERT OR REPLACE INTO groups (id, resource) VALUES (?1, ?2)", params![g.id, enc(g)?])
                    .map_err(|e| err("write a group", e))?;
            }
            for id in &change.delete_groups {
                tx.execute("DELETE FROM groups WHERE id = ?1", [id]).map_err(|e| err("delete a group", e))?;
            }
            for key in &change.unrevoke {
                tx.execute("DELETE FROM revocations WHERE key = ?1", [key]).map_err(|e| err("lift a revocation", e))?;
            }
            for r in &change.revoke {
                tx.execute(
                    "INSERT OR REPLACE INTO revocations (key, revocation) VALUES (?1, ?2)",
                    params![r.key, enc(r)?],
                )
                .map_err(|e| err("write a revocation", e))?;
            }
            let mut sessions_ended = 0;
            for user in &change.end_sessions {
                sessions_ended += tx.execute(DELETE_BY_USER, [user]).map_err(|e| err("end sessions", e))?;
            }
            tx.commit().map_err(|e| err("commit", e))?;
            if !change.end_sessions.is_empty() {
                inner.forget(None);
            }
            w.seen_version = data_version(&w.conn)?;
            data.apply(&change);
            let data = Arc::new(data);
            w.data = Some(data.clone());
            Ok(Ok(Committed { data, sessions_ended, change }))
        }))
    }

    fn reload_if_changed<'a>(&'a self) -> StoreFuture<'a, Option<Arc<DirData>>> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            let mut w = lock(&inner.writer);
            let version = data_version(&w.conn)?;
            if version == w.seen_version {
                return Ok(None);
            }
            // Another process committed: it may have ended sessions this process has cached.
            inner.forget(None);
            let tx = w.conn.transaction().map_err(|e| err("begin", e))?;
            let data = read_directory(&tx)?;
            let version = data_version(&tx)?;
            drop(tx);
            let data = Arc::new(data);
            w.seen_version = version;
            w.data = Some(data.clone());
            Ok(Some(data))
        }))
    }

    fn purge_expired<'a>(&'a self, now: u64, idle_before: u64) -> StoreFuture<'a, usize> {
        let inner = self.inner.clone();
        Box::pin(blocking(move || {
            let writer = lock(&inner.writer);
            let mut stmt = writer
                .conn
                .prepare("DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen <= ?2 RETURNING handle")
                .map_err(|e| err("purge sessions", e))?;
            let purged = stmt
                .query_map(params![now as i64, idle_before as i64], |row| row.get::<_, String>(0))
                .and_then(Iterator::collect::<Result<Vec<String>, _>>)
                .map_err(|e| err("purge sessions", e))?;
            // Only the purged sessions leave the cache: the sessions in use stay where the request path finds
            // them.
            for handle in &purged {
                inner.forget(Some(handle));
            }
            Ok(purged.len())
        }))
    }
}

/// JSON text of a stored record.
fn enc<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| err("encode", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "postern-sqlite-{label}-{}-{}.db",
            std::process::id(),
            crate::secret::random_token(6)
        ))
    }

    #[tokio::test]
    async fn sqlite_store_conforms() {
        let path = temp_path("sessions");
        crate::session::memory::conformance::run(Arc::new(SqliteStore::open(&path, &[9; 32]).unwrap())).await;
        let path2 = temp_path("directory");
        let reopen_path = path2.clone();
        crate::store::conformance::run(
            Arc::new(SqliteStore::open(&path2, &[9; 32]).unwrap()),
            Some(Box::new(move || Arc::new(SqliteStore::open(&reopen_path, &[9; 32]).unwrap()) as Arc<dyn Store>)),
        )
        .await;
        for p in [path, path2] {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
        }
    }

    #[tokio::test]
    async fn writes_from_two_processes_on_one_file_lose_nothing() {
        let path = temp_path("two-writers");
        let a = SqliteStore::open(&path, &[7; 32]).unwrap();
        let b = SqliteStore::open(&path, &[7; 32]).unwrap();
        a.load_directory().unwrap();
        b.load_directory().unwrap();
        let put = |store: &SqliteStore, id: &'static str| {
            let store = store.clone();
            async move {
                store
                    .transact(Box::new(move |d: &DirData| {
                        let mut r = Resource {
                            id: id.into(),
                            doc: serde_json::Map::new(),
                            created: 1,
                            modified: 1,
                            version: 1,
                        };
                        r.doc.insert("seen".into(), serde_json::json!(d.users.len()));
                        Ok(crate::store::Change { put_users: vec![r], ..Default::default() })
                    }))
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        put(&a, "u1").await;
        put(&b, "u2").await;
        let last = put(&a, "u3").await;
        assert_eq!(last.data.users.keys().collect::<Vec<_>>(), ["u1", "u2", "u3"], "a saw b's write");
        assert_eq!(last.data.users["u3"].doc["seen"], 2);
        assert_eq!(b.load_directory().unwrap().users.len(), 3);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn a_session_ended_by_another_process_is_forgotten_and_a_late_touch_does_not_bring_it_back() {
        let path = temp_path("two-processes");
        let server = SqliteStore::open(&path, &[7; 32]).unwrap();
        let cli = SqliteStore::open(&path, &[7; 32]).unwrap();
        let claims = serde_json::json!({"sub": "s", "oid": "o", "exp": 1});
        let identity = crate::identity::Identity::from_claims(
            claims.as_object().cloned().unwrap(),
            crate::identity::Proof::Session,
        );
        let session = Session {
            id: crate::secret::Secret::new("ticket".into()),
            identity,
            id_token: None,
            refresh_token: None,
            created_at: 10,
            last_seen: 10,
            expires_at: u64::MAX / 4,
            sid: None,
        };
        server.save(session.clone()).await.unwrap();
        assert!(server.load("ticket").await.unwrap().is_some(), "read, and cached");

        assert_eq!(cli.delete_by_user("O").await.unwrap(), 1);
        assert!(server.reload_if_changed().await.unwrap().is_some(), "the poller notices the other process");
        assert!(server.load("ticket").await.unwrap().is_none(), "and the cached session is forgotten");

        let mut touched = session;
        touched.last_seen = 70;
        server.save(touched).await.unwrap();
        assert!(server.load("ticket").await.unwrap().is_none());
        assert!(cli.load("ticket").await.unwrap().is_none(), "not back in the file either");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[tokio::test]
    async fn sessions_are_sealed_at_rest_and_keyed_by_a_hash_of_their_ticket() {
        let path = temp_path("sealed");
        let store = SqliteStore::open(&path, &[7; 32]).unwrap();
        let claims = serde_json::json!({"sub": "s", "oid": "o", "exp": 1});
        let identity = crate::identity::Identity::from_claims(
            claims.as_object().cloned().unwrap(),
            crate::identity::Proof::Session,
        );
        let session = Session {
            id: crate::secret::Secret::new("the-ticket-value".into()),
            identity,
            id_token: Some(crate::secret::Secret::new("the-id-token".into())),
            refresh_token: Some(crate::secret::Secret::new("the-refresh-token".into())),
            created_at: 1,
            last_seen: 1,
            expires_at: u64::MAX / 4,
            sid: None,
        };
        store.save(session).await.unwrap();
        drop(store);
        let bytes = std::fs::read(&path).unwrap_or_default();
        let wal = std::fs::read(format!("{}-wal", path.display())).unwrap_or_default();
        for secret in ["the-ticket-value", "the-id-token", "the-refresh-token"] {
            let found = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found(&bytes) && !found(&wal), "{secret} is in the database file");
        }
        // Another key opens nothing; after a rotation, the old key as a previous one still does.
        let other = SqliteStore::open(&path, &[8; 32]).unwrap();
        assert!(other.load("the-ticket-value").await.unwrap().is_none());
        let rotated = SqliteStore::open_with_keys(&path, &[&[8; 32], &[7; 32]]).unwrap();
        assert!(rotated.load("the-ticket-value").await.unwrap().is_some());
        let same = SqliteStore::open(&path, &[7; 32]).unwrap();
        assert!(same.load("the-ticket-value").await.unwrap().is_some());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
