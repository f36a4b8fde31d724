//! The development OpenID provider: a real OpenID Connect provider, in-process, that signs real
//! RS256 tokens with Entra ID–shaped claims. For development and tests only; never use it in
//! production.
//!
//! It backs `postern demo` and the integration tests, which start many instances side by side,
//! each on its own loopback port. It knows six users ([`USERS`]: one in 250 groups, one guest, one
//! in another tenant) and one client ([`DevProviderConfig`]), keeps everything in memory, and can be
//! made to misbehave on purpose ([`Tamper`], [`Misbehaviour`]) so tests can prove that Postern
//! refuses what it must. It speaks Entra's shapes: v1.0 or v2.0 tokens ([`TokenVersion`]), a
//! multi-tenant mode whose discovery names the `{tenantid}` issuer template, per-key `issuer` in the
//! JWKS, group overage claims, and a fake Microsoft Graph.
//!
//! | endpoint | what it does |
//! | --- | --- |
//! | `GET /.well-known/openid-configuration` | discovery (also under any path, e.g. `/organizations/v2.0/...`) |
//! | `GET /jwks` | the signing keys (current, and the previous one after a rotation) |
//! | `GET /authorize` | code flow with PKCE (S256 only); a user picker page, or `login_hint=alice` to skip it |
//! | `POST /token` | `authorization_code`, `refresh_token` (rotating), `client_credentials` (also for Graph); client secrets, `private_key_jwt` or a federated assertion |
//! | `GET /userinfo` | the user's claims, for an access token it issued |
//! | `GET /logout` | a signed-out page, or a redirect back to a loopback URL |
//! | `GET /graph/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group` | the fake Graph: a user's groups, in pages with `@odata.nextLink`, for an app-only Graph token |
//!
//! It listens on loopback only, and never logs a token or the client secret.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use url::Url;

use crate::body::{Body, empty, full};
use crate::server::simple::{NotLoopback, ensure_loopback, serve};

/// Object id of the "eng" group (alice and bob are members).
pub const GROUP_ENG: &str = "5b1c3d2e-0000-0000-0000-000000000001";

/// Object id of the "admins" group (alice is a member).
pub const GROUP_ADMINS: &str = "9e2a4f6b-0000-0000-0000-000000000002";

/// Object id of the demo application itself: the `oid` of its app-only (client credentials) tokens.
pub const DEMO_APP_OID: &str = "e5a1f3c9-64b2-4d87-b0e4-93c82d1a7f56";

/// The app roles every app-only (client credentials) token carries.
pub const DEMO_APP_ROLES: &[&str] = &["Deploy.Write"];

/// The audience of app-only tokens for Microsoft Graph (`scope=https://graph.microsoft.com/.default`).
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";

/// The audience of a federated credential (workload identity) assertion, as Entra requires it.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Entra leaves the `groups` claim out of a JWT for a user in more than this many groups (group overage).
pub const GROUP_OVERAGE_LIMIT: usize = 200;

/// A tenant other than the provider's own: frank signs in to it, and erin's home tenant.
pub const OTHER_TENANT: &str = "3d9f6b1a-7c2e-4e85-b4a0-1f5c8d2e9a67";

/// Which token shapes the provider issues (Entra's v1.0 or v2.0 endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenVersion {
    /// v2.0: `ver` 2.0, `preferred_username`, `azp`; the header has only `kid`.
    #[default]
    V2,
    /// v1.0: `ver` 1.0, `upn` and `unique_name`, `appid`; the header has `x5t` too.
    V1,
}

/// A user the development provider can sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevUser {
    /// Login name, as given in `login_hint` (`"alice"`).
    pub name: &'static str,
    /// Display name (the `name` claim).
    pub display_name: &'static str,
    /// E-mail address (the `email` and `preferred_username` claims).
    pub email: &'static str,
    /// Entra object id (the `oid` claim).
    pub oid: &'static str,
    /// Object ids of the groups the user belongs to (the `groups` claim).
    pub groups: &'static [&'static str],
    /// How many more (made-up) groups the user is in, beyond `groups`: enough makes a group overage.
    pub extra_groups: usize,
    /// The tenant the user signs in to, when not the provider's own.
    pub tenant: Option<&'static str>,
    /// For a guest (B2B): the home tenant. Guests' tokens carry `acct` = 1 and `idp` = the home tenant.
    pub home_tenant: Option<&'static str>,
}

impl DevUser {
    /// Whether this user signs in with multi-factor authentication (`amr` includes `"mfa"`).
    pub fn uses_mfa(&self) -> bool {
        self.name == "alice"
    }

    /// Every group the user is in: `groups`, then the made-up ones.
    pub fn all_groups(&self) -> Vec<String> {
        let mut all: Vec<String> = self.groups.iter().map(|g| g.to_string()).collect();
        all.extend((1..=self.extra_groups).map(generated_group));
        all
    }
}

/// The `n`th made-up group id (for users in very many groups).
pub fn generated_group(n: usize) -> String {
    format!("0000d000-0000-4000-8000-{n:012}")
}

/// The users the development provider knows: alice (eng, admins, signs in with MFA), bob (eng),
/// carol (no groups), dave (eng and 249 more: 250 groups, so his tokens carry a group overage instead of
/// groups), erin (eng, a guest from [`OTHER_TENANT`]) and frank (eng, signs in to [`OTHER_TENANT`]).
pub const USERS: &[DevUser] = &[
    DevUser {
        name: "alice",
        display_name: "Alice Adams",
        email: "alice@example.com",
        oid: "2f6a1c84-93d7-4b0e-a5c2-7e18d9f04b61",
        groups: &[GROUP_ENG, GROUP_ADMINS],
        extra_groups: 0,
        tenant: None,
        home_tenant: None,
    },
    DevUser {
        name: "bob",
        display_name: "Bob Baker",
        email: "bob@example.com",
        oid: "7c3e9b12-5a48-4f6d-8e21-c0b4a7d39e85",
        groups: &[GROUP_ENG],
        extra_groups: 0,
        tenant: None,
        home_tenant: None,
    },
    DevUser {
        name: "carol",
        display_name: "Carol Chen",
        email: "carol@example.com",
        oid: "b94d07e3-1f6c-4a29-9d83-5e2a60c7f1d4",
        groups: &[],
        extra_groups: 0,
        tenant: None,
        home_tenant: None,
    },
    DevUser {
        name: "dave",
        display_name: "Dave Davis",
        email: "dave@example.com",
        oid: "d4a7e2c1-0b3f-4e69-8a15-6c2f9e7d3b40",
        groups: &[GROUP_ENG],
        extra_groups: 249,
        tenant: None,
        home_tenant: None,
    },
    DevUser {
        name: "erin",
        display_name: "Erin Evans (guest)",
        email: "erin@partner.example",
        oid: "e1b5c3d7-2a4f-4b8e-9c60-7d1e3f5a9b22",
        groups: &[GROUP_ENG],
        extra_groups: 0,
        tenant: None,
        home_tenant: Some(OTHER_TENANT),
    },
    DevUser {
        name: "frank",
        display_name: "Frank Fischer",
        email: "frank@other.example",
        oid: "f6c8a0e2-4b1d-4f37-a9e5-2c7b9d1f3a84",
        groups: &[GROUP_ENG],
        extra_groups: 0,
        tenant: Some(OTHER_TENANT),
        home_tenant: None,
    },
];

/// The user with login name `name`, if the provider knows one.
pub fn find_user(name: &str) -> Option<&'static DevUser> {
    USERS.iter().find(|user| user.name == name)
}

/// A readable name for a group object id, for pages.
fn group_label(oid: &str) -> &str {
    match oid {
        GROUP_ENG => "eng",
        GROUP_ADMINS => "admins",
        other => other,
    }
}

/// The one client the provider accepts, and its token settings.
#[derive(Clone, PartialEq, Eq)]
pub struct DevProviderConfig {
    /// The client (application) id; the `aud` of ID tokens.
    pub client_id: String,
    /// The client secret, for `client_secret_basic` or `client_secret_post`.
    pub client_secret: String,
    /// The tenant id (the `tid` claim).
    pub tenant_id: String,
    /// Lifetime of ID and access tokens.
    pub id_token_ttl: Duration,
    /// The `aud` of access tokens.
    pub access_token_audience: String,
    /// Multi-tenant mode: the discovery document (at `/organizations/v2.0/...`) names the issuer template
    /// `http://ADDR/{tenantid}/v2.0` (v1: `http://ADDR/{tenantid}/`), and each token's `iss` carries its `tid`.
    pub multi_tenant: bool,
    /// v1.0 or v2.0 token shapes.
    pub token_version: TokenVersion,
    /// A certificate (PEM) registered for `private_key_jwt`: assertions with its `x5t#S256`, signed by its key
    /// (PS256 or RS256), authenticate the client.
    pub client_certificate_pem: Option<String>,
    /// A federated credential: assertions signed by this provider with `aud` = [`FEDERATED_AUDIENCE`] and
    /// this `sub` authenticate the client (as a Kubernetes service account token would).
    pub federated_subject: Option<String>,
    /// Groups per page of the fake Microsoft Graph (it honours a smaller `$top`).
    pub graph_page_size: usize,
}

impl Default for DevProviderConfig {
    fn default() -> Self {
        DevProviderConfig {
            client_id: "postern-demo".to_owned(),
            client_secret: "demo-secret-not-for-production".to_owned(),
            tenant_id: "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a".to_owned(),
            id_token_ttl: Duration::from_secs(3600),
            access_token_audience: "api://postern".to_owned(),
            multi_tenant: false,
            token_version: TokenVersion::V2,
            client_certificate_pem: None,
            federated_subject: None,
            graph_page_size: 100,
        }
    }
}

impl fmt::Debug for DevProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProviderConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("tenant_id", &self.tenant_id)
            .field("id_token_ttl", &self.id_token_ttl)
            .field("access_token_audience", &self.access_token_audience)
            .field("multi_tenant", &self.multi_tenant)
            .field("token_version", &self.token_version)
            .finish_non_exhaustive()
    }
}

/// A deliberate defect in every ID token issued (by `/token` or [`DevProvider::mint_id_token`])
/// until reset with [`Tamper::None`]. Each one is an attack or a bug Postern must refuse.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Tamper {
    /// Tokens are issued correctly.
    #[default]
    None,
    /// This JSON object is merged over the claims; a `null` value removes that claim.
    Claims(Value),
    /// The header says `"alg": "none"` and the signature is empty.
    AlgNone,
    /// The header says HS256 and the token is MACed with the provider's public key PEM as the
    /// HMAC key (the classic RS256/HS256 confusion attack).
    Hs256WithPublicKey,
    /// A correct RS256 signature with one bit flipped.
    BadSignature,
    /// Signed by a key that is not in the JWKS, under the current key's `kid`. (That key is
    /// generated on first use, which blocks the caller for the tens of milliseconds it takes.)
    ForeignKey,
    /// Correctly signed, but the header has no `kid`.
    NoKid,
    /// Correctly signed by the current key, but the header's `kid` is `"unknown-kid"`.
    UnknownKid,
    /// Correctly signed by the current key, with this JSON object merged over the header: an attacker's
    /// token naming its own key source (`jku`, `x5u`, `jwk`, `x5c`).
    Header(Value),
}

/// A deliberate failure of one endpoint, until reset with [`Misbehaviour::None`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misbehaviour {
    /// Every endpoint behaves.
    #[default]
    None,
    /// `/token` answers 500.
    TokenEndpoint500,
    /// `/token` answers 200 with a body that is not JSON.
    TokenEndpointGarbage,
    /// `/token` answers 400 `{"error":"invalid_grant"}`.
    TokenEndpointError,
    /// `/jwks` answers 200 with a body that is not JSON.
    JwksGarbage,
    /// Discovery answers 503.
    DiscoveryDown,
    /// The fake Microsoft Graph answers 503.
    GraphDown,
}

/// Why the development provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevProviderError {
    /// The listener is not on a loopback address.
    #[error(transparent)]
    NotLoopback(#[from] NotLoopback),
    /// The listener's address could not be read.
    #[error("the development provider's listener has no usable address: {0}")]
    Io(#[from] std::io::Error),
    /// Generating the RSA signing key failed.
    #[error("the development provider could not generate its RSA signing key")]
    KeyGeneration,
}

/// How long an authorization code may be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);

/// How long a refresh token stays valid.
const REFRESH_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The largest `/token` request body accepted.
const MAX_FORM_BODY: usize = 64 * 1024;

/// The banner on every page the provider shows.
const BANNER: &str = "Development OpenID provider — for development only, never use in production";

/// A running development OpenID provider. Cloning gives another handle to the same provider.
#[derive(Clone)]
pub struct DevProvider {
    inner: Arc<Inner>,
}

impl fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProvider").field("issuer", &self.inner.issuer).finish_non_exhaustive()
    }
}

struct Inner {
    config: DevProviderConfig,
    addr: SocketAddr,
    issuer: String,
    state: Mutex<State>,
    /// A key that is never published, for [`Tamper::ForeignKey`]; made on first use.
    foreign_key: OnceLock<Option<Arc<SigningKey>>>,
    jwks_requests: AtomicUsize,
    token_requests: AtomicUsize,
    graph_requests: AtomicUsize,
    graph_lookups: AtomicUsize,
    client_assertions: AtomicUsize,
}

struct State {
    /// Published keys, newest last; the last one signs.
    keys: Vec<Arc<SigningKey>>,
    tamper: Tamper,
    misbehaviour: Misbehaviour,
    codes: HashMap<String, PendingCode>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// Client secrets accepted now (several during a rotation).
    client_secrets: Vec<String>,
    /// The `issuer` the JWKS names for its keys, when not the provider's own (see [`DevProvider::set_key_issuer`]).
    key_issuer: Option<String>,
}

impl State {
    fn current_key(&self) -> Option<Arc<SigningKey>> {
        self.keys.last().cloned()
    }
}

/// One sign-in: who, for which client, with which scopes.
#[derive(Debug, Clone)]
struct SignIn {
    client_id: String,
    user: &'static DevUser,
    scope: String,
    sid: String,
    auth_time: u64,
}

struct PendingCode {
    sign_in: SignIn,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    expires: Instant,
}

struct RefreshGrant {
    sign_in: SignIn,
    expires: Instant,
}

struct SigningKey {
    kid: String,
    pair: KeyPair,
    /// The RFC 8017 `RSAPublicKey` DER, to verify our own access tokens at `/userinfo`.
    public_der: Vec<u8>,
    /// Modulus and exponent, base64url without padding, as the JWKS wants them.
    n: String,
    e: String,
    pem: String,
}

fn generate_key() -> Result<SigningKey, DevProviderError> {
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| DevProviderError::KeyGeneration)?;
    let kid = random_token(9).ok_or(DevProviderError::KeyGeneration)?;
    let public = pair.public_key();
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    let public_der = public.as_ref().to_vec();
    let spki: PublicKeyX509Der<'static> = public.as_der().map_err(|_| DevProviderError::KeyGeneration)?;
    let pem = pem_wrap("PUBLIC KEY", spki.as_ref());
    Ok(SigningKey { kid, pair, public_der, n, e, pem })
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    let _ = writeln!(pem, "-----END {label}-----");
    pem
}

impl DevProvider {
    /// Starts the provider on `listener`, which must be bound to a loopback address, and serves
    /// until `shutdown` completes. Generates a fresh RSA signing key first.
    pub async fn start(
        listener: TcpListener,
        config: DevProviderConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<DevProvider, DevProviderError> {
        let addr = listener.local_addr()?;
        ensure_loopback(addr)?;
        let key = tokio::task::spawn_blocking(generate_key).await.map_err(|_| DevProviderError::KeyGeneration)??;
        let base = format!("http://{addr}");
        let client_secrets = vec![config.client_secret.clone()];
        let issuer = match (config.multi_tenant, config.token_version) {
            (false, TokenVersion::V2) => base,
            (false, TokenVersion::V1) => format!("{base}/{}/", config.tenant_id),
            (true, TokenVersion::V2) => format!("{base}/{{tenantid}}/v2.0"),
            (true, TokenVersion::V1) => format!("{base}/{{tenantid}}/"),
        };
        let provider = DevProvider {
            inner: Arc::new(Inner {
                config,
                addr,
                issuer,
                state: Mutex::new(State {
                    keys: vec![Arc::new(key)],
                    tamper: Tamper::None,
                    misbehaviour: Misbehaviour::None,
                    codes: HashMap::new(),
                    refresh_tokens: HashMap::new(),
                    client_secrets,
                    key_issuer: None,
                }),
                foreign_key: OnceLock::new(),
                jwks_requests: AtomicUsize::new(0),
                token_requests: AtomicUsize::new(0),
                graph_requests: AtomicUsize::new(0),
                graph_lookups: AtomicUsize::new(0),
                client_assertions: AtomicUsize::new(0),
            }),
        };
        let server = provider.clone();
        let handler = move |request: Request<Incoming>| {
            let provider = server.clone();
            async move { provider.handle(request).await }
        };
        tokio::spawn(serve(listener, handler, shutdown));
        tracing::info!(issuer = %provider.inner.issuer, "development OpenID provider started (for development only)");
        Ok(provider)
    }

    /// The issuer: `http://127.0.0.1:PORT` without a trailing slash (single tenant, v2), `http://ADDR/TID/`
    /// (v1), or the template `http://ADDR/{tenantid}/v2.0` (multi-tenant). Configure Postern with this.
    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    /// `http://127.0.0.1:PORT`: where every endpoint is.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The discovery document's URL (multi-tenant: the `organizations` one, as in Entra).
    pub fn discovery_url(&self) -> String {
        if self.inner.config.multi_tenant {
            format!("{}/organizations/v2.0/.well-known/openid-configuration", self.base_url())
        } else {
            format!("{}/.well-known/openid-configuration", self.inner.issuer.trim_end_matches('/'))
        }
    }

    /// The `iss` of a token for tenant `tid`: the issuer, with the tenant substituted in multi-tenant mode.
    pub fn issuer_for(&self, tid: &str) -> String {
        crate::oidc::entra::substitute(&self.inner.issuer, tid)
    }

    /// The fake Microsoft Graph's base URL, for `[graph] base_url`.
    pub fn graph_base_url(&self) -> String {
        format!("{}/graph/v1.0", self.base_url())
    }

    /// How many requests (pages) the fake Graph has answered.
    pub fn graph_requests(&self) -> usize {
        self.inner.graph_requests.load(Ordering::Relaxed)
    }

    /// How many group lookups (first pages) the fake Graph has answered.
    pub fn graph_lookups(&self) -> usize {
        self.inner.graph_lookups.load(Ordering::Relaxed)
    }

    /// How many client assertions (`private_key_jwt` or federated) `/token` has verified and accepted.
    pub fn client_assertions_accepted(&self) -> usize {
        self.inner.client_assertions.load(Ordering::Relaxed)
    }

    /// Makes the JWKS say its keys sign for `issuer` (as Entra's key document says of the consumer-accounts
    /// key), or for the provider's own issuer again with `None`. Tokens are signed as before.
    pub fn set_key_issuer(&self, issuer: Option<String>) {
        self.state().key_issuer = issuer;
    }

    /// Replaces the client secrets `/token` accepts (as an operator adding or removing secrets at the
    /// provider during a rotation).
    pub fn set_client_secrets(&self, secrets: &[&str]) {
        self.state().client_secrets = secrets.iter().map(|s| s.to_string()).collect();
    }

    /// The address the provider listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration the provider was started with.
    pub fn config(&self) -> &DevProviderConfig {
        &self.inner.config
    }

    /// Makes every ID token issued from now on defective in the given way ([`Tamper::None`]
    /// restores correct tokens).
    pub fn set_tamper(&self, tamper: Tamper) {
        self.state().tamper = tamper;
    }

    /// Makes one endpoint fail from now on ([`Misbehaviour::None`] restores it).
    pub fn set_misbehaviour(&self, misbehaviour: Misbehaviour) {
        self.state().misbehaviour = misbehaviour;
    }

    /// Generates a new RSA key with a new `kid` and signs with it from now on; the JWKS lists the
    /// new key and the previous one. Returns the new `kid`.
    ///
    /// Blocks while the key is generated (tens of milliseconds). Should generation fail, which
    /// it does not in practice, the current key stays and its `kid` is returned.
    pub fn rotate_signing_key(&self) -> String {
        match generate_key() {
            Ok(key) => {
                let kid = key.kid.clone();
                let mut state = self.state();
                state.keys.push(Arc::new(key));
                let excess = state.keys.len().saturating_sub(2);
                state.keys.drain(..excess);
                kid
            }
            Err(error) => {
                tracing::error!(%error, "development provider: key rotation failed; keeping the current key");
                self.current_kid()
            }
        }
    }

    /// Stops publishing every key but the current one.
    pub fn retire_old_keys(&self) {
        let mut state = self.state();
        let excess = state.keys.len().saturating_sub(1);
        state.keys.drain(..excess);
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        self.state().current_key().map(|key| key.kid.clone()).unwrap_or_default()
    }

    /// An ID token for the user with login name `user`, as `/token` would issue it after a
    /// sign-in (without a `nonce`), with `extra_claims` (a JSON object) merged over the claims; a
    /// `null` value removes that claim. The current [`Tamper`] applies.
    ///
    /// A login name the provider does not know gets a made-up user with no groups, so tests can
    /// mint tokens for strangers.
    pub fn mint_id_token(&self, user: &str, extra_claims: Value) -> String {
        let sid = random_token(16).unwrap_or_else(|| "dev-session".to_owned());
        let mut claims = match find_user(user) {
            Some(known) => self.id_token_claims(&Person::from(known), None, &sid, now()),
            None => {
                let stranger = Stranger::new(user);
                self.id_token_claims(&stranger.as_person(), None, &sid, now())
            }
        };
        merge(&mut claims, &extra_claims);
        self.reissue_for_tenant(&mut claims, &extra_claims);
        self.encode_id_token(claims)
    }

    /// An access token (a JWT signed by the current key, never tampered with) with `iss`,
    /// `aud` = the configured access-token audience, `iat`, `nbf`, `exp`, and `subject_claims`
    /// (a JSON object) merged over them; a `null` value removes that claim.
    pub fn mint_access_token(&self, subject_claims: Value) -> String {
        let now = now();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer_for(&self.inner.config.tenant_id)));
        claims.insert("aud".into(), json!(self.inner.config.access_token_audience));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(now + self.ttl_secs()));
        merge(&mut claims, &subject_claims);
        self.reissue_for_tenant(&mut claims, &subject_claims);
        self.sign_access_token(claims)
    }

    /// The current signing key's public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> String {
        self.state().current_key().map(|key| key.pem.clone()).unwrap_or_default()
    }

    /// How many requests `/jwks` has received.
    pub fn jwks_requests(&self) -> usize {
        self.inner.jwks_requests.load(Ordering::Relaxed)
    }

    /// How many requests `/token` has received.
    pub fn token_requests(&self) -> usize {
        self.inner.token_requests.load(Ordering::Relaxed)
    }

    /// The pairwise `sub` the provider gives the user with object id `oid` in tokens for this
    /// provider's client.
    pub fn subject_for(&self, oid: &str) -> String {
        pairwise_subject(oid, &self.inner.config.client_id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a development provider; keep serving.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ttl_secs(&self) -> u64 {
        self.inner.config.id_token_ttl.as_secs()
    }

    // -----------------------------------------------------------------------------------------
    // Tokens

    fn id_token_claims(
        &self,
        person: &Person<'_>,
        nonce: Option<&str>,
        sid: &str,
        auth_time: u64,
    ) -> Map<String, Value> {
        let config = &self.inner.config;
        let now = now();
        let amr: &[&str] = if person.mfa { &["pwd", "mfa"] } else { &["pwd"] };
        let tid = person.tenant.unwrap_or(&config.tenant_id);
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer_for(tid)));
        claims.insert("sub".into(), json!(pairwise_subject(person.oid, &config.client_id)));
        claims.insert("aud".into(), json!(config.client_id));
        claims.insert("exp".into(), json!(now + self.ttl_secs()));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        claims.insert("auth_time".into(), json!(auth_time));
        claims.insert("tid".into(), json!(tid));
        claims.insert("oid".into(), json!(person.oid));
        claims.insert("email".into(), json!(person.email));
        claims.insert("name".into(), json!(person.display_name));
        self.insert_groups(&mut claims, person.oid, tid, &person.groups);
        self.insert_version_claims(&mut claims, person.email);
        self.insert_guest_claims(&mut claims, person.home_tenant);
        claims.insert("amr".into(), json!(amr));
        claims.insert("sid".into(), json!(sid));
        claims.insert("login_hint".into(), json!(login_hint(person.oid, tid)));
        claims
    }

    /// `groups`, or Entra's overage indicator when there are more than [`GROUP_OVERAGE_LIMIT`].
    fn insert_groups(&self, claims: &mut Map<String, Value>, oid: &str, tid: &str, groups: &[String]) {
        if groups.len() > GROUP_OVERAGE_LIMIT {
            claims.insert("_claim_names".into(), json!({ "groups": "src1" }));
            // The legacy Azure AD Graph URL Entra really sends; relying parties must not call it.
            claims.insert(
                "_claim_sources".into(),
                json!({ "src1": { "endpoint": format!("https://graph.windows.net/{tid}/users/{oid}/getMemberObjects") } }),
            );
        } else {
            claims.insert("groups".into(), json!(groups));
        }
    }

    /// `ver`, and the username claims of that version.
    fn insert_version_claims(&self, claims: &mut Map<String, Value>, username: &str) {
        match self.inner.config.token_version {
            TokenVersion::V2 => {
                claims.insert("preferred_username".into(), json!(username));
                claims.insert("ver".into(), json!("2.0"));
            }
            TokenVersion::V1 => {
                claims.insert("upn".into(), json!(username));
                claims.insert("unique_name".into(), json!(username));
                claims.insert("ver".into(), json!("1.0"));
            }
        }
    }

    /// A guest's `acct` and `idp` (the home tenant's v1 issuer, as Entra writes it).
    fn insert_guest_claims(&self, claims: &mut Map<String, Value>, home_tenant: Option<&str>) {
        if let Some(home) = home_tenant {
            claims.insert("acct".into(), json!(1));
            claims.insert("idp".into(), json!(format!("https://sts.windows.net/{home}/")));
        }
    }

    /// After a test merged claims: a changed `tid` (without an explicit `iss`) moves the token to that
    /// tenant's issuer, as Entra would have issued it.
    fn reissue_for_tenant(&self, claims: &mut Map<String, Value>, overrides: &Value) {
        if overrides.get("tid").is_some()
            && overrides.get("iss").is_none()
            && let Some(tid) = claims.get("tid").and_then(Value::as_str).map(str::to_owned)
        {
            claims.insert("iss".into(), json!(self.issuer_for(&tid)));
        }
    }

    /// The access token `/token` issues with a user's sign-in.
    fn user_access_token(&self, sign_in: &SignIn) -> String {
        let config = &self.inner.config;
        let user = sign_in.user;
        let scp: Vec<&str> =
            sign_in.scope.split(' ').filter(|scope| !scope.is_empty() && !OIDC_SCOPES.contains(scope)).collect();
        let scp = if scp.is_empty() { "access_as_user".to_owned() } else { scp.join(" ") };
        let tid = user.tenant.unwrap_or(&config.tenant_id);
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(pairwise_subject(user.oid, &config.client_id)));
        claims.insert("oid".into(), json!(user.oid));
        claims.insert("tid".into(), json!(tid));
        let client = if self.inner.config.token_version == TokenVersion::V1 { "appid" } else { "azp" };
        claims.insert(client.into(), json!(config.client_id));
        claims.insert("scp".into(), json!(scp));
        claims.insert("name".into(), json!(user.display_name));
        claims.insert("sid".into(), json!(sign_in.sid));
        self.insert_groups(&mut claims, user.oid, tid, &user.all_groups());
        self.insert_version_claims(&mut claims, user.email);
        self.insert_guest_claims(&mut claims, user.home_tenant);
        self.mint_access_token(Value::Object(claims))
    }

    fn sign_access_token(&self, claims: Map<String, Value>) -> String {
        let Some(key) = self.state().current_key() else {
            return String::new();
        };
        let header = self.rs256_header(Some(&key.kid));
        let input = signing_input(&header, &claims);
        let signature = rs256(&key, &input);
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The header of an RS256 token: v1.0 tokens repeat the key id as `x5t`, as Entra's do.
    fn rs256_header(&self, kid: Option<&str>) -> Value {
        match (kid, self.inner.config.token_version) {
            (Some(kid), TokenVersion::V1) => json!({ "alg": "RS256", "typ": "JWT", "kid": kid, "x5t": kid }),
            (Some(kid), TokenVersion::V2) => json!({ "alg": "RS256", "typ": "JWT", "kid": kid }),
            (None, _) => json!({ "alg": "RS256", "typ": "JWT" }),
        }
    }

    /// Signs ID token claims, applying the current [`Tamper`].
    fn encode_id_token(&self, mut claims: Map<String, Value>) -> String {
        let (tamper, key) = {
            let state = self.state();
            (state.tamper.clone(), state.current_key())
        };
        let Some(key) = key else {
            return String::new();
        };
        let rs256_header = |kid: Option<&str>| self.rs256_header(kid);
        let signed = |header: Value, claims: &Map<String, Value>, key: &SigningKey, corrupt: bool| {
            let input = signing_input(&header, claims);
            let mut signature = rs256(key, &input);
            if corrupt && let Some(last) = signature.last_mut() {
                *last ^= 0x01;
            }
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        match tamper {
            Tamper::None => signed(rs256_header(Some(&key.kid)), &claims, &key, false),
            Tamper::Claims(overrides) => {
                merge(&mut claims, &overrides);
                signed(rs256_header(Some(&key.kid)), &claims, &key, false)
            }
            Tamper::AlgNone => {
                let header = json!({ "alg": "none", "typ": "JWT", "kid": key.kid });
                format!("{}.", signing_input(&header, &claims))
            }
            Tamper::Hs256WithPublicKey => {
                let header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid });
                let input = signing_input(&header, &claims);
                let mac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.pem.as_bytes());
                let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
            }
            Tamper::BadSignature => signed(rs256_header(Some(&key.kid)), &claims, &key, true),
            Tamper::ForeignKey => {
                let foreign = self.inner.foreign_key.get_or_init(|| generate_key().ok().map(Arc::new)).clone();
                match foreign {
                    Some(foreign) => signed(rs256_header(Some(&key.kid)), &claims, &foreign, false),
                    // Without a foreign key, a corrupted signature is the closest defect.
                    None => signed(rs256_header(Some(&key.kid)), &claims, &key, true),
                }
            }
            Tamper::NoKid => signed(rs256_header(None), &claims, &key, false),
            Tamper::UnknownKid => signed(rs256_header(Some("unknown-kid")), &claims, &key, false),
            Tamper::Header(extra) => {
                let mut header = rs256_header(Some(&key.kid));
                if let (Some(h), Some(extra)) = (header.as_object_mut(), extra.as_object()) {
                    for (k, v) in extra {
                        h.insert(k.clone(), v.clone());
                    }
                }
                signed(header, &claims, &key, false)
            }
        }
    }

    /// The claims of an access token this provider signed, for its access-token audience, that has
    /// not expired.
    fn verify_own_token(&self, token: &str) -> Option<Map<String, Value>> {
        self.verify_own_token_for(token, &self.inner.config.access_token_audience)
    }

    /// The claims of a token this provider signed for `audience`, that has not expired.
    fn verify_own_token_for(&self, token: &str, audience: &str) -> Option<Map<String, Value>> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")? != "RS256" {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let input = &token[..header_and_claims_len(token)?];
        let keys = self.state().keys.clone();
        let verified = keys.iter().any(|key| {
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &key.public_der)
                .verify(input.as_bytes(), &signature)
                .is_ok()
        });
        if !verified {
            return None;
        }
        let claims: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let unexpired = claims.get("exp").and_then(Value::as_u64).is_some_and(|exp| exp > now());
        let tid = claims.get("tid").and_then(Value::as_str).unwrap_or(&self.inner.config.tenant_id);
        let ours = claims.get("iss").and_then(Value::as_str) == Some(self.issuer_for(tid).as_str());
        // An ID token is not an access token, even though this provider signs both.
        let access = claims.get("aud").and_then(Value::as_str) == Some(audience);
        (unexpired && ours && access).then_some(claims)
    }

    // -----------------------------------------------------------------------------------------
    // HTTP

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let method = request.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        let path = request.uri().path();
        if path.ends_with("/.well-known/openid-configuration") && path != "/.well-known/openid-configuration" {
            // The issuer's own path (v1 `/{tid}/`, multi-tenant `/organizations/v2.0`), as in Entra.
            return if get { self.discovery() } else { method_not_allowed("GET, HEAD") };
        }
        if let Some(rest) = path.strip_prefix("/graph/v1.0/") {
            let rest = rest.to_owned();
            return if get { self.graph(&request, &rest) } else { method_not_allowed("GET, HEAD") };
        }
        match request.uri().path() {
            "/.well-known/openid-configuration" if get => self.discovery(),
            "/jwks" if get => self.jwks(),
            "/authorize" if get => self.authorize(&request),
            "/token" if method == Method::POST => self.token(request).await,
            "/userinfo" if get || method == Method::POST => self.userinfo(request.headers()),
            "/logout" if get => self.logout(&request),
            "/.well-known/openid-configuration" | "/jwks" | "/authorize" | "/logout" => method_not_allowed("GET, HEAD"),
            "/token" => method_not_allowed("POST"),
            "/userinfo" => method_not_allowed("GET, HEAD, POST"),
            _ => html_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!(
                    "<h1>Not found</h1><p>The development provider has no page here. Its discovery document is at \
                     <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a>.</p>\
                     <p class=\"muted\">Issuer: <code>{}</code></p>",
                    escape_html(&self.inner.issuer)
                ),
            ),
        }
    }

    fn discovery(&self) -> Response<Body> {
        if self.state().misbehaviour == Misbehaviour::DiscoveryDown {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "temporarily_unavailable", "error_description": "discovery is down (Misbehaviour::DiscoveryDown)" }),
            );
        }
        let issuer = &self.base_url();
        json_response(
            StatusCode::OK,
            &json!({
                "issuer": self.inner.issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "end_session_endpoint": format!("{issuer}/logout"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": [
                    "iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "auth_time", "tid", "oid",
                    "preferred_username", "email", "name", "groups", "ver", "amr", "sid"
                ],
                "request_uri_parameter_supported": false,
                "tenant_region_scope": null,
            }),
        )
    }

    fn jwks(&self) -> Response<Body> {
        self.inner.jwks_requests.fetch_add(1, Ordering::Relaxed);
        let (misbehaviour, keys, key_issuer) = {
            let state = self.state();
            (state.misbehaviour, state.keys.clone(), state.key_issuer.clone())
        };
        let key_issuer = key_issuer.unwrap_or_else(|| self.inner.issuer.clone());
        if misbehaviour == Misbehaviour::JwksGarbage {
            return garbage();
        }
        // The signing key first: some clients try keys in order.
        let keys: Vec<Value> = keys
            .iter()
            .rev()
            .map(|key| {
                // Entra's key documents say which issuer each key signs for (the template, in multi-tenant mode).
                json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": key.kid, "n": key.n, "e": key.e, "issuer": key_issuer })
            })
            .collect();
        json_response(StatusCode::OK, &json!({ "keys": keys }))
    }

    // ---- /authorize

    fn authorize(&self, request: &Request<Incoming>) -> Response<Body> {
        let params = Params::parse(request.uri().query().unwrap_or(""));
        let config = &self.inner.config;

        // Until client_id and redirect_uri check out, errors go on a page: redirecting to an
        // unverified URI would make this an open redirector.
        for name in ["client_id", "redirect_uri"] {
            if params.is_repeated(name) {
                return authorize_error_page(&format!("The <code>{name}</code> parameter was given more than once."));
            }
        }
        match params.get("client_id") {
            None => return authorize_error_page("The request has no <code>client_id</code>."),
            Some(client_id) if client_id != config.client_id => {
                return authorize_error_page(&format!(
                    "Unknown <code>client_id</code> <code>{}</code>; this provider knows only <code>{}</code>.",
                    escape_html(client_id),
                    escape_html(&config.client_id)
                ));
            }
            Some(_) => {}
        }
        let Some(redirect_raw) = params.get("redirect_uri") else {
            return authorize_error_page("The request has no <code>redirect_uri</code>.");
        };
        let redirect_uri = match check_redirect_uri(redirect_raw) {
            Ok(url) => url,
            Err(why) => {
                return authorize_error_page(&format!(
                    "The <code>redirect_uri</code> <code>{}</code> is not acceptable: {why}",
                    escape_html(redirect_raw)
                ));
            }
        };

        // From here on, errors go back to the client.
        let state = params.get("state");
        let fail = |error: &str, description: &str| error_redirect(&redirect_uri, error, description, state);
        if let Some(repeated) = params.repeated() {
            return fail("invalid_request", &format!("parameter {repeated} was given more than once"));
        }
        match params.get("response_type") {
            Some("code") => {}
            Some(_) => {
                return fail("unsupported_response_type", "only response_type=code is supported");
            }
            None => return fail("invalid_request", "response_type is missing"),
        }
        let scope = params.get("scope").unwrap_or("");
        if !scope.split(' ').any(|s| s == "openid") {
            return fail("invalid_scope", "the scope must include openid");
        }
        let Some(code_challenge) = params.get("code_challenge") else {
            return fail("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256");
        };
        if params.get("code_challenge_method") != Some("S256") {
            return fail("invalid_request", "only code_challenge_method=S256 is supported (plain is refused)");
        }
        if code_challenge.len() != 43 || !code_challenge.bytes().all(is_base64url_byte) {
            return fail("invalid_request", "code_challenge must be BASE64URL(SHA256(code_verifier)), 43 characters");
        }
        let prompt: Vec<&str> = params.get("prompt").unwrap_or("").split(' ').filter(|p| !p.is_empty()).collect();
        if prompt.contains(&"none") && prompt.len() > 1 {
            return fail("invalid_request", "prompt=none cannot be combined with other prompt values");
        }

        let user = params.get("login_hint").and_then(find_user);
        let Some(user) = user else {
            // The provider keeps no session of its own, so without a user named there is nobody
            // signed in to answer a silent request for.
            if prompt.contains(&"none") {
                return fail("login_required", "no user is signed in; send login_hint to choose one");
            }
            return self.picker_page(&params, redirect_raw);
        };

        let (Some(code), Some(sid)) = (random_token(32), random_token(16)) else {
            return fail("server_error", "the provider could not generate a random code");
        };
        let pending = PendingCode {
            sign_in: SignIn {
                client_id: config.client_id.clone(),
                user,
                scope: scope.to_owned(),
                sid,
                auth_time: now(),
            },
            redirect_uri: redirect_raw.to_owned(),
            code_challenge: code_challenge.to_owned(),
            nonce: params.get("nonce").map(str::to_owned),
            expires: Instant::now() + CODE_LIFETIME,
        };
        {
            let mut state = self.state();
            let now = Instant::now();
            state.codes.retain(|_, pending| pending.expires > now);
            state.codes.insert(code.clone(), pending);
        }
        let mut location = redirect_uri;
        {
            let mut query = location.query_pairs_mut();
            query.append_pair("code", &code);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
        }
        redirect(location.as_str())
    }

    fn picker_page(&self, params: &Params, redirect_uri: &str) -> Response<Body> {
        let mut hidden = String::new();
        for (name, value) in &params.pairs {
            if name != "login_hint" {
                let _ = write!(
                    hidden,
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape_html(name),
                    escape_html(value)
                );
            }
        }
        let mut users = String::new();
        for user in USERS {
            let groups = if user.groups.is_empty() {
                "no groups".to_owned()
            } else {
                user.groups
                    .iter()
                    .map(|group| {
                        format!("<code title=\"{0}\">{1}</code>", escape_html(group), escape_html(group_label(group)))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mfa = if user.uses_mfa() { "password and MFA" } else { "password only" };
            let _ = write!(
                users,
                "<li><button type=\"submit\" name=\"login_hint\" value=\"{name}\" aria-describedby=\"about-{name}\">\
                 Sign in as {display}</button>\
                 <p id=\"about-{name}\" class=\"muted\">{email} &middot; groups: {groups} &middot; signs in with {mfa}</p></li>",
                name = escape_html(user.name),
                display = escape_html(user.display_name),
                email = escape_html(user.email),
            );
        }
        let unknown_hint = match params.get("login_hint") {
            Some(hint) => format!(
                "<p role=\"status\">There is no user called <code>{}</code>; choose one of these.</p>",
                escape_html(hint)
            ),
            None => String::new(),
        };
        html_page(
            StatusCode::OK,
            "Choose a user",
            &format!(
                "<h1>Choose a user to sign in as</h1>{unknown_hint}\
                 <p>The application <code>{client}</code> asks you to sign in; you will be sent back to \
                 <code>{redirect}</code>. No password is needed: these are made-up users.</p>\
                 <form method=\"get\" action=\"/authorize\">{hidden}<ul class=\"users\">{users}</ul></form>",
                client = escape_html(&self.inner.config.client_id),
                redirect = escape_html(redirect_uri),
            ),
        )
    }

    // ---- /token

    async fn token(&self, request: Request<Incoming>) -> Response<Body> {
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        match self.state().misbehaviour {
            Misbehaviour::TokenEndpoint500 => {
                return json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({ "error": "server_error", "error_description": "Misbehaviour::TokenEndpoint500" }),
                );
            }
            Misbehaviour::TokenEndpointGarbage => return garbage(),
            Misbehaviour::TokenEndpointError => {
                return token_error(TokenError::InvalidGrant("Misbehaviour::TokenEndpointError".into()));
            }
            Misbehaviour::None | Misbehaviour::JwksGarbage | Misbehaviour::DiscoveryDown | Misbehaviour::GraphDown => {}
        }
        match self.token_inner(request).await {
            Ok(body) => {
                let mut response = json_response(StatusCode::OK, &body);
                response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                response
            }
            Err(error) => token_error(error),
        }
    }

    async fn token_inner(&self, request: Request<Incoming>) -> Result<Value, TokenError> {
        let (parts, body) = request.into_parts();
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if form_type != Some(true) {
            return Err(TokenError::InvalidRequest("the body must be application/x-www-form-urlencoded".into()));
        }
        let declared_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared_length.is_some_and(|length| length > MAX_FORM_BODY as u64) {
            return Err(TokenError::TooLarge);
        }
        let body = match Limited::new(body, MAX_FORM_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(TokenError::TooLarge);
            }
            Err(_) => {
                return Err(TokenError::InvalidRequest("the request body could not be read".into()));
            }
        };
        let Ok(body) = std::str::from_utf8(&body) else {
            return Err(TokenError::InvalidRequest("the request body is not UTF-8".into()));
        };
        let form = Params::parse(body);
        if let Some(repeated) = form.repeated() {
            return Err(TokenError::InvalidRequest(format!("parameter {repeated} was given more than once")));
        }
        let client_id = self.authenticate_client(&parts.headers, &form)?;
        match form.get("grant_type") {
            Some("authorization_code") => self.authorization_code_grant(&client_id, &form),
            Some("refresh_token") => self.refresh_token_grant(&client_id, &form),
            Some("client_credentials") => Ok(self.client_credentials_grant(&client_id, &form)),
            Some(_) => Err(TokenError::UnsupportedGrantType),
            None => Err(TokenError::InvalidRequest("grant_type is missing".into())),
        }
    }

    /// Checks the client's credentials (RFC 6749 section 2.3.1) and returns its id.
    fn authenticate_client(&self, headers: &HeaderMap, form: &Params) -> Result<String, TokenError> {
        let config = &self.inner.config;
        if let Some(kind) = form.get("client_assertion_type") {
            if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
                || headers.contains_key(header::AUTHORIZATION)
            {
                return Err(TokenError::InvalidClient);
            }
            let assertion = form.get("client_assertion").ok_or(TokenError::InvalidClient)?;
            let client_id = form.get("client_id").unwrap_or(&config.client_id);
            if client_id != config.client_id || !self.client_assertion_valid(assertion) {
                return Err(TokenError::InvalidClient);
            }
            self.inner.client_assertions.fetch_add(1, Ordering::Relaxed);
            return Ok(client_id.to_owned());
        }
        let (client_id, secret) = match headers.get(header::AUTHORIZATION) {
            Some(authorization) => {
                if form.get("client_secret").is_some() {
                    return Err(TokenError::InvalidRequest(
                        "use one client authentication method, not both Basic and client_secret".into(),
                    ));
                }
                let (id, secret) = parse_basic(authorization).ok_or(TokenError::InvalidClient)?;
                if form.get("client_id").is_some_and(|form_id| form_id != id) {
                    return Err(TokenError::InvalidClient);
                }
                (id, secret)
            }
            None => match (form.get("client_id"), form.get("client_secret")) {
                (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
                _ => return Err(TokenError::InvalidClient),
            },
        };
        let id_ok = client_id == config.client_id;
        let accepted = self.state().client_secrets.clone();
        let secret_ok = accepted.iter().fold(false, |ok, known| {
            ok | aws_lc_rs::constant_time::verify_slices_are_equal(secret.as_bytes(), known.as_bytes()).is_ok()
        });
        if id_ok && secret_ok { Ok(client_id) } else { Err(TokenError::InvalidClient) }
    }

    /// A client assertion, as Entra checks one: either `private_key_jwt` (header `x5t#S256` = the registered
    /// certificate's SHA-256 thumbprint, PS256 or RS256 by its key, `iss` = `sub` = the client id, `aud` = this
    /// token endpoint, unexpired, with a `jti`), or a federated credential (signed by this provider, `aud`
    /// [`FEDERATED_AUDIENCE`], `sub` = the configured subject).
    fn client_assertion_valid(&self, assertion: &str) -> bool {
        let config = &self.inner.config;
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return false;
        };
        if let Some(thumbprint) = &header.x5t_s256 {
            let Some(cert) = &config.client_certificate_pem else {
                return false;
            };
            if crate::config::certificate_thumbprint(cert.as_bytes()).as_deref() != Some(thumbprint.as_str()) {
                return false;
            }
            if !matches!(header.alg, jsonwebtoken::Algorithm::PS256 | jsonwebtoken::Algorithm::RS256) {
                return false;
            }
            let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(cert.as_bytes()) else {
                return false;
            };
            let mut validation = jsonwebtoken::Validation::new(header.alg);
            validation.set_audience(&[format!("{}/token", self.base_url())]);
            validation.set_issuer(&[&config.client_id]);
            validation.sub = Some(config.client_id.clone());
            validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
            return jsonwebtoken::decode::<Map<String, Value>>(assertion, &key, &validation)
                .is_ok_and(|data| data.claims.get("jti").and_then(Value::as_str).is_some_and(|j| !j.is_empty()));
        }
        let Some(subject) = &config.federated_subject else {
            return false;
        };
        self.verify_own_token_for(assertion, FEDERATED_AUDIENCE)
            .is_some_and(|claims| claims.get("sub").and_then(Value::as_str) == Some(subject.as_str()))
    }

    fn authorization_code_grant(&self, client_id: &str, form: &Params) -> Result<Value, TokenError> {
        let missing = |name: &str| TokenError::InvalidRequest(format!("{name} is missing"));
        let code = form.get("code").ok_or_else(|| missing("code"))?;
        let redirect_uri = form.get("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
        let verifier = form.get("code_verifier").ok_or_else(|| missing("code_verifier (PKCE is required)"))?;
        // Removed before any check: a code is good for one attempt, whatever its outcome.
        let pending = self
            .state()
            .codes
            .remove(code)
            .ok_or_else(|| TokenError::InvalidGrant("the code is unknown or was already used".into()))?;
        if pending.expires <= Instant::now() {
            return Err(TokenError::InvalidGrant("the code has expired".into()));
        }
        if pending.sign_in.client_id != client_id {
            return Err(TokenError::InvalidGrant("the code was issued to another client".into()));
        }
        if pending.redirect_uri != redirect_uri {
            return Err(TokenError::InvalidGrant("redirect_uri differs from the one sent to /authorize".into()));
        }
        if !pkce_matches(verifier, &pending.code_challenge) {
            return Err(TokenError::InvalidGrant("code_verifier does not match the code_challenge".into()));
        }
        self.user_tokens(&pending.sign_in, pending.nonce.as_deref())
    }

    fn refresh_token_grant(&self, client_id: &str, form: &Params) -> Result<Value, TokenError> {
        let token =
            form.get("refresh_token").ok_or_else(|| TokenError::InvalidRequest("refresh_token is missing".into()))?;
        // Rotation: the presented token is spent whatever happens next.
        let grant = self
            .state()
            .refresh_tokens
            .remove(token)
            .ok_or_else(|| TokenError::InvalidGrant("the refresh token is unknown or was already used".into()))?;
        if grant.expires <= Instant::now() {
            return Err(TokenError::InvalidGrant("the refresh token has expired".into()));
        }
        if grant.sign_in.client_id != client_id {
            return Err(TokenError::InvalidGrant("the refresh token was issued to another client".into()));
        }
        self.user_tokens(&grant.sign_in, None)
    }

    /// The token response for a user's sign-in: ID token, access token, and a refresh token
    /// when `offline_access` was granted.
    fn user_tokens(&self, sign_in: &SignIn, nonce: Option<&str>) -> Result<Value, TokenError> {
        let claims = self.id_token_claims(&Person::from(sign_in.user), nonce, &sign_in.sid, sign_in.auth_time);
        let mut body = json!({
            "access_token": self.user_access_token(sign_in),
            "token_type": "Bearer",
            "expires_in": self.ttl_secs(),
            "id_token": self.encode_id_token(claims),
            "scope": sign_in.scope,
        });
        if sign_in.scope.split(' ').any(|scope| scope == "offline_access") {
            let refresh = random_token(32).ok_or(TokenError::ServerError)?;
            let mut state = self.state();
            let now = Instant::now();
            state.refresh_tokens.retain(|_, grant| grant.expires > now);
            state
                .refresh_tokens
                .insert(refresh.clone(), RefreshGrant { sign_in: sign_in.clone(), expires: now + REFRESH_LIFETIME });
            body["refresh_token"] = json!(refresh);
        }
        Ok(body)
    }

    fn client_credentials_grant(&self, client_id: &str, form: &Params) -> Value {
        let config = &self.inner.config;
        let scope =
            form.get("scope").map_or_else(|| format!("{}/.default", config.access_token_audience), str::to_owned);
        if scope == format!("{GRAPH_AUDIENCE}/.default") {
            let token = self.mint_access_token(json!({
                "aud": GRAPH_AUDIENCE,
                "sub": DEMO_APP_OID,
                "azp": client_id,
                "appid": client_id,
                "oid": DEMO_APP_OID,
                "roles": ["GroupMember.Read.All"],
                "idtyp": "app",
                "ver": "1.0",
            }));
            return json!({ "access_token": token, "token_type": "Bearer", "expires_in": self.ttl_secs(), "scope": scope });
        }
        let token = self.mint_access_token(json!({
            "sub": client_id,
            "azp": client_id,
            "appid": client_id,
            "oid": DEMO_APP_OID,
            "tid": config.tenant_id,
            "roles": DEMO_APP_ROLES,
            "idtyp": "app",
            "ver": "2.0",
        }));
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.ttl_secs(),
            "scope": scope,
        })
    }

    // ---- the fake Microsoft Graph

    /// `GET /graph/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group[?$top=N][&$skiptoken=K]`, with an
    /// app-only token for Graph: the user's groups, one page at a time, with `@odata.nextLink` until the last.
    fn graph(&self, request: &Request<Incoming>, rest: &str) -> Response<Body> {
        self.inner.graph_requests.fetch_add(1, Ordering::Relaxed);
        if self.state().misbehaviour == Misbehaviour::GraphDown {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": { "code": "serviceNotAvailable", "message": "Misbehaviour::GraphDown" } }),
            );
        }
        let graph_error = |status: StatusCode, code: &str| {
            json_response(status, &json!({ "error": { "code": code, "message": code } }))
        };
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if token.and_then(|t| self.verify_own_token_for(t, GRAPH_AUDIENCE)).is_none() {
            return graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken");
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let ["users", oid, "transitiveMemberOf", "microsoft.graph.group"] = parts.as_slice() else {
            return graph_error(StatusCode::BAD_REQUEST, "BadRequest");
        };
        let Some(user) = USERS.iter().find(|user| user.oid == *oid) else {
            return graph_error(StatusCode::NOT_FOUND, "Request_ResourceNotFound");
        };
        let params = Params::parse(request.uri().query().unwrap_or(""));
        let size = params
            .get("$top")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(100)
            .clamp(1, 999)
            .min(self.inner.config.graph_page_size.max(1));
        let skip = params.get("$skiptoken").and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
        if skip == 0 {
            self.inner.graph_lookups.fetch_add(1, Ordering::Relaxed);
        }
        let groups = user.all_groups();
        let page: Vec<Value> = groups
            .iter()
            .skip(skip)
            .take(size)
            .map(|id| json!({ "@odata.type": "#microsoft.graph.group", "id": id }))
            .collect();
        let mut body =
            json!({ "@odata.context": format!("{}/$metadata#groups(id)", self.graph_base_url()), "value": page });
        if skip.saturating_add(size) < groups.len() {
            body["@odata.nextLink"] = json!(format!(
                "{}/users/{oid}/transitiveMemberOf/microsoft.graph.group?$select=id&$top={size}&$skiptoken={}",
                self.graph_base_url(),
                skip.saturating_add(size)
            ));
        }
        json_response(StatusCode::OK, &body)
    }

    // ---- /userinfo and /logout

    fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let user = token
            .and_then(|token| self.verify_own_token(token))
            .and_then(|claims| claims.get("oid").and_then(Value::as_str).map(str::to_owned))
            .and_then(|oid| USERS.iter().find(|user| user.oid == oid));
        let Some(user) = user else {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                &json!({ "error": "invalid_token", "error_description": "send a user's access token issued by this provider" }),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return response;
        };
        json_response(
            StatusCode::OK,
            &json!({
                "sub": self.subject_for(user.oid),
                "oid": user.oid,
                "tid": self.inner.config.tenant_id,
                "name": user.display_name,
                "preferred_username": user.email,
                "email": user.email,
                "groups": user.groups,
            }),
        )
    }

    fn logout(&self, request: &Request<Incoming>) -> Response<Body> {
        let params = Params::parse(request.uri().query().unwrap_or(""));
        let target = params.get("post_logout_redirect_uri");
        if let Some(mut url) = target.and_then(loopback_url) {
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            return redirect(url.as_str());
        }
        let refused = match target {
            Some(target) => format!(
                "<p class=\"muted\">Not returning to <code>{}</code>: the development provider only redirects \
                 to http(s) URLs on 127.0.0.1, ::1 or localhost.</p>",
                escape_html(target)
            ),
            None => String::new(),
        };
        html_page(
            StatusCode::OK,
            "Signed out",
            &format!(
                "<h1>Signed out of the development provider</h1>\
                 <p>The development provider keeps no sessions, so there was nothing more to end here.</p>{refused}"
            ),
        )
    }
}

/// The OpenID Connect scopes, which are not API permissions and so stay out of `scp`.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The subject of a user as one client sees it (Entra's `sub` is pairwise): opaque and stable.
fn pairwise_subject(oid: &str, client_id: &str) -> String {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    digest.update(oid.as_bytes());
    digest.update(client_id.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finish().as_ref())
}

/// Entra's `login_hint` optional claim for a user: opaque to relying parties, which send it back as
/// `logout_hint`.
pub fn login_hint(oid: &str, tid: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("O.{oid}@{tid}"))
}

/// The claims-relevant facts about a person, whether one of [`USERS`] or a made-up one.
struct Person<'a> {
    oid: &'a str,
    email: &'a str,
    display_name: &'a str,
    groups: Vec<String>,
    mfa: bool,
    tenant: Option<&'a str>,
    home_tenant: Option<&'a str>,
}

impl From<&'static DevUser> for Person<'static> {
    fn from(user: &'static DevUser) -> Self {
        Person {
            oid: user.oid,
            email: user.email,
            display_name: user.display_name,
            groups: user.all_groups(),
            mfa: user.uses_mfa(),
            tenant: user.tenant,
            home_tenant: user.home_tenant,
        }
    }
}

/// A user [`DevProvider::mint_id_token`] was asked for but the provider does not know.
struct Stranger {
    oid: String,
    email: String,
    display_name: String,
}

impl Stranger {
    fn new(name: &str) -> Stranger {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
        let hex: String = digest.as_ref()[..16].iter().map(|byte| format!("{byte:02x}")).collect();
        let oid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
        Stranger { oid, email: format!("{name}@example.com"), display_name: name.to_owned() }
    }

    fn as_person(&self) -> Person<'_> {
        Person {
            oid: &self.oid,
            email: &self.email,
            display_name: &self.display_name,
            groups: Vec::new(),
            mfa: false,
            tenant: None,
            home_tenant: None,
        }
    }
}

/// Merges a JSON object over `claims`; `null` values remove claims. Anything but an object is
/// ignored, so `Value::Null` means "no changes".
fn merge(claims: &mut Map<String, Value>, overrides: &Value) {
    if let Value::Object(overrides) = overrides {
        for (name, value) in overrides {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
}

/// `BASE64URL(header) "." BASE64URL(claims)`, the bytes a JWS signs.
fn signing_input(header: &Value, claims: &Map<String, Value>) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    )
}

/// Where the signature starts in a compact JWS, less its dot.
fn header_and_claims_len(token: &str) -> Option<usize> {
    token.rfind('.')
}

/// An RS256 signature; empty (and so never valid) in the practically impossible case that
/// signing fails.
fn rs256(key: &SigningKey, input: &str) -> Vec<u8> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut signature = vec![0u8; key.pair.public_modulus_len()];
    match key.pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature) {
        Ok(()) => signature,
        Err(_) => {
            tracing::error!("development provider: RS256 signing failed");
            Vec::new()
        }
    }
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier)) == challenge`, with a well-formed verifier.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}

fn is_base64url_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// `bytes` random bytes, base64url without padding; `None` if the system RNG fails.
fn random_token(bytes: usize) -> Option<String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).ok()?;
    Some(URL_SAFE_NO_PAD.encode(buffer))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// The redirect URIs the provider accepts: any http(s) URL ending in `/oauth2/callback` (in
/// development the proxy's public URL is not known in advance), without a fragment.
fn check_redirect_uri(raw: &str) -> Result<Url, &'static str> {
    let url = Url::parse(raw).map_err(|_| "it is not an absolute URL.")?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("only http and https are allowed.");
    }
    if url.host().is_none() {
        return Err("it has no host.");
    }
    if url.fragment().is_some() {
        return Err("it must not have a fragment.");
    }
    if !url.path().ends_with("/oauth2/callback") {
        return Err("its path must end with /oauth2/callback.");
    }
    Ok(url)
}

/// A post-logout redirect target, if it is an http(s) URL on a loopback host.
fn loopback_url(raw: &str) -> Option<Url> {
    let url = Url::parse(raw).ok()?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return None;
    }
    let loopback = match url.host()? {
        url::Host::Domain(domain) => domain.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    loopback.then_some(url)
}

/// `Authorization: Basic` credentials, each part form-urlencoded as RFC 6749 section 2.3.1 says.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes one application/x-www-form-urlencoded value: `+` is a space, `%XX` a byte. A `%` not
/// followed by two hex digits is kept as it is, since many clients do not encode at all.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Query or form parameters in order. Empty values count as absent (RFC 6749 section 3.1).
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(text: &str) -> Params {
        let pairs = url::form_urlencoded::parse(text.as_bytes())
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        Params { pairs }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.pairs.iter().filter(|(key, _)| key == name).count() > 1
    }

    /// The first parameter given more than once (OAuth forbids repeating any).
    fn repeated(&self) -> Option<&str> {
        self.pairs.iter().map(|(name, _)| name.as_str()).find(|name| self.is_repeated(name))
    }
}

/// A `/token` failure, answered as RFC 6749 section 5.2 says.
#[derive(Debug)]
enum TokenError {
    InvalidRequest(String),
    InvalidClient,
    InvalidGrant(String),
    UnsupportedGrantType,
    TooLarge,
    ServerError,
}

fn token_error(error: TokenError) -> Response<Body> {
    let (status, code, description) = match error {
        TokenError::InvalidRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", why),
        TokenError::InvalidClient => {
            (StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed".to_owned())
        }
        TokenError::InvalidGrant(why) => (StatusCode::BAD_REQUEST, "invalid_grant", why),
        TokenError::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: authorization_code, refresh_token, client_credentials".to_owned(),
        ),
        TokenError::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the request body is larger than {} KiB", MAX_FORM_BODY / 1024),
        ),
        TokenError::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the provider could not generate a random token".to_owned(),
        ),
    };
    let mut response = json_response(status, &json!({ "error": code, "error_description": description }));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"development OpenID provider\""));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Responses

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A 200 whose body claims to be JSON and is not.
fn garbage() -> Response<Body> {
    let mut response = Response::new(full("<html><body>Gateway says hello; this is not JSON {"));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn redirect(location: &str) -> Response<Body> {
    let Ok(location) = HeaderValue::from_str(location) else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Bad redirect",
            "<h1>Bad redirect</h1><p>The redirect target cannot be put in a Location header.</p>",
        );
    };
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_redirect(redirect_uri: &Url, error: &str, description: &str, state: Option<&str>) -> Response<Body> {
    let mut location = redirect_uri.clone();
    {
        let mut query = location.query_pairs_mut();
        query.append_pair("error", error);
        query.append_pair("error_description", description);
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    redirect(location.as_str())
}

fn authorize_error_page(message_html: &str) -> Response<Body> {
    html_page(
        StatusCode::BAD_REQUEST,
        "Sign-in request refused",
        &format!(
            "<h1>Sign-in request refused</h1><p>{message_html}</p>\
             <p class=\"muted\">The development provider does not redirect back until the client and its \
             redirect URI check out.</p>"
        ),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({ "error": "invalid_request", "error_description": format!("allowed methods: {allow}") }),
    );
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn html_page(status: StatusCode, title: &str, main_html: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — development OpenID provider</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.5}}\
         .banner{{background:#8a1c1c;color:#fff;padding:.75rem 1rem;font-weight:600;border-radius:4px}}\
         ul.users{{list-style:none;padding:0}}ul.users li{{border:1px solid #bbb;border-radius:6px;padding:.75rem 1rem;margin:.75rem 0}}\
         button{{font:inherit;padding:.5rem 1rem;cursor:pointer;border:1px solid #1f4fa8;background:#2a5cc0;color:#fff;border-radius:4px}}\
         button:focus-visible{{outline:3px solid #f0b400;outline-offset:2px}}\
         .muted{{color:#4a4a4a}}code{{font-family:ui-monospace,monospace;word-break:break-all}}\
         </style></head><body>\
         <p class=\"banner\" role=\"note\">{BANNER}</p><main>{main_html}</main></body></html>\n",
        title = escape_html(title),
    );
    let mut response = Response::new(full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9E97WovqYqOdOp-Cnd8l1lEaQ";
    /// BASE64URL(SHA256(VERIFIER)), computed independently (Python's hashlib).
    const CHALLENGE: &str = "tEI68fmQm8qhxYNZiWtChWRVGtLoudIvYb3zqhnw4IE";

    async fn start() -> DevProvider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        DevProvider::start(listener, DevProviderConfig::default(), std::future::pending()).await.unwrap()
    }

    fn client() -> Client<HttpConnector, Body> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
        fn text(&self) -> String {
            String::from_utf8(self.body.to_vec()).unwrap()
        }
        fn location(&self) -> Url {
            Url::parse(self.headers[header::LOCATION].to_str().unwrap()).unwrap()
        }
    }

    async fn send(request: Request<Body>) -> Answer {
        let response = client().request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    async fn get(url: &str) -> Answer {
        send(Request::get(url).body(empty()).unwrap()).await
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    async fn post_token(provider: &DevProvider, authorization: Option<String>, form: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut request = Request::post(format!("{}/token", provider.issuer()))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        send(request.body(full(body)).unwrap()).await
    }

    async fn token_with_secret(provider: &DevProvider, form: &[(&str, &str)]) -> Answer {
        let config = provider.config();
        post_token(provider, Some(basic(&config.client_id, &config.client_secret)), form).await
    }

    fn authorize_url(provider: &DevProvider, extra: &[(&str, &str)]) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs([
            ("response_type", "code"),
            ("client_id", provider.config().client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile email offline_access"),
            ("state", "state-123"),
            ("nonce", "nonce-456"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]);
        // Later pairs replace earlier ones of the same name, so tests can override defaults.
        let mut pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.finish().as_bytes()).into_owned().collect();
        for (name, value) in extra {
            pairs.retain(|(key, _)| key != name);
            if !value.is_empty() {
                pairs.push(((*name).to_owned(), (*value).to_owned()));
            }
        }
        let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        format!("{}/authorize?{query}", provider.issuer())
    }

    /// Signs `user` in and returns the authorization code.
    async fn code_for(provider: &DevProvider, user: &str) -> String {
        let answer = get(&authorize_url(provider, &[("login_hint", user)])).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.text());
        let location = answer.location();
        assert_eq!(location.path(), "/oauth2/callback");
        let pairs: HashMap<String, String> = location.query_pairs().into_owned().collect();
        assert_eq!(pairs["state"], "state-123");
        pairs["code"].clone()
    }

    async fn redeem(provider: &DevProvider, code: &str) -> Answer {
        token_with_secret(
            provider,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await
    }

    /// Verifies `token` with the key the JWKS lists under its `kid`, as a relying party would.
    async fn verify(provider: &DevProvider, token: &str, audience: &str) -> jsonwebtoken::errors::Result<Value> {
        let jwks = get(&format!("{}/jwks", provider.issuer())).await.json();
        let kid = jsonwebtoken::decode_header(token)?.kid.unwrap_or_default();
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["kid"] == kid.as_str())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        let key = DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[provider.issuer()]);
        validation.validate_nbf = true;
        jsonwebtoken::decode::<Value>(token, &key, &validation).map(|data| data.claims)
    }

    fn header_of(token: &str) -> Value {
        let header = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
    }

    fn claims_of(token: &str) -> Value {
        let claims = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
    }

    #[test]
    fn pkce_s256_accepts_only_the_matching_verifier() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches("dBjftJeZ4CVP-mJ92K9E97WovqYqOdOp-Cnd8l1lEaR", CHALLENGE));
        // The challenge itself, sent as the verifier ("plain"), does not match.
        assert!(!pkce_matches(CHALLENGE, CHALLENGE));
        // Too short, too long, or with characters outside the unreserved set.
        assert!(!pkce_matches("short", CHALLENGE));
        assert!(!pkce_matches(&"a".repeat(129), CHALLENGE));
        assert!(!pkce_matches("dBjftJeZ4CVP+mJ92K9E97WovqYqOdOp/Cnd8l1lEaQ", CHALLENGE));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = HeaderValue::from_str(&basic("my%20app", "s%3Acret+x")).unwrap();
        assert_eq!(parse_basic(&header), Some(("my app".to_owned(), "s:cret x".to_owned())));
        assert_eq!(form_decode("100%"), Some("100%".to_owned()));
        assert_eq!(form_decode("%zz%41"), Some("%zzA".to_owned()));
        assert_eq!(form_decode("%ff"), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer abc")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!!")), None);
    }

    #[test]
    fn pem_is_wrapped_at_64_columns() {
        let pem = pem_wrap("PUBLIC KEY", &[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN PUBLIC KEY-----"));
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
        assert_eq!(lines[1].len(), 64);
        assert_eq!(STANDARD.decode(lines[1..lines.len() - 1].concat()).unwrap(), [7u8; 100]);
    }

    #[tokio::test]
    async fn discovery_describes_the_provider() {
        let provider = start().await;
        let issuer = provider.issuer();
        assert!(issuer.starts_with("http://127.0.0.1:") && !issuer.ends_with('/'));
        let doc = get(&format!("{issuer}/.well-known/openid-configuration")).await;
        assert_eq!(doc.status, StatusCode::OK);
        let doc = doc.json();
        assert_eq!(doc["issuer"], issuer.as_str());
        assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
        assert_eq!(doc["token_endpoint"], format!("{issuer}/token"));
        assert_eq!(doc["jwks_uri"], format!("{issuer}/jwks"));
        assert_eq!(doc["userinfo_endpoint"], format!("{issuer}/userinfo"));
        assert_eq!(doc["end_session_endpoint"], format!("{issuer}/logout"));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));

        let jwks = get(&format!("{issuer}/jwks")).await.json();
        let key = &jwks["keys"][0];
        assert_eq!(
            (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
            (Some("RSA"), Some("RS256"), Some("sig"))
        );
        assert_eq!(key["kid"], provider.current_kid().as_str());
        assert_eq!(key["e"], "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(provider.jwks_requests(), 1);

        assert_eq!(get(&format!("{issuer}/nowhere")).await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn code_flow_issues_verifiable_entra_shaped_tokens() {
        let provider = start().await;
        let code = code_for(&provider, "alice").await;
        let answer = redeem(&provider, &code).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
        let body = answer.json();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(body["refresh_token"].is_string());

        let id_token = body["id_token"].as_str().unwrap();
        assert_eq!(header_of(id_token), json!({ "alg": "RS256", "typ": "JWT", "kid": provider.current_kid() }));
        let claims = verify(&provider, id_token, "postern-demo").await.unwrap();
        let alice = find_user("alice").unwrap();
        assert_eq!(claims["iss"], provider.issuer().as_str());
        assert_eq!(claims["aud"], "postern-demo");
        assert_eq!(claims["nonce"], "nonce-456");
        assert_eq!(claims["tid"], "8f5c0a2e-4b1d-4c3a-9e7f-0d6b5a4c3b2a");
        assert_eq!(claims["oid"], alice.oid);
        assert_eq!(claims["sub"], provider.subject_for(alice.oid).as_str());
        assert_ne!(claims["sub"], alice.oid);
        assert_eq!(claims["preferred_username"], "alice@example.com");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["name"], "Alice Adams");
        assert_eq!(claims["groups"], json!([GROUP_ENG, GROUP_ADMINS]));
        assert_eq!(claims["amr"], json!(["pwd", "mfa"]));
        assert_eq!(claims["ver"], "2.0");
        assert!(claims["sid"].is_string() && claims["auth_time"].is_u64());
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, 3600);

        let access = body["access_token"].as_str().unwrap();
        let access_claims = verify(&provider, access, "api://postern").await.unwrap();
        assert_eq!(access_claims["oid"], alice.oid);

        // Bob has no MFA and only "eng"; carol has no groups.
        let bob = redeem(&provider, &code_for(&provider, "bob").await).await.json();
        let bob = claims_of(bob["id_token"].as_str().unwrap());
        assert_eq!((bob["amr"].clone(), bob["groups"].clone()), (json!(["pwd"]), json!([GROUP_ENG])));
        let carol = redeem(&provider, &code_for(&provider, "carol").await).await.json();
        assert_eq!(claims_of(carol["id_token"].as_str().unwrap())["groups"], json!([]));
        assert_eq!(provider.token_requests(), 3);
    }

    #[tokio::test]
    async fn codes_are_single_use_and_bound_to_redirect_uri_verifier_and_client() {
        let provider = start().await;
        let code = code_for(&provider, "bob").await;
        assert_eq!(redeem(&provider, &code).await.status, StatusCode::OK);
        let again = redeem(&provider, &code).await;
        assert_eq!((again.status, again.json()["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")));

        let code = code_for(&provider, "bob").await;
        let wrong_verifier = token_with_secret(
            &provider,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", "dBjftJeZ4CVP-mJ92K9E97WovqYqOdOp-Cnd8l1lEaR"),
            ],
        )
        .await;
        assert_eq!(wrong_verifier.json()["error"], "invalid_grant");

        let code = code_for(&provider, "bob").await;
        let wrong_redirect = token_with_secret(
            &provider,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:10/oauth2/callback"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
        assert_eq!(wrong_redirect.json()["error"], "invalid_grant");

        let code = code_for(&provider, "bob").await;
        let no_verifier = token_with_secret(
            &provider,
            &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)],
        )
        .await;
        assert_eq!(no_verifier.json()["error"], "invalid_request");
    }

    #[tokio::test]
    async fn refresh_tokens_rotate_and_the_old_one_stops_working() {
        let provider = start().await;
        let first = redeem(&provider, &code_for(&provider, "alice").await).await.json();
        let first_claims = claims_of(first["id_token"].as_str().unwrap());
        let refresh = first["refresh_token"].as_str().unwrap();

        let second = token_with_secret(&provider, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text());
        let second = second.json();
        let new_refresh = second["refresh_token"].as_str().unwrap();
        assert_ne!(new_refresh, refresh);
        let claims = verify(&provider, second["id_token"].as_str().unwrap(), "postern-demo").await.unwrap();
        assert!(claims.get("nonce").is_none());
        assert_eq!(claims["sub"], first_claims["sub"]);
        assert_eq!(claims["sid"], first_claims["sid"]);
        assert_eq!(claims["auth_time"], first_claims["auth_time"]);

        let replay = token_with_secret(&provider, &[("grant_type", "refresh_token"), ("refresh_token", refresh)]).await;
        assert_eq!((replay.status, replay.json()["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")));
        let next =
            token_with_secret(&provider, &[("grant_type", "refresh_token"), ("refresh_token", new_refresh)]).await;
        assert_eq!(next.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn no_refresh_token_without_offline_access() {
        let provider = start().await;
        let answer = get(&authorize_url(&provider, &[("login_hint", "carol"), ("scope", "openid email")])).await;
        let code = answer.location().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let body = redeem(&provider, &code).await.json();
        assert!(body.get("refresh_token").is_none());
        assert_eq!(body["scope"], "openid email");
    }

    #[tokio::test]
    async fn client_authentication_is_required() {
        let provider = start().await;
        let config = provider.config().clone();
        let grant = [("grant_type", "client_credentials")];

        let post = post_token(
            &provider,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &config.client_id),
                ("client_secret", &config.client_secret),
            ],
        )
        .await;
        assert_eq!(post.status, StatusCode::OK);

        for authorization in [
            Some(basic(&config.client_id, "wrong")),
            Some(basic("someone-else", &config.client_secret)),
            Some("Basic not-base64!".to_owned()),
            Some("Bearer token".to_owned()),
            None,
        ] {
            let answer = post_token(&provider, authorization.clone(), &grant).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert_eq!(answer.json()["error"], "invalid_client");
        }
        let wrong_post = post_token(
            &provider,
            None,
            &[("grant_type", "client_credentials"), ("client_id", &config.client_id), ("client_secret", "nope")],
        )
        .await;
        assert_eq!(wrong_post.status, StatusCode::UNAUTHORIZED);

        let both = post_token(
            &provider,
            Some(basic(&config.client_id, &config.client_secret)),
            &[("grant_type", "client_credentials"), ("client_secret", &config.client_secret)],
        )
        .await;
        assert_eq!(both.json()["error"], "invalid_request");
    }

    #[tokio::test]
    async fn client_credentials_gives_an_app_only_token() {
        let provider = start().await;
        let answer =
            token_with_secret(&provider, &[("grant_type", "client_credentials"), ("scope", "api://postern/.default")])
                .await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.json();
        assert!(body.get("id_token").is_none() && body.get("refresh_token").is_none());
        let claims = verify(&provider, body["access_token"].as_str().unwrap(), "api://postern").await.unwrap();
        assert_eq!(claims["sub"], "postern-demo");
        assert_eq!(claims["azp"], "postern-demo");
        assert_eq!(claims["appid"], "postern-demo");
        assert_eq!(claims["oid"], DEMO_APP_OID);
        assert_eq!(claims["roles"], json!(["Deploy.Write"]));
        assert_eq!(claims["tid"], provider.config().tenant_id.as_str());
        assert_eq!(claims["ver"], "2.0");
    }

    #[tokio::test]
    async fn malformed_token_requests_get_oauth_errors() {
        let provider = start().await;
        let unsupported = token_with_secret(&provider, &[("grant_type", "password")]).await;
        assert_eq!(unsupported.json()["error"], "unsupported_grant_type");
        let missing = token_with_secret(&provider, &[]).await;
        assert_eq!(missing.json()["error"], "invalid_request");
        let repeated = token_with_secret(&provider, &[("grant_type", "client_credentials"), ("grant_type", "x")]).await;
        assert_eq!(repeated.json()["error"], "invalid_request");

        let json_body = send(
            Request::post(format!("{}/token", provider.issuer()))
                .header(header::CONTENT_TYPE, "application/json")
                .body(full("{}"))
                .unwrap(),
        )
        .await;
        assert_eq!(
            (json_body.status, json_body.json()["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("invalid_request"))
        );

        let huge = send(
            Request::post(format!("{}/token", provider.issuer()))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(full(vec![b'a'; 65 * 1024]))
                .unwrap(),
        )
        .await;
        assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE);

        let garbage_form = send(
            Request::post(format!("{}/token", provider.issuer()))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(full(vec![0xff, b'=', b'%', 0x00, b'&']))
                .unwrap(),
        )
        .await;
        assert_eq!(garbage_form.status, StatusCode::BAD_REQUEST);

        let wrong_method = get(&format!("{}/token", provider.issuer())).await;
        assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn authorize_shows_a_picker_that_carries_the_request_along() {
        let provider = start().await;
        for url in [authorize_url(&provider, &[]), authorize_url(&provider, &[("login_hint", "mallory")])] {
            let page = get(&url).await;
            assert_eq!(page.status, StatusCode::OK);
            assert!(page.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
            let html = page.text();
            assert!(html.contains(BANNER));
            for user in USERS {
                assert!(html.contains(&format!("name=\"login_hint\" value=\"{}\"", user.name)));
            }
            assert!(html.contains(&format!("<input type=\"hidden\" name=\"code_challenge\" value=\"{CHALLENGE}\">")));
            assert!(html.contains("<input type=\"hidden\" name=\"state\" value=\"state-123\">"));
            assert!(html.contains("<code title=\"5b1c3d2e-0000-0000-0000-000000000001\">eng</code>"));
            assert!(!html.contains("name=\"login_hint\" value=\"mallory\""));
        }
        let page = get(&authorize_url(&provider, &[("login_hint", "<b>x</b>")])).await.text();
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"));
    }

    #[tokio::test]
    async fn authorize_refuses_bad_requests_without_trusting_the_redirect_uri() {
        let provider = start().await;
        for (name, value) in [
            ("client_id", "someone-else"),
            ("client_id", ""),
            ("redirect_uri", "https://evil.example/elsewhere"),
            ("redirect_uri", "javascript:alert(1)//oauth2/callback"),
            ("redirect_uri", "http://127.0.0.1:9/oauth2/callback#frag"),
            ("redirect_uri", ""),
        ] {
            let answer = get(&authorize_url(&provider, &[(name, value), ("login_hint", "alice")])).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}={value}");
            assert!(answer.headers.get(header::LOCATION).is_none());
            assert!(answer.text().contains(BANNER));
        }
        let repeated =
            format!("{}&redirect_uri=http%3A%2F%2Fevil.example%2Foauth2%2Fcallback", authorize_url(&provider, &[]));
        assert_eq!(get(&repeated).await.status, StatusCode::BAD_REQUEST);

        for (name, value, error) in [
            ("code_challenge_method", "plain", "invalid_request"),
            ("code_challenge_method", "", "invalid_request"),
            ("code_challenge", "", "invalid_request"),
            ("code_challenge", "too-short", "invalid_request"),
            ("response_type", "token", "unsupported_response_type"),
            ("scope", "profile", "invalid_scope"),
            ("prompt", "none", "login_required"),
        ] {
            let answer = get(&authorize_url(&provider, &[(name, value)])).await;
            assert_eq!(answer.status, StatusCode::FOUND, "{name}={value}");
            let pairs: HashMap<String, String> = answer.location().query_pairs().into_owned().collect();
            assert_eq!(pairs["error"], error, "{name}={value}");
            assert_eq!(pairs["state"], "state-123");
            assert!(!pairs.contains_key("code"));
        }
        // A redirect URI with its own query keeps it.
        let with_query = "https://localhost:8443/app/oauth2/callback?tenant=x";
        let answer = get(&authorize_url(&provider, &[("redirect_uri", with_query), ("login_hint", "bob")])).await;
        let pairs: HashMap<String, String> = answer.location().query_pairs().into_owned().collect();
        assert_eq!(pairs["tenant"], "x");
        assert!(pairs.contains_key("code"));
        // Broken query strings do not break the provider.
        let broken = get(&format!("{}/authorize?%%%&&==&client_id=%ff%fe", provider.issuer())).await;
        assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn tamper_modes_produce_the_defect_they_name() {
        let provider = start().await;
        let good = provider.mint_id_token("alice", json!({ "nonce": "n" }));
        let claims = verify(&provider, &good, "postern-demo").await.unwrap();
        assert_eq!(
            (claims["nonce"].as_str(), claims["oid"].as_str()),
            (Some("n"), Some(find_user("alice").unwrap().oid))
        );

        provider.set_tamper(Tamper::Claims(json!({ "aud": "someone-else", "groups": null })));
        let token = provider.mint_id_token("alice", Value::Null);
        assert!(claims_of(&token).get("groups").is_none());
        assert_eq!(claims_of(&token)["aud"], "someone-else");
        assert!(verify(&provider, &token, "postern-demo").await.is_err());

        provider.set_tamper(Tamper::AlgNone);
        let token = provider.mint_id_token("alice", Value::Null);
        assert_eq!(header_of(&token)["alg"], "none");
        assert!(token.ends_with('.'));

        provider.set_tamper(Tamper::Hs256WithPublicKey);
        let token = provider.mint_id_token("alice", Value::Null);
        assert_eq!(header_of(&token)["alg"], "HS256");
        let pem = provider.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let mut hs256 = Validation::new(Algorithm::HS256);
        hs256.set_audience(&["postern-demo"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_secret(pem.as_bytes()), &hs256).is_ok());
        assert!(verify(&provider, &token, "postern-demo").await.is_err());

        provider.set_tamper(Tamper::BadSignature);
        let token = provider.mint_id_token("alice", Value::Null);
        assert_eq!(header_of(&token)["kid"], provider.current_kid().as_str());
        assert!(verify(&provider, &token, "postern-demo").await.is_err());

        provider.set_tamper(Tamper::ForeignKey);
        let token = provider.mint_id_token("alice", Value::Null);
        assert_eq!(header_of(&token)["kid"], provider.current_kid().as_str());
        assert!(verify(&provider, &token, "postern-demo").await.is_err());

        provider.set_tamper(Tamper::NoKid);
        let token = provider.mint_id_token("alice", Value::Null);
        assert!(header_of(&token).get("kid").is_none());
        let jwks = get(&format!("{}/jwks", provider.issuer())).await.json();
        let key = DecodingKey::from_rsa_components(
            jwks["keys"][0]["n"].as_str().unwrap(),
            jwks["keys"][0]["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut rs256 = Validation::new(Algorithm::RS256);
        rs256.set_audience(&["postern-demo"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &rs256).is_ok());

        provider.set_tamper(Tamper::UnknownKid);
        let token = provider.mint_id_token("alice", Value::Null);
        assert_eq!(header_of(&token)["kid"], "unknown-kid");
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &rs256).is_ok());
        assert!(verify(&provider, &token, "postern-demo").await.is_err());

        // Tampering reaches tokens from /token too, and stops when reset.
        provider.set_tamper(Tamper::BadSignature);
        let body = redeem(&provider, &code_for(&provider, "bob").await).await.json();
        assert!(verify(&provider, body["id_token"].as_str().unwrap(), "postern-demo").await.is_err());
        provider.set_tamper(Tamper::None);
        let token = provider.mint_id_token("alice", Value::Null);
        assert!(verify(&provider, &token, "postern-demo").await.is_ok());
    }

    #[tokio::test]
    async fn minted_tokens_merge_claims_and_cover_unknown_users() {
        let provider = start().await;
        let token = provider.mint_id_token("zed", json!({ "exp": 1, "email": null }));
        let claims = claims_of(&token);
        assert_eq!(claims["exp"], 1);
        assert!(claims.get("email").is_none());
        assert_eq!(claims["groups"], json!([]));
        assert_eq!(claims["oid"].as_str().unwrap().len(), 36);
        assert!(verify(&provider, &token, "postern-demo").await.is_err(), "expired");

        let access = provider.mint_access_token(json!({ "sub": "ci-job", "project_path": "platform/api" }));
        let claims = verify(&provider, &access, "api://postern").await.unwrap();
        assert_eq!(claims["sub"], "ci-job");
        assert_eq!(claims["project_path"], "platform/api");
        assert_eq!(claims["aud"], "api://postern");
    }

    #[tokio::test]
    async fn key_rotation_publishes_new_and_previous_until_retired() {
        let provider = start().await;
        let old = provider.current_kid();
        let old_token = provider.mint_id_token("bob", Value::Null);
        let new = provider.rotate_signing_key();
        assert_ne!(old, new);
        assert_eq!(provider.current_kid(), new);
        let kids = |jwks: Value| -> Vec<String> {
            jwks["keys"].as_array().unwrap().iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(kids(get(&format!("{}/jwks", provider.issuer())).await.json()), [new.clone(), old.clone()]);
        let new_token = provider.mint_id_token("bob", Value::Null);
        assert_eq!(header_of(&new_token)["kid"], new.as_str());
        assert!(verify(&provider, &new_token, "postern-demo").await.is_ok());
        assert!(verify(&provider, &old_token, "postern-demo").await.is_ok());

        provider.retire_old_keys();
        assert_eq!(kids(get(&format!("{}/jwks", provider.issuer())).await.json()), [new]);
        assert!(verify(&provider, &old_token, "postern-demo").await.is_err());
    }

    #[tokio::test]
    async fn misbehaviour_breaks_the_named_endpoint() {
        let provider = start().await;
        let issuer = provider.issuer();
        let grant = [("grant_type", "client_credentials")];

        provider.set_misbehaviour(Misbehaviour::TokenEndpoint500);
        assert_eq!(token_with_secret(&provider, &grant).await.status, StatusCode::INTERNAL_SERVER_ERROR);
        provider.set_misbehaviour(Misbehaviour::TokenEndpointGarbage);
        let garbage = token_with_secret(&provider, &grant).await;
        assert_eq!(garbage.status, StatusCode::OK);
        assert!(serde_json::from_slice::<Value>(&garbage.body).is_err());
        provider.set_misbehaviour(Misbehaviour::TokenEndpointError);
        let error = token_with_secret(&provider, &grant).await;
        assert_eq!((error.status, error.json()["error"].clone()), (StatusCode::BAD_REQUEST, json!("invalid_grant")));
        provider.set_misbehaviour(Misbehaviour::JwksGarbage);
        let jwks = get(&format!("{issuer}/jwks")).await;
        assert!(serde_json::from_slice::<Value>(&jwks.body).is_err());
        assert_eq!(token_with_secret(&provider, &grant).await.status, StatusCode::OK);
        provider.set_misbehaviour(Misbehaviour::DiscoveryDown);
        assert_eq!(
            get(&format!("{issuer}/.well-known/openid-configuration")).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        provider.set_misbehaviour(Misbehaviour::None);
        assert_eq!(get(&format!("{issuer}/.well-known/openid-configuration")).await.status, StatusCode::OK);
        assert_eq!(provider.token_requests(), 4);
        assert_eq!(provider.jwks_requests(), 1);
    }

    #[tokio::test]
    async fn userinfo_answers_only_for_its_own_user_tokens() {
        let provider = start().await;
        let body = redeem(&provider, &code_for(&provider, "alice").await).await.json();
        let access = body["access_token"].as_str().unwrap();
        let userinfo = |authorization: String| {
            let url = format!("{}/userinfo", provider.issuer());
            async move { send(Request::get(url).header(header::AUTHORIZATION, authorization).body(empty()).unwrap()).await }
        };
        let answer = userinfo(format!("Bearer {access}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let info = answer.json();
        assert_eq!(info["email"], "alice@example.com");
        assert_eq!(info["sub"], claims_of(body["id_token"].as_str().unwrap())["sub"]);

        let app = token_with_secret(&provider, &[("grant_type", "client_credentials")]).await.json();
        let expired = provider.mint_access_token(json!({ "oid": find_user("bob").unwrap().oid, "exp": 1 }));
        let mut forged = access.to_owned();
        forged.push('A');
        for authorization in [
            format!("Bearer {}", app["access_token"].as_str().unwrap()),
            format!("Bearer {expired}"),
            format!("Bearer {forged}"),
            format!("Bearer {}", provider.mint_id_token("alice", json!({}))),
            "Bearer".to_owned(),
            "Basic abc".to_owned(),
        ] {
            let answer = userinfo(authorization).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
            assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
        }
        assert_eq!(get(&format!("{}/userinfo", provider.issuer())).await.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn logout_redirects_only_to_loopback() {
        let provider = start().await;
        let logout = |target: &str| {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("id_token_hint", "x")
                .append_pair("post_logout_redirect_uri", target)
                .append_pair("state", "s1")
                .finish();
            format!("{}/logout?{query}", provider.issuer())
        };
        for target in ["http://127.0.0.1:8080/signed-out", "https://localhost/bye", "http://[::1]:1/"] {
            let answer = get(&logout(target)).await;
            assert_eq!(answer.status, StatusCode::FOUND, "{target}");
            let location = answer.location();
            assert_eq!(location.query_pairs().find(|(k, _)| k == "state").unwrap().1, "s1");
        }
        for target in ["https://evil.example/", "http://127.0.0.1.evil.example/", "javascript:alert(1)", "/relative"] {
            let answer = get(&logout(target)).await;
            assert_eq!(answer.status, StatusCode::OK, "{target}");
            assert!(answer.text().contains("Signed out of the development provider"));
        }
        let plain = get(&format!("{}/logout", provider.issuer())).await;
        assert_eq!(plain.status, StatusCode::OK);
        assert!(plain.text().contains(BANNER));
    }

    #[tokio::test]
    async fn the_fake_graph_pages_a_users_groups_for_a_graph_token_only() {
        let provider = start().await;
        let dave = find_user("dave").unwrap();
        let first =
            format!("{}/users/{}/transitiveMemberOf/microsoft.graph.group", provider.graph_base_url(), dave.oid);
        let with_token = |url: &str, token: &str| {
            Request::get(url).header(header::AUTHORIZATION, format!("Bearer {token}")).body(empty()).unwrap()
        };
        let api_token = provider.mint_access_token(json!({ "sub": "svc" }));
        assert_eq!(send(with_token(&first, &api_token)).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&first).await.status, StatusCode::UNAUTHORIZED);

        let graph = token_with_secret(
            &provider,
            &[("grant_type", "client_credentials"), ("scope", "https://graph.microsoft.com/.default")],
        )
        .await
        .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(claims_of(&graph)["aud"], GRAPH_AUDIENCE);
        let mut url = first.clone();
        let mut groups = Vec::new();
        loop {
            let page = send(with_token(&url, &graph)).await.json();
            groups.extend(page["value"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_owned()));
            match page["@odata.nextLink"].as_str() {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(groups, dave.all_groups());
        assert_eq!((provider.graph_lookups(), provider.graph_requests()), (1, 5));

        let huge = format!("{first}?$skiptoken={}", usize::MAX);
        let page = send(with_token(&huge, &graph)).await.json();
        assert_eq!(page["value"], json!([]));
        assert!(page.get("@odata.nextLink").is_none());
    }
}
