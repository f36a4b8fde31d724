//! Where Postern may send a browser after sign-in or sign-out: only to its own origin. Anything else — another
//! host, a scheme-relative `//host`, a backslash trick `/\host`, an encoded form of those, control characters —
//! is refused, so Postern can never be used as an open redirect. The one exception is a host that a route
//! names explicitly (exactly or by `*.domain` wildcard, never `*`), reached with the public URL's scheme: a
//! signed-in session is handed to it (see `handoff`).

use url::Url;

use crate::policy::path::normalize_host;
use crate::policy::{HostPattern, Policy};

/// Where to go after sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnTo {
    /// A path (and query) on Postern's public origin.
    Local(String),
    /// A URL on another host that a route names.
    Remote(Url),
}

impl ReturnTo {
    /// How it is kept in the login cookie.
    pub fn as_string(&self) -> String {
        match self {
            ReturnTo::Local(p) => p.clone(),
            ReturnTo::Remote(u) => u.to_string(),
        }
    }
}

/// A safe target after sign-in: a path on the public origin, or a URL on a host some route names explicitly.
pub fn safe_return_target(raw: &str, public: &Url, policy: &Policy) -> Option<ReturnTo> {
    if let Some(path) = safe_return_path(raw, public) {
        return Some(ReturnTo::Local(path));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') || raw.len() > 4096 {
        return None;
    }
    let url = Url::parse(raw).ok()?;
    if url.scheme() != public.scheme()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
    {
        return None;
    }
    let host = normalize_host(url.host_str()?);
    let named = policy.routes().iter().any(|r| match &r.host {
        HostPattern::Exact(h) => *h == host,
        HostPattern::Wildcard(suffix) => host.ends_with(suffix.as_str()) && host.len() > suffix.len(),
        HostPattern::Any => false,
    });
    named.then_some(ReturnTo::Remote(url))
}

/// The path (and query) to return to, when `raw` is a safe target on `public`'s origin.
pub fn safe_return_path(raw: &str, public: &Url) -> Option<String> {
    if raw.is_empty() || raw.len() > 4096 {
        return None;
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\') {
        return None;
    }
    // Decode repeatedly: some stacks decode twice, so `%252F%252F` must be treated like `//`.
    let mut decoded = raw.to_string();
    for _ in 0..3 {
        let next: String = percent_decode(&decoded);
        if next.chars().any(|c| c.is_control() || c == '\\') || next.starts_with("//") || next.starts_with("/\\") {
            return None;
        }
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let target = if raw.starts_with('/') {
        if raw.starts_with("//") {
            return None;
        }
        public.join(raw).ok()?
    } else {
        Url::parse(raw).ok()?
    };
    if target.origin() != public.origin() || !target.username().is_empty() || target.password().is_some() {
        return None;
    }
    let mut path = target.path().to_string();
    // Dot segments can resolve to a scheme-relative `//host` (`/.//evil.com`): a browser would leave for it.
    if path.starts_with("//") || percent_decode(&path).starts_with("//") {
        return None;
    }
    if let Some(q) = target.query() {
        path.push('?');
        path.push_str(q);
    }
    Some(path)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_targets_are_accepted() {
        let public = Url::parse("https://devtools.example.com").unwrap();
        let ok = |raw: &str| safe_return_path(raw, &public);
        assert_eq!(ok("/").as_deref(), Some("/"));
        assert_eq!(ok("/admin?x=1").as_deref(), Some("/admin?x=1"));
        assert_eq!(ok("https://devtools.example.com/a").as_deref(), Some("/a"));
        for bad in [
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com/",
            "http://devtools.example.com/",
            "https://devtools.example.com.evil.com/",
            "https://user@devtools.example.com/",
            "/%2F%2Fevil.com",
            "/%2f/evil.com",
            "%2F%2Fevil.com",
            "/%5Cevil.com",
            "/%252F%252Fevil.com",
            "javascript:alert(1)",
            "evil.com",
            "/a\r\nLocation: https://evil.com",
            " //evil.com",
            "/.//evil.com",
            "/%2e//evil.com",
            "/a/..//evil.com",
            "",
        ] {
            assert_eq!(ok(bad), None, "{bad:?} was accepted");
        }
        // Broken encodings are merely paths on our origin; they must not panic.
        assert!(ok("/%e2%").is_some() && ok("/é%").is_some());
    }
}
