//! Sessions: the server-side record behind a session cookie, the [`SessionStore`] trait its backends implement,
//! and [`Sessions`], which applies the idle timeout and absolute lifetime. The cookie holds only an opaque
//! ticket; tokens and claims stay on the server. Never logs a ticket or a token.

pub mod cookie;
pub mod memory;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, UnixTime};
use crate::config::SessionConfig;
use crate::identity::Identity;
use crate::secret::{Secret, random_token};

/// A signed-in browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The ticket: 256 random bits, carried (encrypted) in the cookie.
    pub id: Secret<String>,
    /// Who signed in.
    pub identity: Identity,
    /// The ID token, for `id_token_hint` at sign-out.
    pub id_token: Option<Secret<String>>,
    /// The refresh token, when the provider gave one.
    pub refresh_token: Option<Secret<String>>,
    /// Sign-in time.
    pub created_at: UnixTime,
    /// Last use (updated at most once a minute).
    pub last_seen: UnixTime,
    /// Absolute end: sign-in time plus the maximum lifetime.
    pub expires_at: UnixTime,
    /// The provider's session id (`sid`), for front-channel logout.
    pub sid: Option<String>,
}

/// A store failure. Callers fail closed: no session.
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// A boxed future returned by store methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where sessions live. Every backend passes the same conformance tests.
pub trait SessionStore: Send + Sync + Debug {
    /// The session with this id, if it exists and has not reached `expires_at`.
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<Session>>>;
    /// Creates or replaces a session.
    fn save<'a>(&'a self, session: Session) -> StoreFuture<'a, ()>;
    /// Removes a session; removing a missing one is not an error.
    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()>;
    /// Removes every session created by the provider session `sid`; returns how many.
    fn delete_by_sid<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, usize>;
    /// Removes every session of `user` (see [`session_belongs_to`]); returns how many.
    fn delete_by_user<'a>(&'a self, user: &'a str) -> StoreFuture<'a, usize>;
    /// Removes the session with this handle ([`crate::store::session_handle`]); returns how many (0 or 1).
    fn delete_by_handle<'a>(&'a self, handle: &'a str) -> StoreFuture<'a, usize>;
    /// The sessions, of `user` only when given, newest first.
    fn list<'a>(&'a self, user: Option<&'a str>) -> StoreFuture<'a, Vec<SessionInfo>>;
}

/// What an admin sees of a session: never its ticket or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The handle ([`crate::store::session_handle`]), for `postern sessions revoke --session`.
    pub handle: String,
    /// The user's stable id (`oid`, else `sub`).
    pub subject: String,
    /// `preferred_username` (or `upn`).
    pub user_name: Option<String>,
    /// Sign-in time.
    pub created_at: UnixTime,
    /// Last use.
    pub last_seen: UnixTime,
    /// Absolute end.
    pub expires_at: UnixTime,
}

impl SessionInfo {
    /// The admin's view of `session`.
    pub fn of(session: &Session) -> SessionInfo {
        SessionInfo {
            handle: crate::store::session_handle(session.id.expose()),
            subject: session.identity.subject.clone(),
            user_name: session.identity.preferred_username.clone(),
            created_at: session.created_at,
            last_seen: session.last_seen,
            expires_at: session.expires_at,
        }
    }
}

/// True when `user` names the person of `session`: their `oid`/`sub` or their user name, ignoring case.
pub fn session_belongs_to(session: &Session, user: &str) -> bool {
    let id = &session.identity;
    id.subject.eq_ignore_ascii_case(user)
        || id.sub.eq_ignore_ascii_case(user)
        || id.preferred_username.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(user))
}

/// Session lifecycle over a store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    config: SessionConfig,
    clock: Clock,
}

/// Touch the session at most this often: an idle timeout in hours doesn't need second precision, and a write
/// per request would cost more than the request.
const TOUCH_EVERY: u64 = 60;

impl Sessions {
    /// Sessions in `store`.
    pub fn new(store: Arc<dyn SessionStore>, config: SessionConfig, clock: Clock) -> Sessions {
        Sessions { store, config, clock }
    }

    /// The timeouts.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Creates and saves a session for a new sign-in.
    pub async fn create(
        &self,
        identity: Identity,
        id_token: Option<String>,
        refresh_token: Option<String>,
    ) -> Result<Session, StoreError> {
        let now = self.clock.now();
        let sid = identity.claims.get("sid").and_then(|v| v.as_str()).map(str::to_string);
        let session = Session {
            id: Secret::new(random_token(32)),
            identity,
            id_token: id_token.map(Secret::new),
            refresh_token: refresh_token.map(Secret::new),
            created_at: now,
            last_seen: now,
            expires_at: now + self.config.max_lifetime.as_secs(),
            sid,
        };
        self.store.save(session.clone()).await?;
        Ok(session)
    }

    /// The live session for a ticket: `None` when missing, idle too long, or past its lifetime (and then it
    /// is removed).
    pub async fn get(&self, ticket: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(session) = self.store.load(ticket).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        if now >= session.expires_at || now.saturating_sub(session.last_seen) >= self.config.idle_timeout.as_secs() {
            self.store.delete(ticket).await?;
            return Ok(None);
        }
        if now.saturating_sub(session.last_seen) >= TOUCH_EVERY {
            let mut touched = (*session).clone();
            touched.last_seen = now;
            // A touch that fails (a shared store gone away during its grace) only leaves the idle clock
            // running from the last touch, which is stricter: the session itself was read and is live.
            if let Err(e) = self.store.save(touched.clone()).await {
                tracing::warn!(error = %e, "cannot record a session's use");
                return Ok(Some(session));
            }
            return Ok(Some(Arc::new(touched)));
        }
        Ok(Some(session))
    }

    /// Replaces a session (after a refresh).
    pub async fn update(&self, session: Session) -> Result<(), StoreError> {
        self.store.save(session).await
    }

    /// Ends a session.
    pub async fn end(&self, ticket: &str) -> Result<(), StoreError> {
        self.store.delete(ticket).await
    }

    /// Ends every session of the provider session `sid` (front-channel logout).
    pub async fn end_by_sid(&self, sid: &str) -> Result<usize, StoreError> {
        self.store.delete_by_sid(sid).await
    }

    /// The session cookie's lifetime in the browser: the session's remaining absolute lifetime.
    pub fn cookie_max_age(&self, session: &Session) -> std::time::Duration {
        std::time::Duration::from_secs(session.expires_at.saturating_sub(self.clock.now()))
    }
}
