//! Property tests of the parsers that see outside input: path normalisation, cookies, redirect targets, the
//! policy loader, JWT verification, durations, SCIM filters and PATCH bodies. Each property holds for every
//! generated input; case counts are kept small so the whole file runs in a few seconds in a debug build
//! (CI). The long runs are the fuzz targets in `fuzz/`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use postern::clock::Clock;
use postern::demo::provider::{DevProvider, DevProviderConfig};
use postern::http_client::HttpClient;
use postern::jwks::IssuerKeys;
use postern::jwt::{self, Expectations, TokenError};
use postern::oidc::redirect::{ReturnTo, safe_return_path, safe_return_target};
use postern::policy::path::{has_path_prefix, matching_path, normalize_host, normalize_path};
use postern::policy::{HostPattern, Policy, load_sources};
use postern::session::cookie::CookieCodec;
use proptest::prelude::*;
use serde_json::{Value, json};
use url::Url;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------------------
// Paths

/// Pieces that request paths are made of, including every trick of the bypass tests.
fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2F".to_string()),
        Just("%2f".to_string()),
        Just("%5C".to_string()),
        Just("%25".to_string()),
        Just("%252F".to_string()),
        Just("%252e".to_string()),
        Just("%61".to_string()),
        Just("%7E".to_string()),
        Just("%C3%A9".to_string()),
        Just(";".to_string()),
        Just(";x=1".to_string()),
        Just("admin".to_string()),
        Just("users".to_string()),
        Just("é".to_string()),
        "[a-zA-Z0-9._~%;=-]{1,6}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_piece(), 0..10).prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn decodes_to_unreserved(hi: u8, lo: u8) -> bool {
    let v = u8::from_str_radix(std::str::from_utf8(&[hi, lo]).unwrap(), 16).unwrap();
    v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')
}

/// "admin" with some letters percent-encoded, once or twice.
fn admin_spelling() -> impl Strategy<Value = String> {
    prop::collection::vec(0u8..3, 5).prop_map(|how| {
        "admin"
            .bytes()
            .zip(how)
            .map(|(b, h)| match h {
                0 => char::from(b).to_string(),
                1 => format!("%{b:02x}"),
                _ => format!("%25{b:02X}"),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn normalize_path_is_idempotent_and_leaves_no_empty_dot_or_unreserved_escape(raw in raw_path()) {
        if let Ok(p) = normalize_path(&raw) {
            prop_assert!(p.starts_with('/'));
            let again = normalize_path(&p);
            prop_assert_eq!(again.as_deref(), Ok(p.as_str()), "not idempotent: {}", raw);
            prop_assert!(!p.contains("//"), "{} -> {}", raw, p);
            prop_assert!(!p.contains("/./") && !p.contains("/../"), "{} -> {}", raw, p);
            prop_assert!(!p.ends_with("/.") && !p.ends_with("/.."), "{} -> {}", raw, p);
            let b = p.as_bytes();
            for i in (0..b.len()).filter(|&i| b[i] == b'%') {
                prop_assert!(!decodes_to_unreserved(b[i + 1], b[i + 2]), "{} -> {}", raw, p);
                prop_assert!(!b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase(), "{} -> {}", raw, p);
            }
        }
    }

    #[test]
    fn the_matching_path_never_leaves_admin_when_the_forwarded_path_is_under_it(rest in raw_path()) {
        let raw = format!("/admin{rest}");
        if let Ok(p) = normalize_path(&raw)
            && has_path_prefix(&p, "/admin")
        {
            let m = matching_path(&p);
            prop_assert!(has_path_prefix(&m, "/admin"), "{} forwarded as {}, matched as {}", raw, p, m);
        }
    }

    #[test]
    fn every_spelling_of_admin_is_matched_under_admin(
        lead in prop::sample::select(vec!["", "/", "/x/..", "/./", "/x%2F..%2F", "/%2e/", "/a/b/../../"]),
        name in admin_spelling(),
        params in prop::sample::select(vec!["", ";x=1", ";jsessionid=1"]),
        rest in prop::collection::vec("/[a-zA-Z0-9_~-]{0,5}", 0..4),
    ) {
        let raw = format!("{lead}/{name}{params}{}", rest.concat());
        let p = normalize_path(&raw);
        prop_assert!(p.is_ok(), "{} refused: {:?}", raw, p);
        let p = p.unwrap();
        let m = matching_path(&p);
        prop_assert!(has_path_prefix(&m, "/admin"), "{} -> {} -> {}", raw, p, m);
    }

    #[test]
    fn normalize_host_is_lower_case_without_port_or_trailing_dot(
        host in "[a-zA-Z0-9.-]{1,20}",
        port in prop::option::of(0u16..),
        dots in 0usize..3,
    ) {
        let raw = format!("{host}{}{}", ".".repeat(dots), port.map(|p| format!(":{p}")).unwrap_or_default());
        let n = normalize_host(&raw);
        prop_assert!(!n.ends_with('.') && !n.contains(':'), "{} -> {}", raw, n);
        prop_assert_eq!(n.clone(), host.trim_end_matches('.').to_ascii_lowercase());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Cookies

fn codec() -> &'static CookieCodec {
    static CODEC: OnceLock<CookieCodec> = OnceLock::new();
    CODEC.get_or_init(|| CookieCodec::new(&[&[7u8; 32], &[9u8; 40]], true))
}

fn cookie_header(name: &str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(COOKIE, HeaderValue::from_str(&format!("other=1; {name}={value}")).unwrap());
    h
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn a_sealed_cookie_opens_to_its_value_and_any_single_byte_change_fails_to_open(
        ticket in "\\PC{0,64}",
        at in any::<prop::sample::Index>(),
        replacement in 0x21u8..0x7f,
    ) {
        let c = codec().session_cookie(&ticket, Duration::from_secs(60)).unwrap();
        prop_assert_eq!(codec().session_ticket(&cookie_header(c.name(), c.value())), Some(ticket.clone()));
        let mut value = c.value().as_bytes().to_vec();
        let i = at.index(value.len());
        prop_assume!(value[i] != replacement && replacement != b';');
        value[i] = replacement;
        let changed = String::from_utf8(value).unwrap();
        prop_assert_eq!(codec().session_ticket(&cookie_header(c.name(), &changed)), None, "{} opened", changed);
        // Nor does the same value open for another purpose or under another key.
        prop_assert_eq!(codec().open_for("handoff", c.value()), None);
        let other = CookieCodec::new(&[&[8u8; 32]], true);
        prop_assert_eq!(other.session_ticket(&cookie_header(c.name(), c.value())), None);
    }

    #[test]
    fn arbitrary_cookie_headers_never_open(header in "[ -~]{0,200}") {
        let h = cookie_header("__Host-postern", &header.replace(';', ""));
        prop_assert_eq!(codec().session_ticket(&h), None);
        prop_assert!(codec().login_cookies(&h).iter().all(|(_, v)| v.is_none()));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Redirect targets

fn redirect_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = r#"
[[route]]
name = "gitlab"
host = "gitlab.example.com"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]

[[route]]
name = "tools"
host = "*.tools.example.com"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]

[[route]]
name = "anything"
host = "*"
path = "/any"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]
"#;
        load_sources(&[(PathBuf::from("redirect.toml"), text.to_string())]).unwrap().0
    })
}

fn public() -> Url {
    Url::parse("https://devtools.example.com").unwrap()
}

fn redirect_target() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec!["", "https:", "http:", "HTTPS:", "javascript:", "data:", "https:/"]);
    let sep =
        prop::sample::select(vec!["", "/", "//", "///", "\\\\", "/\\", "%2F%2F", "/%2F", "%5C%5C", " //", "\t//"]);
    let host = prop::sample::select(vec![
        "",
        "devtools.example.com",
        "DevTools.Example.com.",
        "evil.com",
        "gitlab.example.com",
        "gitlab.example.com.evil.com",
        "a.tools.example.com",
        "tools.example.com",
        "evil.com@devtools.example.com",
        "devtools.example.com@evil.com",
        "user:pw@gitlab.example.com",
        "devtools.example.com:8443",
        "[::1]",
        "127.0.0.1",
    ]);
    let path = prop::collection::vec(path_piece(), 0..4).prop_map(|p| p.concat());
    let tail = prop::sample::select(vec!["", "?a=1", "#frag", "?next=//evil.com", "%0d%0aLocation:%20x"]);
    (scheme, sep, host, path, tail).prop_map(|(s, sep, h, p, t)| format!("{s}{sep}{h}{p}{t}"))
}

fn lands_on_public_origin(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && public().join(path).is_ok_and(|u| u.origin() == public().origin())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn safe_return_target_never_accepts_another_origin_unless_a_route_names_the_host(raw in redirect_target()) {
        if let Some(p) = safe_return_path(&raw, &public()) {
            prop_assert!(lands_on_public_origin(&p), "{:?} -> {:?}", raw, p);
        }
        match safe_return_target(&raw, &public(), redirect_policy()) {
            None => {}
            Some(ReturnTo::Local(p)) => prop_assert!(lands_on_public_origin(&p), "{:?} -> {:?}", raw, p),
            Some(ReturnTo::Remote(url)) => {
                prop_assert_eq!(url.scheme(), "https");
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{:?}", raw);
                let host = normalize_host(url.host_str().unwrap_or(""));
                let named = redirect_policy().routes().iter().any(|r| match &r.host {
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Wildcard(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
                    HostPattern::Any => false,
                });
                prop_assert!(named, "{:?} leads to {}", raw, url);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The policy loader

fn policy_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[[route]]".to_string()),
        Just("[groups]".to_string()),
        Just("eng = \"5b1c3d2e-0000-0000-0000-000000000001\"".to_string()),
        Just("name = \"r\"".to_string()),
        Just("host = \"*.example.com\"".to_string()),
        Just("host = \"*\"".to_string()),
        Just("host = \"gitlab.example.com:443\"".to_string()),
        Just("path = \"/admin\"".to_string()),
        Just("path = \"/api/**/x/*\"".to_string()),
        Just("path = \"/a%zz\"".to_string()),
        Just("methods = [\"GET\", \"BREW\"]".to_string()),
        Just("upstream = \"http://127.0.0.1:8080\"".to_string()),
        Just("upstream = \"ftp://x\"".to_string()),
        Just("public = true".to_string()),
        Just("timeout = \"5s\"".to_string()),
        Just("timeout = \"5 parsecs\"".to_string()),
        Just("allow = [{ groups = [\"eng\"] }]".to_string()),
        Just("allow = [{ claims = { dept = [\"a*\"] }, auth = \"bearer\" }]".to_string()),
        Just("deny = [{ users = [\"x\"], mfa = true }]".to_string()),
        Just("headers = { \"X-Dept\" = \"{claims.department}\" }".to_string()),
        Just("headers = { \"X-Bad\" = \"{unclosed\" }".to_string()),
        Just("identity_headers = { groups = false }".to_string()),
        "\\PC{0,30}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_policy_loader_never_panics_on_arbitrary_text(lines in prop::collection::vec(policy_line(), 0..16)) {
        let text = lines.join("\n");
        match load_sources(&[(PathBuf::from("p.toml"), text.clone())]) {
            Ok((policy, _)) => {
                for r in policy.routes() {
                    let _ = policy.route("gitlab.example.com", &r.path, &http::Method::GET);
                }
            }
            Err(d) => {
                prop_assert!(d.has_errors());
                let lines = text.lines().count() + 1;
                prop_assert!(d.0.iter().all(|x| x.line <= lines), "{}", d);
            }
        }
    }

    #[test]
    fn durations_parse_sums_of_units_and_never_panic(parts in prop::collection::vec((0u64..100_000, prop::sample::select(vec!["ms", "s", "m", "h", "d"])), 1..4), junk in "\\PC{0,12}") {
        let text: String = parts.iter().map(|(n, u)| format!("{n}{u}")).collect();
        let want: u128 = parts.iter().map(|(n, u)| u128::from(*n) * match *u { "ms" => 1, "s" => 1000, "m" => 60_000, "h" => 3_600_000, _ => 86_400_000 }).sum();
        prop_assert_eq!(postern::duration::parse(&text).map(|d| d.as_millis()), Ok(want));
        let _ = postern::duration::parse(&junk);
    }
}

// ---------------------------------------------------------------------------------------------------------
// JWT verification

struct Jwt {
    rt: tokio::runtime::Runtime,
    keys: Arc<IssuerKeys>,
    issuer: String,
    audiences: Vec<String>,
    token: String,
    _provider: DevProvider,
}

fn jwt_fixture() -> &'static Jwt {
    static F: OnceLock<Jwt> = OnceLock::new();
    F.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (provider, keys) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let provider =
                DevProvider::start(listener, DevProviderConfig::default(), std::future::pending()).await.unwrap();
            let http = HttpClient::new(None, Duration::from_secs(5)).unwrap();
            let uri = Url::parse(&format!("{}/jwks", provider.issuer())).unwrap();
            let keys = Arc::new(IssuerKeys::new(uri, http, Duration::from_secs(86_400)));
            keys.refresh().await.unwrap();
            (provider, keys)
        });
        let token = provider.mint_access_token(json!({"sub": "svc"}));
        Jwt {
            rt,
            keys,
            issuer: provider.issuer(),
            audiences: vec![provider.config().access_token_audience.clone()],
            token,
            _provider: provider,
        }
    })
}

fn verify(token: &str) -> Result<jwt::Claims, TokenError> {
    let f = jwt_fixture();
    let expect = Expectations {
        issuer: &f.issuer,
        allowed_tenants: &[],
        audiences: &f.audiences,
        algorithms: &[],
        leeway: 60,
        now: Clock::system().now(),
        nonce: None,
        client_id: None,
    };
    f.rt.block_on(jwt::verify(token, &f.keys, &expect))
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn jwt_verify_never_accepts_alg_none_or_hmac_or_any_header_but_the_signed_one(
        alg in prop::sample::select(vec!["none", "None", "NONE", "nOnE", "HS256", "hs256", "HS384", "HS512", "RS256", "RS512", "PS256", "ES256", "EdDSA", "", "RS256 "]),
        kid in prop::option::of(prop::sample::select(vec!["", "k", "../../etc/passwd", "unknown"])),
        extra in prop::sample::select(vec![json!({}), json!({"jku": "http://127.0.0.1:1/jwks"}), json!({"jwk": {"kty": "oct", "k": "AA"}}), json!({"typ": "JWT"}), json!({"crit": ["exp"]})]),
        signature in prop_oneof![Just(None), "[A-Za-z0-9_-]{0,40}".prop_map(Some)],
    ) {
        let f = jwt_fixture();
        let mut header = json!({"alg": alg});
        if let Some(k) = kid {
            header["kid"] = json!(k);
        }
        for (k, v) in extra.as_object().unwrap() {
            header[k] = v.clone();
        }
        let mut parts = f.token.split('.');
        let (_, claims, genuine_sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let sig = signature.unwrap_or_else(|| genuine_sig.to_string());
        let token = format!("{}.{claims}.{sig}", b64(header.to_string().as_bytes()));
        let result = verify(&token);
        prop_assert!(result.is_err(), "{} verified", header);
        if alg.eq_ignore_ascii_case("none") {
            prop_assert_eq!(result.unwrap_err(), TokenError::AlgNone);
        } else if alg.to_ascii_uppercase().starts_with("HS") {
            prop_assert_eq!(result.unwrap_err(), TokenError::Symmetric);
        }
    }

    #[test]
    fn jwt_parsing_never_panics_on_arbitrary_text(text in "\\PC{0,200}", parts in prop::collection::vec("[A-Za-z0-9_=-]{0,30}", 0..5)) {
        let _ = jwt::peek(&text);
        prop_assert!(verify(&text).is_err());
        let dotted = parts.join(".");
        let _ = jwt::peek(&dotted);
        prop_assert!(verify(&dotted).is_err());
    }

    #[test]
    fn the_genuine_token_verifies_and_its_claims_cannot_be_swapped(claims in prop::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..4)) {
        let f = jwt_fixture();
        prop_assert!(verify(&f.token).is_ok());
        let mut parts = f.token.split('.');
        let (header, _, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let mut body: serde_json::Map<String, Value> = serde_json::Map::new();
        body.insert("iss".into(), json!(f.issuer));
        body.insert("aud".into(), json!(f.audiences[0]));
        body.insert("sub".into(), json!("admin"));
        body.insert("exp".into(), json!(Clock::system().now() + 600));
        for (k, v) in claims {
            body.insert(k, json!(v));
        }
        let forged = format!("{header}.{}.{sig}", b64(Value::Object(body).to_string().as_bytes()));
        prop_assert_eq!(verify(&forged).unwrap_err(), TokenError::BadSignature);
    }
}

// SCIM: filters from list requests and PATCH bodies from the provisioning client.

fn scim_filter_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "userName",
        "externalId",
        "displayName",
        "emails",
        "emails[type eq \"work\"]",
        ".value",
        "name.givenName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        " eq ",
        " ne ",
        " co ",
        " sw ",
        " pr",
        " gt ",
        " and ",
        " or ",
        "not ",
        "(",
        ")",
        "[",
        "]",
        "\"alice@example.com\"",
        "\"",
        "true",
        "false",
        "null",
        "42",
        " ",
        "\\",
        "EQ",
        "And",
    ]);
    prop::collection::vec(token, 0..12).prop_map(|t| t.concat())
}

fn scim_user() -> serde_json::Map<String, Value> {
    json!({
        "userName": "alice@example.com",
        "externalId": "9f2a1c3e",
        "active": true,
        "emails": [{"type": "work", "value": "alice@example.com"}],
        "members": [{"value": "u1"}],
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn scim_patch_op() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec!["add", "Replace", "remove", "REMOVE", "copy", ""]);
    let path = prop::option::of(prop::sample::select(vec![
        "active",
        "userName",
        "emails[type eq \"work\"].value",
        "members[value eq \"u1\"]",
        "members",
        "name.givenName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "emails[",
        "id",
        "meta.version",
    ]));
    let value = prop::sample::select(vec![
        json!("False"),
        json!(true),
        json!("x@example.com"),
        json!({"name.givenName": "A", "active": "True"}),
        json!([{"value": "u2"}]),
        json!(null),
        json!(7),
    ]);
    (op, path, prop::option::of(value)).prop_map(|(op, path, value)| {
        let mut o = serde_json::Map::new();
        o.insert("op".into(), json!(op));
        if let Some(p) = path {
            o.insert("path".into(), json!(p));
        }
        if let Some(v) = value {
            o.insert("value".into(), v);
        }
        Value::Object(o)
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn scim_filters_parse_or_are_refused_and_never_panic(text in scim_filter_text()) {
        use postern::scim::filter::{matches, parse, parse_attr_path};
        if let Ok(filter) = parse(&text) {
            let _ = matches(&Value::Object(scim_user()), &filter);
        }
        let _ = parse_attr_path(&text);
    }

    #[test]
    fn a_scim_patch_is_stored_whole_or_refused_and_what_is_stored_normalises_to_itself(ops in prop::collection::vec(scim_patch_op(), 0..5)) {
        use postern::scim::model::{Kind, normalize};
        use postern::scim::patch::{apply, parse};
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        let Ok(ops) = parse(&body) else { return Ok(()) };
        let mut doc = scim_user();
        if apply(&mut doc, &ops).is_ok()
            && let Ok(stored) = normalize(Kind::User, doc)
        {
            prop_assert_eq!(normalize(Kind::User, stored.clone()).ok(), Some(stored));
        }
    }
}
