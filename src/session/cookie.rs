//! The cookies Postern sets: the session cookie, which holds only an opaque ticket, and one short-lived login
//! cookie per sign-in attempt. Both are encrypted and authenticated (AES-256-GCM with the cookie's name as
//! associated data, so a value cannot be moved to another cookie). Keys rotate: the first key seals, every
//! key opens. Never logs a cookie value.

use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use cookie::{Cookie, CookieJar, Key, SameSite};
use http::HeaderMap;
use http::header::COOKIE;

/// How many sign-ins may be pending in one browser at once; older ones are dropped.
pub const MAX_PENDING_LOGINS: usize = 4;

/// Seals and opens Postern's cookies.
#[derive(Clone)]
pub struct CookieCodec {
    keys: Vec<Key>,
    /// The same keys ready to decrypt: the `cookie` crate would expand the AES key and copy the value into a
    /// new jar for every request.
    openers: std::sync::Arc<Vec<LessSafeKey>>,
    session_name: String,
    login_prefix: String,
    secure: bool,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieCodec").field("session_name", &self.session_name).field("keys", &self.keys.len()).finish()
    }
}

impl CookieCodec {
    /// `secrets[0]` seals; all open (rotation). Each secret must be at least 32 bytes. With `secure`, cookies
    /// are `__Host-` prefixed and `Secure` (HTTPS); without, plainly named (loopback HTTP, development only).
    pub fn new(secrets: &[&[u8]], secure: bool) -> CookieCodec {
        let keys: Vec<Key> = secrets.iter().filter(|s| s.len() >= 32).map(|s| Key::derive_from(s)).collect();
        let openers = keys
            .iter()
            .filter_map(|k| UnboundKey::new(&AES_256_GCM, k.encryption()).ok().map(LessSafeKey::new))
            .collect();
        let (session_name, login_prefix) = if secure {
            ("__Host-postern".to_string(), "__Host-postern-login-".to_string())
        } else {
            ("postern".to_string(), "postern-login-".to_string())
        };
        CookieCodec { keys, openers: std::sync::Arc::new(openers), session_name, login_prefix, secure }
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// True for Postern's own cookies, which are never forwarded upstream.
    pub fn is_own_cookie(&self, name: &str) -> bool {
        name == self.session_name || name.starts_with(&self.login_prefix)
    }

    /// Encrypts `value` for `purpose` (bound in as associated data), for values that travel outside a cookie,
    /// such as the one-time handoff of a session to another host.
    pub fn seal_for(&self, purpose: &str, value: &str) -> Option<String> {
        self.seal(purpose, value)
    }

    /// Opens a value sealed by [`CookieCodec::seal_for`] for the same purpose.
    pub fn open_for(&self, purpose: &str, sealed: &str) -> Option<String> {
        self.open(purpose, sealed)
    }

    fn seal(&self, name: &str, value: &str) -> Option<String> {
        let key = self.keys.first()?;
        let mut jar = CookieJar::new();
        jar.private_mut(key).add(Cookie::new(name.to_string(), value.to_string()));
        jar.get(name).map(|c| c.value().to_string())
    }

    /// Opens what `seal` (the `cookie` crate's private jar) made: standard base64 of a 12-byte nonce, the
    /// ciphertext and the 16-byte tag, AES-256-GCM with the cookie's name as associated data.
    fn open(&self, name: &str, sealed: &str) -> Option<String> {
        const NONCE_LEN: usize = 12;
        let mut data = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
        if data.len() <= NONCE_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = data[..NONCE_LEN].try_into().ok()?;
        // Decryption happens in place: with one key in the buffer itself, during a rotation in a copy per key.
        let single = self.openers.len() == 1;
        for key in self.openers.iter() {
            let mut copy;
            let buf = if single {
                &mut data
            } else {
                copy = data.clone();
                &mut copy
            };
            if let Ok(plain) = key.open_within(Nonce::assume_unique_for_key(nonce), Aad::from(name), buf, NONCE_LEN..) {
                let len = plain.len();
                buf.truncate(len);
                return String::from_utf8(std::mem::take(buf)).ok();
            }
        }
        None
    }

    fn build(&self, name: String, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .secure(self.secure)
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX)))
            .build()
    }

    /// A cookie that removes `name` from the browser.
    pub fn removal(&self, name: &str) -> Cookie<'static> {
        self.build(name.to_string(), String::new(), Duration::ZERO)
    }

    /// The session cookie carrying `ticket`.
    pub fn session_cookie(&self, ticket: &str, max_age: Duration) -> Option<Cookie<'static>> {
        let sealed = self.seal(&self.session_name, ticket)?;
        Some(self.build(self.session_name.clone(), sealed, max_age))
    }

    /// The ticket in the request's session cookie, if one opens.
    pub fn session_ticket(&self, headers: &HeaderMap) -> Option<String> {
        request_cookies(headers).find(|(n, _)| *n == self.session_name).and_then(|(n, v)| self.open(n, v))
    }

    /// The name of the login cookie for the sign-in attempt with this `state`.
    pub fn login_cookie_name(&self, state: &str) -> String {
        // A prefix of the state: distinct per attempt, so that tabs signing in at once don't collide.
        let id: String = state.chars().take(12).collect();
        format!("{}{id}", self.login_prefix)
    }

    /// A login cookie holding `value` (the serialised pending login).
    pub fn login_cookie(&self, state: &str, value: &str, max_age: Duration) -> Option<Cookie<'static>> {
        let name = self.login_cookie_name(state);
        let sealed = self.seal(&name, value)?;
        Some(self.build(name, sealed, max_age))
    }

    /// Opens the login cookie for `state`.
    pub fn login_value(&self, headers: &HeaderMap, state: &str) -> Option<String> {
        let name = self.login_cookie_name(state);
        request_cookies(headers).find(|(n, _)| *n == name).and_then(|(n, v)| self.open(n, v))
    }

    /// Every login cookie in the request: `(name, opened value or None when it does not open)`.
    pub fn login_cookies(&self, headers: &HeaderMap) -> Vec<(String, Option<String>)> {
        request_cookies(headers)
            .filter(|(n, _)| n.starts_with(&self.login_prefix))
            .map(|(n, v)| (n.to_string(), self.open(n, v)))
            .collect()
    }
}

/// `(name, value)` of every cookie in the request's `Cookie` headers.
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).filter_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        Some((n.trim(), v.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cookie: &Cookie<'_>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&format!("a=b; {}={}", cookie.name(), cookie.value())).unwrap());
        h
    }

    #[test]
    fn session_cookies_are_host_prefixed_secure_and_round_trip() {
        let codec = CookieCodec::new(&[&[7u8; 32]], true);
        let c = codec.session_cookie("ticket-1", Duration::from_secs(60)).unwrap();
        let text = c.to_string();
        assert!(text.starts_with("__Host-postern="), "{text}");
        for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(text.contains(attr), "{text} lacks {attr}");
        }
        assert!(!text.contains("ticket-1"));
        assert_eq!(codec.session_ticket(&headers(&c)).as_deref(), Some("ticket-1"));
    }

    #[test]
    fn tampered_or_foreign_cookies_do_not_open() {
        let codec = CookieCodec::new(&[&[7u8; 32]], true);
        let other = CookieCodec::new(&[&[8u8; 32]], true);
        let c = other.session_cookie("t", Duration::from_secs(60)).unwrap();
        assert_eq!(codec.session_ticket(&headers(&c)), None);
        let mut c = codec.session_cookie("t", Duration::from_secs(60)).unwrap();
        let mut v = c.value().to_string();
        v.replace_range(5..6, if &v[5..6] == "A" { "B" } else { "A" });
        c.set_value(v);
        assert_eq!(codec.session_ticket(&headers(&c)), None);
        // A login cookie's value cannot be replayed as a session cookie: the name is bound in.
        let login = codec.login_cookie("state", "t", Duration::from_secs(60)).unwrap();
        let moved = Cookie::new("__Host-postern", login.value().to_string());
        assert_eq!(codec.session_ticket(&headers(&moved)), None);
    }

    #[test]
    fn rotated_keys_still_open_old_cookies() {
        let old = CookieCodec::new(&[&[1u8; 32]], true);
        let rotated = CookieCodec::new(&[&[2u8; 32], &[1u8; 32]], true);
        let c = old.session_cookie("t", Duration::from_secs(60)).unwrap();
        assert_eq!(rotated.session_ticket(&headers(&c)).as_deref(), Some("t"));
    }
}
