//! The directory of people and groups provisioned over SCIM, and who is cut off. [`Directory`] keeps an
//! immutable [`View`] for the request path (a lookup per request, no I/O) and serialises writes through the
//! store, where each change and the sessions it ends commit together. [`Directory::check`] is the one question
//! the request path asks: is this identity revoked, and which groups does the directory give it? Fails closed:
//! a revoked identity never passes, whatever its token says.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::identity::Identity;
use crate::scim::ScimError;
use crate::session::StoreError;
use crate::store::{Change, ChangeFn, Committed, DirData, Resource, Revocation, Store, WriteError};

/// `[directory]`, resolved.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// Only identities of this tenant (`tid`) are matched with directory users; `None`: any.
    pub tenant: Option<String>,
    /// Also match `preferred_username`/`upn` with `userName` (Entra's default matching attribute), besides
    /// `oid`/`sub` with `externalId`.
    pub match_user_name: bool,
    /// For users the directory knows, policies see the directory's groups instead of the token's.
    pub groups: bool,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig { tenant: None, match_user_name: true, groups: true }
    }
}

/// What the directory says about an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Not in the directory: the token decides.
    Unknown,
    /// Cut off; the reason (`deactivated`, `deleted`, `disabled-by-admin`).
    Revoked(String),
    /// Known and active; the groups the directory gives (group `externalId`, else id).
    Known(Vec<String>),
}

/// The directory with lookup indexes, as one immutable snapshot.
#[derive(Debug, Default)]
pub struct View {
    /// Users, groups, revocations.
    pub data: Arc<DirData>,
    by_oid: HashMap<String, String>,
    by_name: HashMap<String, String>,
    revoked_oids: HashMap<String, String>,
    revoked_names: HashMap<String, String>,
    groups_of: HashMap<String, Vec<String>>,
}

impl View {
    /// Indexes `data`.
    pub fn new(data: Arc<DirData>) -> View {
        let mut v = View { data: data.clone(), ..View::default() };
        for u in data.users.values() {
            if let Some(x) = u.str_attr("externalId") {
                v.by_oid.insert(x.to_lowercase(), u.id.clone());
            }
            if let Some(n) = u.str_attr("userName") {
                v.by_name.insert(n.to_lowercase(), u.id.clone());
            }
        }
        for r in data.revocations.values() {
            if let Some(o) = &r.oid {
                v.revoked_oids.insert(o.to_lowercase(), r.reason.clone());
            }
            if let Some(n) = &r.user_name {
                v.revoked_names.insert(n.to_lowercase(), r.reason.clone());
            }
        }
        let known: HashSet<&String> = data.users.keys().collect();
        for g in data.groups.values() {
            let key = group_key(g);
            for m in g.member_ids() {
                if known.contains(&m) {
                    v.groups_of.entry(m).or_default().push(key.clone());
                }
            }
        }
        v
    }

    /// The user with this id, `userName` or `externalId` (ignoring case).
    pub fn find_user(&self, name: &str) -> Option<&Arc<Resource>> {
        let lower = name.to_lowercase();
        self.data
            .users
            .get(name)
            .or_else(|| self.by_name.get(&lower).and_then(|id| self.data.users.get(id)))
            .or_else(|| self.by_oid.get(&lower).and_then(|id| self.data.users.get(id)))
    }

    /// What the directory says about `identity` under `config`.
    pub fn check(&self, identity: &Identity, config: &DirectoryConfig) -> Access {
        if let Some(t) = &config.tenant
            && identity.tenant.as_deref().is_none_or(|tid| !tid.eq_ignore_ascii_case(t))
        {
            return Access::Unknown;
        }
        // An empty directory (no SCIM, nothing revoked) knows nobody: no need to fold case to find out.
        if self.by_oid.is_empty()
            && self.by_name.is_empty()
            && self.revoked_oids.is_empty()
            && self.revoked_names.is_empty()
        {
            return Access::Unknown;
        }
        let oid = lowercase(identity.oid.as_deref().unwrap_or(&identity.sub));
        let name = identity.preferred_username.as_deref().filter(|_| config.match_user_name).map(lowercase);
        if let Some(reason) = self.revoked_oids.get(oid.as_ref()) {
            return Access::Revoked(reason.clone());
        }
        if let Some(reason) = name.as_ref().and_then(|n| self.revoked_names.get(n.as_ref())) {
            return Access::Revoked(reason.clone());
        }
        let user = self
            .by_oid
            .get(oid.as_ref())
            .or_else(|| name.as_ref().and_then(|n| self.by_name.get(n.as_ref())))
            .and_then(|id| self.data.users.get(id));
        match user {
            None => Access::Unknown,
            Some(u) if !u.active() => Access::Revoked("deactivated".into()),
            Some(u) => Access::Known(self.groups_of.get(&u.id).cloned().unwrap_or_default()),
        }
    }
}

/// `s` in lower case, copied only when that changes it (object ids and most user names already are).
fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    // `str::to_lowercase` changes nothing exactly when no character has a different lower-case mapping (its one
    // contextual rule, final sigma, concerns an upper-case letter).
    if s.chars().all(|c| {
        let mut lower = c.to_lowercase();
        lower.next() == Some(c) && lower.next().is_none()
    }) {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

/// The name policies use for a group: its `externalId` (Entra's object id), else its SCIM id.
pub fn group_key(g: &Resource) -> String {
    g.str_attr("externalId").unwrap_or(&g.id).to_string()
}

/// The revocation of directory user `u`.
pub fn revocation_of(u: &Resource, reason: &str, by: &str, at: u64) -> Revocation {
    Revocation {
        key: u.id.clone(),
        oid: u.str_attr("externalId").map(str::to_lowercase),
        user_name: u.str_attr("userName").map(str::to_lowercase),
        reason: reason.to_string(),
        by: by.to_string(),
        at,
    }
}

/// Who `u` is, for ending sessions: `externalId` and `userName`.
pub fn session_keys(u: &Resource) -> Vec<String> {
    [u.str_attr("externalId"), u.str_attr("userName")].into_iter().flatten().map(str::to_string).collect()
}

/// The revocation side of a user going from `before` to `after` (`None`: absent): the change's puts and
/// deletes are the caller's; this adds revocations, lifted revocations and ended sessions.
pub fn user_transition(
    data: &DirData,
    before: Option<&Resource>,
    after: Option<&Resource>,
    by: &str,
    now: u64,
    change: &mut Change,
) {
    match (before, after) {
        (_, Some(u)) if !u.active() => {
            change.revoke.push(revocation_of(u, "deactivated", by, now));
            change.end_sessions.extend(session_keys(u));
            if let Some(b) = before {
                change.end_sessions.extend(session_keys(b));
            }
        }
        (_, Some(u)) => {
            // Active (created, enabled, or updated): lift what stood against this person, including a
            // revocation left by an earlier deletion of the same person.
            let oid = u.str_attr("externalId").map(str::to_lowercase);
            let name = u.str_attr("userName").map(str::to_lowercase);
            for r in data.revocations.values() {
                let same = r.key == u.id || (oid.is_some() && r.oid == oid) || (name.is_some() && r.user_name == name);
                if same {
                    change.unrevoke.push(r.key.clone());
                }
            }
        }
        (Some(b), None) => {
            change.revoke.push(revocation_of(b, "deleted", by, now));
            change.end_sessions.extend(session_keys(b));
            // Leave no dangling membership behind.
            for g in data.groups.values() {
                if g.member_ids().contains(&b.id) {
                    let mut g = (**g).clone();
                    if let Some(serde_json::Value::Array(members)) = g.doc.get_mut("members") {
                        members.retain(|m| m.get("value").and_then(|v| v.as_str()) != Some(b.id.as_str()));
                        if members.is_empty() {
                            g.doc.remove("members");
                        }
                    }
                    g.version += 1;
                    g.modified = now;
                    change.put_groups.push(g);
                }
            }
        }
        (None, None) => {}
    }
}

/// The directory.
pub struct Directory {
    store: Arc<dyn Store>,
    view: ArcSwap<View>,
    write: tokio::sync::Mutex<()>,
    config: DirectoryConfig,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.view.load();
        f.debug_struct("Directory")
            .field("users", &v.data.users.len())
            .field("groups", &v.data.groups.len())
            .field("revocations", &v.data.revocations.len())
            .finish()
    }
}

impl Directory {
    /// Reads the directory from `store` (blocking: at start-up).
    pub fn open(store: Arc<dyn Store>, config: DirectoryConfig) -> Result<Directory, StoreError> {
        let data = store.load_directory()?;
        Ok(Directory {
            store,
            view: ArcSwap::from_pointee(View::new(Arc::new(data))),
            write: tokio::sync::Mutex::new(()),
            config,
        })
    }

    /// The current snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// The configuration.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// What the directory says about `identity` now.
    pub fn check(&self, identity: &Identity) -> Access {
        self.view.load().check(identity, &self.config)
    }

    /// Commits the change `f` computes from the current directory; the new snapshot is in place before this
    /// returns, so the next request sees it.
    pub async fn write(&self, f: ChangeFn<ScimError>) -> Result<Committed, WriteError<ScimError>> {
        let _one_at_a_time = self.write.lock().await;
        match self.store.transact(f).await {
            Ok(Ok(committed)) => {
                self.view.store(Arc::new(View::new(committed.data.clone())));
                Ok(committed)
            }
            Ok(Err(e)) => Err(WriteError::Refused(e)),
            Err(e) => Err(WriteError::Store(e)),
        }
    }

    /// Picks up changes another process (the admin CLI) made.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.write.lock().await;
        if let Some(data) = self.store.reload_if_changed().await? {
            self.view.store(Arc::new(View::new(data)));
        }
        Ok(())
    }

    /// Polls for changes made by other processes every `every`, and purges sessions past their lifetime or
    /// unused for `session_idle` once a minute, until the directory is dropped.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration, session_idle: Duration, clock: crate::clock::Clock) {
        let weak: Weak<Directory> = Arc::downgrade(self);
        // A shared store announces changes: re-read at once instead of at the next poll.
        let changes = self.store.changes().unwrap_or_default();
        tokio::spawn(async move {
            let mut ticks = 0u64;
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = changes.notified() => {}
                }
                let Some(dir) = weak.upgrade() else { break };
                // Logged once per outage, not ten times a second.
                match dir.refresh().await {
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "cannot re-read the directory; retrying");
                    }
                    Ok(()) if failing => {
                        failing = false;
                        tracing::warn!("the directory is readable again");
                    }
                    _ => {}
                }
                ticks += 1;
                if ticks.is_multiple_of((60_000 / every.as_millis().max(1) as u64).max(1))
                    && let Err(e) = {
                        let now = clock.now();
                        dir.store.purge_expired(now, now.saturating_sub(session_idle.as_secs())).await
                    }
                {
                    tracing::warn!(error = %e, "cannot purge expired sessions");
                }
            }
        });
    }
}

/// The directory user `name` names: its id, `userName` or `externalId` (ignoring case).
pub fn find_user<'a>(data: &'a DirData, name: &str) -> Option<&'a Arc<Resource>> {
    data.users.get(name).or_else(|| {
        data.users.values().find(|u| {
            u.str_attr("userName").is_some_and(|n| n.eq_ignore_ascii_case(name))
                || u.str_attr("externalId").is_some_and(|x| x.eq_ignore_ascii_case(name))
        })
    })
}

/// Cuts `name` off by hand (admin CLI or API): a directory user is deactivated; anyone else (an object id or
/// user name the directory does not know) gets a revocation of their own. Their sessions end.
pub async fn disable(dir: &Directory, name: &str, by: &str, now: u64) -> Result<Committed, WriteError<ScimError>> {
    let (name, by) = (name.trim().to_string(), by.to_string());
    dir.write(Box::new(move |data: &DirData| {
        if name.is_empty() {
            return Err(ScimError::bad_request("invalidValue", "name a user"));
        }
        let mut change = Change::default();
        match find_user(data, &name) {
            Some(u) => {
                let mut after = (**u).clone();
                after.doc.insert("active".into(), serde_json::Value::Bool(false));
                after.version += u64::from(u.active());
                after.modified = now;
                user_transition(data, Some(u), Some(&after), &by, now, &mut change);
                for r in &mut change.revoke {
                    r.reason = "disabled-by-admin".into();
                }
                change.put_users.push(after);
            }
            None => {
                let lower = name.to_lowercase();
                change.revoke.push(Revocation {
                    key: format!("manual:{lower}"),
                    oid: Some(lower.clone()),
                    user_name: Some(lower),
                    reason: "disabled-by-admin".into(),
                    by: by.clone(),
                    at: now,
                });
                change.end_sessions.push(name.clone());
            }
        }
        Ok(change)
    }))
    .await
}

/// Lets `name` back in: a directory user is activated, and every revocation naming them is lifted.
pub async fn enable(dir: &Directory, name: &str, by: &str, now: u64) -> Result<Committed, WriteError<ScimError>> {
    let (name, by) = (name.trim().to_string(), by.to_string());
    dir.write(Box::new(move |data: &DirData| {
        let lower = name.to_lowercase();
        let mut change = Change::default();
        if let Some(u) = find_user(data, &name) {
            let mut after = (**u).clone();
            after.doc.insert("active".into(), serde_json::Value::Bool(true));
            after.version += u64::from(!u.active());
            after.modified = now;
            user_transition(data, Some(u), Some(&after), &by, now, &mut change);
            change.put_users.push(after);
        }
        for r in data.revocations.values() {
            let named = r.key == format!("manual:{lower}")
                || r.oid.as_deref() == Some(lower.as_str())
                || r.user_name.as_deref() == Some(lower.as_str());
            if named && !change.unrevoke.contains(&r.key) {
                change.unrevoke.push(r.key.clone());
            }
        }
        if change.is_empty() {
            return Err(ScimError::status(
                http::StatusCode::NOT_FOUND,
                format!("{name} is neither a directory user nor disabled"),
            ));
        }
        Ok(change)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Proof;
    use serde_json::json;

    fn res(id: &str, doc: serde_json::Value) -> Resource {
        Resource { id: id.into(), doc: doc.as_object().cloned().unwrap(), created: 1, modified: 1, version: 1 }
    }

    fn identity(claims: serde_json::Value) -> Identity {
        Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Bearer)
    }

    #[test]
    fn known_users_get_the_directory_groups_and_inactive_or_revoked_ones_are_refused() {
        let mut data = DirData::default();
        data.users.insert("u1".into(), Arc::new(res("u1", json!({"userName": "Ann@x.com", "externalId": "OID-1"}))));
        data.users.insert("u2".into(), Arc::new(res("u2", json!({"userName": "bo@x.com", "active": false}))));
        data.groups.insert(
            "g1".into(),
            Arc::new(res("g1", json!({"displayName": "eng", "externalId": "grp-1", "members": [{"value": "u1"}]}))),
        );
        data.revocations.insert(
            "manual:zed".into(),
            Revocation {
                key: "manual:zed".into(),
                oid: Some("oid-z".into()),
                user_name: None,
                reason: "disabled-by-admin".into(),
                by: "cli".into(),
                at: 1,
            },
        );
        let v = View::new(Arc::new(data));
        let c = DirectoryConfig::default();
        assert_eq!(v.check(&identity(json!({"sub": "s", "oid": "oid-1"})), &c), Access::Known(vec!["grp-1".into()]));
        assert_eq!(
            v.check(&identity(json!({"sub": "s", "preferred_username": "ANN@x.com"})), &c),
            Access::Known(vec!["grp-1".into()])
        );
        assert_eq!(
            v.check(&identity(json!({"sub": "s", "preferred_username": "bo@x.com"})), &c),
            Access::Revoked("deactivated".into())
        );
        assert_eq!(v.check(&identity(json!({"sub": "oid-z"})), &c), Access::Revoked("disabled-by-admin".into()));
        assert_eq!(v.check(&identity(json!({"sub": "nobody"})), &c), Access::Unknown);
        let no_names = DirectoryConfig { match_user_name: false, ..c.clone() };
        assert_eq!(
            v.check(&identity(json!({"sub": "s", "preferred_username": "bo@x.com"})), &no_names),
            Access::Unknown
        );
        let tenant = DirectoryConfig { tenant: Some("t1".into()), ..c };
        assert_eq!(v.check(&identity(json!({"sub": "s", "oid": "oid-1", "tid": "t2"})), &tenant), Access::Unknown);
    }
}
