//! Opening session and login cookies, and sealed handoff values, from arbitrary `Cookie` headers and values:
//! never panics, never opens a value this codec did not seal, and what it seals opens to the same value.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use postern::session::cookie::CookieCodec;

fn codec() -> &'static CookieCodec {
    static CODEC: OnceLock<CookieCodec> = OnceLock::new();
    // Two keys: the first seals, both open (rotation).
    CODEC.get_or_init(|| CookieCodec::new(&[&[7u8; 32], &[9u8; 64]], true))
}

fuzz_target!(|data: &[u8]| {
    let codec = codec();
    // As a Cookie header (several, when the input holds a newline).
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, v);
        }
    }
    // Random bytes never carry a sealed value of ours: nothing may open.
    assert_eq!(codec.session_ticket(&headers), None);
    for (_, opened) in codec.login_cookies(&headers) {
        assert_eq!(opened, None);
    }
    let text = String::from_utf8_lossy(data);
    assert_eq!(codec.login_value(&headers, &text), None);
    assert_eq!(codec.open_for("handoff", &text), None);
    // As a value to seal: it round-trips, under its own purpose only.
    if let Some(sealed) = codec.seal_for("handoff", &text) {
        assert_eq!(codec.open_for("handoff", &sealed).as_deref(), Some(&*text));
        assert_eq!(codec.open_for("other", &sealed), None);
    }
    if let Some(c) = codec.session_cookie(&text, Duration::from_secs(60)) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("a=b; {}={}", c.name(), c.value())) {
            h.insert(COOKIE, v);
            assert_eq!(codec.session_ticket(&h).as_deref(), Some(&*text));
        }
    }
    let _ = codec.login_cookie_name(&text);
});
