//! Policy files → a compiled [`Policy`]: all files are parsed and checked together; every problem is reported
//! with its file, line and column.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Method;
use toml::Spanned;
use url::Url;

use super::model::{PolicyFile, RouteFile, RuleFile};
use super::path::normalize_path;
use super::{Condition, HeaderTemplate, HostPattern, IdentityHeaders, Policy, Route, Rule, TemplatePart};
use crate::diag::{Diagnostics, Source};
use crate::identity::Proof;

/// Loads every `*.toml` in `dir` (except `*.test.toml`, which hold policy tests). On success, also returns the
/// warnings.
pub fn load_dir(dir: &Path) -> Result<(Policy, Diagnostics), Diagnostics> {
    let mut out = Diagnostics::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.file_error(dir, format!("cannot read the policy directory: {e}"));
            return Err(out);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && !name.ends_with(".test.toml") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    let mut sources = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => sources.push((f, text)),
            Err(e) => out.file_error(&f, format!("cannot read: {e}")),
        }
    }
    if sources.is_empty() && !out.has_errors() {
        out.file_error(dir, "no policy files (*.toml) here: without routes every request is refused");
    }
    match load_sources(&sources) {
        Ok((policy, warnings)) if !out.has_errors() => {
            out.extend(warnings);
            Ok((policy, out))
        }
        Ok(_) => Err(out),
        Err(errors) => {
            out.extend(errors);
            Err(out)
        }
    }
}

/// Compiles policy files given as `(path, text)` pairs.
pub fn load_sources(files: &[(PathBuf, String)]) -> Result<(Policy, Diagnostics), Diagnostics> {
    let mut out = Diagnostics::default();
    let sources: Vec<Source<'_>> = files.iter().map(|(p, t)| Source::new(p, t)).collect();
    let mut parsed = Vec::new();
    for src in &sources {
        match src.parse_toml::<PolicyFile>() {
            Ok(f) => parsed.push((src, f)),
            Err(d) => out.0.push(d),
        }
    }
    // Group aliases are shared by all files.
    let mut groups: HashMap<String, (String, String)> = HashMap::new();
    for (src, file) in &parsed {
        for (alias, id) in &file.groups {
            let here = location(src, id.span());
            match groups.get(alias) {
                Some((existing, at)) if existing != id.get_ref() => {
                    out.0.push(src.error(
                        id.span(),
                        format!("group alias \"{alias}\" is already defined as \"{existing}\" at {at}"),
                    ))
                }
                _ => {
                    groups.insert(alias.clone(), (id.get_ref().clone(), here));
                }
            }
        }
    }
    let mut policy = Policy {
        groups: groups.iter().map(|(alias, (id, _))| (alias.clone(), id.clone())).collect(),
        ..Policy::default()
    };
    let mut names: HashMap<String, String> = HashMap::new();
    for (src, file) in &parsed {
        for route in &file.route {
            let c = RouteCompiler {
                src,
                groups: &groups,
                out: &mut out,
                mentioned: &mut policy.mentioned_groups,
                allow_email: file.allow_email_identifiers,
                mfa_acr: &file.mfa_acr_values,
            };
            if let Some(compiled) = c.route(route) {
                let here = compiled.location.clone();
                if let Some(at) = names.insert(compiled.name.to_string(), here) {
                    out.0.push(src.error(
                        route.get_ref().name.span(),
                        format!("route name \"{}\" is already used at {at}; names must be unique", compiled.name),
                    ));
                }
                policy.routes.push(Arc::new(compiled));
            }
        }
    }
    check_ambiguity(&policy, &mut out);
    index(&mut policy);
    if out.has_errors() { Err(out) } else { Ok((policy, out)) }
}

fn location(src: &Source<'_>, span: std::ops::Range<usize>) -> String {
    let (line, _) = src.line_column(span.start);
    format!("{}:{line}", src.path.display())
}

struct RouteCompiler<'a, 'b> {
    src: &'a Source<'b>,
    groups: &'a HashMap<String, (String, String)>,
    out: &'a mut Diagnostics,
    mentioned: &'a mut std::collections::HashSet<String>,
    allow_email: bool,
    mfa_acr: &'a [String],
}

impl RouteCompiler<'_, '_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.out.0.push(self.src.error(span, message));
    }

    fn route(mut self, spanned: &Spanned<RouteFile>) -> Option<Route> {
        let r = spanned.get_ref();
        let errors_before = self.out.0.len();
        let name = r.name.get_ref().trim().to_string();
        if name.is_empty() {
            self.error(r.name.span(), "route name must not be empty");
        }
        let host = self.host(&r.host);
        let path = match &r.path {
            None => "/".to_string(),
            Some(p) => match normalize_path(p.get_ref()) {
                Ok(n) => {
                    if n.split('/').any(|seg| seg.contains('*') && seg != "*" && seg != "**") {
                        self.error(
                            p.span(),
                            "in a path, * stands for one whole segment and ** for any number of segments, as in \"/projects/*/settings\" or \"/api/**/admin\"",
                        );
                    }
                    n
                }
                Err(e) => {
                    self.error(p.span(), format!("path \"{}\": {e}", p.get_ref()));
                    "/".to_string()
                }
            },
        };
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .filter_map(|m| match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        self.error(m.span(), format!("\"{}\" is not an HTTP method", m.get_ref()));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let upstream = match Url::parse(r.upstream.get_ref()) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
                if u.query().is_some() || u.fragment().is_some() {
                    self.error(r.upstream.span(), "upstream must not have a query or fragment");
                }
                Some(u)
            }
            _ => {
                self.error(
                    r.upstream.span(),
                    format!(
                        "upstream \"{}\" is not an http:// or https:// URL such as \"http://10.0.0.5:8080\"",
                        r.upstream.get_ref()
                    ),
                );
                None
            }
        };
        let timeout = r.timeout.as_ref().and_then(|t| match crate::duration::parse(t.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(t.span(), e);
                None
            }
        });
        let max_body = r.max_body.as_ref().and_then(|m| match m.get_ref() {
            crate::config::file::SizeValue::Bytes(n) => Some(*n),
            crate::config::file::SizeValue::Text(t) => match crate::size::parse(t) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.error(m.span(), e);
                    None
                }
            },
        });
        let (mut accepts_session, mut accepts_bearer) = (true, true);
        if let Some(kinds) = &r.auth {
            accepts_session = false;
            accepts_bearer = false;
            for k in kinds {
                match k.get_ref().as_str() {
                    "session" => accepts_session = true,
                    "bearer" => accepts_bearer = true,
                    other => self.error(k.span(), format!("auth \"{other}\": expected \"session\" or \"bearer\"")),
                }
            }
            if kinds.is_empty() {
                self.error(
                    spanned.span(),
                    "auth = [] accepts nobody; list \"session\", \"bearer\" or both, or set public = true",
                );
            }
        }
        let location = location(self.src, spanned.span());
        let mut allow = Vec::new();
        for (i, rule) in r.allow.iter().enumerate() {
            let label = format!("{} allow[{i}]", location_of(self.src, rule.span()));
            if let Some(compiled) = self.rule(rule, label) {
                if compiled.conditions.is_empty() {
                    self.out.0.push(self.src.warning(
                        rule.span(),
                        format!("route \"{name}\": this rule allows everyone who is signed in (it has no conditions)"),
                    ));
                }
                allow.push(compiled);
            }
        }
        let mut deny = Vec::new();
        for (i, rule) in r.deny.iter().enumerate() {
            let label = format!("{} deny[{i}]", location_of(self.src, rule.span()));
            if let Some(compiled) = self.rule(rule, label) {
                deny.push(compiled);
            }
        }
        if r.public && (!r.allow.is_empty() || !r.deny.is_empty()) {
            self.error(spanned.span(), format!("route \"{name}\" is public = true, so its allow and deny rules would never be used; remove one or the other"));
        }
        if !r.public && r.allow.is_empty() {
            self.out.0.push(self.src.warning(
                spanned.span(),
                format!("route \"{name}\" has no allow rules, so every request to it is refused"),
            ));
        }
        let audiences = r.audiences.as_ref().map(|a| a.iter().map(|x| x.get_ref().clone()).collect());
        let identity_headers = match &r.identity_headers {
            None => IdentityHeaders::default(),
            Some(names) => {
                let mut chosen = IdentityHeaders {
                    user: false,
                    email: false,
                    preferred_username: false,
                    groups: false,
                    assertion: false,
                };
                for n in names {
                    match n.get_ref().as_str() {
                        "user" => chosen.user = true,
                        "email" => chosen.email = true,
                        "preferred_username" => chosen.preferred_username = true,
                        "groups" => chosen.groups = true,
                        "assertion" => chosen.assertion = true,
                        other => self.error(
                            n.span(),
                            format!("identity header \"{other}\": expected user, email, preferred_username, groups or assertion"),
                        ),
                    }
                }
                chosen
            }
        };
        let mut extra_headers = Vec::new();
        for (name, template) in r.headers.iter().flatten() {
            match (http::HeaderName::from_bytes(name.as_bytes()), parse_template(template.get_ref())) {
                (Ok(header), _) if is_reserved_header(&header) => self.error(
                    template.span(),
                    format!("header \"{name}\" cannot be set by a route: it is hop-by-hop, Host, or one of Postern's identity headers"),
                ),
                (Ok(header), Ok(t)) => extra_headers.push((header, t)),
                (Err(_), _) => self.error(template.span(), format!("\"{name}\" is not a valid header name")),
                (_, Err(e)) => self.error(template.span(), e),
            }
        }
        if self.out.0[errors_before..].iter().any(|d| d.severity == crate::diag::Severity::Error) {
            return None;
        }
        let upstream = upstream?;
        Some(Route {
            name: name.into(),
            host: host?,
            path,
            methods,
            upstream_origin: upstream.origin().ascii_serialization(),
            upstream,
            preserve_host: r.preserve_host.unwrap_or(true),
            timeout,
            max_body,
            accepts_session,
            accepts_bearer,
            public: r.public,
            audiences,
            identity_headers,
            extra_headers,
            allow,
            deny,
            location,
        })
    }

    fn host(&mut self, h: &Spanned<String>) -> Option<HostPattern> {
        let text = h.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        if text == "*" {
            Some(HostPattern::Any)
        } else if let Some(suffix) = text.strip_prefix("*.") {
            if valid_name(suffix) {
                Some(HostPattern::Wildcard(format!(".{suffix}")))
            } else {
                self.error(h.span(), format!("host \"{}\": expected a name such as \"*.example.com\"", h.get_ref()));
                None
            }
        } else if valid_name(&text) || (text.starts_with('[') && text.ends_with(']')) {
            Some(HostPattern::Exact(text))
        } else {
            self.error(
                h.span(),
                format!("host \"{}\": expected a host name without port (\"gitlab.example.com\"), \"*.example.com\" or \"*\"", h.get_ref()),
            );
            None
        }
    }

    fn rule(&mut self, spanned: &Spanned<RuleFile>, label: String) -> Option<Rule> {
        let r = spanned.get_ref();
        let mut conditions = Vec::new();
        let list = |v: &Vec<Spanned<String>>| v.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
        if let Some(gs) = &r.groups {
            let mut ids = Vec::new();
            for g in gs {
                match self.groups.get(g.get_ref()) {
                    Some((id, _)) => ids.push(id.clone()),
                    None if looks_like_id(g.get_ref()) => ids.push(g.get_ref().clone()),
                    None => self.error(
                        g.span(),
                        format!(
                            "group \"{}\" is not defined: add it under [groups] (for example {} = \"<group object id>\"), or write the group id itself",
                            g.get_ref(),
                            g.get_ref()
                        ),
                    ),
                }
            }
            self.mentioned.extend(ids.iter().cloned());
            conditions.push(Condition::Groups(ids));
        }
        if let Some(v) = &r.users {
            conditions.push(Condition::Users(list(v)));
        }
        if let Some(v) = &r.roles {
            conditions.push(Condition::Roles(list(v)));
        }
        if let Some(v) = &r.scopes {
            conditions.push(Condition::Scopes(list(v)));
        }
        if let Some(v) = &r.issuer {
            conditions.push(Condition::Issuer(v.values()));
        }
        if let Some(v) = &r.tenant {
            conditions.push(Condition::Tenant(v.values()));
        }
        for (name, values) in r.claims.iter().flatten() {
            let patterns: BTreeMap<String, ()> = values.values().into_iter().map(|s| (s, ())).collect();
            conditions.push(Condition::Claim { name: name.clone(), patterns: patterns.into_keys().collect() });
        }
        if let Some(true) = r.mfa {
            conditions.push(Condition::Mfa(self.mfa_acr.to_vec()))
        }
        if let Some(emails) = &r.emails {
            if !self.allow_email {
                self.error(
                    spanned.span(),
                    "emails conditions need allow_email_identifiers = true at the top of this file: an email address can be reassigned to another person, so prefer users (object ids) or groups",
                );
            }
            conditions.push(Condition::Emails(list(emails)));
        }
        if let Some(g) = r.guest {
            conditions.push(Condition::Guest(g));
        }
        if let Some(a) = &r.auth {
            match a.get_ref().as_str() {
                "session" => conditions.push(Condition::Auth(Proof::Session)),
                "bearer" => conditions.push(Condition::Auth(Proof::Bearer)),
                other => self.error(a.span(), format!("auth \"{other}\": expected \"session\" or \"bearer\"")),
            }
        }
        let empty_lists = [
            ("groups", r.groups.as_ref().is_some_and(Vec::is_empty)),
            ("users", r.users.as_ref().is_some_and(Vec::is_empty)),
            ("roles", r.roles.as_ref().is_some_and(Vec::is_empty)),
            ("emails", r.emails.as_ref().is_some_and(Vec::is_empty)),
            ("scopes", r.scopes.as_ref().is_some_and(Vec::is_empty)),
            ("issuer", r.issuer.as_ref().is_some_and(|v| v.values().is_empty())),
            ("tenant", r.tenant.as_ref().is_some_and(|v| v.values().is_empty())),
            ("claims", r.claims.iter().flatten().any(|(_, v)| v.values().is_empty())),
        ];
        for (kind, _) in empty_lists.iter().filter(|(_, empty)| *empty) {
            self.error(
                spanned.span(),
                format!("an empty {kind} list matches nobody; remove the condition or list values"),
            );
        }
        Some(Rule { label: label.into(), conditions })
    }
}

/// Parses `"{claims.department}-{user}"` into parts; unknown placeholders are errors.
fn parse_template(text: &str) -> Result<HeaderTemplate, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("\"{text}\": a {{ without its }}"));
        };
        let name = &rest[open + 1..open + close];
        parts.push(match name {
            "user" => TemplatePart::User,
            "email" => TemplatePart::Email,
            "preferred_username" => TemplatePart::PreferredUsername,
            "tenant" => TemplatePart::Tenant,
            n if n.starts_with("claims.") && n.len() > 7 => TemplatePart::Claim(n[7..].to_string()),
            other => {
                return Err(format!(
                    "\"{text}\": unknown placeholder {{{other}}}; expected {{user}}, {{email}}, {{preferred_username}}, {{tenant}} or {{claims.NAME}}"
                ));
            }
        });
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_string()));
    }
    Ok(HeaderTemplate(parts))
}

/// Headers a route may not set: they belong to the connection, to the request's target, or to Postern.
fn is_reserved_header(name: &http::HeaderName) -> bool {
    crate::upstream::headers::is_identity_header(name)
        || matches!(
            name.as_str(),
            "host"
                | "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "content-length"
                | "cookie"
                | "authorization"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "forwarded"
                | "x-request-id"
        )
}

fn location_of(src: &Source<'_>, span: std::ops::Range<usize>) -> String {
    location(src, span)
}

/// Entra group ids are GUIDs; other providers' group values are written as aliases.
pub(crate) fn looks_like_id(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(
            |(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() }
            },
        )
}

/// Two routes that would both be the most specific for some request make the outcome depend on file order.
fn check_ambiguity(policy: &Policy, out: &mut Diagnostics) {
    for (i, a) in policy.routes.iter().enumerate() {
        for b in &policy.routes[..i] {
            let methods_overlap = match (&a.methods, &b.methods) {
                (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
                _ => true,
            };
            if a.host == b.host && a.path.trim_end_matches('/') == b.path.trim_end_matches('/') && methods_overlap {
                out.0.push(crate::diag::Diagnostic {
                    severity: crate::diag::Severity::Error,
                    file: PathBuf::from(a.location.rsplit_once(':').map(|(f, _)| f).unwrap_or(&a.location)),
                    line: a.location.rsplit_once(':').and_then(|(_, l)| l.parse().ok()).unwrap_or(0),
                    column: 1,
                    message: format!(
                        "routes \"{}\" and \"{}\" (at {}) match the same host, path and methods, so neither is more specific; give them different paths, hosts or methods",
                        a.name, b.name, b.location
                    ),
                });
            }
        }
    }
}

fn index(policy: &mut Policy) {
    let mut order: Vec<usize> = (0..policy.routes.len()).collect();
    // Longest path first, so the first route that covers a path is the most specific one.
    order.sort_by_key(|&i| {
        let path = &policy.routes[i].path;
        // A glob is less specific than a literal path of the same length.
        let literal = super::path::literal_prefix_len(path);
        std::cmp::Reverse((literal.min(path.trim_end_matches('/').len()), !path.contains('*')))
    });
    let mut wildcard: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in order {
        match &policy.routes[i].host {
            HostPattern::Exact(h) => policy.exact_hosts.entry(h.clone()).or_default().push(i),
            HostPattern::Wildcard(s) => wildcard.entry(s.clone()).or_default().push(i),
            HostPattern::Any => policy.any_host.push(i),
        }
    }
    let mut wildcard: Vec<(String, Vec<usize>)> = wildcard.into_iter().collect();
    wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
    policy.wildcard_hosts = wildcard;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<(Policy, Diagnostics), Diagnostics> {
        load_sources(&[(PathBuf::from("p.toml"), text.to_string())])
    }

    const BASE: &str = r#"
[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"

[[route]]
name = "gitlab"
host = "gitlab.example.com"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["eng"] }]

[[route]]
name = "gitlab-admin"
host = "gitlab.example.com"
path = "/admin"
upstream = "http://10.0.0.5:8080"
allow = [{ groups = ["admins"], mfa = true }]

[[route]]
name = "wild"
host = "*.example.com"
upstream = "http://10.0.0.6"
allow = [{ groups = ["eng"] }]

[[route]]
name = "any"
host = "*"
path = "/public"
upstream = "http://10.0.0.7"
public = true
"#;

    #[test]
    fn the_most_specific_route_wins() {
        let (p, _) = load(BASE).unwrap();
        let get = Method::GET;
        let name = |h: &str, path: &str| p.route(h, path, &get).map(|r| r.name.clone());
        assert_eq!(name("gitlab.example.com", "/"), Some("gitlab".into()));
        assert_eq!(name("gitlab.example.com", "/admin/users"), Some("gitlab-admin".into()));
        assert_eq!(name("gitlab.example.com", "/administrator"), Some("gitlab".into()));
        assert_eq!(name("jira.example.com", "/x"), Some("wild".into()));
        assert_eq!(name("example.com", "/public/a"), Some("any".into()));
        assert_eq!(name("example.com", "/private"), None);
    }

    #[test]
    fn an_undefined_group_alias_is_an_error_at_its_position() {
        let text = BASE.replace("groups = [\"admins\"]", "groups = [\"admns\"]");
        let err = load(&text).unwrap_err();
        assert!(err.to_string().contains("p.toml:17:22: error: group \"admns\" is not defined"), "{err}");
    }

    #[test]
    fn equally_specific_routes_are_a_load_error() {
        let text = format!(
            "{BASE}\n[[route]]\nname = \"dup\"\nhost = \"gitlab.example.com\"\npath = \"/admin/\"\nupstream = \"http://x\"\nallow = [{{ groups = [\"eng\"] }}]\n"
        );
        let err = load(&text).unwrap_err();
        assert!(err.to_string().contains("\"dup\" and \"gitlab-admin\""), "{err}");
    }

    #[test]
    fn rules_without_conditions_are_warned_about() {
        let text = BASE.replace(
            "allow = [{ groups = [\"eng\"] }]\n\n[[route]]\nname = \"gitlab-admin\"",
            "allow = [{}]\n\n[[route]]\nname = \"gitlab-admin\"",
        );
        let (_, warnings) = load(&text).unwrap();
        assert!(warnings.to_string().contains("allows everyone who is signed in"), "{warnings}");
    }

    #[test]
    fn bad_values_are_all_reported() {
        let text = "[[route]]\nname = \"x\"\nhost = \"a b\"\nupstream = \"ftp://x\"\nauth = [\"cookie\"]\nallow = [{ groups = [] }]\n";
        let err = load(text).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }
}

#[cfg(test)]
mod route_option_tests {
    use super::*;
    use crate::identity::{Identity, Proof};

    fn load(text: &str) -> Result<(Policy, Diagnostics), Diagnostics> {
        load_sources(&[(PathBuf::from("p.toml"), text.to_string())])
    }

    #[test]
    fn extra_headers_render_claims_and_bad_templates_are_errors() {
        let text = r#"
[[route]]
name = "x"
host = "*"
upstream = "http://10.0.0.1"
identity_headers = ["user", "assertion"]
headers = { "X-Team" = "{claims.department}/{user}" }
allow = [{ users = ["o"] }]
"#;
        let (p, _) = load(text).unwrap();
        let route = &p.routes()[0];
        assert!(route.identity_headers.user && !route.identity_headers.email && route.identity_headers.assertion);
        let claims = serde_json::json!({"sub": "s", "oid": "o", "department": "platform"});
        let id = Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session);
        assert_eq!(route.extra_headers[0].1.render(&id).as_deref(), Some("platform/o"));
        for bad in ["{claims.}", "{nope}", "{user"] {
            let err = load(&text.replace("{claims.department}/{user}", bad)).unwrap_err();
            assert!(err.to_string().contains("p.toml:7:"), "{bad}: {err}");
        }
        let err = load(&text.replace("X-Team", "X-Forwarded-User")).unwrap_err();
        assert!(err.to_string().contains("cannot be set by a route"), "{err}");
    }

    #[test]
    fn emails_need_an_explicit_opt_in_and_a_verified_address() {
        let rule = "[[route]]\nname = \"x\"\nhost = \"*\"\nupstream = \"http://10.0.0.1\"\nallow = [{ emails = [\"alice@example.com\"] }]\n";
        let err = load(rule).unwrap_err();
        assert!(err.to_string().contains("allow_email_identifiers"), "{err}");
        let (p, _) = load(&format!("allow_email_identifiers = true\n{rule}")).unwrap();
        let route = &p.routes()[0];
        let id = |verified: bool| {
            let c = serde_json::json!({"sub": "s", "email": "Alice@example.com", "email_verified": verified});
            Identity::from_claims(c.as_object().cloned().unwrap(), Proof::Session)
        };
        assert!(crate::policy::decide(route, &id(true)).allow);
        assert!(!crate::policy::decide(route, &id(false)).allow, "an unverified email never matches");
    }

    #[test]
    fn mfa_accepts_configured_acr_values() {
        let text = "mfa_acr_values = [\"c2\"]\n[[route]]\nname = \"x\"\nhost = \"*\"\nupstream = \"http://10.0.0.1\"\nallow = [{ mfa = true }]\n";
        let (p, _) = load(text).unwrap();
        let id = |c: serde_json::Value| Identity::from_claims(c.as_object().cloned().unwrap(), Proof::Session);
        let route = &p.routes()[0];
        assert!(crate::policy::decide(route, &id(serde_json::json!({"sub": "s", "acr": "c2"}))).allow);
        assert!(crate::policy::decide(route, &id(serde_json::json!({"sub": "s", "amr": ["mfa"]}))).allow);
        assert!(!crate::policy::decide(route, &id(serde_json::json!({"sub": "s", "acr": "c1", "amr": ["pwd"]}))).allow);
    }

    #[test]
    fn glob_routes_are_less_specific_than_literal_ones() {
        let route = |name: &str, path: &str| {
            format!(
                "[[route]]\nname = \"{name}\"\nhost = \"h\"\npath = \"{path}\"\nupstream = \"http://10.0.0.1\"\nallow = [{{ users = [\"o\"] }}]\n"
            )
        };
        let text = [
            route("settings", "/projects/*/settings"),
            route("projects", "/projects"),
            route("admin", "/api/**/admin"),
        ]
        .concat();
        let (p, _) = load(&text).unwrap();
        let name = |path: &str| p.route("h", path, &http::Method::GET).map(|r| r.name.clone());
        assert_eq!(name("/projects/web/settings/x").as_deref(), Some("settings"));
        assert_eq!(name("/projects/web/issues").as_deref(), Some("projects"));
        assert_eq!(name("/api/v4/admin/users").as_deref(), Some("admin"));
        assert_eq!(name("/api/v4/users"), None);
        assert!(load(&route("bad", "/projects/a*b")).is_err());
    }
}
