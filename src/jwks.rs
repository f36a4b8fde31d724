//! Signing keys of one issuer: parsed from its JWKS, kept in memory, refetched when a token names an unknown
//! `kid` (at most once per interval, so a flood of made-up `kid`s cannot hammer the provider), refreshed in the
//! background, and never replaced by a failed or empty fetch: the last good keys stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use crate::http_client::{FetchError, HttpClient};

/// One verification key and the algorithms it may be used with.
pub struct VerifyKey {
    /// Its `kid`, if the JWKS gave one.
    pub kid: Option<String>,
    /// Algorithms this key may verify: its type's asymmetric algorithms, or just its `alg` when the JWKS
    /// names one. Never HMAC, never `none`.
    pub algorithms: Vec<Algorithm>,
    /// The key.
    pub key: DecodingKey,
    /// Entra's per-key `issuer`, when present.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// A parsed JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

const RSA_ALGS: [Algorithm; 6] =
    [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

impl KeySet {
    /// Parses a JWKS document. Keys Postern cannot use (encryption keys, symmetric keys, unknown types, broken
    /// values) are skipped; a document with no usable key at all is an error.
    pub fn parse(doc: &Value) -> Result<KeySet, String> {
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("the document has no \"keys\" array".into());
        };
        let keys: Vec<Arc<VerifyKey>> = entries.iter().filter_map(parse_key).map(Arc::new).collect();
        if keys.is_empty() {
            return Err("the key set has no usable signing key".into());
        }
        Ok(KeySet { keys })
    }

    /// The key with this `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Every key.
    pub fn all(&self) -> &[Arc<VerifyKey>] {
        &self.keys
    }
}

fn parse_key(jwk: &Value) -> Option<VerifyKey> {
    let s = |name: &str| jwk.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let (key, mut algorithms) = match s("kty")? {
        "RSA" => (DecodingKey::from_rsa_components(s("n")?, s("e")?).ok()?, RSA_ALGS.to_vec()),
        "EC" => {
            let alg = match s("crv")? {
                "P-256" => Algorithm::ES256,
                "P-384" => Algorithm::ES384,
                _ => return None,
            };
            (DecodingKey::from_ec_components(s("x")?, s("y")?).ok()?, vec![alg])
        }
        "OKP" if s("crv") == Some("Ed25519") => {
            (DecodingKey::from_ed_components(s("x")?).ok()?, vec![Algorithm::EdDSA])
        }
        // "oct" (HMAC) keys are never used: a published symmetric key is a secret everyone knows.
        _ => return None,
    };
    if let Some(alg) = s("alg") {
        let alg: Algorithm = alg.parse().ok()?;
        if !algorithms.contains(&alg) {
            return None;
        }
        algorithms = vec![alg];
    }
    Some(VerifyKey { kid: s("kid").map(str::to_string), algorithms, key, issuer: s("issuer").map(str::to_string) })
}

/// Counters about key fetches, for logs and metrics.
#[derive(Debug, Default)]
pub struct KeyStats {
    /// Successful fetches.
    pub fetches: AtomicU64,
    /// Failed fetches (the last good keys were kept).
    pub failures: AtomicU64,
}

/// The keys of one issuer, with refetching.
#[derive(Debug)]
pub struct IssuerKeys {
    jwks_uri: Url,
    http: HttpClient,
    keys: ArcSwap<KeySet>,
    fetch_lock: tokio::sync::Mutex<()>,
    last_unknown_kid_fetch: std::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
    /// Fetch counters.
    pub stats: KeyStats,
}

impl IssuerKeys {
    /// Keys to be fetched from `jwks_uri`; nothing is fetched yet.
    pub fn new(jwks_uri: Url, http: HttpClient, min_refetch_interval: Duration) -> IssuerKeys {
        IssuerKeys {
            jwks_uri,
            http,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_unknown_kid_fetch: std::sync::Mutex::new(None),
            min_refetch_interval,
            stats: KeyStats::default(),
        }
    }

    /// Where the keys come from.
    pub fn jwks_uri(&self) -> &Url {
        &self.jwks_uri
    }

    /// The keys held now.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    /// Fetches the key set; on failure the keys held so far stay.
    pub async fn refresh(&self) -> Result<(), KeyFetchError> {
        let _one_at_a_time = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    async fn fetch_locked(&self) -> Result<(), KeyFetchError> {
        let result = match self.http.get_json::<Value>(&self.jwks_uri).await {
            Ok(doc) => {
                KeySet::parse(&doc).map_err(|detail| KeyFetchError::Unusable { url: self.jwks_uri.to_string(), detail })
            }
            Err(e) => Err(KeyFetchError::Fetch(e)),
        };
        match result {
            Ok(set) => {
                self.stats.fetches.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(jwks_uri = %self.jwks_uri, keys = set.all().len(), "signing keys fetched");
                self.keys.store(Arc::new(set));
                Ok(())
            }
            Err(e) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(jwks_uri = %self.jwks_uri, error = %e, "cannot fetch signing keys; keeping the last good keys");
                Err(e)
            }
        }
    }

    /// The keys that may have signed a token with this `kid`: the key with that `kid` (refetching once, rate-
    /// limited, when it is unknown), or every key when the token names none.
    pub async fn candidates(&self, kid: Option<&str>) -> Vec<Arc<VerifyKey>> {
        let Some(kid) = kid else {
            if self.current().all().is_empty() {
                let _ = self.refresh().await;
            }
            return self.current().all().to_vec();
        };
        if let Some(k) = self.current().by_kid(kid) {
            return vec![k.clone()];
        }
        let _one_at_a_time = self.fetch_lock.lock().await;
        // Another request may have fetched the new keys while this one waited.
        if let Some(k) = self.current().by_kid(kid) {
            return vec![k.clone()];
        }
        let allowed = {
            let mut last = self.last_unknown_kid_fetch.lock().unwrap_or_else(|p| p.into_inner());
            let never_fetched = self.current().all().is_empty();
            let due = last.is_none_or(|t| t.elapsed() >= self.min_refetch_interval);
            if due || never_fetched {
                *last = Some(Instant::now());
            }
            due || never_fetched
        };
        if allowed {
            tracing::info!(jwks_uri = %self.jwks_uri, "token signed with an unknown key id; refetching the signing keys");
            let _ = self.fetch_locked().await;
        }
        self.current().by_kid(kid).cloned().into_iter().collect()
    }

    /// Refreshes the keys every `period` until `self` is dropped everywhere else.
    pub fn spawn_refresher(self: &Arc<Self>, period: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + period, period);
            loop {
                tick.tick().await;
                let Some(keys) = weak.upgrade() else { return };
                let _ = keys.refresh().await;
            }
        });
    }
}

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    /// The fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document held no usable key.
    #[error("{url}: {detail}")]
    Unusable {
        /// JWKS URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unusable_keys_are_skipped_and_hmac_is_never_a_key() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "wrong-alg", "alg": "HS256", "n": "AQAB", "e": "AQAB"}
        ]});
        let set = KeySet::parse(&doc).unwrap();
        assert_eq!(set.all().len(), 1);
        assert_eq!(set.by_kid("ec").unwrap().algorithms, vec![Algorithm::ES256]);
        assert!(KeySet::parse(&json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).is_err());
        assert!(KeySet::parse(&json!({"nokeys": 1})).is_err());
    }
}
