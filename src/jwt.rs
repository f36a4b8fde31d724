//! Verifying a signed JWT against one issuer's keys: the check shared by ID tokens (sign-in) and bearer tokens.
//! The algorithm comes from the key, never from the token: `alg: none`, HMAC, and any algorithm outside the
//! key's own family are refused. The header's `jku`, `x5u`, `jwk` and `x5c` are never followed.
//! Never logs a token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::clock::UnixTime;
use crate::jwks::IssuerKeys;
use crate::oidc::entra;

/// Verified claims.
pub type Claims = Map<String, Value>;

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The exact issuer, or an Entra multi-tenant template containing `{tenantid}` (see [`crate::oidc::entra`]).
    pub issuer: &'a str,
    /// When not empty, `tid` must be one of these; a template issuer with an empty list admits nobody.
    pub allowed_tenants: &'a [String],
    /// `aud` must contain one of these.
    pub audiences: &'a [String],
    /// When not empty, only these algorithms (intersected with each key's own).
    pub algorithms: &'a [Algorithm],
    /// Clock skew tolerated, in seconds.
    pub leeway: u64,
    /// Now.
    pub now: UnixTime,
    /// For ID tokens: the nonce sent at sign-in.
    pub nonce: Option<&'a str>,
    /// For ID tokens: our client id, which `azp` must equal when present; also requires `iat`.
    pub client_id: Option<&'a str>,
}

/// Why a token was refused. [`TokenError::code`] is the reason code for logs and metrics;
/// [`TokenError::description`] is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with JSON inside.
    #[error("the token is malformed")]
    Malformed,
    /// `alg: none`.
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    /// An HMAC algorithm.
    #[error("symmetric algorithms are not accepted")]
    Symmetric,
    /// An algorithm the key or the issuer does not allow.
    #[error("the algorithm {0} is not accepted for this key")]
    AlgorithmNotAllowed(String),
    /// A `crit` header names extensions we do not understand.
    #[error("the token has critical header extensions")]
    CriticalHeader,
    /// No key with this `kid`, even after refetching.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// No key verified the signature.
    #[error("the signature is invalid")]
    BadSignature,
    /// `iss` is not the expected issuer.
    #[error("the token is from an untrusted issuer")]
    WrongIssuer,
    /// `aud` has none of the accepted audiences.
    #[error("the token is not meant for this service (audience)")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A required claim is missing.
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// The nonce differs from the one sent.
    #[error("the token's nonce does not match this sign-in")]
    NonceMismatch,
    /// `azp` names another client.
    #[error("the token was issued to another client (azp)")]
    AzpMismatch,
    /// The `Authorization` header is too large.
    #[error("the token is too large")]
    TooLarge,
    /// The token's tenant (`tid`) is not in `allowed_tenants`.
    #[error("the token is from a tenant that is not allowed")]
    TenantNotAllowed,
    /// The key that matches the token's `kid` is published for another issuer (Entra's per-key `issuer`).
    #[error("the token is signed with a key that is not valid for its issuer")]
    KeyIssuerMismatch,
    /// The token is valid, but its user has been deactivated or removed from the directory.
    #[error("the user's access has been revoked")]
    Revoked,
}

impl TokenError {
    /// Reason code: `token-expired`, `audience-mismatch`, …
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed => "token-malformed",
            TokenError::AlgNone => "alg-none",
            TokenError::Symmetric => "alg-symmetric",
            TokenError::AlgorithmNotAllowed(_) => "alg-not-allowed",
            TokenError::CriticalHeader => "crit-header",
            TokenError::UnknownKey => "unknown-key",
            TokenError::BadSignature => "bad-signature",
            TokenError::WrongIssuer => "issuer-mismatch",
            TokenError::WrongAudience => "audience-mismatch",
            TokenError::Expired => "token-expired",
            TokenError::NotYetValid => "token-not-yet-valid",
            TokenError::IssuedInFuture => "token-issued-in-future",
            TokenError::MissingClaim(_) => "missing-claim",
            TokenError::NonceMismatch => "nonce-mismatch",
            TokenError::AzpMismatch => "azp-mismatch",
            TokenError::TooLarge => "token-too-large",
            TokenError::TenantNotAllowed => "tenant-not-allowed",
            TokenError::KeyIssuerMismatch => "key-issuer-mismatch",
            TokenError::Revoked => "user-revoked",
        }
    }
}

/// The parts of a JWT header Postern looks at.
#[derive(Debug)]
pub struct PeekedHeader {
    /// The algorithm, already refused if `none` or HMAC.
    pub alg: Algorithm,
    /// The key id.
    pub kid: Option<String>,
}

/// Reads a token's header and its unverified `iss` (to pick the issuer whose keys must verify it).
pub fn peek(token: &str) -> Result<(PeekedHeader, Option<String>), TokenError> {
    let (header, claims) = peek_claims(token)?;
    let iss = claims.get("iss").and_then(Value::as_str).map(str::to_string);
    Ok((header, iss))
}

/// Reads a token's header and its unverified claims. Nothing read here is trusted before the signature is.
pub fn peek_claims(token: &str) -> Result<(PeekedHeader, Claims), TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header: Map<String, Value> = decode_part(h)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        None => return Err(TokenError::Malformed),
        Some(a) if a.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
        Some(a) if a.to_ascii_uppercase().starts_with("HS") => return Err(TokenError::Symmetric),
        Some(a) => a.parse::<Algorithm>().map_err(|_| TokenError::AlgorithmNotAllowed(a.chars().take(16).collect()))?,
    };
    if header.contains_key("crit") {
        return Err(TokenError::CriticalHeader);
    }
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_string);
    let claims: Map<String, Value> = decode_part(c)?;
    Ok((PeekedHeader { alg, kid }, claims))
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies `token`'s signature with `keys` and its claims against `expect`.
pub async fn verify(token: &str, keys: &IssuerKeys, expect: &Expectations<'_>) -> Result<Claims, TokenError> {
    let (header, unverified) = peek_claims(token)?;
    let alg = header.alg;
    // The exact issuer for this token (an Entra template takes the token's `tid`); checked again below on the
    // verified claims, and used now to pick only keys published for that issuer.
    let issuer = entra::expected_issuer(expect.issuer, &unverified)?;
    let tid = unverified.get("tid").and_then(Value::as_str);
    if !expect.algorithms.is_empty() && !expect.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")));
    }
    let candidates = keys.candidates(header.kid.as_deref()).await;
    if candidates.is_empty() {
        return Err(if header.kid.is_some() { TokenError::UnknownKey } else { TokenError::BadSignature });
    }
    let usable: Vec<_> = candidates.iter().filter(|k| k.algorithms.contains(&alg)).collect();
    if usable.is_empty() {
        return Err(TokenError::AlgorithmNotAllowed(format!("{alg:?}")));
    }
    let usable: Vec<_> = usable.into_iter().filter(|k| entra::key_serves(k.issuer.as_deref(), &issuer, tid)).collect();
    if usable.is_empty() {
        return Err(TokenError::KeyIssuerMismatch);
    }
    let mut validation = Validation::new(alg);
    // Time, issuer and audience are checked below, with our clock and with precise reasons.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut claims = None;
    for key in usable {
        match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature
                | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_) => continue,
                _ => return Err(TokenError::Malformed),
            },
        }
    }
    let claims = claims.ok_or(TokenError::BadSignature)?;
    let issuer = entra::expected_issuer(expect.issuer, &claims)?;
    check_claims(&claims, &Expectations { issuer: &issuer, ..expect.clone() })?;
    entra::check_tenant(expect.issuer, expect.allowed_tenants, &claims)?;
    Ok(claims)
}

/// The claim checks, after the signature.
pub fn check_claims(claims: &Claims, expect: &Expectations<'_>) -> Result<(), TokenError> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == expect.issuer => {}
        Some(_) => return Err(TokenError::WrongIssuer),
        None => return Err(TokenError::MissingClaim("iss")),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    if !audiences.iter().any(|a| expect.audiences.iter().any(|e| e == a)) {
        return Err(TokenError::WrongAudience);
    }
    let time = |name: &str| -> Result<Option<u64>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            // Fractional seconds are legal NumericDate values; round down.
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or(TokenError::Malformed),
        }
    };
    let exp = time("exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if expect.now >= exp.saturating_add(expect.leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = time("nbf")?
        && nbf > expect.now.saturating_add(expect.leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    match time("iat")? {
        Some(iat) if iat > expect.now.saturating_add(expect.leeway) => {
            return Err(TokenError::IssuedInFuture);
        }
        None if expect.client_id.is_some() => return Err(TokenError::MissingClaim("iat")),
        _ => {}
    }
    if let Some(nonce) = expect.nonce {
        match claims.get("nonce").and_then(Value::as_str) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => {}
            _ => return Err(TokenError::NonceMismatch),
        }
    }
    if let Some(client_id) = expect.client_id {
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != client_id => return Err(TokenError::AzpMismatch),
            None if audiences.len() > 1 => return Err(TokenError::MissingClaim("azp")),
            _ => {}
        }
    }
    if claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(TokenError::MissingClaim("sub"));
    }
    Ok(())
}

/// Compares secrets without leaking, through timing, how much of them matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(now: u64) -> (Vec<String>, u64) {
        (vec!["client".to_string()], now)
    }

    fn check(claims: Value, nonce: Option<&str>) -> Result<(), TokenError> {
        let (aud, now) = expect(1_000_000);
        let e = Expectations {
            issuer: "https://idp",
            allowed_tenants: &[],
            audiences: &aud,
            algorithms: &[],
            leeway: 60,
            now,
            nonce,
            client_id: Some("client"),
        };
        check_claims(claims.as_object().unwrap(), &e)
    }

    #[test]
    fn claim_checks_name_what_is_wrong() {
        let good =
            json!({"iss": "https://idp", "aud": "client", "sub": "s", "exp": 1_000_100, "iat": 999_990, "nonce": "n"});
        assert_eq!(check(good.clone(), Some("n")), Ok(()));
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        assert_eq!(check(with("iss", json!("https://evil")), None), Err(TokenError::WrongIssuer));
        assert_eq!(check(with("aud", json!(["other"])), None), Err(TokenError::WrongAudience));
        assert_eq!(check(with("exp", json!(999_000)), None), Err(TokenError::Expired));
        assert_eq!(check(with("exp", json!(999_950)), None), Ok(()), "within leeway");
        assert_eq!(check(with("nbf", json!(1_000_500)), None), Err(TokenError::NotYetValid));
        assert_eq!(check(with("iat", json!(1_000_500)), None), Err(TokenError::IssuedInFuture));
        assert_eq!(check(good.clone(), Some("other")), Err(TokenError::NonceMismatch));
        assert_eq!(check(with("azp", json!("other-client")), None), Err(TokenError::AzpMismatch));
        assert_eq!(check(with("aud", json!(["client", "x"])), None), Err(TokenError::MissingClaim("azp")));
    }

    #[test]
    fn headers_are_refused_before_any_key_is_looked_at() {
        let b = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let claims = b(json!({"iss": "x"}));
        assert_eq!(peek(&format!("{}.{claims}.", b(json!({"alg": "none"})))).unwrap_err(), TokenError::AlgNone);
        assert_eq!(peek(&format!("{}.{claims}.x", b(json!({"alg": "HS256"})))).unwrap_err(), TokenError::Symmetric);
        assert_eq!(
            peek(&format!("{}.{claims}.x", b(json!({"alg": "RS256", "crit": ["b64"]})))).unwrap_err(),
            TokenError::CriticalHeader
        );
        assert_eq!(peek("garbage").unwrap_err(), TokenError::Malformed);
        assert_eq!(peek("a.b.c.d").unwrap_err(), TokenError::Malformed);
        let (h, iss) = peek(&format!("{}.{claims}.x", b(json!({"alg": "RS256", "kid": "k"})))).unwrap();
        assert_eq!((h.alg, h.kid.as_deref(), iss.as_deref()), (Algorithm::RS256, Some("k"), Some("x")));
    }
}
