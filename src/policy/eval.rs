//! `decide`: a route's rules against an identity. Pure: no I/O, no clock, no async. `deny` entries are checked
//! first and win; then the first `allow` entry whose conditions all hold lets the request through; nothing
//! matched means deny.

use serde_json::Value;

use super::{Condition, Route, Rule};
use crate::identity::{Identity, Proof};

/// The outcome of a policy check, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Let the request through.
    pub allow: bool,
    /// The rule that decided (`policies/x.toml:12 allow[0]`), if one did.
    pub rule: Option<std::sync::Arc<str>>,
    /// A reason code for logs, metrics and the deny page: `allowed`, `public`, `denied-by-rule`,
    /// `groups-unauthorized`, `mfa-required`, `no-rule-matched`, …
    pub reason: &'static str,
}

/// Decides whether `identity` may use `route`.
pub fn decide(route: &Route, identity: &Identity) -> Decision {
    if route.public {
        return Decision { allow: true, rule: None, reason: "public" };
    }
    if let Some(rule) = route.deny.iter().find(|r| failing(r, identity).is_none()) {
        return Decision { allow: false, rule: Some(rule.label.clone()), reason: "denied-by-rule" };
    }
    // Unknown groups (an overage Graph could not resolve) might match a deny rule: fail closed.
    if identity.groups_unresolved
        && let Some(rule) = route.deny.iter().find(|r| failing_if_groups_matched(r, identity).is_none())
    {
        return Decision { allow: false, rule: Some(rule.label.clone()), reason: "groups-unavailable" };
    }
    let mut failed_kinds: Vec<&'static str> = Vec::new();
    for rule in &route.allow {
        match failing(rule, identity) {
            None => {
                return Decision { allow: true, rule: Some(rule.label.clone()), reason: "allowed" };
            }
            Some(kind) => {
                if !failed_kinds.contains(&kind) {
                    failed_kinds.push(kind);
                }
            }
        }
    }
    let reason = match failed_kinds.as_slice() {
        ["groups"] => "groups-unauthorized",
        ["users"] => "user-unauthorized",
        ["roles"] => "roles-unauthorized",
        ["scopes"] => "scopes-unauthorized",
        ["issuer"] => "issuer-unauthorized",
        ["tenant"] => "tenant-unauthorized",
        ["claims"] => "claims-unauthorized",
        ["mfa"] => "mfa-required",
        ["emails"] => "email-unauthorized",
        ["auth"] => "auth-kind-unauthorized",
        ["guest"] => "guest-unauthorized",
        kinds if kinds.contains(&"groups-unavailable") => "groups-unavailable",
        _ => "no-rule-matched",
    };
    Decision { allow: false, rule: None, reason }
}

/// The kind of the first condition of `rule` that does not hold, or `None` when all hold.
pub(crate) fn failing(rule: &Rule, identity: &Identity) -> Option<&'static str> {
    rule.conditions.iter().find(|c| !holds(c, identity)).map(|c| match c {
        Condition::Groups(_) if identity.groups_unresolved => "groups-unavailable",
        c => c.kind(),
    })
}

/// Like [`failing`], with every group condition taken as holding: would this rule match whatever the
/// unknown groups are?
fn failing_if_groups_matched(rule: &Rule, identity: &Identity) -> Option<&'static str> {
    rule.conditions.iter().find(|c| !matches!(c, Condition::Groups(_)) && !holds(c, identity)).map(Condition::kind)
}

fn any_of(wanted: &[String], have: &[String]) -> bool {
    wanted.iter().any(|w| have.contains(w))
}

/// True when `condition` holds for `id`: the one definition [`decide`] and explanations share.
pub fn holds(condition: &Condition, id: &Identity) -> bool {
    match condition {
        Condition::Groups(groups) => any_of(groups, &id.groups),
        Condition::Users(users) => users.iter().any(|u| *u == id.subject || *u == id.sub || id.oid.as_ref() == Some(u)),
        Condition::Roles(roles) => any_of(roles, &id.roles),
        Condition::Scopes(scopes) => any_of(scopes, &id.scopes),
        Condition::Issuer(issuers) => issuers.contains(&id.issuer),
        Condition::Tenant(tenants) => id.tenant.as_ref().is_some_and(|t| tenants.contains(t)),
        Condition::Claim { name, patterns } => match id.claims.get(name) {
            Some(Value::Array(values)) => values.iter().any(|v| claim_matches(v, patterns)),
            Some(v) => claim_matches(v, patterns),
            None => false,
        },
        Condition::Emails(emails) => {
            let verified = [id.claims.get("email_verified"), id.claims.get("xms_edov")]
                .into_iter()
                .flatten()
                .any(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
            verified && id.email.as_ref().is_some_and(|e| emails.iter().any(|w| w.eq_ignore_ascii_case(e)))
        }
        Condition::Mfa(acr_values) => {
            id.amr.iter().any(|m| m == "mfa")
                || id.claims.get("acr").and_then(Value::as_str).is_some_and(|acr| acr_values.iter().any(|a| a == acr))
        }
        Condition::Auth(proof) => id.proof == *proof,
        Condition::Guest(guest) => id.guest == *guest,
    }
}

fn claim_matches(value: &Value, patterns: &[String]) -> bool {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => return false,
    };
    patterns.iter().any(|p| glob(p, &text))
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    if !pattern.contains('*') {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl Proof {
    /// Parses `"session"` or `"bearer"`.
    pub fn parse(s: &str) -> Option<Proof> {
        match s {
            "session" => Some(Proof::Session),
            "bearer" => Some(Proof::Bearer),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_sources;
    use http::Method;
    use serde_json::json;
    use std::path::PathBuf;

    fn identity(claims: Value, proof: Proof) -> Identity {
        Identity::from_claims(claims.as_object().cloned().unwrap_or_default(), proof)
    }

    const POLICY: &str = r#"
[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"

[[route]]
name = "app"
host = "app.example.com"
upstream = "http://10.0.0.5"
allow = [{ groups = ["eng"] }, { roles = ["Deploy.Write"], auth = "bearer" }]
deny = [{ users = ["banned-oid"] }]

[[route]]
name = "admin"
host = "app.example.com"
path = "/admin"
upstream = "http://10.0.0.5"
allow = [{ groups = ["admins"], mfa = true }]

[[route]]
name = "ci"
host = "app.example.com"
path = "/api/v4/packages"
upstream = "http://10.0.0.5"
auth = ["bearer"]
allow = [{ issuer = "https://gitlab.example.com", claims = { project_path = "platform/*", ref_protected = "true" } }]
"#;

    #[test]
    fn decisions_table() {
        let (p, _) = load_sources(&[(PathBuf::from("p.toml"), POLICY.to_string())]).unwrap();
        let eng = "5b1c3d2e-0000-0000-0000-000000000001";
        let admins = "9e2a4f6b-0000-0000-0000-000000000002";
        let cases: Vec<(&str, Value, Proof, bool, &str)> = vec![
            ("/", json!({"sub": "a", "groups": [eng]}), Proof::Session, true, "allowed"),
            ("/", json!({"sub": "c", "groups": []}), Proof::Session, false, "no-rule-matched"),
            ("/", json!({"sub": "s", "roles": ["Deploy.Write"]}), Proof::Bearer, true, "allowed"),
            ("/", json!({"sub": "s", "roles": ["Deploy.Write"]}), Proof::Session, false, "no-rule-matched"),
            ("/", json!({"sub": "x", "oid": "banned-oid", "groups": [eng]}), Proof::Session, false, "denied-by-rule"),
            ("/admin", json!({"sub": "a", "groups": [admins], "amr": ["pwd", "mfa"]}), Proof::Session, true, "allowed"),
            ("/admin", json!({"sub": "a", "groups": [admins], "amr": ["pwd"]}), Proof::Session, false, "mfa-required"),
            (
                "/admin",
                json!({"sub": "b", "groups": [eng], "amr": ["mfa"]}),
                Proof::Session,
                false,
                "groups-unauthorized",
            ),
            (
                "/api/v4/packages/x",
                json!({"iss": "https://gitlab.example.com", "project_path": "platform/api", "ref_protected": "true"}),
                Proof::Bearer,
                true,
                "allowed",
            ),
            (
                "/api/v4/packages/x",
                json!({"iss": "https://gitlab.example.com", "project_path": "platform/api", "ref_protected": "false"}),
                Proof::Bearer,
                false,
                "claims-unauthorized",
            ),
            (
                "/api/v4/packages/x",
                json!({"iss": "https://gitlab.example.com", "project_path": "other/api", "ref_protected": "true"}),
                Proof::Bearer,
                false,
                "claims-unauthorized",
            ),
        ];
        for (path, claims, proof, allow, reason) in cases {
            let route = p.route("app.example.com", path, &Method::GET).unwrap();
            let d = decide(route, &identity(claims.clone(), proof));
            assert_eq!((d.allow, d.reason), (allow, reason), "{path} {claims} {proof:?}");
        }
    }

    #[test]
    fn unresolved_groups_fail_closed_for_allow_and_deny() {
        let text = format!(
            "{}\n[[route]]\nname = \"g\"\nhost = \"g.example.com\"\nupstream = \"http://10.0.0.5\"\nallow = [{{ groups = [\"eng\"] }}, {{ roles = [\"Reader\"] }}]\ndeny = [{{ groups = [\"admins\"], guest = true }}]\n",
            POLICY
        );
        let (p, _) = load_sources(&[(PathBuf::from("p.toml"), text)]).unwrap();
        let route = p.route("g.example.com", "/", &Method::GET).unwrap();
        let overage = json!({"sub": "d", "_claim_names": {"groups": "src1"}});
        let d = decide(route, &identity(overage.clone(), Proof::Session));
        assert_eq!((d.allow, d.reason), (false, "groups-unavailable"));
        let mut with_role = overage.clone();
        with_role["roles"] = json!(["Reader"]);
        assert!(
            decide(route, &identity(with_role.clone(), Proof::Session)).allow,
            "a rule without groups still allows"
        );
        with_role["acct"] = json!(1);
        let d = decide(route, &identity(with_role, Proof::Session));
        assert_eq!((d.allow, d.reason), (false, "groups-unavailable"), "a guest might be in the denied group");
    }

    #[test]
    fn guests_can_be_allowed_or_denied() {
        let text =
            "[[route]]\nname = \"m\"\nhost = \"*\"\nupstream = \"http://10.0.0.5\"\nallow = [{ guest = false }]\n";
        let (p, _) = load_sources(&[(PathBuf::from("p.toml"), text.to_string())]).unwrap();
        let route = p.route("x", "/", &Method::GET).unwrap();
        assert!(decide(route, &identity(json!({"sub": "m"}), Proof::Session)).allow);
        let d = decide(route, &identity(json!({"sub": "g", "acct": 1}), Proof::Session));
        assert_eq!((d.allow, d.reason), (false, "guest-unauthorized"));
    }

    #[test]
    fn globs() {
        assert!(glob("platform/*", "platform/api"));
        assert!(!glob("platform/*", "platformx/api"));
        assert!(glob("*-prod", "db-prod"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }
}
