//! The sign-in provider: discovery (fetched lazily and retried, so Postern starts while the provider is down),
//! the token endpoint (code exchange with PKCE, refresh), and ID-token verification against the provider's
//! keys. Never logs a token, a code or a secret.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use http::HeaderValue;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::clock::Clock;
use crate::config::{ClientAuth, ClientCredential, OidcConfig, SecretSource, is_secure_or_loopback};
use crate::http_client::{FetchError, HttpClient};
use crate::jwks::IssuerKeys;
use crate::jwt::{self, Claims, Expectations, TokenError};

/// The endpoints Postern uses, from the discovery document.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// `authorization_endpoint`
    pub authorization_endpoint: Url,
    /// `token_endpoint`
    pub token_endpoint: Url,
    /// `jwks_uri`
    pub jwks_uri: Url,
    /// `end_session_endpoint`, for RP-initiated sign-out.
    pub end_session_endpoint: Option<Url>,
}

#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: Option<String>,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
}

/// A discovered provider.
#[derive(Debug)]
pub struct Discovered {
    /// Endpoints.
    pub metadata: Metadata,
    /// Signing keys.
    pub keys: Arc<IssuerKeys>,
}

/// What the token endpoint answered.
#[derive(Debug)]
pub struct Tokens {
    /// The ID token (always present after a code exchange; may be absent after a refresh).
    pub id_token: Option<String>,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires, if said.
    pub expires_in: Option<u64>,
}

/// Why a provider interaction failed. [`OidcError::code`] is the reason code; messages carry no secrets.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery or key fetch failed.
    #[error("the sign-in provider is unavailable: {0}")]
    Unavailable(String),
    /// The discovery document is unusable.
    #[error("the provider's discovery document is invalid: {0}")]
    BadDiscovery(String),
    /// The token endpoint could not be reached or answered with an error status.
    #[error("the token endpoint failed: {0}")]
    TokenEndpoint(String),
    /// The token endpoint refused the request with an OAuth error.
    #[error("the provider refused the token request: {error}")]
    TokenRefused {
        /// OAuth error code.
        error: String,
    },
    /// The token endpoint's answer is not a valid token response.
    #[error("the token endpoint answered with an invalid response: {0}")]
    BadTokenResponse(String),
    /// The ID token is invalid.
    #[error("the ID token is invalid: {0}")]
    IdToken(#[from] TokenError),
}

impl OidcError {
    /// Reason code.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Unavailable(_) => "provider-unavailable",
            OidcError::BadDiscovery(_) => "provider-bad-discovery",
            OidcError::TokenEndpoint(_) => "token-endpoint-failed",
            OidcError::TokenRefused { .. } => "token-request-refused",
            OidcError::BadTokenResponse(_) => "token-response-invalid",
            OidcError::IdToken(e) => e.code(),
        }
    }
}

/// What the token endpoint answered to a client-credentials request.
#[derive(Debug)]
pub struct AppToken {
    /// The access token.
    pub access_token: crate::secret::Secret<String>,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// The parsed key for `private_key_jwt` client assertions (parsed once: parsing costs more than signing).
struct AssertionKey(jsonwebtoken::EncodingKey);

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The sign-in provider.
#[derive(Debug)]
pub struct Provider {
    config: OidcConfig,
    assertion_key: Option<AssertionKey>,
    http: HttpClient,
    redirect_uri: String,
    clock: Clock,
    discovered: ArcSwapOption<Discovered>,
    discover_lock: tokio::sync::Mutex<Option<Instant>>,
}

/// After a failed discovery, wait this long before trying again, so a down provider is not hammered.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

impl Provider {
    /// A provider; nothing is fetched until [`Provider::discovered`] is first called.
    pub fn new(config: OidcConfig, http: HttpClient, redirect_uri: String, clock: Clock) -> Provider {
        let assertion_key = match &config.credential {
            ClientCredential::Certificate { key_pem, .. } => {
                jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes()).ok().map(AssertionKey)
            }
            _ => None,
        };
        Provider {
            config,
            assertion_key,
            http,
            redirect_uri,
            clock,
            discovered: ArcSwapOption::empty(),
            discover_lock: tokio::sync::Mutex::new(None),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// True once discovery and the first key fetch have succeeded.
    pub fn is_discovered(&self) -> bool {
        self.discovered.load().is_some()
    }

    /// The signing keys, when discovery has happened (never fetches).
    pub fn loaded_keys(&self) -> Option<Arc<IssuerKeys>> {
        self.discovered.load().as_ref().map(|d| d.keys.clone())
    }

    /// The discovered metadata and keys, discovering on first use.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.discovered.load_full() {
            return Ok(d);
        }
        let mut last_failure = self.discover_lock.lock().await;
        if let Some(d) = self.discovered.load_full() {
            return Ok(d);
        }
        if last_failure.is_some_and(|t| t.elapsed() < DISCOVERY_RETRY) {
            return Err(OidcError::Unavailable("discovery failed moments ago; retrying shortly".into()));
        }
        match self.discover().await {
            Ok(d) => {
                let d = Arc::new(d);
                d.keys.spawn_refresher(Duration::from_secs(3600));
                self.discovered.store(Some(d.clone()));
                *last_failure = None;
                tracing::info!(issuer = %self.config.issuer, "sign-in provider discovered");
                Ok(d)
            }
            Err(e) => {
                *last_failure = Some(Instant::now());
                tracing::warn!(issuer = %self.config.issuer, error = %e, "sign-in provider discovery failed");
                Err(e)
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, OidcError> {
        let url = self.config.discovery_url.clone();
        let doc: DiscoveryDocument = self.http.get_json(&url).await.map_err(|e| match e {
            FetchError::Json { detail, .. } => OidcError::BadDiscovery(detail),
            other => OidcError::Unavailable(other.to_string()),
        })?;
        // OpenID Connect Discovery §4.3: the document's issuer must be the one we asked about. For Entra's
        // multi-tenant documents that is the `{tenantid}` template itself, configured as such.
        if doc.issuer != self.config.issuer {
            return Err(OidcError::BadDiscovery(format!(
                "it names the issuer \"{}\" but the configured issuer is \"{}\"",
                doc.issuer, self.config.issuer
            )));
        }
        let endpoint = |name: &str, value: &str| -> Result<Url, OidcError> {
            let u = Url::parse(value).map_err(|_| OidcError::BadDiscovery(format!("{name} is not a URL")))?;
            if !is_secure_or_loopback(&u) {
                return Err(OidcError::BadDiscovery(format!("{name} must be https:// (or http:// on loopback)")));
            }
            Ok(u)
        };
        let token = doc.token_endpoint.as_deref().ok_or_else(|| OidcError::BadDiscovery("no token_endpoint".into()))?;
        let metadata = Metadata {
            authorization_endpoint: endpoint("authorization_endpoint", &doc.authorization_endpoint)?,
            token_endpoint: endpoint("token_endpoint", token)?,
            jwks_uri: endpoint("jwks_uri", &doc.jwks_uri)?,
            end_session_endpoint: doc
                .end_session_endpoint
                .as_deref()
                .map(|u| endpoint("end_session_endpoint", u))
                .transpose()?,
        };
        let keys =
            Arc::new(IssuerKeys::new(metadata.jwks_uri.clone(), self.http.clone(), self.config.jwks_refetch_interval));
        keys.refresh().await.map_err(|e| OidcError::Unavailable(e.to_string()))?;
        Ok(Discovered { metadata, keys })
    }

    /// The URL that starts a sign-in at the provider.
    pub async fn authorization_url(&self, state: &str, nonce: &str, pkce_challenge: &str) -> Result<Url, OidcError> {
        let d = self.discovered().await?;
        let mut url = d.metadata.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", pkce_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(&self, code: &str, pkce_verifier: &str) -> Result<Tokens, OidcError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", pkce_verifier),
        ];
        let tokens = self.token_request(&form).await?;
        if tokens.id_token.is_none() {
            return Err(OidcError::BadTokenResponse("no id_token".into()));
        }
        Ok(tokens)
    }

    /// Uses a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OidcError> {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let body = self.token_call(&d.metadata.token_endpoint, form).await?;
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
        if text("access_token").is_none() && text("id_token").is_none() {
            return Err(OidcError::BadTokenResponse("neither access_token nor id_token".into()));
        }
        Ok(Tokens {
            id_token: text("id_token"),
            refresh_token: text("refresh_token"),
            expires_in: body.get("expires_in").and_then(Value::as_u64),
        })
    }

    /// An app-only access token (client-credentials grant) for `scope`, from `token_url` (`None`: the
    /// provider's token endpoint), e.g. for Microsoft Graph.
    pub async fn client_credentials(&self, token_url: Option<&Url>, scope: &str) -> Result<AppToken, OidcError> {
        let endpoint = match token_url {
            Some(u) => u.clone(),
            None => self.discovered().await?.metadata.token_endpoint.clone(),
        };
        let form = [("grant_type", "client_credentials"), ("scope", scope)];
        let body = self.token_call(&endpoint, &form).await?;
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| OidcError::BadTokenResponse("no access_token".into()))?;
        Ok(AppToken {
            access_token: crate::secret::Secret::new(access_token.to_string()),
            expires_in: body.get("expires_in").and_then(Value::as_u64).unwrap_or(300),
        })
    }

    /// POSTs `form` to a token endpoint with Postern's client credential. With a client secret under
    /// rotation, a refusal of the current one (`invalid_client`) is retried once with the previous one.
    async fn token_call(&self, endpoint: &Url, form: &[(&str, &str)]) -> Result<Value, OidcError> {
        match &self.config.credential {
            ClientCredential::Secret { current, previous, method } => {
                let secret = read_secret(current).await;
                match self.post_with_secret(endpoint, form, &secret, *method).await {
                    Err(OidcError::TokenRefused { error }) if error == "invalid_client" && previous.is_some() => {
                        let Some(previous) = previous else { return Err(OidcError::TokenRefused { error }) };
                        let result = self.post_with_secret(endpoint, form, &read_secret(previous).await, *method).await;
                        if result.is_ok() {
                            tracing::warn!(
                                "the provider refused the current client secret and accepted the previous one: finish the rotation (register the current secret at the provider)"
                            );
                        }
                        result
                    }
                    other => other,
                }
            }
            ClientCredential::Certificate { x5t_s256, alg, .. } => {
                let key = self.assertion_key.as_ref().ok_or_else(|| {
                    OidcError::TokenEndpoint("the client certificate's key could not be loaded".into())
                })?;
                let now = self.clock.now();
                let mut header = jsonwebtoken::Header::new(*alg);
                header.x5t_s256 = Some(x5t_s256.clone());
                let claims = serde_json::json!({
                    "aud": endpoint.as_str(),
                    "iss": self.config.client_id,
                    "sub": self.config.client_id,
                    "jti": crate::secret::random_token(16),
                    "iat": now,
                    "nbf": now,
                    "exp": now + 300,
                });
                let assertion = jsonwebtoken::encode(&header, &claims, &key.0)
                    .map_err(|_| OidcError::TokenEndpoint("cannot sign the client assertion".into()))?;
                self.post_with_assertion(endpoint, form, &assertion).await
            }
            ClientCredential::Federated { token_file } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    OidcError::TokenEndpoint(format!(
                        "cannot read the federated token file {}: {e}",
                        token_file.display()
                    ))
                })?;
                self.post_with_assertion(endpoint, form, assertion.trim()).await
            }
        }
    }

    async fn post_with_assertion(
        &self,
        endpoint: &Url,
        form: &[(&str, &str)],
        assertion: &str,
    ) -> Result<Value, OidcError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("client_id", &self.config.client_id));
        fields.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        fields.push(("client_assertion", assertion));
        self.post(endpoint, &fields, None).await
    }

    async fn post_with_secret(
        &self,
        endpoint: &Url,
        form: &[(&str, &str)],
        secret: &crate::secret::Secret<String>,
        method: ClientAuth,
    ) -> Result<Value, OidcError> {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let authorization = match method {
            ClientAuth::SecretBasic => {
                // RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(&self.config.client_id), enc(secret.expose()));
                let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
                Some(
                    HeaderValue::from_str(&value)
                        .map_err(|_| OidcError::TokenEndpoint("client credentials are not valid header text".into()))?,
                )
            }
            ClientAuth::SecretPost => {
                fields.push(("client_id", &self.config.client_id));
                fields.push(("client_secret", secret.expose()));
                None
            }
        };
        self.post(endpoint, &fields, authorization).await
    }

    async fn post(
        &self,
        endpoint: &Url,
        fields: &[(&str, &str)],
        authorization: Option<HeaderValue>,
    ) -> Result<Value, OidcError> {
        let response = self
            .http
            .post_form(endpoint, fields, authorization)
            .await
            .map_err(|e| OidcError::TokenEndpoint(e.to_string()))?;
        let body: Option<Value> = serde_json::from_slice(&response.body).ok();
        if !response.status.is_success() {
            if let Some(error) = body.as_ref().and_then(|b| b.get("error")).and_then(Value::as_str) {
                let error = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
                return Err(OidcError::TokenRefused { error });
            }
            return Err(OidcError::TokenEndpoint(format!("status {}", response.status)));
        }
        let body =
            body.filter(Value::is_object).ok_or_else(|| OidcError::BadTokenResponse("not a JSON object".into()))?;
        if let Some(t) = body.get("token_type").and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("bearer")
        {
            return Err(OidcError::BadTokenResponse("token_type is not Bearer".into()));
        }
        Ok(body)
    }

    /// Verifies an ID token: signature by the provider's key for its `kid` (or any key when it has none), `iss`,
    /// `aud` = our client id, `azp`, `exp`/`nbf`/`iat` with leeway, and the nonce when one is expected.
    pub async fn verify_id_token(&self, id_token: &str, nonce: Option<&str>) -> Result<Claims, OidcError> {
        let d = self.discovered().await?;
        let audiences = [self.config.client_id.clone()];
        let expect = Expectations {
            issuer: &self.config.issuer,
            allowed_tenants: &self.config.allowed_tenants,
            audiences: &audiences,
            algorithms: &[],
            leeway: self.config.leeway.as_secs(),
            now: self.clock.now(),
            nonce,
            client_id: Some(&self.config.client_id),
        };
        Ok(jwt::verify(id_token, &d.keys, &expect).await?)
    }

    /// The provider's sign-out URL, when it has one. `logout_hint` is Entra's `login_hint` optional claim, with
    /// which Entra signs out the right account without asking which one.
    pub async fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        logout_hint: Option<&str>,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<Url> {
        let d = self.discovered().await.ok()?;
        let mut url = d.metadata.end_session_endpoint.clone()?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            if let Some(hint) = logout_hint {
                q.append_pair("logout_hint", hint);
            }
            q.append_pair("client_id", &self.config.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
            q.append_pair("state", state);
        }
        Some(url)
    }

    /// The keys of the provider (after discovery), for bearer tokens it issued.
    pub async fn keys(&self) -> Result<Arc<IssuerKeys>, OidcError> {
        Ok(self.discovered().await?.keys.clone())
    }
}

/// The secret's value now: a file is read again (so a rotated secret is used without a restart); if it cannot
/// be read, the value it held at start is used.
async fn read_secret(source: &SecretSource) -> crate::secret::Secret<String> {
    match source {
        SecretSource::Value(v) => v.clone(),
        SecretSource::File(path, initial) => match tokio::fs::read_to_string(path).await {
            Ok(text) if !text.trim().is_empty() => crate::secret::Secret::new(text.trim().to_string()),
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "cannot read the client secret file; using the value read at start");
                initial.clone()
            }
        },
    }
}

/// `issuer + /.well-known/openid-configuration`, keeping any path in the issuer.
pub fn discovery_url(issuer: &str) -> Result<Url, String> {
    let base = issuer.trim_end_matches('/');
    Url::parse(&format!("{base}/.well-known/openid-configuration")).map_err(|e| format!("issuer is not a URL: {e}"))
}
