//! `explain`: why a request would be allowed or denied, step by step as the gateway takes them — the
//! normalised host and path, the route chosen (or the routes that were considered and why none fitted), each
//! rule condition by condition, and the decision. It shows decisions and never makes its own: the decision it
//! reports is the one [`decide`] returns, and each condition's verdict comes from [`holds`].

use std::collections::BTreeMap;
use std::fmt;

use http::Method;
use serde_json::{Map, Value};

use super::eval::glob;
use super::path::{has_path_prefix, normalize_host, normalize_path};
use super::{Condition, Decision, HostPattern, Policy, Route, Rule, decide, holds};
use crate::identity::{Identity, Proof};

/// Why a request is allowed or denied.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The request's method.
    pub method: Method,
    /// The URL as given.
    pub url: String,
    /// The normalised host (empty when the URL could not be read).
    pub host: String,
    /// The normalised path (empty when the URL or its path could not be read).
    pub path: String,
    /// Why the request could not be routed at all (an unreadable URL, a refused path), if so.
    pub problem: Option<String>,
    /// Who sent it; `None`: nobody signed in.
    pub identity: Option<Identity>,
    /// The route chosen, if one was.
    pub route: Option<RouteExplanation>,
    /// When no route was chosen: the routes for this host that were considered, in the order they were.
    pub candidates: Vec<Candidate>,
    /// When no route is for the host at all: the hosts the policy has routes for (to spot a typo).
    pub other_hosts: Vec<String>,
    /// The outcome, as the gateway would reach it.
    pub decision: Decision,
    /// `[groups]` aliases of the group ids shown, so the report names groups as the policy does.
    aliases: BTreeMap<String, String>,
}

/// The chosen route and how its rules fared.
#[derive(Debug, Clone)]
pub struct RouteExplanation {
    /// The route's name.
    pub name: String,
    /// Where it is defined: `policies/gitlab.toml:14`.
    pub location: String,
    /// No sign-in needed, so no rule is looked at.
    pub public: bool,
    /// Why the gateway stops before the rules, if it does: nobody signed in, or the route does not accept how
    /// the identity was proven.
    pub refused: Option<String>,
    /// The deny rules, in order (checked first; the first that holds denies).
    pub deny: Vec<RuleExplanation>,
    /// The allow rules, in order (the first that holds allows).
    pub allow: Vec<RuleExplanation>,
}

/// A route that was considered for the host but does not cover the request.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The route's name.
    pub name: String,
    /// Where it is defined.
    pub location: String,
    /// Its host pattern, as written: `gitlab.example.com`, `*.example.com`, `*`.
    pub host: String,
    /// Its path prefix.
    pub path: String,
    /// Why it does not cover the request: its path prefix or its methods.
    pub why: String,
}

/// One rule, condition by condition.
#[derive(Debug, Clone)]
pub struct RuleExplanation {
    /// `policies/gitlab.toml:19 allow[0]`.
    pub label: String,
    /// Every condition holds (a rule without conditions always holds).
    pub holds: bool,
    /// Each condition, in the order of the rule.
    pub conditions: Vec<ConditionExplanation>,
}

/// One condition and the part of the identity it looked at.
#[derive(Debug, Clone)]
pub struct ConditionExplanation {
    /// What is tested: `groups`, `roles`, `claims.project_path`, `mfa`, …
    pub what: String,
    /// Whether it held.
    pub holds: bool,
    /// The values the rule accepts (group aliases where the policy has them).
    pub wanted: Vec<String>,
    /// The identity's values that satisfied it (for list conditions: which groups, roles, … matched).
    pub matched: Vec<String>,
    /// What the identity has for this condition.
    pub have: Vec<String>,
    /// How to name `have` in a report: `identity has`, `amr`, `iss`, …
    pub source: &'static str,
}

/// Explains how the gateway would treat `method url` from `identity`.
pub fn explain(policy: &Policy, method: &Method, url: &str, identity: &Identity) -> Explanation {
    explain_request(policy, method, url, Some(identity))
}

/// Like [`explain`], for a request from nobody signed in (no session cookie, no bearer token).
pub fn explain_anonymous(policy: &Policy, method: &Method, url: &str) -> Explanation {
    explain_request(policy, method, url, None)
}

/// Builds an identity from command-line flags: `claims_json` (an object; anything else is ignored) gives the
/// token's claims, then `groups` (aliases from `[groups]`, or ids) and `roles` are added to its `groups` and
/// `roles`.
pub fn identity_from_flags(
    groups: &[String],
    roles: &[String],
    claims_json: Option<Value>,
    auth: Proof,
    policy: &Policy,
) -> Identity {
    let mut claims = match claims_json {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let resolved: Vec<String> = groups.iter().map(|g| policy.group_id(g).unwrap_or(g).to_string()).collect();
    append_strings(&mut claims, "groups", resolved);
    append_strings(&mut claims, "roles", roles.to_vec());
    Identity::from_claims(claims, auth)
}

/// Adds `values` to a string-list claim, keeping what it held (a lone string counts as a list of one).
fn append_strings(claims: &mut Map<String, Value>, name: &str, values: Vec<String>) {
    if values.is_empty() {
        return;
    }
    let mut list: Vec<Value> = match claims.remove(name) {
        Some(Value::Array(items)) => items,
        Some(Value::String(s)) => vec![Value::String(s)],
        Some(_) | None => Vec::new(),
    };
    list.extend(values.into_iter().map(Value::String));
    claims.insert(name.to_string(), Value::Array(list));
}

fn deny(reason: &'static str) -> Decision {
    Decision { allow: false, rule: None, reason }
}

/// The gateway's steps, in its order: normalise the path, then the host; route; a public route lets anyone
/// through; otherwise the route must accept how the identity was proven; then `decide`.
pub(crate) fn explain_request(policy: &Policy, method: &Method, url: &str, identity: Option<&Identity>) -> Explanation {
    let mut out = Explanation {
        method: method.clone(),
        url: url.to_string(),
        host: String::new(),
        path: String::new(),
        problem: None,
        identity: identity.cloned(),
        route: None,
        candidates: Vec::new(),
        other_hosts: Vec::new(),
        decision: deny("no-route"),
        aliases: BTreeMap::new(),
    };
    if let Some(id) = identity {
        out.note_aliases(policy, &id.groups);
    }
    let uri = match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => uri,
        Ok(_) | Err(_) => {
            out.problem =
                Some(format!("\"{url}\" is not an absolute URL such as \"https://gitlab.example.com/explore\""));
            out.decision = deny("bad-url");
            return out;
        }
    };
    match normalize_path(uri.path()) {
        Ok(p) => out.path = super::path::matching_path(&p).into_owned(),
        Err(e) => {
            out.problem = Some(format!("path \"{}\": {e}", uri.path()));
            out.decision = deny("bad-path");
            return out;
        }
    }
    out.host = uri.authority().map(|a| normalize_host(a.as_str()).into_owned()).unwrap_or_default();
    if out.host.is_empty() {
        out.problem = Some("the URL names no host".to_string());
        out.decision = deny("missing-host");
        return out;
    }
    let Some(route) = policy.route(&out.host, &out.path, method) else {
        out.candidates = policy
            .candidates(&out.host)
            .into_iter()
            .map(|r| Candidate {
                name: r.name.to_string(),
                location: r.location.clone(),
                host: host_text(&r.host),
                path: r.path.clone(),
                why: not_covered(r, &out.path, method),
            })
            .collect();
        if out.candidates.is_empty() {
            for r in policy.routes() {
                let h = host_text(&r.host);
                if !out.other_hosts.contains(&h) {
                    out.other_hosts.push(h);
                }
            }
        }
        return out;
    };
    for rule in route.deny.iter().chain(&route.allow) {
        for c in &rule.conditions {
            if let Condition::Groups(ids) = c {
                out.note_aliases(policy, ids);
            }
        }
    }
    let mut chosen = RouteExplanation {
        name: route.name.to_string(),
        location: route.location.clone(),
        public: route.public,
        refused: None,
        deny: Vec::new(),
        allow: Vec::new(),
    };
    out.decision = if route.public {
        // The gateway does not even authenticate: anyone passes.
        Decision { allow: true, rule: None, reason: "public" }
    } else {
        match identity {
            None => {
                chosen.refused =
                    Some("nobody is signed in: a browser is sent to sign in, other clients get 401".to_string());
                deny("unauthenticated")
            }
            Some(id) => {
                chosen.deny = route.deny.iter().map(|r| explain_rule(r, id, &out.aliases)).collect();
                chosen.allow = route.allow.iter().map(|r| explain_rule(r, id, &out.aliases)).collect();
                match id.proof {
                    Proof::Bearer if !route.accepts_bearer => {
                        chosen.refused = Some("this route does not accept bearer tokens".to_string());
                        deny("bearer-not-accepted")
                    }
                    // The gateway does not look for a session on such a route: the request is signed out.
                    Proof::Session if !route.accepts_session => {
                        chosen.refused = Some(
                            "this route accepts only bearer tokens, so a session counts as signed out".to_string(),
                        );
                        deny("unauthenticated")
                    }
                    _ => decide(route, id),
                }
            }
        }
    };
    out.route = Some(chosen);
    out
}

fn not_covered(route: &Route, path: &str, method: &Method) -> String {
    if !has_path_prefix(path, &route.path) {
        return format!("path {path} is not under {}", route.path);
    }
    match &route.methods {
        Some(methods) if !methods.contains(method) => format!(
            "method {method} is not one of {}",
            methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
        ),
        // Not reached: a route covering the path and the method would have been chosen.
        _ => "it covers the request, but a more specific route was looked for first".to_string(),
    }
}

impl Explanation {
    fn note_aliases(&mut self, policy: &Policy, ids: &[String]) {
        for id in ids {
            if let Some(alias) = policy.group_alias(id) {
                self.aliases.insert(id.clone(), alias.to_string());
            }
        }
    }

    /// The route chosen, if any.
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_ref().map(|r| r.name.as_str())
    }
}

fn group_names(ids: &[String], aliases: &BTreeMap<String, String>) -> Vec<String> {
    ids.iter().map(|id| aliases.get(id).unwrap_or(id).clone()).collect()
}

fn explain_rule(rule: &Rule, id: &Identity, aliases: &BTreeMap<String, String>) -> RuleExplanation {
    let conditions: Vec<ConditionExplanation> =
        rule.conditions.iter().map(|c| explain_condition(c, id, aliases)).collect();
    RuleExplanation { label: rule.label.to_string(), holds: conditions.iter().all(|c| c.holds), conditions }
}

fn explain_condition(condition: &Condition, id: &Identity, aliases: &BTreeMap<String, String>) -> ConditionExplanation {
    let held = holds(condition, id);
    let among = |wanted: &[String], have: &[String]| -> Vec<String> {
        have.iter().filter(|h| wanted.contains(h)).cloned().collect()
    };
    let explained = |wanted: Vec<String>, matched: Vec<String>, have: Vec<String>, source| ConditionExplanation {
        what: condition.kind().to_string(),
        holds: held,
        wanted,
        matched,
        have,
        source,
    };
    match condition {
        Condition::Groups(ids) => explained(
            group_names(ids, aliases),
            group_names(&among(ids, &id.groups), aliases),
            group_names(&id.groups, aliases),
            "identity has",
        ),
        Condition::Users(users) => {
            let mut have = vec![id.subject.clone()];
            for other in [Some(&id.sub), id.oid.as_ref()].into_iter().flatten() {
                if !have.contains(other) {
                    have.push(other.clone());
                }
            }
            have.retain(|h| !h.is_empty());
            explained(users.clone(), among(users, &have), have, "identity is")
        }
        Condition::Roles(roles) => explained(roles.clone(), among(roles, &id.roles), id.roles.clone(), "identity has"),
        Condition::Scopes(scopes) => {
            explained(scopes.clone(), among(scopes, &id.scopes), id.scopes.clone(), "identity has")
        }
        Condition::Issuer(issuers) => explained(
            issuers.clone(),
            Vec::new(),
            Some(id.issuer.clone()).filter(|i| !i.is_empty()).into_iter().collect(),
            "iss",
        ),
        Condition::Tenant(tenants) => {
            explained(tenants.clone(), Vec::new(), id.tenant.iter().cloned().collect(), "tid")
        }
        Condition::Claim { name, patterns } => {
            let values: Vec<&Value> = match id.claims.get(name) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(v) => vec![v],
                None => Vec::new(),
            };
            let matched =
                values.iter().filter_map(|v| claim_text(v)).filter(|t| patterns.iter().any(|p| glob(p, t))).collect();
            let have = values.iter().map(|v| claim_text(v).unwrap_or_else(|| v.to_string())).collect();
            let mut e = explained(patterns.clone(), matched, have, "value");
            e.what = format!("claims.{name}");
            e
        }
        Condition::Mfa(acr_values) => {
            let mut have = id.amr.clone();
            if let Some(acr) = id.claims.get("acr").and_then(Value::as_str) {
                have.push(format!("acr={acr}"));
            }
            explained(acr_values.iter().map(|a| format!("acr={a}")).collect(), Vec::new(), have, "amr")
        }
        Condition::Emails(emails) => {
            let verified = ["email_verified", "xms_edov"]
                .iter()
                .any(|c| id.claims.get(*c).is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true")));
            let have: Vec<String> =
                id.email.iter().map(|e| if verified { e.clone() } else { format!("{e} (not verified)") }).collect();
            let matched =
                if verified { among(emails, &id.email.iter().cloned().collect::<Vec<_>>()) } else { Vec::new() };
            explained(emails.clone(), matched, have, "email")
        }
        Condition::Auth(proof) => {
            explained(vec![proof.as_str().to_string()], Vec::new(), vec![id.proof.as_str().to_string()], "proved by")
        }
        Condition::Guest(guest) => {
            let name = |g: bool| if g { "guest" } else { "member" }.to_string();
            explained(vec![name(*guest)], Vec::new(), vec![name(id.guest)], "identity is")
        }
    }
}

/// A claim value as claim conditions compare it; `None` for values they never match (objects, null).
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".to_string() } else { items.join(", ") }
}

impl fmt::Display for ConditionExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)?;
        if !self.wanted.is_empty() {
            write!(f, " [{}]", self.wanted.join(", "))?;
        }
        write!(f, " {}", mark(self.holds))?;
        if self.matched.is_empty() {
            write!(f, " ({}: {})", self.source, list_or_none(&self.have))
        } else {
            write!(f, " (matched: {})", self.matched.join(", "))
        }
    }
}

impl fmt::Display for RuleExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conditions.is_empty() {
            return write!(f, "{}: no conditions ✓", self.label);
        }
        write!(f, "{}: ", self.label)?;
        for (i, c) in self.conditions.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem.is_some() {
            writeln!(f, "request:  {} {}", self.method, self.url)?;
        } else {
            writeln!(f, "request:  {} {} {}", self.method, self.host, self.path)?;
        }
        match &self.identity {
            None => writeln!(f, "identity: nobody signed in")?,
            Some(id) => writeln!(f, "identity: {}", self.identity_summary(id))?,
        }
        if let Some(problem) = &self.problem {
            writeln!(f, "problem:  {problem}")?;
        } else {
            match &self.route {
                Some(route) => self.fmt_route(f, route)?,
                None => self.fmt_no_route(f)?,
            }
        }
        write!(f, "decision: {}", describe_decision(&self.decision))
    }
}

impl Explanation {
    fn identity_summary(&self, id: &Identity) -> String {
        let mut parts = vec![id.proof.as_str().to_string()];
        let mut add = |name: &str, value: String| {
            if !value.is_empty() {
                parts.push(format!("{name} {value}"));
            }
        };
        add("sub", id.sub.clone());
        add("oid", id.oid.clone().unwrap_or_default());
        add("iss", id.issuer.clone());
        add("tid", id.tenant.clone().unwrap_or_default());
        add("groups", group_names(&id.groups, &self.aliases).join(", "));
        add("roles", id.roles.join(", "));
        add("scopes", id.scopes.join(", "));
        add("amr", id.amr.join(", "));
        parts.join("; ")
    }

    fn fmt_route(&self, f: &mut fmt::Formatter<'_>, route: &RouteExplanation) -> fmt::Result {
        writeln!(f, "route:    {} ({})", route.name, route.location)?;
        if route.public {
            return writeln!(f, "public:   no sign-in needed, no rules apply");
        }
        if let Some(why) = &route.refused {
            // The gateway stops here; the rules would only mislead.
            return writeln!(f, "refused:  {why}");
        }
        let decided = self.decision.rule.as_deref();
        for (title, rules) in [("deny rules", &route.deny), ("allow rules", &route.allow)] {
            if rules.is_empty() {
                writeln!(f, "{title}: none")?;
                continue;
            }
            writeln!(f, "{title}:")?;
            for rule in rules.iter() {
                write!(f, "  {rule}")?;
                if decided == Some(rule.label.as_str()) {
                    write!(f, "  ⇒ decides")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }

    fn fmt_no_route(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "route:    none")?;
        if self.candidates.is_empty() {
            return writeln!(
                f,
                "  no route is for host {} (routes are for: {})",
                self.host,
                list_or_none(&self.other_hosts)
            );
        }
        writeln!(f, "  routes for host {}, none covering {} {}:", self.host, self.method, self.path)?;
        for c in &self.candidates {
            writeln!(f, "    {} ({}, host {} path {}): {}", c.name, c.location, c.host, c.path, c.why)?;
        }
        Ok(())
    }
}

/// `ALLOW (allowed) by policies/x.toml:19 allow[0]`, `DENY (groups-unauthorized)`.
pub(crate) fn describe_decision(d: &Decision) -> String {
    let verdict = if d.allow { "ALLOW" } else { "DENY" };
    match &d.rule {
        Some(rule) => format!("{verdict} ({}) by {rule}", d.reason),
        None => format!("{verdict} ({})", d.reason),
    }
}

/// How a route's host pattern is written.
fn host_text(h: &HostPattern) -> String {
    match h {
        HostPattern::Exact(h) => h.clone(),
        HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        HostPattern::Any => "*".to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::load_sources;
    use serde_json::json;
    use std::path::PathBuf;

    /// A policy shared by the explain and cases tests, as `policies/gitlab.toml`.
    pub(crate) const POLICY: &str = r#"[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"

[[route]]
name = "gitlab"
host = "gitlab.example.com"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["eng"] }, { roles = ["Deploy.Write"], auth = "bearer" }]
deny = [{ users = ["banned-oid"] }]

[[route]]
name = "gitlab-admin"
host = "gitlab.example.com"
path = "/admin"
upstream = "http://10.0.0.5:8080"
auth = ["session"]
allow = [{ groups = ["admins"], mfa = true }]

[[route]]
name = "registry"
host = "gitlab.example.com"
path = "/api/v4/packages"
methods = ["GET", "PUT"]
upstream = "http://10.0.0.5:8080"
auth = ["bearer"]
allow = [{ issuer = "https://gitlab.example.com", claims = { project_path = "platform/*" } }]

[[route]]
name = "hooks"
host = "ci.example.com"
path = "/hooks"
methods = ["POST"]
upstream = "http://10.0.0.8"
allow = [{ roles = ["Hooks.Send"] }]

[[route]]
name = "status"
host = "*.example.com"
path = "/status"
upstream = "http://10.0.0.9"
public = true
"#;

    pub(crate) fn policy() -> Policy {
        let (p, _) = load_sources(&[(PathBuf::from("policies/gitlab.toml"), POLICY.to_string())]).unwrap();
        p
    }

    fn person(claims: Value, proof: Proof) -> Identity {
        Identity::from_claims(claims.as_object().cloned().unwrap(), proof)
    }

    const ENG: &str = "5b1c3d2e-0000-0000-0000-000000000001";
    const ADMINS: &str = "9e2a4f6b-0000-0000-0000-000000000002";

    fn bob() -> Identity {
        person(json!({"sub": "bob", "groups": [ENG], "amr": ["pwd"]}), Proof::Session)
    }

    #[test]
    fn an_allowed_request_shows_the_rule_that_let_it_through() {
        let e = explain(&policy(), &Method::GET, "https://GitLab.Example.com:443/explore/../projects", &bob());
        assert_eq!((e.host.as_str(), e.path.as_str()), ("gitlab.example.com", "/projects"));
        assert_eq!(e.route_name(), Some("gitlab"));
        assert!(e.decision.allow);
        assert_eq!(
            e.to_string(),
            "request:  GET gitlab.example.com /projects
identity: session; sub bob; groups eng; amr pwd
route:    gitlab (policies/gitlab.toml:5)
deny rules:
  policies/gitlab.toml:10 deny[0]: users [banned-oid] ✗ (identity is: bob)
allow rules:
  policies/gitlab.toml:9 allow[0]: groups [eng] ✓ (matched: eng)  ⇒ decides
  policies/gitlab.toml:9 allow[1]: roles [Deploy.Write] ✗ (identity has: none), auth [bearer] ✗ (proved by: session)
decision: ALLOW (allowed) by policies/gitlab.toml:9 allow[0]"
        );
    }

    #[test]
    fn a_denied_request_shows_each_condition_that_failed_and_what_the_identity_has() {
        let e = explain(&policy(), &Method::GET, "https://gitlab.example.com/admin/users", &bob());
        assert_eq!(
            e.to_string(),
            "request:  GET gitlab.example.com /admin/users
identity: session; sub bob; groups eng; amr pwd
route:    gitlab-admin (policies/gitlab.toml:12)
deny rules: none
allow rules:
  policies/gitlab.toml:18 allow[0]: groups [admins] ✗ (identity has: eng), mfa ✗ (amr: pwd)
decision: DENY (groups-unauthorized)"
        );
        let rule = &e.route.as_ref().unwrap().allow[0];
        assert!(!rule.holds);
        assert_eq!(rule.conditions[0].wanted, ["admins"]);
        assert!(rule.conditions[0].matched.is_empty());
    }

    #[test]
    fn the_reported_decision_is_the_one_decide_makes() {
        let p = policy();
        let alice = person(json!({"sub": "alice", "groups": [ENG, ADMINS], "amr": ["pwd", "mfa"]}), Proof::Session);
        for id in [bob(), alice] {
            for path in ["/", "/admin", "/admin/x", "/administrator"] {
                let url = format!("https://gitlab.example.com{path}");
                let e = explain(&p, &Method::GET, &url, &id);
                let route = p.route("gitlab.example.com", path, &Method::GET).unwrap();
                assert_eq!(e.decision, decide(route, &id), "{url}");
            }
        }
    }

    #[test]
    fn a_deny_rule_that_holds_is_marked_as_deciding() {
        let banned = person(json!({"sub": "x", "oid": "banned-oid", "groups": [ENG]}), Proof::Session);
        let e = explain(&policy(), &Method::GET, "https://gitlab.example.com/", &banned);
        let text = e.to_string();
        assert!(text.contains("deny[0]: users [banned-oid] ✓ (matched: banned-oid)  ⇒ decides"), "{text}");
        assert!(text.ends_with("decision: DENY (denied-by-rule) by policies/gitlab.toml:10 deny[0]"), "{text}");
    }

    #[test]
    fn no_route_lists_the_routes_for_the_host_and_why_each_did_not_fit() {
        let e = explain(&policy(), &Method::GET, "https://ci.example.com/hooks/a", &bob());
        assert_eq!(
            e.to_string(),
            "request:  GET ci.example.com /hooks/a
identity: session; sub bob; groups eng; amr pwd
route:    none
  routes for host ci.example.com, none covering GET /hooks/a:
    hooks (policies/gitlab.toml:29, host ci.example.com path /hooks): method GET is not one of POST
    status (policies/gitlab.toml:37, host *.example.com path /status): path /hooks/a is not under /status
decision: DENY (no-route)"
        );
        assert_eq!(e.decision.reason, "no-route");
    }

    #[test]
    fn an_unknown_host_lists_the_hosts_that_have_routes() {
        let e = explain(&policy(), &Method::GET, "https://gitlab.example.org/", &bob());
        assert!(e.candidates.is_empty());
        assert!(
            e.to_string().contains(
                "no route is for host gitlab.example.org (routes are for: gitlab.example.com, ci.example.com, *.example.com)"
            ),
            "{e}"
        );
    }

    #[test]
    fn the_gateway_steps_before_the_rules_are_explained() {
        let p = policy();
        let ci = person(
            json!({"sub": "ci", "iss": "https://gitlab.example.com", "project_path": "platform/api"}),
            Proof::Bearer,
        );
        let cases = [
            (
                explain_anonymous(&p, &Method::GET, "https://gitlab.example.com/"),
                "unauthenticated",
                "refused:  nobody is signed in",
            ),
            (
                explain(&p, &Method::GET, "https://gitlab.example.com/admin", &ci),
                "bearer-not-accepted",
                "refused:  this route does not accept bearer tokens",
            ),
            (
                explain(&p, &Method::GET, "https://gitlab.example.com/api/v4/packages/1", &bob()),
                "unauthenticated",
                "refused:  this route accepts only bearer tokens",
            ),
            (
                explain(&p, &Method::GET, "https://jira.example.com/status", &bob()),
                "public",
                "public:   no sign-in needed",
            ),
            (
                explain(&p, &Method::GET, "https://gitlab.example.com/a%00b", &bob()),
                "bad-path",
                "problem:  path \"/a%00b\": the path has an invalid percent-encoding",
            ),
            (
                explain(&p, &Method::GET, "gitlab.example.com/admin", &bob()),
                "bad-url",
                "problem:  \"gitlab.example.com/admin\" is not an absolute URL",
            ),
            (explain(&p, &Method::GET, "nope", &bob()), "bad-url", "problem:  \"nope\" is not an absolute URL"),
            (explain(&p, &Method::GET, "", &bob()), "bad-url", "problem:  \"\" is not an absolute URL"),
        ];
        for (e, reason, line) in cases {
            let text = e.to_string();
            assert_eq!(e.decision.reason, reason, "{text}");
            assert!(text.contains(line), "{text}");
        }
    }

    #[test]
    fn claim_conditions_show_the_values_that_matched() {
        let ci = person(
            json!({"sub": "ci", "iss": "https://gitlab.example.com", "project_path": ["other/x", "platform/api", {"a": 1}]}),
            Proof::Bearer,
        );
        let e = explain(&policy(), &Method::PUT, "https://gitlab.example.com/api/v4/packages/1", &ci);
        assert!(e.decision.allow);
        assert!(
            e.to_string().contains(
                "issuer [https://gitlab.example.com] ✓ (iss: https://gitlab.example.com), claims.project_path [platform/*] ✓ (matched: platform/api)"
            ),
            "{e}"
        );
        let other =
            person(json!({"sub": "ci", "iss": "https://gitlab.example.com", "project_path": "other/x"}), Proof::Bearer);
        let e = explain(&policy(), &Method::PUT, "https://gitlab.example.com/api/v4/packages/1", &other);
        assert!(e.to_string().contains("claims.project_path [platform/*] ✗ (value: other/x)"), "{e}");
        assert_eq!(e.decision.reason, "claims-unauthorized");
    }

    #[test]
    fn flags_become_an_identity_with_aliases_resolved() {
        let p = policy();
        let claims = json!({"sub": "svc", "groups": ["raw-id"], "tid": "t1"});
        let id = identity_from_flags(
            &["admins".to_string(), "not-an-alias".to_string()],
            &["Deploy.Write".to_string()],
            Some(claims),
            Proof::Bearer,
            &p,
        );
        assert_eq!(id.groups, ["raw-id", ADMINS, "not-an-alias"]);
        assert_eq!(id.roles, ["Deploy.Write"]);
        assert_eq!((id.sub.as_str(), id.tenant.as_deref()), ("svc", Some("t1")));
        assert_eq!(id.proof, Proof::Bearer);
        let id = identity_from_flags(&[], &[], Some(json!([1, 2])), Proof::Session, &p);
        assert!(id.groups.is_empty() && id.sub.is_empty());
    }

    #[test]
    fn candidates_are_in_the_order_route_considers_them() {
        let p = policy();
        for host in ["gitlab.example.com", "ci.example.com", "x.example.com", "example.com", "other.org"] {
            for path in ["/", "/admin", "/api/v4/packages/1", "/hooks", "/status/x"] {
                for method in [Method::GET, Method::POST, Method::PUT] {
                    let first = p.candidates(host).into_iter().find(|r| r.covers(path, &method));
                    assert_eq!(
                        first.map(|r| &r.name),
                        p.route(host, path, &method).map(|r| &r.name),
                        "{method} {host}{path}"
                    );
                }
            }
        }
    }
}
