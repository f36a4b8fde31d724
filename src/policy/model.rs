//! The raw shape of a policy file, as written. Every table rejects unknown keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Readable names for group ids: `eng = "5b1c…"`.
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<String>>,
    /// The routes.
    #[serde(default)]
    pub route: Vec<Spanned<RouteFile>>,
    /// Allow `emails` conditions in this file. Email addresses can be reassigned and, from some providers,
    /// are not verified; matching on them is an explicit choice, and only verified addresses ever match.
    #[serde(default)]
    pub allow_email_identifiers: bool,
    /// `acr` values that count as multi-factor sign-in for `mfa = true`, besides `amr` containing `mfa`.
    #[serde(default)]
    pub mfa_acr_values: Vec<String>,
}

/// `[[route]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// A unique name, shown in logs, pages and metrics.
    pub name: Spanned<String>,
    /// `gitlab.example.com`, `*.example.com`, or `*` for any host.
    pub host: Spanned<String>,
    /// A path prefix (default `/`).
    pub path: Option<Spanned<String>>,
    /// Methods this route covers (default: all).
    pub methods: Option<Vec<Spanned<String>>>,
    /// Where allowed requests go: `http://10.0.0.5:8080`.
    pub upstream: Spanned<String>,
    /// Keep the client's `Host` header (default true); false sends the upstream's host.
    pub preserve_host: Option<bool>,
    /// Time for the upstream to start answering.
    pub timeout: Option<Spanned<String>>,
    /// Largest request body for this route (`"5GiB"`), instead of `[limits] max_request_body`.
    pub max_body: Option<Spanned<crate::config::file::SizeValue>>,
    /// Accepted proofs: `["session", "bearer"]` (default both).
    pub auth: Option<Vec<Spanned<String>>>,
    /// No sign-in needed; identity headers are still stripped.
    #[serde(default)]
    pub public: bool,
    /// Which identity headers to send: any of `user`, `email`, `preferred_username`, `groups`, `assertion`
    /// (default: all).
    pub identity_headers: Option<Vec<Spanned<String>>>,
    /// Extra request headers from the identity: `{ "X-Team" = "{claims.department}" }`.
    pub headers: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    /// Bearer-token audiences this route accepts (narrows the issuer's list).
    pub audiences: Option<Vec<Spanned<String>>>,
    /// Alternatives that let a request through.
    #[serde(default)]
    pub allow: Vec<Spanned<RuleFile>>,
    /// Alternatives that stop a request, whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<Spanned<RuleFile>>,
}

/// One rule: every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Any of these groups (aliases from `[groups]`, or group ids).
    pub groups: Option<Vec<Spanned<String>>>,
    /// Any of these users (subject or object id).
    pub users: Option<Vec<Spanned<String>>>,
    /// Any of these verified email addresses (needs `allow_email_identifiers = true` in the file).
    pub emails: Option<Vec<Spanned<String>>>,
    /// Any of these app roles.
    pub roles: Option<Vec<Spanned<String>>>,
    /// Any of these delegated scopes.
    pub scopes: Option<Vec<Spanned<String>>>,
    /// Any of these issuers.
    pub issuer: Option<OneOrMany>,
    /// Any of these tenants.
    pub tenant: Option<OneOrMany>,
    /// Claim values: exact, any-of (an array), or a glob with `*`.
    pub claims: Option<BTreeMap<String, OneOrMany>>,
    /// The sign-in used multi-factor authentication.
    pub mfa: Option<bool>,
    /// `true`: only Entra guests (`acct` = 1, or a foreign `idp`); `false`: only members.
    pub guest: Option<bool>,
    /// `"session"` or `"bearer"`.
    pub auth: Option<Spanned<String>>,
}

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, in order.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}
