//! Policies: which routes exist, where they go, and who may pass. `load` compiles policy files (pure, every
//! problem with its file, line and column); `eval` decides (pure: no I/O, no async). A deny is a [`Decision`],
//! never an error.

pub mod cases;
mod eval;
pub mod explain;
mod load;
pub mod model;
pub mod path;

pub(crate) use eval::glob;
pub use eval::{Decision, decide, holds};
pub use load::{load_dir, load_sources};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use url::Url;

use crate::identity::Proof;

/// A compiled set of policy files: routes indexed by host, then by path.
#[derive(Debug, Default)]
pub struct Policy {
    routes: Vec<Arc<Route>>,
    exact_hosts: HashMap<String, Vec<usize>>,
    /// `(".example.com", routes)`, longest suffix first.
    wildcard_hosts: Vec<(String, Vec<usize>)>,
    any_host: Vec<usize>,
    /// Every group id some rule names: the only groups worth sending upstream.
    mentioned_groups: std::collections::HashSet<String>,
    /// The `[groups]` aliases: alias → group id.
    groups: BTreeMap<String, String>,
}

/// One route.
#[derive(Debug)]
pub struct Route {
    /// Unique name.
    pub name: Arc<str>,
    /// Host pattern.
    pub host: HostPattern,
    /// Normalised path prefix.
    pub path: String,
    /// Methods covered; `None`: all.
    pub methods: Option<Vec<Method>>,
    /// Upstream base URL.
    pub upstream: Url,
    /// `scheme://host[:port]` of the upstream: the identity assertion's audience.
    pub upstream_origin: String,
    /// Keep the client's `Host`.
    pub preserve_host: bool,
    /// Time for the upstream to start answering (`None`: the config's default).
    pub timeout: Option<Duration>,
    /// Largest request body in bytes, when the route sets one (else `[limits] max_request_body`).
    pub max_body: Option<u64>,
    /// Browser sessions accepted.
    pub accepts_session: bool,
    /// Bearer tokens accepted.
    pub accepts_bearer: bool,
    /// No sign-in needed.
    pub public: bool,
    /// Bearer audiences this route accepts (`None`: the issuer's).
    pub audiences: Option<Vec<String>>,
    /// Identity headers sent to the upstream.
    pub identity_headers: IdentityHeaders,
    /// Extra request headers built from the identity.
    pub extra_headers: Vec<(http::HeaderName, HeaderTemplate)>,
    /// Alternatives that allow.
    pub allow: Vec<Rule>,
    /// Alternatives that deny, checked first.
    pub deny: Vec<Rule>,
    /// Where the route is defined: `policies/gitlab.toml:12`.
    pub location: String,
}

/// Which identity headers a route sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// `X-Forwarded-User`
    pub user: bool,
    /// `X-Forwarded-Email`
    pub email: bool,
    /// `X-Forwarded-Preferred-Username`
    pub preferred_username: bool,
    /// `X-Forwarded-Groups`
    pub groups: bool,
    /// `X-Postern-Jwt-Assertion`
    pub assertion: bool,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders { user: true, email: true, preferred_username: true, groups: true, assertion: true }
    }
}

/// A header value built from the identity: literal text and placeholders such as `{claims.department}`,
/// `{user}`, `{email}`, `{preferred_username}`, `{tenant}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate(pub Vec<TemplatePart>);

/// A piece of a [`HeaderTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text as written.
    Literal(String),
    /// The stable subject.
    User,
    /// Email.
    Email,
    /// Preferred username.
    PreferredUsername,
    /// Tenant id.
    Tenant,
    /// A claim's value (strings as they are, other JSON values as JSON; arrays joined with commas).
    Claim(String),
}

impl HeaderTemplate {
    /// The value for `identity`; `None` when a placeholder has no value (the header is then left out).
    pub fn render(&self, id: &crate::identity::Identity) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                TemplatePart::Literal(t) => out.push_str(t),
                TemplatePart::User => out.push_str(&id.subject),
                TemplatePart::Email => out.push_str(id.email.as_deref()?),
                TemplatePart::PreferredUsername => out.push_str(id.preferred_username.as_deref()?),
                TemplatePart::Tenant => out.push_str(id.tenant.as_deref()?),
                TemplatePart::Claim(name) => match id.claims.get(name)? {
                    serde_json::Value::String(s) => out.push_str(s),
                    serde_json::Value::Array(items) => {
                        let parts: Vec<String> = items
                            .iter()
                            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                            .collect();
                        out.push_str(&parts.join(","));
                    }
                    serde_json::Value::Null => return None,
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Some(out)
    }
}

/// How a route's host is matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// This host only (lower case, no port, no trailing dot).
    Exact(String),
    /// Any subdomain of this suffix: `*.example.com` is stored as `.example.com`.
    Wildcard(String),
    /// Any host.
    Any,
}

/// One `allow` or `deny` entry: all conditions must hold.
#[derive(Debug)]
pub struct Rule {
    /// `policies/gitlab.toml:14 allow[0]`: where it is written.
    pub label: Arc<str>,
    /// The conditions, all of which must hold.
    pub conditions: Vec<Condition>,
}

/// One condition of a rule.
#[derive(Debug)]
pub enum Condition {
    /// Any of these group ids.
    Groups(Vec<String>),
    /// Any of these subjects or object ids.
    Users(Vec<String>),
    /// Any of these app roles.
    Roles(Vec<String>),
    /// Any of these scopes.
    Scopes(Vec<String>),
    /// Any of these issuers.
    Issuer(Vec<String>),
    /// Any of these tenants.
    Tenant(Vec<String>),
    /// The claim's value (or one of its values, for an array claim) matches one of the patterns.
    Claim {
        /// Claim name.
        name: String,
        /// Exact values, or globs with `*`.
        patterns: Vec<String>,
    },
    /// Any of these email addresses, verified (`email_verified` or Entra's `xms_edov` is true).
    Emails(Vec<String>),
    /// `amr` contains `mfa`, or `acr` is one of these values.
    Mfa(Vec<String>),
    /// Proven this way.
    Auth(Proof),
    /// An Entra guest (`true`) or member (`false`).
    Guest(bool),
}

impl Condition {
    /// The condition's kind, as reason codes name it (`groups` → `groups-unauthorized`).
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Groups(_) => "groups",
            Condition::Users(_) => "users",
            Condition::Roles(_) => "roles",
            Condition::Scopes(_) => "scopes",
            Condition::Issuer(_) => "issuer",
            Condition::Tenant(_) => "tenant",
            Condition::Claim { .. } => "claims",
            Condition::Emails(_) => "emails",
            Condition::Mfa(_) => "mfa",
            Condition::Auth(_) => "auth",
            Condition::Guest(_) => "guest",
        }
    }
}

impl Policy {
    /// The route for a request: the most specific host (exact, then the longest wildcard, then any), then the
    /// longest path prefix, among routes covering the method. `host` and `path` must be normalised.
    pub fn route(&self, host: &str, path: &str, method: &Method) -> Option<&Arc<Route>> {
        let pick = |candidates: &[usize]| candidates.iter().map(|&i| &self.routes[i]).find(|r| r.covers(path, method));
        if let Some(found) = self.exact_hosts.get(host).and_then(|c| pick(c)) {
            return Some(found);
        }
        for (suffix, candidates) in &self.wildcard_hosts {
            if host.ends_with(suffix.as_str())
                && host.len() > suffix.len()
                && let Some(found) = pick(candidates)
            {
                return Some(found);
            }
        }
        pick(&self.any_host)
    }

    /// All routes, in load order.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// True when some rule names this group id.
    pub fn mentions_group(&self, id: &str) -> bool {
        self.mentioned_groups.contains(id)
    }

    /// The group id an alias from `[groups]` stands for.
    pub fn group_id(&self, alias: &str) -> Option<&str> {
        self.groups.get(alias).map(String::as_str)
    }

    /// An alias from `[groups]` for a group id (the first in alphabetical order, when several name it).
    pub fn group_alias(&self, id: &str) -> Option<&str> {
        self.groups.iter().find(|(_, v)| v.as_str() == id).map(|(alias, _)| alias.as_str())
    }

    /// The routes [`Policy::route`] considers for a (normalised) host, in the order it considers them: exact
    /// host, then wildcards from the longest suffix, then any host; within each, the longest path first.
    pub fn candidates(&self, host: &str) -> Vec<&Arc<Route>> {
        let mut out: Vec<&Arc<Route>> = Vec::new();
        let mut add = |indices: &[usize]| {
            out.extend(indices.iter().filter_map(|&i| self.routes.get(i)));
        };
        if let Some(c) = self.exact_hosts.get(host) {
            add(c);
        }
        for (suffix, c) in &self.wildcard_hosts {
            if host.ends_with(suffix.as_str()) && host.len() > suffix.len() {
                add(c);
            }
        }
        add(&self.any_host);
        out
    }
}

impl Route {
    /// True when this route covers the (normalised) path and the method.
    pub fn covers(&self, path: &str, method: &Method) -> bool {
        let path_ok = if self.path.contains('*') {
            path::glob_prefix_match(&self.path, path)
        } else {
            path::has_path_prefix(path, &self.path)
        };
        path_ok && self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}
