//! Where Postern keeps what must outlive a request: sessions, the directory provisioned over SCIM (users,
//! groups, memberships) and revocations. [`Store`] is what every backend implements; [`open`] picks the
//! backend from `[store]`. Backends: [`sqlite::SqliteStore`] (the default: durable, every acknowledged write
//! is on disk, shared safely with the admin CLI in another process) and the in-memory
//! [`crate::session::memory::MemoryStore`] (tests and `postern demo`) and [`redis::RedisStore`] (several
//! replicas sharing one truth). Never stores a ticket or a token in
//! clear: sessions are keyed by a hash of their ticket and their secrets are sealed.

pub mod redis;
pub mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::session::{SessionStore, StoreError, StoreFuture};

/// `[store]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// SQLite database at this path.
    Embedded(PathBuf),
    /// In memory: nothing survives a restart.
    Memory,
    /// Redis (or Valkey), shared by several replicas.
    Redis(redis::RedisConfig),
}

/// Labels of a store call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct StoreOpLabels {
    /// What the call was for (`load a session`, `write the directory`, ...): a fixed set from the code.
    pub op: &'static str,
}

/// What a networked store counts: failed calls by operation, and how long calls take.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    /// `postern_store_errors_total{op}`
    pub errors: prometheus_client::metrics::family::Family<StoreOpLabels, prometheus_client::metrics::counter::Counter>,
    /// `postern_store_call_duration_seconds`
    pub latency: prometheus_client::metrics::histogram::Histogram,
}

impl StoreMetrics {
    /// Empty counters.
    pub fn new() -> StoreMetrics {
        StoreMetrics {
            errors: Default::default(),
            latency: prometheus_client::metrics::histogram::Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.0,
            ]),
        }
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics::new()
    }
}

/// A SCIM resource (a user or a group) as stored: the attributes as the client sent them (normalised), and
/// the server's own metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// The server-assigned id.
    pub id: String,
    /// The attributes, without `id` and `meta`.
    pub doc: Map<String, Value>,
    /// Creation time (seconds since the epoch).
    pub created: u64,
    /// Last change.
    pub modified: u64,
    /// Revision, the `meta.version` ETag; starts at 1 and grows by one per change.
    pub version: u64,
}

impl Resource {
    /// A string attribute, looked up case-insensitively.
    pub fn str_attr(&self, name: &str) -> Option<&str> {
        self.doc.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
    }

    /// `active`: true unless set to false.
    pub fn active(&self) -> bool {
        !matches!(self.doc.iter().find(|(k, _)| k.eq_ignore_ascii_case("active")), Some((_, Value::Bool(false))))
    }

    /// The ids in `members` (groups).
    pub fn member_ids(&self) -> Vec<String> {
        match self.doc.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")) {
            Some((_, Value::Array(items))) => {
                items.iter().filter_map(|m| m.get("value").and_then(Value::as_str)).map(str::to_string).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A person cut off: their sessions ended and their tokens refused until they are enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The directory user's id, or `manual:<name>` for someone the directory does not know.
    pub key: String,
    /// Object id (or `sub`) matched against tokens, lower-cased.
    pub oid: Option<String>,
    /// User name matched against `preferred_username`/`upn`, lower-cased.
    pub user_name: Option<String>,
    /// `deactivated`, `deleted` or `disabled-by-admin`.
    pub reason: String,
    /// Which call did it (`PATCH /Users/<id>`, `postern users disable`, ...).
    pub by: String,
    /// When.
    pub at: u64,
}

/// The whole directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirData {
    /// Users by id (shared, so that a copy of the directory is cheap).
    pub users: BTreeMap<String, Arc<Resource>>,
    /// Groups by id.
    pub groups: BTreeMap<String, Arc<Resource>>,
    /// Revocations by key.
    pub revocations: BTreeMap<String, Revocation>,
}

/// One atomic change to the directory, with the sessions it ends.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Users created or replaced.
    pub put_users: Vec<Resource>,
    /// Users removed.
    pub delete_users: Vec<String>,
    /// Groups created or replaced.
    pub put_groups: Vec<Resource>,
    /// Groups removed.
    pub delete_groups: Vec<String>,
    /// Revocations added or replaced.
    pub revoke: Vec<Revocation>,
    /// Revocations lifted (by key).
    pub unrevoke: Vec<String>,
    /// People whose sessions end (matched as [`crate::session::session_belongs_to`] does).
    pub end_sessions: Vec<String>,
}

impl Change {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.put_users.is_empty()
            && self.delete_users.is_empty()
            && self.put_groups.is_empty()
            && self.delete_groups.is_empty()
            && self.revoke.is_empty()
            && self.unrevoke.is_empty()
            && self.end_sessions.is_empty()
    }
}

impl DirData {
    /// Applies `change` in memory.
    pub fn apply(&mut self, change: &Change) {
        for u in &change.put_users {
            self.users.insert(u.id.clone(), Arc::new(u.clone()));
        }
        for id in &change.delete_users {
            self.users.remove(id);
        }
        for g in &change.put_groups {
            self.groups.insert(g.id.clone(), Arc::new(g.clone()));
        }
        for id in &change.delete_groups {
            self.groups.remove(id);
        }
        for key in &change.unrevoke {
            self.revocations.remove(key);
        }
        for r in &change.revoke {
            self.revocations.insert(r.key.clone(), r.clone());
        }
    }
}

/// Computes a change from the current directory, or refuses with an error of the caller's own.
pub type ChangeFn<E> = Box<dyn FnOnce(&DirData) -> Result<Change, E> + Send>;

/// What a committed change did.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The directory after the change.
    pub data: Arc<DirData>,
    /// How many sessions ended.
    pub sessions_ended: usize,
    /// What changed.
    pub change: Change,
}

/// Why a directory write did not happen.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The change function refused.
    Refused(E),
    /// The store failed; nothing was written.
    Store(StoreError),
}

/// A backend: sessions plus the directory, changed together atomically.
pub trait Store: SessionStore {
    /// Reads the whole directory (blocking; at start-up).
    fn load_directory(&self) -> Result<DirData, StoreError>;

    /// In one transaction: reads the current directory (re-reading it if another process changed it), calls
    /// `f`, writes what it returns and ends the sessions it names. Either all of it happens or none.
    fn transact<'a>(
        &'a self,
        f: ChangeFn<crate::scim::ScimError>,
    ) -> StoreFuture<'a, Result<Committed, crate::scim::ScimError>>;

    /// The directory, if another process changed it since this one last read or wrote it.
    fn reload_if_changed<'a>(&'a self) -> StoreFuture<'a, Option<Arc<DirData>>>;

    /// Removes sessions past their absolute end at `now`, and those last seen at or before `idle_before`
    /// (ended by the idle timeout: nobody will use them again); returns how many.
    fn purge_expired<'a>(&'a self, now: u64, idle_before: u64) -> StoreFuture<'a, usize>;

    /// Why the store cannot serve now, when it cannot (`/readyz`). Embedded stores are always there.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// The store's own metrics, when it makes network calls.
    fn metrics(&self) -> Option<StoreMetrics> {
        None
    }

    /// Takes the refresh lock of the session with ticket `id` for `ttl`: `Some(token)` when this caller is the
    /// one to refresh, `None` when another replica is refreshing it now. Stores of one process need no lock
    /// (the process coalesces its own refreshes).
    fn lock_refresh<'a>(&'a self, _id: &'a str, _ttl: std::time::Duration) -> StoreFuture<'a, Option<String>> {
        Box::pin(async { Ok(Some(String::new())) })
    }

    /// Releases a refresh lock taken with `token`.
    fn unlock_refresh<'a>(&'a self, _id: &'a str, _token: String) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Notified when another process changed the directory, so that [`Store::reload_if_changed`] is called at
    /// once rather than at the next poll.
    fn changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// The session as stored now, bypassing any local cache.
    fn load_fresh<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<crate::session::Session>>> {
        self.load(id)
    }

    /// A value another replica remembered under `key` with [`Store::remember`]; stores of one process share
    /// nothing (the process has its own caches).
    fn recall<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async { Ok(None) })
    }

    /// Remembers `value` under `key` for every replica, for `ttl`.
    fn remember<'a>(&'a self, _key: &'a str, _value: Vec<u8>, _ttl: std::time::Duration) -> StoreFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// Opens the store `config` names; `keys[0]` (the session key) seals the secrets of sessions at rest, and
/// every key (the previous session keys too) opens them.
pub fn open(config: &StoreConfig, keys: &[&[u8]]) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        StoreConfig::Memory => Ok(Arc::new(crate::session::memory::MemoryStore::new(1_000_000))),
        StoreConfig::Embedded(path) => Ok(Arc::new(sqlite::SqliteStore::open_with_keys(path, keys)?)),
        // Sealed with each session's own ticket, not with `key`.
        StoreConfig::Redis(c) => Ok(Arc::new(redis::RedisStore::open(c)?)),
    }
}

/// The handle of a session: a hash of its ticket, safe to show to admins and to keep in the store (a handle
/// cannot be turned back into a ticket, and a ticket is what a cookie carries).
pub fn session_handle(ticket: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ticket.as_bytes());
    digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The directory behaviour every [`Store`] backend must show (the session part is in
    //! `session::memory::conformance`, run against every backend too).

    use super::*;
    use crate::clock::Clock;
    use crate::config::SessionConfig;
    use crate::identity::{Identity, Proof};
    use crate::scim::ScimError;
    use crate::session::Sessions;

    fn user(id: &str, name: &str, oid: &str) -> Resource {
        let doc = serde_json::json!({"userName": name, "externalId": oid, "active": true});
        Resource {
            id: id.into(),
            doc: doc.as_object().cloned().unwrap_or_default(),
            created: 1,
            modified: 1,
            version: 1,
        }
    }

    fn session_config() -> SessionConfig {
        SessionConfig {
            secret: None,
            previous_secrets: Vec::new(),
            idle_timeout: std::time::Duration::from_secs(600),
            max_lifetime: std::time::Duration::from_secs(3600),
            refresh_before: std::time::Duration::from_secs(60),
        }
    }

    fn identity(oid: &str, upn: &str) -> Identity {
        let claims = serde_json::json!({"sub": "s", "oid": oid, "preferred_username": upn, "exp": 1});
        Identity::from_claims(claims.as_object().cloned().unwrap_or_default(), Proof::Session)
    }

    /// Runs the directory suite against a fresh store; `reopen` opens the same store again (a restart), when
    /// the backend is durable.
    pub async fn run(store: Arc<dyn Store>, reopen: Option<Box<dyn Fn() -> Arc<dyn Store>>>) {
        assert_eq!(store.load_directory().unwrap(), DirData::default());
        let sessions = Sessions::new(store.clone(), session_config(), Clock::system());
        let a = sessions.create(identity("oid-a", "a@example.com"), None, Some("rt".into())).await.unwrap();
        let b = sessions.create(identity("oid-b", "b@example.com"), None, None).await.unwrap();

        // A committed change is visible and ends exactly the sessions it names.
        let done = store
            .transact(Box::new(|d: &DirData| {
                assert!(d.users.is_empty());
                Ok(Change {
                    put_users: vec![user("u1", "a@example.com", "oid-a"), user("u2", "b@example.com", "oid-b")],
                    revoke: vec![Revocation {
                        key: "u1".into(),
                        oid: Some("oid-a".into()),
                        user_name: Some("a@example.com".into()),
                        reason: "deactivated".into(),
                        by: "test".into(),
                        at: 5,
                    }],
                    end_sessions: vec!["OID-A".into()],
                    ..Change::default()
                })
            }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.sessions_ended, 1);
        assert_eq!(done.data.users.len(), 2);
        assert!(sessions.get(a.id.expose()).await.unwrap().is_none(), "a's session ended");
        assert!(sessions.get(b.id.expose()).await.unwrap().is_some(), "b's session lives");

        // A refused change writes nothing, sessions included.
        let refused =
            store.transact(Box::new(|_: &DirData| Err(ScimError::bad_request("invalidValue", "no")))).await.unwrap();
        assert!(refused.is_err());
        assert_eq!(store.load_directory().unwrap(), *done.data);

        // Sessions by user, listing, and by handle.
        let listed = store.list(Some("B@example.com")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, session_handle(b.id.expose()));
        assert_eq!(listed[0].subject, "oid-b");
        assert_eq!(store.list(None).await.unwrap().len(), 1);
        assert_eq!(store.delete_by_handle(&listed[0].handle).await.unwrap(), 1);
        assert!(sessions.get(b.id.expose()).await.unwrap().is_none());

        // Deletes and unrevokes.
        let done = store
            .transact(Box::new(|_: &DirData| {
                Ok(Change { delete_users: vec!["u2".into()], unrevoke: vec!["u1".into()], ..Change::default() })
            }))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.data.users.keys().collect::<Vec<_>>(), ["u1"]);
        assert!(done.data.revocations.is_empty());
        assert!(store.reload_if_changed().await.unwrap().is_none(), "our own writes are not news");

        if let Some(reopen) = reopen {
            let c = sessions
                .create(identity("oid-c", "c@example.com"), Some("idt".into()), Some("rt-c".into()))
                .await
                .unwrap();
            drop(sessions);
            drop(store);
            let again = reopen();
            assert_eq!(again.load_directory().unwrap(), *done.data, "the directory survives a restart");
            let sessions = Sessions::new(again, session_config(), Clock::system());
            let back = sessions.get(c.id.expose()).await.unwrap().expect("the session survives a restart");
            assert_eq!(back.refresh_token.as_ref().map(|t| t.expose().as_str()), Some("rt-c"));
        }
    }
}
