//! JWT parsing and verification (`postern::jwt::peek`/`verify`, `postern::authn::bearer_token`) against a
//! fixed key set: the development provider's RSA key, fetched once from 127.0.0.1.
//!
//! The first byte picks what the rest is:
//! - 0: an `Authorization` header value / a whole token; it must never verify (it is not signed by our key).
//! - 1: a byte position and a replacement byte for a genuine token; the changed token must not verify.
//! - 2: a JSON header that replaces a genuine token's header, keeping its claims and signature; it must not
//!   verify unless it says exactly what the genuine header says, and never with `alg` none or HS*.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use postern::clock::Clock;
use postern::demo::provider::{DevProvider, DevProviderConfig};
use postern::http_client::HttpClient;
use postern::jwks::IssuerKeys;
use postern::jwt::{self, Expectations};
use serde_json::{Value, json};

struct Fixture {
    rt: tokio::runtime::Runtime,
    keys: Arc<IssuerKeys>,
    issuer: String,
    audiences: Vec<String>,
    now: u64,
    token: String,
    _provider: DevProvider,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (provider, keys) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let provider = DevProvider::start(listener, DevProviderConfig::default(), std::future::pending())
                .await
                .expect("provider");
            let http = HttpClient::new(None, Duration::from_secs(5)).expect("client");
            let uri = url::Url::parse(&format!("{}/jwks", provider.issuer())).expect("url");
            // A day between refetches for unknown `kid`s: one fetch at most per run, not one per input.
            let keys = Arc::new(IssuerKeys::new(uri, http, Duration::from_secs(86_400)));
            keys.refresh().await.expect("keys");
            (provider, keys)
        });
        let token = provider.mint_access_token(json!({"sub": "svc", "roles": ["Deploy.Write"]}));
        Fixture {
            rt,
            keys,
            issuer: provider.issuer(),
            audiences: vec![provider.config().access_token_audience.clone()],
            now: Clock::system().now(),
            token,
            _provider: provider,
        }
    })
}

fn verify(f: &Fixture, token: &str) -> Result<jwt::Claims, jwt::TokenError> {
    let expect = Expectations {
        issuer: &f.issuer,
        allowed_tenants: &[],
        audiences: &f.audiences,
        algorithms: &[],
        leeway: 60,
        now: f.now,
        nonce: None,
        client_id: None,
    };
    let _ = jwt::peek(token);
    f.rt.block_on(jwt::verify(token, &f.keys, &expect))
}

fn b64(bytes: &[u8]) -> String {
    use base64_free::encode;
    encode(bytes)
}

/// base64url without padding, here so the target needs no extra dependency.
mod base64_free {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len() * 4 / 3 + 3);
        for chunk in input.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(rest) {
                headers.insert(AUTHORIZATION, v);
            }
            if let Some(token) = postern::authn::bearer_token(&headers) {
                assert!(verify(f, token).is_err(), "a forged bearer token verified: {token:?}");
            }
            let text = String::from_utf8_lossy(rest);
            assert!(verify(f, &text).is_err(), "a forged token verified: {text:?}");
        }
        1 => {
            let Some((&[hi, lo, byte], _)) = rest.split_first_chunk::<3>() else { return };
            let mut token = f.token.clone().into_bytes();
            let at = (usize::from(hi) << 8 | usize::from(lo)) % token.len();
            token[at] = byte;
            let Ok(token) = String::from_utf8(token) else { return };
            if token != f.token {
                assert!(verify(f, &token).is_err(), "a changed token verified (byte {at} set to {byte:#x})");
            }
        }
        _ => {
            let mut parts = f.token.splitn(2, '.');
            let (Some(genuine_header), Some(rest_of_token)) = (parts.next(), parts.next()) else { return };
            let header = b64(rest);
            let token = format!("{header}.{rest_of_token}");
            if let Ok(claims) = verify(f, &token) {
                let parsed: Value = serde_json::from_slice(rest).unwrap_or(Value::Null);
                let alg = parsed.get("alg").and_then(Value::as_str).unwrap_or("");
                assert!(
                    !alg.eq_ignore_ascii_case("none") && !alg.to_ascii_uppercase().starts_with("HS"),
                    "alg {alg:?} accepted"
                );
                // The signature covers the header's encoding: only the genuine header can verify.
                assert_eq!(header, genuine_header, "another header verified: {claims:?}");
            }
        }
    }
});
