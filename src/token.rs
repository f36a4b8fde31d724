//! Bearer tokens: `Authorization: Bearer <JWT>` from services and CI jobs, verified against the keys of the
//! issuer that the token names, if that issuer is trusted. Verified tokens are cached under a SHA-256 of the
//! token (never the token itself) until they expire; refused tokens are cached briefly, so a flood of one bad
//! token costs a hash and a lookup each time, not a signature check. Never logs a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::config::{BearerConfig, BearerIssuer};
use crate::http_client::HttpClient;
use crate::identity::{Identity, Proof};
use crate::jwks::IssuerKeys;
use crate::jwt::{self, Expectations, TokenError};
use crate::oidc::Provider;

/// How long a refused token is remembered.
const REFUSED_TTL: Duration = Duration::from_secs(30);

#[derive(Clone)]
enum Outcome {
    Valid(Arc<Identity>, Vec<String>),
    Refused(TokenError),
}

struct OutcomeExpiry;

impl moka::Expiry<[u8; 32], (Outcome, u64)> for OutcomeExpiry {
    fn expire_after_create(&self, _: &[u8; 32], value: &(Outcome, u64), _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(value.1))
    }
}

struct TrustedIssuer {
    config: BearerIssuer,
    keys: OnceCell<Arc<IssuerKeys>>,
}

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct BearerStats {
    /// Signature verifications performed (cache misses).
    pub verifications: AtomicU64,
    /// Answers served from the cache.
    pub cache_hits: AtomicU64,
}

/// Validates bearer tokens.
pub struct BearerValidator {
    provider: Arc<Provider>,
    provider_audiences: Vec<String>,
    issuers: Vec<TrustedIssuer>,
    http: HttpClient,
    refetch_interval: Duration,
    leeway: u64,
    max_token_bytes: usize,
    clock: Clock,
    cache: moka::sync::Cache<[u8; 32], (Outcome, u64)>,
    /// Counters.
    pub stats: BearerStats,
}

impl std::fmt::Debug for BearerValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerValidator").field("issuers", &self.issuers.len()).finish()
    }
}

impl BearerValidator {
    /// A validator trusting the sign-in provider (for `provider_audiences`) and the configured issuers.
    pub fn new(
        config: &BearerConfig,
        provider: Arc<Provider>,
        http: HttpClient,
        leeway: Duration,
        refetch_interval: Duration,
        clock: Clock,
    ) -> BearerValidator {
        BearerValidator {
            provider,
            provider_audiences: config.provider_audiences.clone(),
            issuers: config
                .issuers
                .iter()
                .map(|c| TrustedIssuer { config: c.clone(), keys: OnceCell::new() })
                .collect(),
            http,
            refetch_interval,
            leeway: leeway.as_secs(),
            max_token_bytes: config.max_token_bytes,
            clock,
            cache: moka::sync::Cache::builder().max_capacity(config.cache_size).expire_after(OutcomeExpiry).build(),
            stats: BearerStats::default(),
        }
    }

    /// The largest token accepted.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The identity a bearer token proves, if the token is valid for a route accepting `route_audiences`
    /// (`None`: whatever its issuer accepts).
    pub async fn validate(&self, token: &str, route_audiences: Option<&[String]>) -> Result<Arc<Identity>, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let key: [u8; 32] = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        let now = self.clock.now();
        let outcome = match self.cache.get(&key) {
            Some((outcome, _)) => {
                self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                outcome
            }
            None => {
                self.stats.verifications.fetch_add(1, Ordering::Relaxed);
                // Boxed: verifying (with a key fetch when needed) is a large future that only a cache miss uses;
                // inline, every cached request's future would carry and move its space.
                let outcome = match Box::pin(self.verify(token)).await {
                    Ok((identity, audiences)) => Outcome::Valid(Arc::new(identity), audiences),
                    Err(e) => Outcome::Refused(e),
                };
                let ttl = match &outcome {
                    Outcome::Valid(id, _) => Some(id.expires_at.saturating_add(self.leeway).saturating_sub(now).max(1)),
                    // An unknown key may be published a moment later (rotation); the refetch rate limit already
                    // keeps a flood of made-up key ids cheap, so this refusal is not remembered.
                    Outcome::Refused(TokenError::UnknownKey) => None,
                    Outcome::Refused(_) => Some(REFUSED_TTL.as_secs()),
                };
                if let Some(ttl) = ttl {
                    self.cache.insert(key, (outcome.clone(), ttl));
                }
                outcome
            }
        };
        match outcome {
            Outcome::Refused(e) => Err(e),
            Outcome::Valid(identity, audiences) => {
                // The cache entry may outlive the token by up to a second; the clock decides.
                if now >= identity.expires_at.saturating_add(self.leeway) {
                    return Err(TokenError::Expired);
                }
                if let Some(wanted) = route_audiences
                    && !audiences.iter().any(|a| wanted.contains(a))
                {
                    return Err(TokenError::WrongAudience);
                }
                Ok(identity)
            }
        }
    }

    async fn verify(&self, token: &str) -> Result<(Identity, Vec<String>), TokenError> {
        let (_, iss) = jwt::peek(token)?;
        let iss = iss.ok_or(TokenError::MissingClaim("iss"))?;
        let provider_config = self.provider.config();
        let (keys, audiences, algorithms, issuer, tenants): (
            Arc<IssuerKeys>,
            &[String],
            &[Algorithm],
            &str,
            &[String],
        ) = if crate::oidc::entra::could_match(&provider_config.issuer, &iss) && !self.provider_audiences.is_empty() {
            let keys = self.provider.keys().await.map_err(|e| {
                tracing::warn!(error = %e, "cannot load the sign-in provider's keys for a bearer token");
                TokenError::UnknownKey
            })?;
            (keys, &self.provider_audiences, &[], &provider_config.issuer, &provider_config.allowed_tenants)
        } else if let Some(trusted) = self.issuers.iter().find(|i| i.config.issuer == iss) {
            let keys = trusted.keys.get_or_try_init(|| self.issuer_keys(&trusted.config)).await.map_err(|e| {
                tracing::warn!(issuer = %iss, error = %e, "cannot load a bearer issuer's keys");
                TokenError::UnknownKey
            })?;
            (keys.clone(), &trusted.config.audiences, &trusted.config.algorithms, &trusted.config.issuer, &[])
        } else {
            return Err(TokenError::WrongIssuer);
        };
        let expect = Expectations {
            issuer,
            allowed_tenants: tenants,
            audiences,
            algorithms,
            leeway: self.leeway,
            now: self.clock.now(),
            nonce: None,
            client_id: None,
        };
        let claims = jwt::verify(token, &keys, &expect).await?;
        let token_audiences = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        };
        Ok((Identity::from_claims(claims, Proof::Bearer), token_audiences))
    }

    /// The key sets loaded so far, by issuer (the sign-in provider's included), for metrics.
    pub fn loaded_key_sets(&self) -> Vec<(String, Arc<IssuerKeys>)> {
        let provider = self.provider.loaded_keys().map(|k| (self.provider.config().issuer.clone(), k));
        let trusted = self.issuers.iter().filter_map(|i| i.keys.get().map(|k| (i.config.issuer.clone(), k.clone())));
        provider.into_iter().chain(trusted).collect()
    }

    async fn issuer_keys(&self, issuer: &BearerIssuer) -> Result<Arc<IssuerKeys>, String> {
        let jwks_uri = match &issuer.jwks_url {
            Some(u) => u.clone(),
            None => {
                let url = crate::oidc::provider::discovery_url(&issuer.issuer)?;
                let doc: Value = self.http.get_json(&url).await.map_err(|e| e.to_string())?;
                let jwks =
                    doc.get("jwks_uri").and_then(Value::as_str).ok_or("the discovery document has no jwks_uri")?;
                let u = url::Url::parse(jwks).map_err(|e| e.to_string())?;
                if !crate::config::is_secure_or_loopback(&u) {
                    return Err("jwks_uri must be https:// (or http:// on loopback)".into());
                }
                u
            }
        };
        let http = match &issuer.ca_file {
            Some(ca) => HttpClient::new(Some(ca), Duration::from_secs(10)).map_err(|e| e.to_string())?,
            None => self.http.clone(),
        };
        let keys = Arc::new(IssuerKeys::new(jwks_uri, http, self.refetch_interval));
        keys.refresh().await.map_err(|e| e.to_string())?;
        keys.spawn_refresher(Duration::from_secs(3600));
        Ok(keys)
    }
}
