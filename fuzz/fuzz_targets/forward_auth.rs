//! The headers of a forward-auth request (`X-Forwarded-Method`, `-Host`, `-Uri`, `Host`, and Envoy's path
//! form): never panics; what is accepted is a normalised path and host that a policy decision can use.
#![no_main]

#[path = "common.rs"]
mod common;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;
use postern::gateway::forwarded_request;
use postern::policy::path::matching_path;

const NAMES: [&str; 4] = ["x-forwarded-method", "x-forwarded-host", "x-forwarded-uri", "host"];

fuzz_target!(|data: &[u8]| {
    // Line 0: the request path (`/oauth2/auth` or Envoy's `/oauth2/auth/<path>`); lines 1..: header values.
    let mut lines = data.split(|b| *b == b'\n');
    let Some(first) = lines.next() else { return };
    let Ok(uri) = Uri::try_from(first) else { return };
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(lines) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let Ok(f) = forwarded_request(&Method::GET, &uri, &headers) else { return };
    assert!(f.path.starts_with('/'), "{f:?}");
    assert!(!f.path.split('/').any(|seg| seg == ".." || seg == "."), "a dot segment survived: {f:?}");
    assert!(!f.host.chars().any(|c| c.is_ascii_uppercase()), "{f:?}");
    let _ = common::example_policy().route(&f.host, &matching_path(&f.path), &f.method);
});
