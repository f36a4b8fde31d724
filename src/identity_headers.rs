//! The identity headers an upstream receives for an allowed request: those the route asks for (user, email,
//! preferred username, groups, the signed assertion) and its extra headers.
//!
//! They depend only on the identity, the route and the policy (plus the clock, through the assertion), so
//! they are built once and kept with the identity they describe ([`Memo`]): the next request of the same
//! session or token on the same route sends the same header values again instead of filtering groups, copying
//! every value into a header and looking its assertion up.

use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::header::{HeaderName, HeaderValue};

use crate::authn::Principal;
use crate::clock::UnixTime;
use crate::policy::{Policy, Route};
use crate::state::State;
use crate::upstream::headers as hdr;

/// A set of headers, shared between the requests that send it.
pub type Headers = Arc<[(HeaderName, HeaderValue)]>;

/// How many routes' headers one identity keeps: a person uses a few tools at a time.
const ROUTES_KEPT: usize = 4;

/// The identity headers for a request of `p` on `route`.
pub fn for_request(st: &State, route: &Arc<Route>, p: &Principal) -> Headers {
    let id = p.identity();
    let now = st.clock.now();
    if let Some(headers) = id.memo.get(&st.policy, route, now) {
        return headers;
    }
    let (headers, until) = build(st, route, p);
    // Not kept when there is nothing to reuse: a failed signature (tried again next time).
    if until > now {
        id.memo.put(&st.policy, route, until, headers.clone());
    }
    headers
}

/// Builds the headers, and says until when they may be sent again (the assertion's reuse limit). Groups are
/// limited to those some policy names (and those matching `[upstream] group_filter`), so that a user in
/// hundreds of groups does not produce headers (and assertions) an upstream refuses as too large.
fn build(st: &State, route: &Route, p: &Principal) -> (Headers, UnixTime) {
    let id = p.identity();
    let wanted = route.identity_headers;
    let mut until = UnixTime::MAX;
    let mut out = Vec::with_capacity(5 + route.extra_headers.len());
    let add = |out: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, value: &str| {
        // A claim that is not valid header text is left out rather than mangled.
        if let Ok(v) = HeaderValue::from_str(value) {
            out.push((name, v));
        }
    };
    if wanted.user {
        add(&mut out, hdr::X_FORWARDED_USER, &id.subject);
    }
    if let (true, Some(email)) = (wanted.email, &id.email) {
        add(&mut out, hdr::X_FORWARDED_EMAIL, email);
    }
    if let (true, Some(u)) = (wanted.preferred_username, &id.preferred_username) {
        add(&mut out, hdr::X_FORWARDED_PREFERRED_USERNAME, u);
    }
    let filter = &st.config.upstream.group_filter;
    let groups: Vec<&str> = id
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| st.policy.mentions_group(g) || filter.iter().any(|f| crate::policy::glob(f, g)))
        .collect();
    if wanted.groups && !groups.is_empty() {
        add(&mut out, hdr::X_FORWARDED_GROUPS, &groups.join(","));
    }
    if wanted.assertion {
        match st.assertion.assertion(id, &route.upstream_origin, &groups, &p.reuse_key()) {
            Some((assertion, reuse_until)) => {
                out.push((hdr::X_POSTERN_JWT_ASSERTION, assertion));
                until = reuse_until;
            }
            // Signing failed: nothing to keep.
            None => until = 0,
        }
    }
    for (name, template) in &route.extra_headers {
        if let Some(value) = template.render(id) {
            add(&mut out, name.clone(), &value);
        }
    }
    (out.into(), until)
}

/// The identity headers built for one identity, per route. It belongs to one `Identity` value: a clone starts
/// empty, so an identity that changes (new groups from the directory or Graph, a refresh) never sends headers
/// built for its old self. Entries name their route and policy weakly: a policy reload makes new routes, and
/// headers built under the old policy no longer match.
#[derive(Default)]
pub struct Memo(ArcSwapOption<Vec<Entry>>);

struct Entry {
    // Weak, not raw pointers: the allocation outlives the route, so a new route cannot take its address.
    policy: Weak<Policy>,
    route: Weak<Route>,
    until: UnixTime,
    headers: Headers,
}

impl Entry {
    fn is_for(&self, policy: &Arc<Policy>, route: &Arc<Route>) -> bool {
        std::ptr::eq(self.route.as_ptr(), Arc::as_ptr(route)) && std::ptr::eq(self.policy.as_ptr(), Arc::as_ptr(policy))
    }
}

impl Memo {
    fn get(&self, policy: &Arc<Policy>, route: &Arc<Route>, now: UnixTime) -> Option<Headers> {
        let entries = self.0.load();
        let entry = entries.as_ref()?.iter().find(|e| e.is_for(policy, route))?;
        (now < entry.until).then(|| entry.headers.clone())
    }

    fn put(&self, policy: &Arc<Policy>, route: &Arc<Route>, until: UnixTime, headers: Headers) {
        let old = self.0.load();
        let mut entries = Vec::with_capacity(ROUTES_KEPT);
        entries.push(Entry { policy: Arc::downgrade(policy), route: Arc::downgrade(route), until, headers });
        let others = old.as_ref().into_iter().flat_map(|v| v.iter()).filter(|e| !e.is_for(policy, route));
        entries.extend(others.take(ROUTES_KEPT - 1).map(|e| Entry {
            policy: e.policy.clone(),
            route: e.route.clone(),
            until: e.until,
            headers: e.headers.clone(),
        }));
        // Two requests building at once: the last one's entries win; both sent correct headers.
        self.0.store(Some(Arc::new(entries)));
    }
}

impl Clone for Memo {
    /// Empty: the clone may be changed, and then these headers would not describe it.
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl PartialEq for Memo {
    /// A cache: never part of what an identity is.
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;
    use crate::identity::{Identity, Proof};

    fn policy() -> Arc<Policy> {
        let text = r#"
[[route]]
name = "gitlab"
host = "gitlab.example.com"
upstream = "http://127.0.0.1:8081"
allow = [{ users = ["alice"] }]

[[route]]
name = "jira"
host = "jira.example.com"
upstream = "http://127.0.0.1:8082"
allow = [{ users = ["alice"] }]
"#;
        let (p, _) = crate::policy::load_sources(&[(PathBuf::from("policies/tools.toml"), text.to_string())])
            .expect("the test policy loads");
        Arc::new(p)
    }

    fn headers(user: &str) -> Headers {
        vec![(hdr::X_FORWARDED_USER, HeaderValue::from_str(user).unwrap())].into()
    }

    fn alice() -> Identity {
        Identity::from_claims(json!({"sub": "alice"}).as_object().cloned().unwrap(), Proof::Session)
    }

    #[test]
    fn headers_are_sent_again_for_the_same_route_and_policy_until_their_time() {
        let (policy, id) = (policy(), alice());
        let (gitlab, jira) = (&policy.routes()[0], &policy.routes()[1]);
        assert!(id.memo.get(&policy, gitlab, 100).is_none());
        id.memo.put(&policy, gitlab, 200, headers("alice"));
        let again = id.memo.get(&policy, gitlab, 199).expect("kept");
        assert_eq!(again[0].1, "alice");
        assert!(id.memo.get(&policy, gitlab, 200).is_none(), "not at or past the assertion's reuse limit");
        assert!(id.memo.get(&policy, jira, 100).is_none(), "per route");
    }

    #[test]
    fn a_reloaded_policy_or_a_changed_identity_starts_afresh() {
        let (policy, id) = (policy(), alice());
        let gitlab = &policy.routes()[0];
        id.memo.put(&policy, gitlab, UnixTime::MAX, headers("alice"));
        let reloaded = self::policy();
        assert!(id.memo.get(&reloaded, &reloaded.routes()[0], 100).is_none(), "a reload makes new routes");
        let mut changed = id.clone();
        changed.groups.push("new-group".into());
        assert!(changed.memo.get(&policy, gitlab, 100).is_none(), "a clone carries no headers");
        assert!(id.memo.get(&policy, gitlab, 100).is_some());
    }

    #[test]
    fn with_more_routes_than_are_kept_the_oldest_goes() {
        let policy = policy();
        let id = alice();
        let gitlab = &policy.routes()[0];
        let many: Vec<Arc<Policy>> = (0..ROUTES_KEPT).map(|_| self::policy()).collect();
        id.memo.put(&policy, gitlab, UnixTime::MAX, headers("first"));
        for p in &many {
            id.memo.put(p, &p.routes()[0], UnixTime::MAX, headers("later"));
        }
        assert!(id.memo.get(&policy, gitlab, 1).is_none());
        assert!(many.iter().all(|p| id.memo.get(p, &p.routes()[0], 1).is_some()));
    }
}
