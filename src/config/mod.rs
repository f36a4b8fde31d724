//! The configuration: `file` mirrors `postern.toml` as written, `validate` turns it into the resolved [`Config`]
//! below, collecting every problem with its file, line and column. Nothing here reads the process environment:
//! secrets given as `{ env = "..." }` are looked up through the function the caller passes.

pub mod file;
mod net;
mod validate;

pub use net::IpRange;
pub use validate::{certificate_thumbprint, decode_key_material, from_text, load};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use crate::secret::Secret;

/// The resolved configuration: defaults applied, every value checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub source: PathBuf,
    /// Listeners and the public URL.
    pub server: ServerConfig,
    /// The browser sign-in provider.
    pub oidc: OidcConfig,
    /// Sessions and cookies.
    pub session: SessionConfig,
    /// The signed identity assertion.
    pub assertion: AssertionConfig,
    /// The policy directory.
    pub policies_dir: PathBuf,
    /// Upstream defaults.
    pub upstream: UpstreamConfig,
    /// Bearer tokens.
    pub bearer: BearerConfig,
    /// `[limits]`
    pub limits: LimitsConfig,
    /// Microsoft Graph, for group overage; `None`: overage groups stay unknown (and group rules fail closed).
    pub graph: Option<GraphConfig>,
    /// Where sessions, the directory and revocations are kept.
    pub store: crate::store::StoreConfig,
    /// The SCIM endpoint, when enabled.
    pub scim: Option<ScimConfig>,
    /// How directory users are matched with identities.
    pub directory: crate::directory::DirectoryConfig,
    /// The admin API, when enabled.
    pub admin_api: Option<AdminApiConfig>,
}

/// `[limits]`: what one client may take, with production defaults.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request head in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Largest request body in bytes unless a route sets `max_body` (413 beyond).
    pub max_request_body: u64,
    /// Time to send a request's headers.
    pub header_read_timeout: Duration,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Open client connections at most.
    pub max_connections: usize,
    /// Requests handled at once at most (503 with `Retry-After` beyond).
    pub max_in_flight: usize,
    /// Idle upstream connections kept per host.
    pub upstream_max_idle_per_host: usize,
    /// Idle upstream connections are closed after this long.
    pub upstream_idle_timeout: Duration,
    /// Each HTTP/1 client connection keeps an upstream connection of its own instead of using the pool.
    pub upstream_connection_per_client: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_header_bytes: 64 * 1024,
            max_request_body: 1 << 30,
            header_read_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(75),
            max_connections: 20_000,
            max_in_flight: 5_000,
            upstream_max_idle_per_host: 128,
            upstream_idle_timeout: Duration::from_secs(90),
            upstream_connection_per_client: true,
        }
    }
}

/// `[graph]`, resolved.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// Base URL, without a trailing slash: `https://graph.microsoft.com/v1.0`.
    pub base_url: Url,
    /// Token endpoint for the app-only token; `None`: the provider's. May contain `{tenantid}`.
    pub token_url: Option<String>,
    /// Scope of the app-only token.
    pub scope: String,
    /// How long one user's groups are remembered.
    pub cache_ttl: Duration,
    /// Look up every user's groups, not only on overage.
    pub always: bool,
    /// Time for one Graph or token request.
    pub timeout: Duration,
}

/// Where a client secret comes from. A file is read again at every use, so a rotated secret is picked up
/// without a restart.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// A value (from the environment).
    Value(Secret<String>),
    /// A file, and the value it held at start (used if it cannot be read later).
    File(PathBuf, Secret<String>),
}

/// How Postern proves itself at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A client secret; during a rotation, the previous one is tried when the current is refused.
    Secret {
        /// The current secret.
        current: SecretSource,
        /// The previous secret.
        previous: Option<SecretSource>,
        /// Basic or form post.
        method: ClientAuth,
    },
    /// `private_key_jwt` with a certificate registered at the provider.
    Certificate {
        /// PEM private key.
        key_pem: Secret<String>,
        /// base64url SHA-256 of the certificate's DER: the assertion's `x5t#S256`.
        x5t_s256: String,
        /// PS256 or RS256.
        alg: Algorithm,
    },
    /// A federated credential: the JWT in this file (a Kubernetes projected service-account token) is the
    /// client assertion; read at every use, since the kubelet rotates it.
    Federated {
        /// The token file.
        token_file: PathBuf,
    },
}

/// `[scim]`, resolved.
#[derive(Debug, Clone)]
pub struct ScimConfig {
    /// Base path, without a trailing slash.
    pub path: String,
    /// The bearer secret.
    pub token: Secret<String>,
}

/// `[admin_api]`, resolved.
#[derive(Debug, Clone)]
pub struct AdminApiConfig {
    /// App roles allowed to call it.
    pub roles: Vec<String>,
}

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The URL people use; the redirect URI is this plus `/oauth2/callback`.
    pub public_url: Url,
    /// Plain HTTP listeners.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners.
    pub tls_listen: Vec<SocketAddr>,
    /// Certificate and key files for the HTTPS listeners.
    pub tls: Option<TlsFiles>,
    /// The admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpRange>,
    /// Time given to requests in flight at shutdown.
    pub shutdown_grace: Duration,
}

/// PEM files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// How Postern authenticates itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    SecretBasic,
    /// Client id and secret in the form body.
    SecretPost,
}

/// `[oidc]`, resolved.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, exactly as tokens carry it, or an Entra template with `{tenantid}`.
    pub issuer: String,
    /// The discovery document.
    pub discovery_url: Url,
    /// Accepted tenants (`tid`); not empty whenever the issuer is a template.
    pub allowed_tenants: Vec<String>,
    /// The client id.
    pub client_id: String,
    /// How Postern authenticates at the token endpoint.
    pub credential: ClientCredential,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Extra trusted roots (PEM).
    pub ca_file: Option<PathBuf>,
    /// Least time between key refetches triggered by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    /// Clock skew tolerated.
    pub leeway: Duration,
}

/// `[session]`, resolved.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie key material (at least 32 bytes); `None`: a random key at start, with a warning.
    pub secret: Option<Secret<Vec<u8>>>,
    /// Earlier keys, which still open cookies (and sessions sealed at rest) but seal nothing new.
    pub previous_secrets: Vec<Secret<Vec<u8>>>,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in.
    pub max_lifetime: Duration,
    /// Tokens are refreshed this long before they expire.
    pub refresh_before: Duration,
}

/// `[assertion]`, resolved.
#[derive(Debug, Clone)]
pub struct AssertionConfig {
    /// PEM PKCS#8 P-256 private key; `None`: a random key at start, with a warning.
    pub signing_key: Option<Secret<String>>,
    /// Earlier keys (PEM): published in the JWKS, never used to sign.
    pub previous_signing_keys: Vec<Secret<String>>,
    /// Lifetime of one assertion.
    pub ttl: Duration,
}

/// `[upstream]`, resolved.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for the upstream to start answering.
    pub timeout: Duration,
    /// Globs of groups sent upstream besides those policies name.
    pub group_filter: Vec<String>,
}

/// `[bearer]`, resolved.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// Audiences accepted on the sign-in provider's tokens used as bearer tokens.
    pub provider_audiences: Vec<String>,
    /// Other trusted issuers.
    pub issuers: Vec<BearerIssuer>,
    /// Entries in the verified-token cache.
    pub cache_size: u64,
    /// Largest accepted `Authorization` header.
    pub max_token_bytes: usize,
}

/// One trusted issuer of bearer tokens.
#[derive(Debug, Clone)]
pub struct BearerIssuer {
    /// Exact `iss`.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Its key set; `None`: from discovery.
    pub jwks_url: Option<Url>,
    /// Accepted algorithms; empty: the asymmetric algorithms of each key's type.
    pub algorithms: Vec<Algorithm>,
    /// Extra trusted roots (PEM).
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// The redirect URI registered at the provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth2/callback", self.public_origin())
    }

    /// `scheme://host[:port]` of the public URL, without a trailing slash.
    pub fn public_origin(&self) -> String {
        self.server.public_url.origin().ascii_serialization()
    }

    /// True when the public URL is HTTPS, so cookies can be `Secure` and `__Host-`.
    pub fn public_is_https(&self) -> bool {
        self.server.public_url.scheme() == "https"
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`: the only hosts allowed over plain HTTP.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// True when `url` is `https`, or `http` to a loopback host (development only).
pub fn is_secure_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host().as_ref().is_some_and(is_loopback_host),
        _ => false,
    }
}
