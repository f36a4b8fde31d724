//! The claim checks after a signature (`postern::jwt::check_claims`) on arbitrary JSON: never panics, and what
//! passes has the expected issuer, one accepted audience, a subject, and an `exp` not yet passed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::jwt::{Expectations, check_claims};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(data) else { return };
    let audiences = vec!["client".to_string(), "api://postern".to_string()];
    for (nonce, client_id) in [(None, None), (Some("n-1"), Some("client"))] {
        let expect = Expectations {
            issuer: "https://idp.example.com",
            allowed_tenants: &[],
            audiences: &audiences,
            algorithms: &[],
            leeway: 60,
            now: 1_700_000_000,
            nonce,
            client_id,
        };
        if check_claims(&claims, &expect).is_ok() {
            assert_eq!(claims.get("iss").and_then(Value::as_str), Some("https://idp.example.com"));
            let aud_ok = match claims.get("aud") {
                Some(Value::String(a)) => audiences.contains(a),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(|a| audiences.iter().any(|e| e == a)),
                _ => false,
            };
            assert!(aud_ok, "audience accepted: {:?}", claims.get("aud"));
            assert!(claims.get("sub").and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
            let exp = claims.get("exp").and_then(|v| v.as_f64()).unwrap_or(0.0);
            assert!(exp + 60.0 > 1_700_000_000.0, "expired token accepted: exp {exp}");
            if nonce.is_some() {
                assert_eq!(claims.get("nonce").and_then(Value::as_str), nonce);
            }
        }
    }
});
