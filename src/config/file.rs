//! The raw shape of `postern.toml`, exactly as written: every table rejects unknown keys, and values that need
//! checking after parsing keep their position (`Spanned`) so that errors can point at them.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`
    pub server: ServerFile,
    /// `[oidc]`: the browser sign-in provider.
    pub oidc: Spanned<OidcFile>,
    /// `[session]`
    #[serde(default)]
    pub session: SessionFile,
    /// `[assertion]`: the signed identity assertion sent to upstreams.
    #[serde(default)]
    pub assertion: AssertionFile,
    /// `[policies]`
    #[serde(default)]
    pub policies: PoliciesFile,
    /// `[upstream]`: defaults for every route.
    #[serde(default)]
    pub upstream: UpstreamFile,
    /// `[bearer]`: issuers trusted for service tokens.
    #[serde(default)]
    pub bearer: BearerFile,
    /// `[store]`: where sessions, the directory and revocations are kept.
    pub store: Option<Spanned<StoreFile>>,
    /// `[scim]`: the provisioning endpoint.
    pub scim: Option<Spanned<ScimFile>>,
    /// `[directory]`: how directory users are matched with identities.
    #[serde(default)]
    pub directory: DirectoryFile,
    /// `[admin_api]`: the session and user API on the admin listener.
    pub admin_api: Option<Spanned<AdminApiFile>>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `"embedded"` (default) or `"memory"`.
    pub kind: Option<Spanned<String>>,
    /// The database file, relative to the config file (default `postern.db`).
    pub path: Option<Spanned<String>>,
}

/// `[scim]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimFile {
    /// The base path (default `/scim/v2`).
    pub path: Option<Spanned<String>>,
    /// The bearer secret SCIM clients present.
    pub token: Spanned<SecretRef>,
}

/// `[directory]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    /// Only identities of this tenant id are matched with directory users.
    pub tenant: Option<Spanned<String>>,
    /// Also match `preferred_username`/`upn` with `userName` (default true).
    pub match_user_name: Option<bool>,
    /// Policies see the directory's groups for users it knows (default true).
    pub groups: Option<bool>,
}

/// `[admin_api]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApiFile {
    /// App roles (the `roles` claim of a bearer token) allowed to call the API; at least one.
    pub roles: Vec<Spanned<String>>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// The URL people use to reach Postern.
    pub public_url: Spanned<String>,
    /// Plain HTTP listeners.
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// HTTPS listeners.
    #[serde(default)]
    pub tls_listen: Vec<Spanned<String>>,
    /// Certificate and key for the HTTPS listeners.
    pub tls: Option<Spanned<TlsFile>>,
    /// The admin listener (health and metrics).
    pub admin_listen: Option<Spanned<String>>,
    /// Addresses (or CIDR ranges) of proxies in front of Postern whose `X-Forwarded-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_grace: Option<Spanned<String>>,
}

/// `tls = { cert = "...", key = "..." }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "path" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// An environment variable's name.
    pub env: Option<String>,
    /// A file's path, relative to the config file.
    pub file: Option<String>,
}

/// `[oidc]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// The issuer URL; discovery is at `issuer + /.well-known/openid-configuration`.
    pub issuer: Spanned<String>,
    /// Postern's client id at the provider.
    pub client_id: Spanned<String>,
    /// Postern's client secret.
    pub client_secret: Spanned<SecretRef>,
    /// `client_secret_basic` (default) or `client_secret_post`.
    pub token_endpoint_auth: Option<Spanned<String>>,
    /// Scopes asked for at sign-in.
    pub scopes: Option<Spanned<Vec<String>>>,
    /// An extra PEM file of trusted roots for a private provider.
    pub ca_file: Option<Spanned<String>>,
    /// Least time between two key refetches caused by an unknown `kid`.
    pub jwks_refetch_interval: Option<Spanned<String>>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Option<Spanned<String>>,
}

/// `[session]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    /// The key that encrypts cookies; `postern keygen` writes one.
    pub secret: Option<Spanned<SecretRef>>,
    /// A session unused this long ends.
    pub idle_timeout: Option<Spanned<String>>,
    /// A session ends this long after sign-in, used or not.
    pub max_lifetime: Option<Spanned<String>>,
    /// Tokens are refreshed this long before they expire.
    pub refresh_before: Option<Spanned<String>>,
}

/// `[assertion]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertionFile {
    /// A PEM (PKCS#8) P-256 private key; `postern keygen` writes one.
    pub signing_key: Option<Spanned<String>>,
    /// Lifetime of one assertion, at most 5 minutes.
    pub ttl: Option<Spanned<String>>,
}

/// `[policies]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesFile {
    /// The directory of policy files, relative to the config file.
    pub dir: Option<Spanned<String>>,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// Time to connect to an upstream.
    pub connect_timeout: Option<Spanned<String>>,
    /// Time for an upstream to start answering.
    pub timeout: Option<Spanned<String>>,
}

/// `[bearer]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerFile {
    /// Audiences accepted on tokens from the sign-in provider (none: its tokens are not accepted as bearer tokens).
    #[serde(default)]
    pub audiences: Vec<Spanned<String>>,
    /// Other issuers.
    #[serde(default)]
    pub issuers: Vec<BearerIssuerFile>,
    /// How many verified (and recently refused) tokens are remembered.
    pub cache_size: Option<Spanned<u64>>,
    /// The largest `Authorization` header accepted, in bytes.
    pub max_token_bytes: Option<Spanned<u64>>,
}

/// `[[bearer.issuers]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerIssuerFile {
    /// The exact `iss` value.
    pub issuer: Spanned<String>,
    /// Accepted `aud` values; at least one.
    pub audiences: Vec<Spanned<String>>,
    /// Where its keys are; else from its discovery document.
    pub jwks_url: Option<Spanned<String>>,
    /// Accepted algorithms; default: the asymmetric algorithms of each key's type.
    pub algorithms: Option<Vec<Spanned<String>>>,
    /// An extra PEM file of trusted roots.
    pub ca_file: Option<Spanned<String>>,
}
