//! The in-memory session store (moka): bounded, each entry dropped at its absolute expiry. Sessions do not
//! survive a restart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::Expiry;
// The synchronous cache: a lookup is a plain call (no future, no async housekeeping on the request's path).
use moka::sync::Cache;

use super::{Session, SessionInfo, SessionStore, StoreFuture, session_belongs_to};
use crate::scim::ScimError;
use crate::store::{ChangeFn, Committed, DirData, Store, session_handle};

/// Sessions and the directory in this process's memory.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    cache: Cache<String, Arc<Session>>,
    directory: Arc<tokio::sync::Mutex<Arc<DirData>>>,
}

struct UntilExpiry;

impl Expiry<String, Arc<Session>> for UntilExpiry {
    fn expire_after_create(&self, _: &String, s: &Arc<Session>, _: Instant) -> Option<Duration> {
        Some(remaining(s))
    }

    fn expire_after_update(&self, _: &String, s: &Arc<Session>, _: Instant, _: Option<Duration>) -> Option<Duration> {
        Some(remaining(s))
    }
}

fn remaining(s: &Session) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // The store drops entries a little after their end; `Sessions` enforces the exact time with its clock.
    Duration::from_secs(s.expires_at.saturating_sub(now) + 60)
}

impl MemoryStore {
    /// A store holding at most `capacity` sessions (the least recently used go first beyond that).
    pub fn new(capacity: u64) -> MemoryStore {
        MemoryStore {
            cache: Cache::builder().max_capacity(capacity).expire_after(UntilExpiry).build(),
            directory: Arc::default(),
        }
    }
}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move { Ok(self.cache.get(id)) })
    }

    fn save<'a>(&'a self, session: Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.cache.insert(session.id.expose().clone(), Arc::new(session));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.cache.invalidate(id);
            Ok(())
        })
    }

    fn delete_by_sid<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            // A scan: front-channel logouts are rare next to requests, and an index would cost every sign-in.
            let ids: Vec<String> =
                self.cache.iter().filter(|(_, s)| s.sid.as_deref() == Some(sid)).map(|(id, _)| (*id).clone()).collect();
            for id in &ids {
                self.cache.invalidate(id);
            }
            Ok(ids.len())
        })
    }

    fn delete_by_user<'a>(&'a self, user: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let ids: Vec<String> =
                self.cache.iter().filter(|(_, s)| session_belongs_to(s, user)).map(|(id, _)| (*id).clone()).collect();
            for id in &ids {
                self.cache.invalidate(id);
            }
            Ok(ids.len())
        })
    }

    fn delete_by_handle<'a>(&'a self, handle: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let ids: Vec<String> =
                self.cache.iter().map(|(id, _)| (*id).clone()).filter(|id| session_handle(id) == handle).collect();
            for id in &ids {
                self.cache.invalidate(id);
            }
            Ok(ids.len())
        })
    }

    fn list<'a>(&'a self, user: Option<&'a str>) -> StoreFuture<'a, Vec<SessionInfo>> {
        Box::pin(async move {
            let mut out: Vec<SessionInfo> = self
                .cache
                .iter()
                .filter(|(_, s)| user.is_none_or(|u| session_belongs_to(s, u)))
                .map(|(_, s)| SessionInfo::of(&s))
                .collect();
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.handle.cmp(&b.handle)));
            Ok(out)
        })
    }
}

impl Store for MemoryStore {
    fn load_directory(&self) -> Result<DirData, super::StoreError> {
        Ok(self.directory.try_lock().map(|d| (**d).clone()).unwrap_or_default())
    }

    fn transact<'a>(&'a self, f: ChangeFn<ScimError>) -> StoreFuture<'a, Result<Committed, ScimError>> {
        Box::pin(async move {
            let mut current = self.directory.lock().await;
            let change = match f(&current) {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            let mut next = (**current).clone();
            next.apply(&change);
            let next = Arc::new(next);
            *current = next.clone();
            let mut sessions_ended = 0;
            for user in &change.end_sessions {
                sessions_ended += self.delete_by_user(user).await?;
            }
            Ok(Ok(Committed { data: next, sessions_ended, change }))
        })
    }

    fn reload_if_changed<'a>(&'a self) -> StoreFuture<'a, Option<Arc<DirData>>> {
        Box::pin(async { Ok(None) })
    }

    fn purge_expired<'a>(&'a self, now: u64, idle_before: u64) -> StoreFuture<'a, usize> {
        // moka drops each entry at its absolute expiry by itself; sessions ended by the idle timeout would
        // otherwise stay until then.
        Box::pin(async move {
            let ended: Vec<Arc<String>> = self
                .cache
                .iter()
                .filter(|(_, s)| s.expires_at <= now || s.last_seen <= idle_before)
                .map(|(id, _)| id)
                .collect();
            for id in &ended {
                self.cache.invalidate(id.as_str());
            }
            Ok(ended.len())
        })
    }
}

#[cfg(test)]
pub(crate) mod conformance {
    //! The behaviour every `SessionStore` backend must show.

    use super::*;
    use crate::clock::Clock;
    use crate::config::SessionConfig;
    use crate::identity::{Identity, Proof};
    use crate::session::Sessions;

    fn config() -> SessionConfig {
        SessionConfig {
            secret: None,
            previous_secrets: Vec::new(),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(60),
        }
    }

    fn identity() -> Identity {
        let claims = serde_json::json!({"sub": "s", "oid": "o", "exp": 1, "sid": "sid-1"});
        Identity::from_claims(claims.as_object().cloned().unwrap_or_default(), Proof::Session)
    }

    /// Runs the suite against a fresh store.
    pub async fn run(store: Arc<dyn Store>) {
        let clock = Clock::system();
        let sessions = Sessions::new(store.clone(), config(), clock.clone());
        // create → get
        let s = sessions.create(identity(), Some("idt".into()), Some("rt".into())).await.unwrap();
        let got = sessions.get(s.id.expose()).await.unwrap().expect("saved session loads");
        assert_eq!(got.identity.subject, "o");
        assert_eq!(got.sid.as_deref(), Some("sid-1"));
        assert_eq!(got.refresh_token.as_ref().map(|t| t.expose().as_str()), Some("rt"));
        // unknown ids are absent, not errors
        assert!(sessions.get("no-such-ticket").await.unwrap().is_none());
        // update replaces
        let mut changed = (*got).clone();
        changed.refresh_token = Some(crate::secret::Secret::new("rt2".into()));
        sessions.update(changed).await.unwrap();
        let got = sessions.get(s.id.expose()).await.unwrap().unwrap();
        assert_eq!(got.refresh_token.as_ref().map(|t| t.expose().as_str()), Some("rt2"));
        // idle timeout
        clock.advance(601);
        assert!(sessions.get(s.id.expose()).await.unwrap().is_none(), "idle session ended");
        assert!(store.load(s.id.expose()).await.unwrap().is_none(), "and removed from the store");
        // absolute lifetime, even when used
        let s = sessions.create(identity(), None, None).await.unwrap();
        for _ in 0..8 {
            clock.advance(500);
            if clock.now() < s.expires_at {
                assert!(sessions.get(s.id.expose()).await.unwrap().is_some());
            }
        }
        assert!(sessions.get(s.id.expose()).await.unwrap().is_none(), "session past max lifetime ended");
        // end by provider session id: exactly the sessions carrying that sid
        let a = sessions.create(identity(), None, None).await.unwrap();
        let b = sessions.create(identity(), None, None).await.unwrap();
        let other = {
            let claims = serde_json::json!({"sub": "t", "sid": "sid-2", "exp": 1});
            Identity::from_claims(claims.as_object().cloned().unwrap_or_default(), Proof::Session)
        };
        let c = sessions.create(other, None, None).await.unwrap();
        assert_eq!(sessions.end_by_sid("sid-1").await.unwrap(), 2);
        assert!(sessions.get(a.id.expose()).await.unwrap().is_none());
        assert!(sessions.get(b.id.expose()).await.unwrap().is_none());
        assert!(sessions.get(c.id.expose()).await.unwrap().is_some());
        // delete
        let s = sessions.create(identity(), None, None).await.unwrap();
        sessions.end(s.id.expose()).await.unwrap();
        assert!(sessions.get(s.id.expose()).await.unwrap().is_none());
        sessions.end(s.id.expose()).await.unwrap();
        // purging: a session unused since before the cut-off goes, a recent one stays
        let abandoned = sessions.create(identity(), None, None).await.unwrap();
        clock.advance(300);
        let recent = sessions.create(identity(), None, None).await.unwrap();
        let now = clock.now();
        assert!(store.purge_expired(now, now - 200).await.unwrap() >= 1);
        assert!(store.load(abandoned.id.expose()).await.unwrap().is_none(), "the abandoned session is purged");
        assert!(store.load(recent.id.expose()).await.unwrap().is_some(), "the recent one stays");
        assert_eq!(store.purge_expired(now, now - 200).await.unwrap(), 0, "nothing more to purge");
    }

    #[tokio::test]
    async fn memory_store_conforms() {
        run(Arc::new(MemoryStore::new(1000))).await;
        crate::store::conformance::run(Arc::new(MemoryStore::new(1000)), None).await;
    }
}
