//! Parsing a provider's key set (`postern::jwks::KeySet::parse`) from arbitrary JSON: never panics, and never
//! yields a key usable with `none` or an HMAC algorithm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::jwks::KeySet;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(set) = KeySet::parse(&doc) {
        assert!(!set.all().is_empty());
        for key in set.all() {
            assert!(!key.algorithms.is_empty());
            for alg in &key.algorithms {
                let name = format!("{alg:?}");
                assert!(!name.starts_with("HS"), "symmetric algorithm {name} for a published key");
            }
            if let Some(kid) = &key.kid {
                assert!(set.by_kid(kid).is_some());
            }
        }
    }
});
