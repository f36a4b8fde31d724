//! A small HTTP client for the tests: one request at a time, redirects never followed (the tests look at each
//! hop), a cookie jar keyed by name that honours `Set-Cookie` and removal (`Max-Age=0`), and HTTPS that trusts
//! the fixture CA (`tests/it/fixtures/ca.pem`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cookie::Cookie;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

/// Errors inside request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body.
pub type ReqBody = BoxBody<Bytes, BoxError>;

/// What a browser sends when it navigates.
pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The client. Cloning shares the connection pool and the cookie jar.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, ReqBody>,
    jar: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// The rustls client config: trusts only the fixture CA. (hyper-rustls sets ALPN from the enabled versions.)
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let ca = super::fixture("ca.pem");
    for cert in CertificateDer::pem_file_iter(&ca).expect("the fixture CA exists") {
        roots.add(cert.expect("the fixture CA is PEM")).expect("the fixture CA is a certificate");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Client {
    /// HTTP/1.1 only (over HTTPS it offers ALPN `http/1.1` alone).
    pub fn new() -> Client {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .build();
        Client::with_connector(https)
    }

    /// Offers HTTP/2 over HTTPS (ALPN `h2`, then `http/1.1`); plain HTTP stays HTTP/1.1.
    pub fn http2() -> Client {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Client::with_connector(https)
    }

    fn with_connector(https: HttpsConnector<HttpConnector>) -> Client {
        let http = HyperClient::builder(TokioExecutor::new()).build(https);
        Client { http, jar: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// A GET request.
    pub fn get(&self, url: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::GET, url)
    }

    /// A POST request.
    pub fn post(&self, url: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::POST, url)
    }

    /// Any request.
    pub fn request(&self, method: Method, url: impl Into<String>) -> RequestBuilder<'_> {
        RequestBuilder { client: self, method, url: url.into(), headers: Vec::new(), body: None }
    }

    /// The value of the cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar().get(name).cloned()
    }

    /// Puts a cookie in the jar, as if a server had set it.
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar().insert(name.to_string(), value.to_string());
    }

    /// Names of the cookies in the jar.
    pub fn cookie_names(&self) -> Vec<String> {
        self.jar().keys().cloned().collect()
    }

    /// Names of the cookies in the jar that start with `prefix`.
    pub fn cookies_starting_with(&self, prefix: &str) -> Vec<String> {
        self.cookie_names().into_iter().filter(|n| n.starts_with(prefix)).collect()
    }

    /// A new client (own pool) with a copy of this client's cookies: a second browser, or an attacker who
    /// copied them.
    pub fn copy_with_cookies(&self) -> Client {
        let other = Client::new();
        *other.jar() = self.jar().clone();
        other
    }

    fn jar(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.jar.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cookie_header(&self) -> Option<String> {
        let jar = self.jar();
        (!jar.is_empty()).then(|| jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }

    fn store_cookies(&self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Some(cookie) = value.to_str().ok().and_then(|v| Cookie::parse(v.to_string()).ok()) else {
                continue;
            };
            if is_removal(&cookie) {
                self.jar().remove(cookie.name());
            } else {
                self.jar().insert(cookie.name().to_string(), cookie.value().to_string());
            }
        }
    }
}

fn is_removal(cookie: &Cookie<'_>) -> bool {
    cookie.max_age().is_some_and(|age| age <= cookie::time::Duration::ZERO)
}

/// One request being built.
pub struct RequestBuilder<'a> {
    client: &'a Client,
    method: Method,
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<ReqBody>,
}

impl RequestBuilder<'_> {
    /// Adds a header (appended: repeated names are kept).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("a valid header name"),
            HeaderValue::from_str(value).expect("a valid header value"),
        ));
        self
    }

    /// Behaves like a browser navigating: `Accept: text/html,...`.
    pub fn browser(self) -> Self {
        self.header("accept", BROWSER_ACCEPT)
    }

    /// Behaves like an API client: `Accept: application/json`.
    pub fn api(self) -> Self {
        self.header("accept", "application/json")
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        let bytes: Bytes = body.into();
        self.body = Some(http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed());
        self
    }

    /// A streaming request body.
    pub fn stream(mut self, body: ReqBody) -> Self {
        self.body = Some(body);
        self
    }

    /// Sends the request with the jar's cookies and returns the whole answer; `Set-Cookie` updates the jar.
    pub async fn send(self) -> Resp {
        let response = self.send_streaming().await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the response body can be read").to_bytes();
        Resp { status: parts.status, version: parts.version, headers: parts.headers, body }
    }

    /// Sends the request and returns the answer with its body unread (for large downloads).
    pub async fn send_streaming(self) -> http::Response<hyper::body::Incoming> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.url)
            .body(self.body.unwrap_or_else(|| http_body_util::Empty::new().map_err(|never| match never {}).boxed()))
            .expect("a valid request");
        let has_cookie_header = self.headers.iter().any(|(n, _)| n == header::COOKIE);
        for (name, value) in self.headers {
            request.headers_mut().append(name, value);
        }
        if !has_cookie_header && let Some(cookies) = self.client.cookie_header() {
            request
                .headers_mut()
                .insert(header::COOKIE, HeaderValue::from_str(&cookies).expect("cookie values are header text"));
        }
        let url = self.url;
        let response =
            self.client.http.request(request).await.unwrap_or_else(|e| panic!("request to {url} failed: {e:?}"));
        self.client.store_cookies(response.headers());
        response
    }
}

/// A whole answer.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// HTTP version the answer came in.
    pub version: Version,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Location`, which must be there.
    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location in a {} answer: {}", self.status, self.text()))
            .to_string()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, which it must be.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the {} answer is not JSON ({e}): {}", self.status, self.text()))
    }

    /// Every cookie the answer sets or removes.
    pub fn set_cookies(&self) -> Vec<Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_string()).ok())
            .collect()
    }

    /// The cookie `name` the answer sets (not removes), if any.
    pub fn sets_cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.set_cookies().into_iter().find(|c| c.name() == name && !is_removal(c))
    }

    /// True when the answer removes the cookie `name`.
    pub fn removes_cookie(&self, name: &str) -> bool {
        self.set_cookies().iter().any(|c| c.name() == name && is_removal(c))
    }

    /// Names of the cookies the answer sets (not removes) that start with `prefix`.
    pub fn sets_cookies_starting_with(&self, prefix: &str) -> Vec<String> {
        self.set_cookies()
            .into_iter()
            .filter(|c| c.name().starts_with(prefix) && !is_removal(c))
            .map(|c| c.name().to_string())
            .collect()
    }

    /// What the echo upstream received, when this is the echo's JSON answer.
    pub fn upstream(&self) -> Echoed {
        assert_eq!(self.status, StatusCode::OK, "expected the echo upstream's answer: {}", self.text());
        let json = self.json();
        let headers = json["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("not the echo's answer: {json}"))
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                    pair[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Echoed { json, headers }
    }
}

/// The request as the echo upstream saw it.
#[derive(Debug)]
pub struct Echoed {
    /// The echo's whole answer.
    pub json: Value,
    /// The headers it received, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Echoed {
    /// Every value received under `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The one value received under `name`; panics when it came more than once.
    pub fn get(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "the upstream received {name} {} times: {all:?}", all.len());
        all.first().copied()
    }

    /// The path and query the upstream received.
    pub fn uri(&self) -> &str {
        self.json["uri"].as_str().unwrap_or_default()
    }
}
