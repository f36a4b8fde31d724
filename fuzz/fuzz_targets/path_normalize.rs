//! Path and host normalisation (`postern::policy::path`) and routing on the result, on arbitrary request
//! targets and `Host`/`X-Forwarded-Host` values (as forward-auth receives them). Never panics; a normalised
//! path is idempotent, has no empty, `.` or `..` segment and no encoded unreserved character; and the path
//! policies match on never leaves `/admin` when the forwarded path is under it.
#![no_main]

#[path = "common.rs"]
mod common;

use http::Method;
use libfuzzer_sys::fuzz_target;
use postern::policy::path::{glob_prefix_match, has_path_prefix, matching_path, normalize_host, normalize_path};

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Forward-auth's shape: `X-Forwarded-Host` on the first line, `X-Forwarded-Uri` on the rest.
    let (raw_host, uri) = text.split_once('\n').unwrap_or(("gitlab.example.com", &text));
    let host = normalize_host(raw_host);
    assert!(!host.ends_with('.') && !host.chars().any(|c| c.is_ascii_uppercase()), "{raw_host:?} -> {host:?}");
    let raw_path = uri.split(['?', '#']).next().unwrap_or("/");
    let Ok(path) = normalize_path(raw_path) else { return };
    assert!(path.starts_with('/'), "{raw_path:?} -> {path:?}");
    assert_eq!(normalize_path(&path).as_deref(), Ok(path.as_str()), "not idempotent: {raw_path:?}");
    assert!(!path.contains("//"), "{raw_path:?} -> {path:?}");
    for segment in path.split('/').skip(1) {
        assert!(segment != "." && segment != "..", "{raw_path:?} -> {path:?}");
    }
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let (h, l) = (bytes[i + 1], bytes[i + 2]);
            assert!(h.is_ascii_digit() || h.is_ascii_uppercase(), "{raw_path:?} -> {path:?}");
            assert!(l.is_ascii_digit() || l.is_ascii_uppercase(), "{raw_path:?} -> {path:?}");
            let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
            assert!(!is_unreserved(v) && v >= 0x20 && v != 0x7f, "{raw_path:?} -> {path:?}");
        }
    }
    let matching = matching_path(&path);
    assert!(matching.starts_with('/'), "{raw_path:?} -> {matching:?}");
    // An upstream may see either spelling; what is under /admin for it must be under /admin for the policy.
    if has_path_prefix(&path, "/admin") {
        assert!(has_path_prefix(&matching, "/admin"), "{raw_path:?}: forwarded {path:?}, matched as {matching:?}");
    }
    let _ = glob_prefix_match("/api/**/admin/*", &matching);
    let policy = common::example_policy();
    for method in [Method::GET, Method::PUT] {
        if let Some(route) = policy.route(&host, &matching, &method) {
            assert!(route.covers(&matching, &method));
        }
    }
});
