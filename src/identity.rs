//! [`Identity`]: who sent a request, as proven by a verified ID token (a session) or a bearer token.
//! Built only from claims whose signature was checked.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::UnixTime;

/// How an identity was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proof {
    /// A session cookie from a browser sign-in.
    Session,
    /// An `Authorization: Bearer` token.
    Bearer,
}

impl Proof {
    /// `"session"` or `"bearer"`, as policies and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Session => "session",
            Proof::Bearer => "bearer",
        }
    }
}

/// A verified principal: a person or a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The stable identifier sent upstream: Entra's `oid` when present, else `sub`.
    pub subject: String,
    /// The token's `sub`.
    pub sub: String,
    /// Entra's object id, when present.
    pub oid: Option<String>,
    /// Entra's tenant id (`tid`), when present.
    pub tenant: Option<String>,
    /// The `iss` that vouched for this identity.
    pub issuer: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address (informational: not used to authorise unless a policy opts in).
    pub email: Option<String>,
    /// `preferred_username` (or `upn`).
    pub preferred_username: Option<String>,
    /// Group ids from the `groups` claim, or from Microsoft Graph after a group overage.
    pub groups: Vec<String>,
    /// True while `groups` is known to be incomplete: the token reported a group overage (or Graph is the
    /// configured source of groups) and no lookup has succeeded. Group rules then fail closed.
    #[serde(default)]
    pub groups_unresolved: bool,
    /// An Entra guest: `acct` = 1, or an `idp` other than the tenant itself.
    #[serde(default)]
    pub guest: bool,
    /// App roles from the `roles` claim.
    pub roles: Vec<String>,
    /// Delegated scopes from `scp` (space-separated) or `scope`.
    pub scopes: Vec<String>,
    /// Authentication methods (`amr`).
    pub amr: Vec<String>,
    /// The client application, for app-only tokens (`azp` or `appid`).
    pub app_id: Option<String>,
    /// How this identity was proven.
    pub proof: Proof,
    /// When the proving token expires (seconds since the epoch).
    pub expires_at: UnixTime,
    /// Every claim of the token, for policies that match on claims.
    pub claims: Map<String, Value>,
    /// The identity headers already built for this identity, per route (a clone starts empty).
    #[serde(skip)]
    pub memo: crate::identity_headers::Memo,
}

impl Identity {
    /// Builds an identity from verified claims.
    pub fn from_claims(claims: Map<String, Value>, proof: Proof) -> Identity {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let strings = |name: &str| -> Vec<String> {
            match claims.get(name) {
                Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        let sub = string("sub").unwrap_or_default();
        let oid = string("oid");
        let scopes = string("scp")
            .or_else(|| string("scope"))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        Identity {
            subject: oid.clone().unwrap_or_else(|| sub.clone()),
            sub,
            oid,
            tenant: string("tid"),
            issuer: string("iss").unwrap_or_default(),
            name: string("name"),
            email: string("email"),
            preferred_username: string("preferred_username").or_else(|| string("upn")),
            groups: strings("groups"),
            groups_unresolved: crate::oidc::entra::has_group_overage(&claims),
            guest: crate::oidc::entra::is_guest(&claims),
            roles: strings("roles"),
            scopes,
            amr: strings("amr"),
            app_id: string("azp").or_else(|| string("appid")),
            proof,
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            claims,
            memo: Default::default(),
        }
    }

    /// A short human label for logs and pages: the username, else the email, else the subject.
    pub fn display(&self) -> &str {
        self.preferred_username.as_deref().or(self.email.as_deref()).unwrap_or(&self.subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stable_subject_is_oid_then_sub() {
        let claims = json!({"sub": "s", "oid": "o", "scp": "read write", "groups": ["g1"], "iss": "i"});
        let id = Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Bearer);
        assert_eq!(id.subject, "o");
        assert_eq!(id.scopes, ["read", "write"]);
        let claims = json!({"sub": "s"});
        assert_eq!(Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session).subject, "s");
    }
}
