//! Policy tests: `*.test.toml` files of `[[case]]` tables (a request, an identity, the expected decision) run
//! against a compiled [`Policy`] the way the gateway would decide, so operators can test policies like code.
//! Loading reports every problem with its file, line and column; running never fails, it reports.
//!
//! ```toml
//! [[case]]
//! name = "alice (eng) reaches GitLab"
//! request = "GET https://gitlab.example.com/explore"   # METHOD URL; the method defaults to GET
//! identity = { groups = ["eng"], amr = ["mfa"], auth = "session" }
//! expect = "allow"                                      # or "deny"
//! route = "gitlab"                                      # optional; "none": no route matches
//! reason = "groups-unauthorized"                        # optional: the expected reason code
//! ```
//!
//! `identity` holds `groups` (aliases from `[groups]`, or group ids), `roles`, `scopes`, `sub` (or `user`),
//! `oid`, `tenant`, `issuer`, `amr`, `auth` (`"session"`, the default, or `"bearer"`) and `claims` (any other
//! claims, such as `{ project_path = "platform/api" }`). A case without `identity` is a request from nobody
//! signed in. Bearer audiences are not checked here: a case starts after the token was accepted.

use std::fmt;
use std::path::{Path, PathBuf};

use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::Policy;
use super::explain::{Explanation, explain_request};
use super::load::looks_like_id;
use crate::diag::{Diagnostics, Source};
use crate::identity::{Identity, Proof};

/// One test case, checked and ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name, as written.
    pub name: String,
    /// Where it is written: `policies/gitlab.test.toml:12`.
    pub location: String,
    /// The request's method.
    pub method: Method,
    /// The request's URL, as written.
    pub url: String,
    /// Who sends it; `None`: nobody signed in.
    pub identity: Option<CaseIdentity>,
    /// What should happen.
    pub expect: Expectation,
}

/// The identity of a case, before its group aliases are resolved against a policy.
#[derive(Debug, Clone)]
pub struct CaseIdentity {
    /// Groups as written (aliases or ids), each with where it is written (`file:line:column`).
    pub groups: Vec<(String, String)>,
    /// Every other claim, under its token name (`sub`, `oid`, `tid`, `iss`, `roles`, `scp`, `amr`, …).
    pub claims: Map<String, Value>,
    /// How the identity was proven.
    pub proof: Proof,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Allowed (true) or denied.
    pub allow: bool,
    /// The route that should be chosen, if the case says.
    pub route: Option<ExpectedRoute>,
    /// The reason code, if the case says.
    pub reason: Option<String>,
}

/// The route a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedRoute {
    /// No route matches (`route = "none"`).
    NoRoute,
    /// This route.
    Named(String),
}

/// What actually happened to a case's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Allowed.
    pub allow: bool,
    /// The route chosen, if any.
    pub route: Option<String>,
    /// The reason code.
    pub reason: &'static str,
    /// The rule that decided (`policies/x.toml:19 allow[0]`), if one did.
    pub rule: Option<String>,
}

/// The result of running one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Where the case is written: `policies/gitlab.test.toml:12`.
    pub location: String,
    /// The case passed.
    pub passed: bool,
    /// What the case expected.
    pub expected: Expectation,
    /// What happened.
    pub actual: Outcome,
    /// Why the case cannot be trusted as written (an undefined group alias, a route name the policy lacks);
    /// any problem fails the case.
    pub problems: Vec<String>,
    /// How the decision was reached, for the report of a failure.
    pub explanation: Explanation,
}

// ---- The file, as written. Every table rejects unknown keys.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    case: Vec<Spanned<CaseRaw>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRaw {
    name: Spanned<String>,
    request: Spanned<String>,
    identity: Option<Spanned<IdentityRaw>>,
    expect: Spanned<String>,
    route: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityRaw {
    groups: Option<Vec<Spanned<String>>>,
    roles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    #[serde(alias = "user")]
    sub: Option<String>,
    oid: Option<String>,
    tenant: Option<String>,
    issuer: Option<String>,
    amr: Option<Vec<String>>,
    auth: Option<Spanned<String>>,
    claims: Option<Spanned<toml::Table>>,
}

/// Loads every `*.test.toml` in `dir`, in name order. A directory without any gives no cases.
pub fn load_case_files(dir: &Path) -> Result<Vec<Case>, Diagnostics> {
    let mut out = Diagnostics::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.file_error(dir, format!("cannot read the policy directory: {e}"));
            return Err(out);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".test.toml") && !name.starts_with('.')
        })
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for p in paths {
        match std::fs::read_to_string(&p) {
            Ok(text) => files.push((p, text)),
            Err(e) => out.file_error(&p, format!("cannot read: {e}")),
        }
    }
    match load_cases(&files) {
        Ok(cases) if !out.has_errors() => Ok(cases),
        Ok(_) => Err(out),
        Err(errors) => {
            out.extend(errors);
            Err(out)
        }
    }
}

/// Parses and checks test files given as `(path, text)` pairs; every problem in every file is reported.
pub fn load_cases(files: &[(PathBuf, String)]) -> Result<Vec<Case>, Diagnostics> {
    let mut out = Diagnostics::default();
    let mut cases = Vec::new();
    for (path, text) in files {
        let src = Source::new(path, text);
        let file = match src.parse_toml::<CaseFile>() {
            Ok(f) => f,
            Err(d) => {
                out.0.push(d);
                continue;
            }
        };
        if file.case.is_empty() {
            out.file_error(
                path,
                "no [[case]] tables: a policy test file holds cases such as [[case]] name = \"…\" request = \"GET https://…\" expect = \"allow\"",
            );
        }
        for raw in &file.case {
            if let Some(case) = check_case(&src, raw, &mut out) {
                cases.push(case);
            }
        }
    }
    if out.has_errors() { Err(out) } else { Ok(cases) }
}

fn check_case(src: &Source<'_>, spanned: &Spanned<CaseRaw>, out: &mut Diagnostics) -> Option<Case> {
    let raw = spanned.get_ref();
    let errors_before = out.0.len();
    let mut error = |span: std::ops::Range<usize>, message: String| {
        out.0.push(src.error(span, message));
    };
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        error(raw.name.span(), "a case needs a name that says what it checks".to_string());
    }
    let request = parse_request(raw.request.get_ref());
    if let Err(message) = &request {
        error(raw.request.span(), message.clone());
    }
    let allow = match raw.expect.get_ref().as_str() {
        "allow" => Some(true),
        "deny" => Some(false),
        other => {
            error(raw.expect.span(), format!("expect \"{other}\": expected \"allow\" or \"deny\""));
            None
        }
    };
    let route = raw.route.as_ref().and_then(|r| match r.get_ref().trim() {
        "" => {
            error(r.span(), "route is the name of the route the request should reach, or \"none\"".to_string());
            None
        }
        "none" => {
            if allow == Some(true) {
                error(
                    r.span(),
                    "a request no route matches is always denied (no-route): expect = \"deny\", or name the route"
                        .to_string(),
                );
            }
            Some(ExpectedRoute::NoRoute)
        }
        named => Some(ExpectedRoute::Named(named.to_string())),
    });
    let reason = raw.reason.as_ref().and_then(|r| {
        let code = r.get_ref().trim().to_string();
        let allow_code = code == "allowed" || code == "public";
        if code.is_empty() {
            error(r.span(), "reason is a reason code such as \"groups-unauthorized\"".to_string());
            None
        } else if allow == Some(true) && !allow_code {
            error(
                r.span(),
                format!("reason \"{code}\" is the reason of a deny, but this case expects allow (the reasons of an allow are \"allowed\" and \"public\")"),
            );
            None
        } else if allow == Some(false) && allow_code {
            error(
                r.span(),
                format!("reason \"{code}\" is the reason of an allow, but this case expects deny"),
            );
            None
        } else {
            Some(code)
        }
    });
    let identity = raw.identity.as_ref().and_then(|i| check_identity(src, i.get_ref(), out));
    if out.0.len() > errors_before {
        // In the order they are written, whichever part of the case found them.
        if let Some(new) = out.0.get_mut(errors_before..) {
            new.sort_by_key(|d| (d.line, d.column));
        }
        return None;
    }
    let (method, url) = request.ok()?;
    let (line, _) = src.line_column(spanned.span().start);
    Some(Case {
        name,
        location: format!("{}:{line}", src.path.display()),
        method,
        url,
        identity,
        expect: Expectation { allow: allow?, route, reason },
    })
}

/// `"METHOD URL"` or `"URL"` (GET).
fn parse_request(text: &str) -> Result<(Method, String), String> {
    let expected = "expected \"METHOD URL\" such as \"GET https://gitlab.example.com/explore\"";
    let words: Vec<&str> = text.split_whitespace().collect();
    let (method, url) = match words.as_slice() {
        [url] => (Method::GET, *url),
        [method, url] => match Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
            Ok(m) => (m, *url),
            Err(_) => return Err(format!("\"{method}\" is not an HTTP method; {expected}")),
        },
        _ => return Err(format!("request \"{text}\": {expected}")),
    };
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => Ok((method, url.to_string())),
        _ => Err(format!("\"{url}\" is not an absolute URL with a host; {expected}")),
    }
}

fn check_identity(src: &Source<'_>, raw: &IdentityRaw, out: &mut Diagnostics) -> Option<CaseIdentity> {
    let errors_before = out.0.len();
    let proof = match &raw.auth {
        None => Proof::Session,
        Some(a) => match Proof::parse(a.get_ref()) {
            Some(p) => p,
            None => {
                out.0
                    .push(src.error(a.span(), format!("auth \"{}\": expected \"session\" or \"bearer\"", a.get_ref())));
                Proof::Session
            }
        },
    };
    let mut claims = Map::new();
    let mut claims_span = None;
    if let Some(table) = &raw.claims {
        claims_span = Some(table.span());
        for (k, v) in table.get_ref() {
            claims.insert(k.clone(), to_json(v));
        }
    }
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    // The named keys are shorthands for token claims; writing both would leave the reader guessing which wins.
    let named: [(&str, &[&str], Option<Value>); 7] = [
        ("roles", &["roles"], raw.roles.as_deref().map(strings)),
        ("scopes", &["scp", "scope"], raw.scopes.as_ref().map(|s| Value::String(s.join(" ")))),
        ("sub", &["sub"], raw.sub.clone().map(Value::String)),
        ("oid", &["oid"], raw.oid.clone().map(Value::String)),
        ("tenant", &["tid"], raw.tenant.clone().map(Value::String)),
        ("issuer", &["iss"], raw.issuer.clone().map(Value::String)),
        ("amr", &["amr"], raw.amr.as_deref().map(strings)),
    ];
    for (key, claim_names, value) in named {
        let Some(value) = value else { continue };
        for claim in claim_names {
            if let (Some(span), true) = (&claims_span, claims.contains_key(*claim)) {
                out.0.push(
                    src.error(span.clone(), format!("claims.{claim} and {key} both set the same claim; keep one")),
                );
            }
        }
        if let Some(first) = claim_names.first() {
            claims.insert((*first).to_string(), value);
        }
    }
    let mut groups = Vec::new();
    if let Some(gs) = &raw.groups {
        if let (Some(span), true) = (&claims_span, claims.contains_key("groups")) {
            out.0.push(src.error(
                span.clone(),
                "claims.groups and groups both set the same claim; keep one (groups also accepts aliases)",
            ));
        }
        for g in gs {
            let (line, column) = src.line_column(g.span().start);
            groups.push((g.get_ref().clone(), format!("{}:{line}:{column}", src.path.display())));
        }
    }
    (out.0.len() == errors_before).then_some(CaseIdentity { groups, claims, proof })
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

impl CaseIdentity {
    /// The identity against `policy`: group aliases become ids. A group that is neither an alias nor an id
    /// is kept as written, and named in the returned problems: it is most likely a typo, which would make a
    /// "deny" case pass for the wrong reason.
    pub fn resolve(&self, policy: &Policy) -> (Identity, Vec<String>) {
        let mut problems = Vec::new();
        let mut ids = Vec::new();
        for (group, at) in &self.groups {
            match policy.group_id(group) {
                Some(id) => ids.push(Value::String(id.to_string())),
                None => {
                    if !looks_like_id(group) && !policy.mentions_group(group) {
                        problems.push(format!(
                            "{at}: group \"{group}\" is not defined under [groups] and is not a group id; use an alias from [groups] or the group's id"
                        ));
                    }
                    ids.push(Value::String(group.clone()));
                }
            }
        }
        let mut claims = self.claims.clone();
        if !self.groups.is_empty() {
            claims.insert("groups".to_string(), Value::Array(ids));
        }
        (Identity::from_claims(claims, self.proof), problems)
    }
}

/// Runs every case against `policy`, in order.
pub fn run(policy: &Policy, cases: &[Case]) -> Vec<CaseResult> {
    cases.iter().map(|c| run_case(policy, c)).collect()
}

fn run_case(policy: &Policy, case: &Case) -> CaseResult {
    let (identity, mut problems) = match &case.identity {
        Some(i) => {
            let (id, problems) = i.resolve(policy);
            (Some(id), problems)
        }
        None => (None, Vec::new()),
    };
    if let Some(ExpectedRoute::Named(name)) = &case.expect.route
        && !policy.routes().iter().any(|r| *r.name == **name)
    {
        problems.push(format!("expects route \"{name}\", but the policy has no route of that name"));
    }
    let explanation = explain_request(policy, &case.method, &case.url, identity.as_ref());
    let actual = Outcome {
        allow: explanation.decision.allow,
        route: explanation.route_name().map(str::to_string),
        reason: explanation.decision.reason,
        rule: explanation.decision.rule.as_deref().map(str::to_string),
    };
    let passed = problems.is_empty() && mismatches(&case.expect, &actual).is_empty();
    CaseResult {
        name: case.name.clone(),
        location: case.location.clone(),
        passed,
        expected: case.expect.clone(),
        actual,
        problems,
        explanation,
    }
}

/// Each way `actual` differs from `expected`, as "expected …" phrases: the decision, the route, the reason.
fn mismatches(expected: &Expectation, actual: &Outcome) -> Vec<String> {
    let mut out = Vec::new();
    if expected.allow != actual.allow {
        out.push(format!("expected {}", verdict(expected.allow)));
    }
    match &expected.route {
        Some(ExpectedRoute::NoRoute) if actual.route.is_some() => out.push("expected no route".to_string()),
        Some(ExpectedRoute::Named(name)) if actual.route.as_ref() != Some(name) => {
            out.push(format!("expected route {name}"))
        }
        _ => {}
    }
    if let Some(reason) = &expected.reason
        && reason != actual.reason
    {
        out.push(format!("expected reason {reason}"));
    }
    out
}

fn verdict(allow: bool) -> &'static str {
    if allow { "allow" } else { "deny" }
}

impl fmt::Display for Outcome {
    /// `allow by policies/x.toml:19 allow[0] on route gitlab`, `deny (groups-unauthorized) on route
    /// gitlab-admin`, `deny (no-route)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", verdict(self.allow))?;
        if !(self.allow && self.reason == "allowed" && self.rule.is_some()) {
            write!(f, " ({})", self.reason)?;
        }
        if let Some(rule) = &self.rule {
            write!(f, " by {rule}")?;
        }
        if let Some(route) = &self.route {
            write!(f, " on route {route}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Expectation {
    /// `deny on route gitlab-admin (groups-unauthorized)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", verdict(self.allow))?;
        match &self.route {
            Some(ExpectedRoute::NoRoute) => write!(f, " with no route")?,
            Some(ExpectedRoute::Named(name)) => write!(f, " on route {name}")?,
            None => {}
        }
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

impl fmt::Display for CaseResult {
    /// One line for a pass; for a failure, a headline, expected and actual, and how the decision was reached.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = format!("{} case \"{}\"", self.location, self.name);
        if self.passed {
            return write!(f, "{head}: ok, {}", self.actual);
        }
        let mismatches = mismatches(&self.expected, &self.actual);
        let headline = match (self.problems.first(), mismatches.first()) {
            (Some(problem), _) => problem.clone(),
            (None, Some(first)) => format!("{first}, got {}", self.actual),
            (None, None) => format!("got {}", self.actual),
        };
        writeln!(f, "{head}: {headline}")?;
        for problem in self.problems.iter().skip(1) {
            writeln!(f, "    {problem}")?;
        }
        writeln!(f, "    expected: {}", self.expected)?;
        writeln!(f, "    actual:   {}", self.actual)?;
        let explanation = self.explanation.to_string();
        let mut lines = explanation.lines().peekable();
        while let Some(line) = lines.next() {
            write!(f, "    | {line}")?;
            if lines.peek().is_some() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::explain::tests::policy;

    fn load(files: &[(&str, &str)]) -> Result<Vec<Case>, Diagnostics> {
        let files: Vec<(PathBuf, String)> = files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect();
        load_cases(&files)
    }

    fn run_one(path: &str, text: &str) -> Vec<CaseResult> {
        let cases = load(&[(path, text)]).unwrap();
        run(&policy(), &cases)
    }

    /// Identity × request → decision, route and reason, all as the gateway would have it.
    const PASSING: &str = r#"[[case]]
name = "bob (eng) reaches GitLab"
request = "https://gitlab.example.com/explore"
identity = { sub = "bob", groups = ["eng"] }
expect = "allow"
route = "gitlab"

[[case]]
name = "bob cannot reach admin"
request = "GET https://gitlab.example.com/admin/users"
identity = { sub = "bob", groups = ["eng"], amr = ["mfa"] }
expect = "deny"
route = "gitlab-admin"
reason = "groups-unauthorized"

[[case]]
name = "an encoded path reaches the same route"
request = "get https://GITLAB.example.com:443//%61dmin/x/../users"
identity = { groups = ["admins"], amr = ["pwd"] }
expect = "deny"
route = "gitlab-admin"
reason = "mfa-required"

[[case]]
name = "an admin with MFA, the group written as its id"
request = "https://gitlab.example.com/admin"
identity = { groups = ["9e2a4f6b-0000-0000-0000-000000000002"], amr = ["pwd", "mfa"] }
expect = "allow"
route = "gitlab-admin"
reason = "allowed"

[[case]]
name = "a banned user is denied by rule"
request = "https://gitlab.example.com/"
identity = { user = "x", oid = "banned-oid", groups = ["eng"] }
expect = "deny"
reason = "denied-by-rule"

[[case]]
name = "a deploy token reaches GitLab"
request = "POST https://gitlab.example.com/api/v4/projects"
identity = { roles = ["Deploy.Write"], auth = "bearer" }
expect = "allow"
route = "gitlab"

[[case]]
name = "the deploy role needs a bearer token"
request = "POST https://gitlab.example.com/api/v4/projects"
identity = { roles = ["Deploy.Write"] }
expect = "deny"
reason = "no-rule-matched"

[[case]]
name = "CI publishes a package from platform"
request = "PUT https://gitlab.example.com/api/v4/packages/generic/x"
identity = { auth = "bearer", issuer = "https://gitlab.example.com", claims = { project_path = "platform/api" } }
expect = "allow"
route = "registry"

[[case]]
name = "CI of another group cannot publish"
request = "PUT https://gitlab.example.com/api/v4/packages/generic/x"
identity = { auth = "bearer", issuer = "https://gitlab.example.com", claims = { project_path = "other/api" } }
expect = "deny"
reason = "claims-unauthorized"

[[case]]
name = "a browser session cannot publish packages"
request = "PUT https://gitlab.example.com/api/v4/packages/generic/x"
identity = { groups = ["eng"] }
expect = "deny"
route = "registry"
reason = "unauthenticated"

[[case]]
name = "bearer tokens are not accepted on admin"
request = "https://gitlab.example.com/admin"
identity = { auth = "bearer", groups = ["admins"], amr = ["mfa"] }
expect = "deny"
reason = "bearer-not-accepted"

[[case]]
name = "anonymous visitors are sent to sign in"
request = "https://gitlab.example.com/"
expect = "deny"
reason = "unauthenticated"

[[case]]
name = "status pages are public"
request = "https://jira.example.com/status"
expect = "allow"
route = "status"
reason = "public"

[[case]]
name = "webhooks only by POST"
request = "GET https://ci.example.com/hooks/build"
identity = { roles = ["Hooks.Send"] }
expect = "deny"
route = "none"
reason = "no-route"

[[case]]
name = "broken encodings never reach a route"
request = "https://gitlab.example.com/a%00"
identity = { groups = ["eng"] }
expect = "deny"
reason = "bad-path"
"#;

    #[test]
    fn a_table_of_cases_passes_with_one_line_each() {
        let results = run_one("policies/gitlab.test.toml", PASSING);
        assert_eq!(results.len(), 15);
        for r in &results {
            assert!(r.passed, "{r}");
            assert!(!r.to_string().contains('\n'), "{r}");
        }
        assert_eq!(
            results[0].to_string(),
            "policies/gitlab.test.toml:1 case \"bob (eng) reaches GitLab\": ok, allow by policies/gitlab.toml:9 allow[0] on route gitlab"
        );
        assert_eq!(
            results[1].to_string(),
            "policies/gitlab.test.toml:8 case \"bob cannot reach admin\": ok, deny (groups-unauthorized) on route gitlab-admin"
        );
        assert_eq!(results[13].actual.route, None);
        assert!(results[13].to_string().ends_with(": ok, deny (no-route)"));
        assert_eq!(results[1].actual.rule, None);
        assert_eq!(results[4].actual.rule.as_deref(), Some("policies/gitlab.toml:10 deny[0]"));
    }

    const FAILING: &str = r#"[[case]]
name = "alice cannot reach admin"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["admins"], amr = ["mfa"] }
expect = "deny"

[[case]]
name = "bob reaches admin"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["eng"] }
expect = "allow"

[[case]]
name = "bob is stopped by the main route"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["eng"] }
expect = "deny"
route = "gitlab"

[[case]]
name = "bob is asked for MFA"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["eng"] }
expect = "deny"
reason = "mfa-required"

[[case]]
name = "a typo in a group passes for the wrong reason"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["eng", "admns"], amr = ["mfa"] }
expect = "deny"

[[case]]
name = "a route name the policy lacks"
request = "https://gitlab.example.com/admin/users"
identity = { groups = ["eng"] }
expect = "deny"
route = "gitlab-admn"

[[case]]
name = "no route expected"
request = "https://gitlab.example.com/x"
identity = { groups = ["admins"] }
expect = "deny"
route = "none"
"#;

    #[test]
    fn failing_cases_say_what_was_expected_and_what_happened() {
        let results = run_one("policies/wrong.test.toml", FAILING);
        assert!(results.iter().all(|r| !r.passed));
        let headline = |i: usize| results[i].to_string().lines().next().unwrap_or("").to_string();
        assert_eq!(
            headline(0),
            "policies/wrong.test.toml:1 case \"alice cannot reach admin\": expected deny, got allow by policies/gitlab.toml:18 allow[0] on route gitlab-admin"
        );
        assert_eq!(
            headline(1),
            "policies/wrong.test.toml:7 case \"bob reaches admin\": expected allow, got deny (groups-unauthorized) on route gitlab-admin"
        );
        assert_eq!(
            headline(2),
            "policies/wrong.test.toml:13 case \"bob is stopped by the main route\": expected route gitlab, got deny (groups-unauthorized) on route gitlab-admin"
        );
        assert_eq!(
            headline(3),
            "policies/wrong.test.toml:20 case \"bob is asked for MFA\": expected reason mfa-required, got deny (groups-unauthorized) on route gitlab-admin"
        );
        assert_eq!(
            headline(4),
            "policies/wrong.test.toml:27 case \"a typo in a group passes for the wrong reason\": policies/wrong.test.toml:30:31: group \"admns\" is not defined under [groups] and is not a group id; use an alias from [groups] or the group's id"
        );
        assert_eq!(
            headline(5),
            "policies/wrong.test.toml:33 case \"a route name the policy lacks\": expects route \"gitlab-admn\", but the policy has no route of that name"
        );
        assert_eq!(
            headline(6),
            "policies/wrong.test.toml:40 case \"no route expected\": expected no route, got deny (no-rule-matched) on route gitlab"
        );
    }

    #[test]
    fn a_failure_report_shows_expected_actual_and_the_explanation() {
        let results = run_one("policies/wrong.test.toml", FAILING);
        assert_eq!(
            results[1].to_string(),
            "policies/wrong.test.toml:7 case \"bob reaches admin\": expected allow, got deny (groups-unauthorized) on route gitlab-admin
    expected: allow
    actual:   deny (groups-unauthorized) on route gitlab-admin
    | request:  GET gitlab.example.com /admin/users
    | identity: session; groups eng
    | route:    gitlab-admin (policies/gitlab.toml:12)
    | deny rules: none
    | allow rules:
    |   policies/gitlab.toml:18 allow[0]: groups [admins] ✗ (identity has: eng), mfa ✗ (amr: none)
    | decision: DENY (groups-unauthorized)"
        );
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        load(files).unwrap_err().0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_keys_are_errors_at_their_position() {
        let text = "[[case]]\nname = \"a\"\nrequest = \"https://x.example.com/\"\nexpected = \"allow\"\n";
        let e = errors(&[("t.test.toml", text)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.test.toml:4:1: error: unknown field `expected`"), "{e:?}");

        let text = "[[case]]\nname = \"a\"\nrequest = \"https://x.example.com/\"\nidentity = { group = [\"eng\"] }\nexpect = \"allow\"\n";
        let e = errors(&[("t.test.toml", text)]);
        assert!(e[0].starts_with("t.test.toml:4:14: error: unknown field `group`"), "{e:?}");
    }

    #[test]
    fn every_bad_value_in_every_file_is_reported_at_its_position() {
        let a = r#"[[case]]
name = "a"
request = "https://x.example.com/"
expect = "permit"

[[case]]
name = "b"
request = "G{T https://x.example.com/"
identity = { auth = "cookie" }
expect = "allow"
"#;
        let b = r#"[[case]]
name = " "
request = "x.example.com/admin"
expect = "allow"
route = "none"

[[case]]
name = "d"
request = "https://x.example.com/"
identity = { sub = "s", claims = { sub = "t" } }
expect = "deny"
reason = "allowed"
"#;
        let e = errors(&[("a.test.toml", a), ("b.test.toml", b)]);
        assert_eq!(
            e,
            [
                "a.test.toml:4:10: error: expect \"permit\": expected \"allow\" or \"deny\"",
                "a.test.toml:8:11: error: \"G{T\" is not an HTTP method; expected \"METHOD URL\" such as \"GET https://gitlab.example.com/explore\"",
                "a.test.toml:9:21: error: auth \"cookie\": expected \"session\" or \"bearer\"",
                "b.test.toml:2:8: error: a case needs a name that says what it checks",
                "b.test.toml:3:11: error: \"x.example.com/admin\" is not an absolute URL with a host; expected \"METHOD URL\" such as \"GET https://gitlab.example.com/explore\"",
                "b.test.toml:5:9: error: a request no route matches is always denied (no-route): expect = \"deny\", or name the route",
                "b.test.toml:10:34: error: claims.sub and sub both set the same claim; keep one",
                "b.test.toml:12:10: error: reason \"allowed\" is the reason of an allow, but this case expects deny",
            ]
        );
    }

    #[test]
    fn a_test_file_without_cases_is_an_error() {
        let e = errors(&[("empty.test.toml", "# nothing yet\n")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("empty.test.toml: error: no [[case]] tables"), "{e:?}");
    }

    #[test]
    fn strange_input_is_reported_not_panicked_on() {
        for text in [
            "",
            "[[case]]",
            "[[case]]\nname = 1\n",
            "case = 3",
            "[[case]]\nname = \"x\"\nrequest = \"\"\nexpect = \"deny\"\n",
            "[[case]]\nname = \"x\"\nrequest = \"GET https://x/ extra\"\nexpect = \"deny\"\n",
            "[[case]]\nname = \"é\"\nrequest = \"https://[::1/\"\nexpect = \"deny\"\n",
            "\u{0}\u{1}[[",
        ] {
            assert!(load(&[("x.test.toml", text)]).is_err(), "{text:?}");
        }
        let odd = "[[case]]\nname = \"x\"\nrequest = \"https://u@X.example.com.:8443/%2e%2e/%2F\"\nidentity = { claims = { n = 1.5, d = 1979-05-27, t = { a = [true] } } }\nexpect = \"deny\"\n";
        let results = run_one("x.test.toml", odd);
        assert_eq!(results.len(), 1);
        assert!(!results[0].to_string().is_empty());
    }

    #[test]
    fn case_files_are_read_from_the_policy_directory_in_name_order() {
        let dir = std::env::temp_dir().join(format!(
            "postern-cases-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let case = |name: &str| {
            format!("[[case]]\nname = \"{name}\"\nrequest = \"https://jira.example.com/status\"\nexpect = \"allow\"\n")
        };
        std::fs::write(dir.join("b.test.toml"), case("second")).unwrap();
        std::fs::write(dir.join("a.test.toml"), case("first")).unwrap();
        std::fs::write(dir.join("gitlab.toml"), "not a test file").unwrap();
        std::fs::write(dir.join(".hidden.test.toml"), "broken =").unwrap();
        let cases = load_case_files(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<String> = cases.unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["first", "second"]);
        assert!(load_case_files(&dir).is_err());
    }
}
