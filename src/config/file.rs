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
    /// `[limits]`: sizes, timeouts and counts that keep one client from starving the others.
    #[serde(default)]
    pub limits: LimitsFile,
    /// `[graph]`: Microsoft Graph, for Entra group overage.
    pub graph: Option<Spanned<GraphFile>>,
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

/// A size: a number of bytes, or text such as `"64KiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// Bytes.
    Bytes(u64),
    /// `"10MiB"` and the like.
    Text(String),
}

/// `[limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest request head (request line and headers); more is answered 431.
    pub max_header_bytes: Option<Spanned<SizeValue>>,
    /// Largest request body, unless the route says otherwise; more is answered 413.
    pub max_request_body: Option<Spanned<SizeValue>>,
    /// Time a client gets to send a request's headers.
    pub header_read_timeout: Option<Spanned<String>>,
    /// A connection with no request in flight and no traffic this long is closed.
    pub idle_timeout: Option<Spanned<String>>,
    /// Open client connections at most; more are refused.
    pub max_connections: Option<Spanned<u64>>,
    /// Requests being handled at once at most; more are answered 503 with `Retry-After`.
    pub max_in_flight: Option<Spanned<u64>>,
    /// Idle connections kept per upstream host, for reuse.
    pub upstream_max_idle_per_host: Option<Spanned<u64>>,
    /// An idle upstream connection is closed after this long.
    pub upstream_idle_timeout: Option<Spanned<String>>,
    /// Each HTTP/1 client connection keeps an upstream connection of its own (true) or uses the pool.
    pub upstream_connection_per_client: Option<bool>,
}

/// `[store]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `"embedded"` (default), `"redis"` or `"memory"`.
    pub kind: Option<Spanned<String>>,
    /// The database file, relative to the config file (default `postern.db`).
    pub path: Option<Spanned<String>>,
    /// Redis: `redis://[user[:password]@]host[:port][/db]` or `rediss://` (TLS);
    /// `redis+sentinel://[user[:password]@]host:26379,host:26379/service[/db]` for the master Sentinels name.
    /// `redis+cluster://[user[:password]@]host:6379,host:6379` for a Redis Cluster.
    pub url: Option<Spanned<String>>,
    /// Redis: the password, from the environment or a file (instead of writing it into `url`).
    pub password: Option<Spanned<SecretRef>>,
    /// Redis: while Redis is unreachable, sessions this replica verified this recently keep working.
    pub grace: Option<Spanned<String>>,
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
    /// The issuer URL; discovery is at `issuer + /.well-known/openid-configuration`. An Entra multi-tenant
    /// issuer is the template `https://login.microsoftonline.com/{tenantid}/v2.0`.
    pub issuer: Spanned<String>,
    /// Where the discovery document is, when not under the issuer (needed for a `{tenantid}` template).
    pub discovery_url: Option<Spanned<String>>,
    /// Tenant ids (`tid`) whose users and services are accepted; required with a `{tenantid}` issuer.
    pub allowed_tenants: Option<Spanned<Vec<String>>>,
    /// Postern's client id at the provider.
    pub client_id: Spanned<String>,
    /// Postern's client secret.
    pub client_secret: Option<Spanned<SecretRef>>,
    /// The previous client secret, tried when the provider refuses the current one (`invalid_client`).
    pub client_secret_previous: Option<Spanned<SecretRef>>,
    /// A certificate credential: `private_key_jwt` client assertions signed with this key.
    pub client_certificate: Option<Spanned<ClientCertificateFile>>,
    /// A federated credential: a JWT in this file (re-read at every use) is the client assertion.
    pub federated_token_file: Option<Spanned<String>>,
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

/// `client_certificate = { cert = "...", key = "...", alg = "PS256" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificateFile {
    /// The PEM certificate uploaded to the app registration.
    pub cert: String,
    /// Its PEM RSA private key.
    pub key: String,
    /// `PS256` (default) or `RS256`.
    pub alg: Option<String>,
}

/// `[graph]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    /// Microsoft Graph's base URL, `https://graph.microsoft.com/v1.0` by default.
    pub base_url: Option<Spanned<String>>,
    /// The token endpoint for the app-only token (default: the provider's); may contain `{tenantid}`.
    pub token_url: Option<Spanned<String>>,
    /// The scope of the app-only token, `https://graph.microsoft.com/.default` by default.
    pub scope: Option<String>,
    /// How long a user's groups are remembered.
    pub cache_ttl: Option<Spanned<String>>,
    /// Look the groups up for every user, not only when the token says they did not fit.
    #[serde(default)]
    pub always: bool,
    /// Time for Graph (and the token endpoint) to answer.
    pub timeout: Option<Spanned<String>>,
}

/// `[session]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    /// The key that encrypts cookies; `postern keygen` writes one.
    pub secret: Option<Spanned<SecretRef>>,
    /// Earlier keys: cookies sealed with them still open (key rotation).
    #[serde(default)]
    pub previous_secrets: Vec<Spanned<SecretRef>>,
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
    /// Earlier signing keys: their public keys stay in the JWKS, so assertions they signed still verify.
    #[serde(default)]
    pub previous_signing_keys: Vec<Spanned<String>>,
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
    /// Globs of group ids (or names) also sent upstream, besides the groups some policy names.
    #[serde(default)]
    pub group_filter: Vec<String>,
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
