//! Redirect targets after sign-in and sign-out (`postern::oidc::redirect`): never panics, and an accepted
//! target is a path on the public origin, or a URL with the public scheme on a host some route names.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern::oidc::redirect::{ReturnTo, safe_return_path, safe_return_target};
use postern::policy::HostPattern;
use postern::policy::path::normalize_host;
use url::Url;

fn public() -> &'static Url {
    static URL: OnceLock<Url> = OnceLock::new();
    URL.get_or_init(|| Url::parse("https://devtools.example.com").expect("url"))
}

/// A browser's reading of where `Location: path` on the public origin leads.
fn resolves_locally(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && public().join(path).is_ok_and(|u| u.origin() == public().origin())
}

fuzz_target!(|raw: &str| {
    let public = public();
    if let Some(path) = safe_return_path(raw, public) {
        assert!(resolves_locally(&path), "{raw:?} -> {path:?}");
        assert!(!path.chars().any(|c| c.is_control() || c == '\\'), "{raw:?} -> {path:?}");
    }
    match safe_return_target(raw, public, common::redirect_policy()) {
        None => {}
        Some(ReturnTo::Local(path)) => assert!(resolves_locally(&path), "{raw:?} -> {path:?}"),
        Some(ReturnTo::Remote(url)) => {
            assert_eq!(url.scheme(), public.scheme(), "{raw:?}");
            assert!(url.username().is_empty() && url.password().is_none(), "{raw:?}");
            let host = normalize_host(url.host_str().unwrap_or(""));
            let named = common::redirect_policy().routes().iter().any(|r| match &r.host {
                HostPattern::Exact(h) => *h == host,
                HostPattern::Wildcard(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
                HostPattern::Any => false,
            });
            assert!(named, "{raw:?} leads to {url}, which no route names");
            // What the browser is sent must lead to the same host.
            let again = Url::parse(url.as_str()).expect("a URL reparses");
            assert_eq!(again.host_str(), url.host_str(), "{raw:?}");
        }
    }
});
