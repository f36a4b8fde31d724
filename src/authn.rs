//! Step 3 of the request path: who sent this request? A bearer header is judged on the token alone; otherwise
//! the session cookie, refreshed with the refresh token shortly before the tokens expire (a failed refresh ends
//! the session). Fails closed: any error means no identity.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::directory::Access;
use crate::identity::{Identity, Proof};
use crate::jwt::TokenError;
use crate::metrics::OutcomeLabels;
use crate::policy::Route;
use crate::session::Session;
use crate::state::State;

/// The proven principal of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A signed-in browser.
    Session(Arc<Session>),
    /// A valid bearer token.
    Bearer(Arc<Identity>),
}

impl Principal {
    /// The identity.
    pub fn identity(&self) -> &Identity {
        match self {
            Principal::Session(s) => &s.identity,
            Principal::Bearer(i) => i,
        }
    }

    /// A key under which the identity assertion for this principal may be reused. It includes the groups,
    /// which the directory may change during a session: an assertion never outlives a group change.
    pub fn reuse_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.identity().groups.hash(&mut h);
        let groups = h.finish();
        match self {
            Principal::Session(s) => format!("s:{}:{groups:x}", s.id.expose()),
            Principal::Bearer(i) => format!("b:{}:{}:{}:{groups:x}", i.issuer, i.subject, i.expires_at),
        }
    }
}

/// The outcome of authentication.
#[derive(Debug)]
pub enum Authn {
    /// Proven.
    Principal(Principal),
    /// Nothing presented (or a session that has ended).
    Anonymous,
    /// A bearer token was presented and refused.
    BearerRefused(TokenError),
    /// A bearer token was presented to a route that accepts sessions only.
    BearerNotAccepted,
    /// A session cookie was presented but the store cannot say whether it is live: fail closed with a 503
    /// rather than send a signed-in user to sign in again.
    StoreUnavailable,
}

/// The bearer token in `Authorization`, if the scheme is Bearer.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates a request for `route`.
pub async fn authenticate(st: &State, headers: &HeaderMap, route: &Route, request_id: &str) -> Authn {
    if headers.contains_key(AUTHORIZATION)
        && let Some(token) = bearer_token(headers)
    {
        if !route.accepts_bearer {
            return Authn::BearerNotAccepted;
        }
        return match st.bearer.validate(token, route.audiences.as_deref()).await {
            // The verified-token cache remembers signatures, not permission: the directory is asked every time.
            Ok(identity) => match st.directory.check(&identity) {
                Access::Revoked(reason) => {
                    tracing::info!(target: "audit", request_id, event = "bearer-refused", subject = %identity.subject, reason = %reason, "bearer token of a revoked user refused");
                    Authn::BearerRefused(TokenError::Revoked)
                }
                Access::Known(groups) if st.directory.config().groups && groups != identity.groups => Authn::Principal(
                    with_graph_groups(
                        st,
                        Principal::Bearer(Arc::new(Identity { groups, ..(*identity).clone() })),
                        request_id,
                    )
                    .await,
                ),
                _ => Authn::Principal(with_graph_groups(st, Principal::Bearer(identity), request_id).await),
            },
            Err(e) => Authn::BearerRefused(e),
        };
    }
    if !route.accepts_session {
        return Authn::Anonymous;
    }
    let Some(ticket) = st.cookies.session_ticket(headers) else {
        return Authn::Anonymous;
    };
    let session = match st.sessions.get(&ticket).await {
        Ok(Some(s)) => s,
        Ok(None) => return Authn::Anonymous,
        Err(e) => {
            tracing::error!(request_id, error = %e, "session store failed; refusing the request");
            return Authn::StoreUnavailable;
        }
    };
    let session = match refresh_if_due(st, session, request_id).await {
        Refreshed::Live(s) => s,
        Refreshed::Ended => return Authn::Anonymous,
        Refreshed::StoreUnavailable => return Authn::StoreUnavailable,
    };
    match st.directory.check(&session.identity) {
        Access::Revoked(reason) => {
            tracing::info!(target: "audit", request_id, event = "session-ended", subject = %session.identity.subject, reason = "user-revoked", revocation = %reason, "session of a revoked user ended");
            let _ = st.sessions.end(&ticket).await;
            Authn::Anonymous
        }
        Access::Known(groups) if st.directory.config().groups && groups != session.identity.groups => {
            let mut s = (*session).clone();
            s.identity.groups = groups;
            Authn::Principal(with_graph_groups(st, Principal::Session(Arc::new(s)), request_id).await)
        }
        _ => Authn::Principal(with_graph_groups(st, Principal::Session(session), request_id).await),
    }
}

/// The principal with its groups from Microsoft Graph when its token reported a group overage (or Graph is the
/// configured source of groups). The lookup is cached per user; on failure the groups stay unresolved and
/// every rule that needs them fails closed (`groups-unavailable`). Sessions keep the token's groups: the
/// cache, not the session, decides how fresh the looked-up groups are.
pub async fn with_graph_groups(st: &State, p: Principal, request_id: &str) -> Principal {
    let Some(graph) = &st.graph else { return p };
    let id = p.identity();
    if !graph.needs_lookup(id) {
        return p;
    }
    let mut resolved = id.clone();
    let lookup = match id.oid.as_deref() {
        // Boxed for the same reason as the refresh: a rare, large future.
        Some(oid) => Box::pin(graph.groups(id.tenant.as_deref(), oid)).await,
        None => Err(crate::graph::GraphError::NoObjectId),
    };
    match lookup {
        Ok(groups) => {
            resolved.groups = groups.to_vec();
            resolved.groups_unresolved = false;
        }
        Err(e) => {
            tracing::warn!(request_id, subject = %id.subject, reason = e.code(), error = %e, "cannot look up groups in Microsoft Graph; rules on groups fail closed");
            resolved.groups_unresolved = true;
        }
    }
    match p {
        Principal::Session(s) => Principal::Session(Arc::new(Session { identity: resolved, ..(*s).clone() })),
        Principal::Bearer(_) => Principal::Bearer(Arc::new(resolved)),
    }
}

/// What [`refresh_if_due`] made of a session.
enum Refreshed {
    Live(Arc<Session>),
    Ended,
    StoreUnavailable,
}

/// How long one replica may hold a session's refresh lock: longer than a token request takes.
const REFRESH_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes the session's tokens when they expire within `refresh_before`; `Ended` ends the session. In this
/// process concurrent requests of one session refresh once (`st.refreshes`); across replicas a lock in the
/// store makes one refresh and the others wait for, and reuse, its result, so a refresh token is spent once.
async fn refresh_if_due(st: &State, session: Arc<Session>, request_id: &str) -> Refreshed {
    let now = st.clock.now();
    let due = now + st.sessions.config().refresh_before.as_secs() >= session.identity.expires_at;
    let Some(refresh_token) = session.refresh_token.as_ref().filter(|_| due).cloned() else {
        // Without a refresh token, the session lives by its own idle timeout and lifetime.
        return Refreshed::Live(session);
    };
    let ticket = session.id.expose().clone();
    // Boxed: the refresh (token endpoint, ID-token check, store lock) makes a large future; inline, every
    // request's future would carry (and move) its space although a refresh is rare.
    let refreshed = Box::pin(st.refreshes.try_get_with(ticket.clone(), async {
        let token = match st.store.lock_refresh(&ticket, REFRESH_LOCK_TTL).await {
            Ok(Some(token)) => token,
            Ok(None) => {
                tracing::info!(request_id, "another replica is refreshing this session; waiting for its result");
                return wait_for_other_refresh(st, &session).await;
            }
            Err(_) => return Err("session-store-failed"),
        };
        let result = refresh_now(st, &session, refresh_token.expose()).await;
        if let Err(e) = st.store.unlock_refresh(&ticket, token).await {
            tracing::warn!(error = %e, "cannot release a refresh lock; it expires by itself");
        }
        result
    }))
    .await;
    match refreshed {
        Ok(s) => {
            st.metrics.refreshes.get_or_create(&OutcomeLabels { outcome: "success", reason: "ok" }).inc();
            tracing::debug!(request_id, subject = %s.identity.subject, "session refreshed");
            Refreshed::Live(s)
        }
        Err(reason) if *reason == "session-store-failed" => {
            st.metrics.refreshes.get_or_create(&OutcomeLabels { outcome: "failure", reason: *reason }).inc();
            tracing::error!(request_id, subject = %session.identity.subject, "the store failed during a refresh; refusing the request");
            Refreshed::StoreUnavailable
        }
        Err(reason) => {
            st.metrics.refreshes.get_or_create(&OutcomeLabels { outcome: "failure", reason: *reason }).inc();
            tracing::info!(target: "audit", request_id, event = "session-ended", subject = %session.identity.subject, reason = *reason, "refresh failed; session ended");
            if *reason != "session-ended-elsewhere" {
                let _ = st.sessions.end(&ticket).await;
            }
            Refreshed::Ended
        }
    }
}

/// Spends the refresh token and saves the refreshed session.
async fn refresh_now(st: &State, session: &Session, refresh_token: &str) -> Result<Arc<Session>, &'static str> {
    let tokens = st.provider.refresh(refresh_token).await.map_err(|e| e.code())?;
    let mut updated = session.clone();
    if let Some(id_token) = tokens.id_token {
        let claims = st.provider.verify_id_token(&id_token, None).await.map_err(|e| e.code())?;
        let identity = Identity::from_claims(claims, Proof::Session);
        // OpenID Connect Core §12.2: a refreshed ID token must be about the same user.
        if identity.sub != session.identity.sub || identity.issuer != session.identity.issuer {
            return Err("refresh-subject-changed");
        }
        updated.identity = identity;
        updated.id_token = Some(crate::secret::Secret::new(id_token));
    } else if let Some(expires_in) = tokens.expires_in {
        updated.identity.expires_at = st.clock.now() + expires_in;
    }
    if let Some(rt) = tokens.refresh_token {
        updated.refresh_token = Some(crate::secret::Secret::new(rt));
    }
    st.sessions.update(updated.clone()).await.map_err(|_| "session-store-failed")?;
    Ok(Arc::new(updated))
}

/// Another replica holds the refresh lock: wait for the session it saves and use that.
async fn wait_for_other_refresh(st: &State, session: &Session) -> Result<Arc<Session>, &'static str> {
    let ticket = session.id.expose();
    let deadline = tokio::time::Instant::now() + REFRESH_LOCK_TTL;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        match st.store.load_fresh(ticket).await {
            Ok(Some(now)) => {
                let changed = now.identity.expires_at != session.identity.expires_at
                    || now.refresh_token.as_ref().map(|t| t.expose())
                        != session.refresh_token.as_ref().map(|t| t.expose());
                if changed {
                    return Ok(now);
                }
            }
            // The other replica's refresh failed and ended the session.
            Ok(None) => return Err("session-ended-elsewhere"),
            Err(_) => return Err("session-store-failed"),
        }
    }
    Err("refresh-lock-timeout")
}
