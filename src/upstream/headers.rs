//! Header rules for forwarding. Hop-by-hop headers describe one connection and must not travel further;
//! identity headers are Postern's to set, so whatever a client sends under those names is removed first;
//! `X-Forwarded-*` is believed only from trusted proxies.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that belong to one connection (RFC 9110 §7.6.1), plus the legacy ones proxies still see.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The identity headers Postern sets toward upstreams (constants: a name is parsed at compile time, not per
/// request).
pub const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// Email.
pub const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// Preferred username.
pub const X_FORWARDED_PREFERRED_USERNAME: HeaderName = HeaderName::from_static("x-forwarded-preferred-username");
/// Groups, comma-separated.
pub const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// The signed assertion.
pub const X_POSTERN_JWT_ASSERTION: HeaderName = HeaderName::from_static("x-postern-jwt-assertion");
/// The request id.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// True for a header a client must never be able to set toward an upstream: our identity headers, anything
/// under `X-Postern-` or `X-Auth-Request-` (the forward-auth names).
pub fn is_identity_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    [X_FORWARDED_USER, X_FORWARDED_EMAIL, X_FORWARDED_PREFERRED_USERNAME, X_FORWARDED_GROUPS].contains(name)
        || n.starts_with("x-postern-")
        || n.starts_with("x-auth-request-")
        || n == "x-forwarded-access-token"
}

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // `keep-alive`, `close` and `upgrade`, the usual tokens, are no other header's name (or removed below anyway).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !["keep-alive", "close", "upgrade"].iter().any(|t| n.eq_ignore_ascii_case(t)))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // One pass over the few headers a message has, rather than a lookup for each of the nine names; which ones
    // are present is kept as bits, not in a list to allocate.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// Removes every identity header a client sent, and every header with an underscore in its name: CGI-style
/// upstreams read `X_Forwarded_User` as `X-Forwarded-User`, so underscores would let a client forge any header
/// Postern sets (nginx drops them by default for the same reason).
pub fn remove_identity_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> =
        headers.keys().filter(|n| is_identity_header(n) || n.as_str().contains('_')).cloned().collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Removes Postern's own cookies from `Cookie`, keeping the upstream's, in one `Cookie` header (RFC 9113
/// §8.2.3: an HTTP/2 client's cookie crumbs are joined with "; " toward HTTP/1.1).
pub fn remove_own_cookies(headers: &mut HeaderMap, is_own: impl Fn(&str) -> bool) {
    let values = headers.get_all(header::COOKIE);
    // The common case, one header with nothing of Postern's in it, is left as sent without copying it.
    let single = values.iter().nth(1).is_none();
    let ours = |v: &HeaderValue| v.to_str().map_or(true, |text| cookie_pairs(text).any(|p| is_own(cookie_name(p))));
    if single && !values.iter().any(ours) {
        return;
    }
    let kept: Vec<&str> = values
        .iter()
        // A header that is not text cannot be filtered; dropping it fails closed.
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie_pairs)
        .filter(|p| !is_own(cookie_name(p)))
        .collect();
    let kept = (!kept.is_empty()).then(|| HeaderValue::from_str(&kept.join("; ")).ok()).flatten();
    headers.remove(header::COOKIE);
    if let Some(v) = kept {
        headers.insert(header::COOKIE, v);
    }
}

fn cookie_pairs(text: &str) -> impl Iterator<Item = &str> {
    text.split(';').map(str::trim).filter(|p| !p.is_empty())
}

fn cookie_name(pair: &str) -> &str {
    pair.split('=').next().unwrap_or("").trim()
}

/// True when the request asks for a protocol upgrade (WebSocket).
pub fn upgrade_requested(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed_too() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn spoofed_identity_headers_are_removed() {
        let mut h = HeaderMap::new();
        for n in [
            "x-forwarded-user",
            "X-Forwarded-Email",
            "x-forwarded-groups",
            "x-forwarded-preferred-username",
            "x-postern-jwt-assertion",
            "x-auth-request-user",
            "x-forwarded-host",
        ] {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("evil"));
        }
        remove_identity_headers(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-forwarded-host"]);
    }

    #[test]
    fn only_our_cookies_are_removed() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("__Host-postern=abc; _gitlab_session=1"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-postern-login-xyz=2"));
        remove_own_cookies(&mut h, |n| n.starts_with("__Host-postern"));
        assert_eq!(h.get(header::COOKIE).unwrap(), "_gitlab_session=1");
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("__Host-postern=abc"));
        remove_own_cookies(&mut h, |n| n.starts_with("__Host-postern"));
        assert!(!h.contains_key(header::COOKIE));
        // Nothing of ours: left as sent.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1;  b=2"));
        remove_own_cookies(&mut h, |n| n.starts_with("__Host-postern"));
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1;  b=2");
        // HTTP/2 cookie crumbs become one header toward HTTP/1.1.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        remove_own_cookies(&mut h, |n| n.starts_with("__Host-postern"));
        assert_eq!(h.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);
    }

    #[test]
    fn headers_named_in_connection_go_and_the_usual_tokens_change_nothing_else() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, X-Secret , close"));
        h.insert(HeaderName::from_static("x-secret"), HeaderValue::from_static("1"));
        h.insert(HeaderName::from_static("keep-alive"), HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
    }
}
