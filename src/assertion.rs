//! The identity assertion: a short-lived ES256 JWT, signed by Postern, that tells an upstream who is calling
//! (`X-Postern-Jwt-Assertion`). Upstreams verify it with the keys at `/.well-known/postern/jwks.json`.
//! The key is parsed once; an assertion is reused for the same principal and upstream until shortly before it
//! expires, because a signature costs more than the rest of the request.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::HeaderValue;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::clock::{Clock, UnixTime};
use crate::identity::Identity;

/// An assertion is sent no later than this many seconds before it expires, so that it does not expire on its
/// way or in a slow upstream — or half its lifetime, for a `ttl` under two minutes (else one under a minute
/// would be signed afresh for every request).
const REUSE_MARGIN: u64 = 60;

/// Why a signing key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM PKCS#8 P-256 key.
    #[error("the signing key must be a PEM PKCS#8 P-256 (ES256) private key, as `postern keygen` writes: {0}")]
    Invalid(String),
}

/// Signs identity assertions.
pub struct AssertionSigner {
    key: EcdsaKeyPair,
    kid: String,
    header_b64: String,
    jwks: Bytes,
    issuer: String,
    ttl: Duration,
    /// Seconds before expiry after which an assertion is no longer sent (see [`REUSE_MARGIN`]).
    reuse_margin: u64,
    clock: Clock,
    rng: SystemRandom,
    /// Signed assertions ready to send: a header value is shared, not copied, each time it is sent.
    cache: moka::sync::Cache<String, (HeaderValue, u64)>,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner").field("kid", &self.kid).field("issuer", &self.issuer).finish()
    }
}

/// A new P-256 key as PEM PKCS#8 (what `postern keygen` writes).
pub fn generate_key_pem() -> Result<String, KeyError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| KeyError::Invalid("key generation failed".into()))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

fn key_pair(pem: &str) -> Result<EcdsaKeyPair, KeyError> {
    let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| KeyError::Invalid(e.to_string()))? {
        PrivateKeyDer::Pkcs8(der) => der,
        _ => return Err(KeyError::Invalid("not PKCS#8".into())),
    };
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.secret_pkcs8_der())
        .map_err(|e| KeyError::Invalid(e.to_string()))
}

/// The public JWK of `key` and its key id.
fn jwk_of(key: &EcdsaKeyPair) -> Result<(serde_json::Value, String), KeyError> {
    // The public key is 0x04 || x || y.
    let public = key.public_key().as_ref();
    if public.len() != 65 {
        return Err(KeyError::Invalid("unexpected public key size".into()));
    }
    let x = URL_SAFE_NO_PAD.encode(&public[1..33]);
    let y = URL_SAFE_NO_PAD.encode(&public[33..65]);
    // RFC 7638 thumbprint as the key id: stable for a key, the same on every replica.
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid =
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, thumbprint_input.as_bytes()));
    Ok((json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}), kid))
}

/// The public JWK (and key id) of the PEM PKCS#8 P-256 private key `pem`.
pub fn public_jwk(pem: &str) -> Result<(serde_json::Value, String), KeyError> {
    jwk_of(&key_pair(pem)?)
}

impl AssertionSigner {
    /// A signer with the key in `pem`, issuing as `issuer` (Postern's public URL).
    pub fn new(pem: &str, issuer: String, ttl: Duration, clock: Clock) -> Result<AssertionSigner, KeyError> {
        let key = key_pair(pem)?;
        let (jwk, kid) = jwk_of(&key)?;
        let jwks = json!({"keys": [jwk]});
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        Ok(AssertionSigner {
            key,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            kid,
            jwks: Bytes::from(jwks.to_string()),
            issuer,
            ttl,
            reuse_margin: REUSE_MARGIN.min(ttl.as_secs() / 2),
            clock,
            rng: SystemRandom::new(),
            cache: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
        })
    }

    /// Also publishes the public keys of `previous` (PEM private keys) in the JWKS, after the current one, so
    /// that assertions signed with them before a rotation (here or on another replica) still verify.
    pub fn with_previous(mut self, previous: &[&str]) -> Result<AssertionSigner, KeyError> {
        let mut keys = vec![jwk_of(&self.key)?.0];
        for pem in previous {
            let (jwk, kid) = public_jwk(pem)?;
            if kid != self.kid && !keys.iter().any(|k| k["kid"] == kid.as_str()) {
                keys.push(jwk);
            }
        }
        self.jwks = Bytes::from(json!({ "keys": keys }).to_string());
        Ok(self)
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// An assertion about `identity` for the upstream `audience`, as a header value, and the time until which
    /// it may be sent (a minute before it expires). `reuse_key` names the session or token it stands for: an
    /// assertion is reused for the same key and audience until then. `None` only when signing failed (the
    /// random generator did).
    pub fn assertion(
        &self,
        identity: &Identity,
        audience: &str,
        groups: &[&str],
        reuse_key: &str,
    ) -> Option<(HeaderValue, UnixTime)> {
        let now = self.clock.now();
        let cache_key = format!("{reuse_key}\u{0}{audience}");
        if let Some((jwt, exp)) = self.cache.get(&cache_key)
            && exp > now + self.reuse_margin
        {
            return Some((jwt, exp - self.reuse_margin));
        }
        let exp = now + self.ttl.as_secs();
        let claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": identity.subject,
            "email": identity.email,
            "preferred_username": identity.preferred_username,
            "name": identity.name,
            "groups": groups,
            "roles": identity.roles,
            "tid": identity.tenant,
            "idp": identity.issuer,
            "auth": identity.proof.as_str(),
            "iat": now,
            "nbf": now,
            "exp": exp,
        });
        let signing_input = format!("{}.{}", self.header_b64, URL_SAFE_NO_PAD.encode(claims.to_string()));
        // Signing only fails if the RNG does; send no assertion rather than a wrong one.
        let sig = self.key.sign(&self.rng, signing_input.as_bytes()).ok()?;
        let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        // Base64url and dots: always a valid header value.
        let jwt = HeaderValue::try_from(jwt).ok()?;
        self.cache.insert(cache_key, (jwt.clone(), exp));
        Some((jwt, exp.saturating_sub(self.reuse_margin)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Proof;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    #[test]
    fn assertions_verify_with_the_published_keys_and_are_reused() {
        let pem = generate_key_pem().unwrap();
        let signer =
            AssertionSigner::new(&pem, "https://postern.example".into(), Duration::from_secs(300), Clock::system())
                .unwrap();
        let claims = serde_json::json!({"sub": "s", "oid": "o", "email": "a@example.com"});
        let id = Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session);
        let (jwt, until) = signer.assertion(&id, "http://upstream:8080", &["g1"], "ticket").unwrap();
        assert_eq!(
            Some((jwt.clone(), until)),
            signer.assertion(&id, "http://upstream:8080", &["g1"], "ticket"),
            "reused"
        );
        let other = signer.assertion(&id, "http://other:8080", &["g1"], "ticket").unwrap();
        assert_ne!(jwt, other.0, "per audience");
        let jwt = jwt.to_str().unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&signer.jwks()).unwrap();
        let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&["http://upstream:8080"]);
        v.set_issuer(&["https://postern.example"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v).unwrap();
        assert_eq!(data.claims["sub"], "o");
        assert_eq!(data.claims["groups"][0], "g1");
        let exp = data.claims["exp"].as_u64().unwrap();
        let iat = data.claims["iat"].as_u64().unwrap();
        assert!(exp - iat <= 300);
        assert_eq!(until, exp - 60, "sent until a minute before it expires");
    }

    #[test]
    fn a_short_lived_assertion_is_reused_for_half_its_life() {
        let pem = generate_key_pem().unwrap();
        let clock = Clock::system();
        let signer =
            AssertionSigner::new(&pem, "https://postern.example".into(), Duration::from_secs(30), clock.clone())
                .unwrap();
        let id = Identity::from_claims(serde_json::json!({"sub": "s"}).as_object().cloned().unwrap(), Proof::Session);
        let (jwt, until) = signer.assertion(&id, "http://upstream:8080", &[], "ticket").unwrap();
        let now = clock.now();
        assert!(until > now && until <= now + 15, "until {until}, now {now}");
        assert_eq!(signer.assertion(&id, "http://upstream:8080", &[], "ticket").map(|a| a.0), Some(jwt), "reused");
    }

    #[test]
    fn a_key_that_is_not_p256_pkcs8_is_refused() {
        assert!(AssertionSigner::new("not a key", "x".into(), Duration::from_secs(60), Clock::system()).is_err());
    }
}
