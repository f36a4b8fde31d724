//! Shared fixtures: the HTTP client, a running demo (provider + echo upstream + Postern on ephemeral loopback
//! ports), the sign-in flow step by step, and temporary config directories for the config-file scenarios.

pub mod client;
pub mod files;
pub mod from_files;

use std::ops::Deref;
use std::path::PathBuf;

use http::StatusCode;
use postern::demo::provider::{DevUser, find_user};
use postern::demo::{Demo, DemoOptions};
use tokio::sync::watch;
use url::Url;

pub use client::{Client, Resp};

/// The login cookie prefix over plain HTTP.
pub const LOGIN_COOKIE_PREFIX: &str = "postern-login-";

/// The session cookie's name over plain HTTP.
pub const SESSION_COOKIE: &str = "postern";

/// A file under `tests/it/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures").join(name)
}

/// One of the provider's users.
pub fn user(name: &str) -> &'static DevUser {
    find_user(name).unwrap_or_else(|| panic!("the provider has no user {name}"))
}

/// Demo options with every server on an ephemeral loopback port.
pub fn demo_options() -> DemoOptions {
    DemoOptions {
        listen: "127.0.0.1:0".parse().expect("an address"),
        echo_listen: "127.0.0.1:0".parse().expect("an address"),
        ..Default::default()
    }
}

/// A running demo; everything stops when it is dropped.
pub struct TestDemo {
    demo: Demo,
    _stop: watch::Sender<bool>,
}

impl Deref for TestDemo {
    type Target = Demo;

    fn deref(&self) -> &Demo {
        &self.demo
    }
}

impl TestDemo {
    /// A URL on Postern.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.demo.url)
    }
}

/// Starts the demo with its own policy.
pub async fn start_demo() -> TestDemo {
    start_demo_with(demo_options()).await
}

/// Starts the demo with `options` (whose addresses should be ephemeral: see [`demo_options`]).
pub async fn start_demo_with(options: DemoOptions) -> TestDemo {
    let (stop, stopped) = watch::channel(false);
    let demo = postern::demo::start(options, stopped).await.expect("the demo starts");
    TestDemo { demo, _stop: stop }
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).expect("an absolute URL").query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Form-encodes `value` for a query string.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Step 1 of a sign-in: a browser asks Postern to start one (`/oauth2/start?rd=`); Postern answers with a
/// redirect to the provider's `/authorize` and sets a login cookie. Returns the authorize URL.
pub async fn begin_sign_in(client: &Client, postern: &str, rd: &str) -> String {
    let r = client.get(format!("{postern}/oauth2/start?rd={}", encode(rd))).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "start: {}", r.text());
    assert!(
        !r.sets_cookies_starting_with(LOGIN_COOKIE_PREFIX).is_empty()
            || !r.sets_cookies_starting_with("__Host-postern-login-").is_empty(),
        "starting a sign-in sets a login cookie: {:?}",
        r.headers
    );
    let location = r.location();
    assert!(location.contains("/authorize?"), "{location}");
    location
}

/// Step 2: the provider signs `user` in and redirects back to Postern's callback. Returns the callback URL.
pub async fn authorize(client: &Client, authorize_url: &str, user: &str) -> String {
    let r = client.get(format!("{authorize_url}&login_hint={user}")).browser().send().await;
    assert_eq!(r.status, StatusCode::FOUND, "authorize: {}", r.text());
    let location = r.location();
    assert!(location.contains("/oauth2/callback?"), "{location}");
    location
}

/// Step 3: the browser returns to Postern's callback with its cookies.
pub async fn callback(client: &Client, callback_url: &str) -> Resp {
    client.get(callback_url).browser().send().await
}

/// The whole flow for `user`, returning where to `rd` and the callback's answer.
pub async fn sign_in_flow(client: &Client, postern: &str, rd: &str, user: &str) -> Resp {
    let authorize_url = begin_sign_in(client, postern, rd).await;
    let callback_url = authorize(client, &authorize_url, user).await;
    callback(client, &callback_url).await
}

/// Asserts that a callback answer completed the sign-in: a redirect with a session cookie.
pub fn assert_signed_in(r: &Resp, session_cookie: &str) {
    assert_eq!(r.status, StatusCode::FOUND, "callback: {}", r.text());
    assert!(
        r.sets_cookie(session_cookie).is_some(),
        "the callback sets the session cookie {session_cookie}: {:?}",
        r.headers
    );
}

/// Asserts that a callback answer is a failure page and created no session.
pub fn assert_sign_in_failed(r: &Resp) {
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "a failed sign-in ends on an error page, not {}: {}",
        r.status,
        r.text()
    );
    assert!(r.header("location").is_none(), "a failed sign-in does not redirect");
    for name in [SESSION_COOKIE, "__Host-postern"] {
        assert!(r.sets_cookie(name).is_none(), "a failed sign-in sets no session cookie: {:?}", r.headers);
    }
}

/// A browser signed in as `user` on `demo`.
pub async fn sign_in(demo: &Demo, user: &str) -> Client {
    let client = Client::new();
    let r = sign_in_flow(&client, &demo.url, "/", user).await;
    assert_signed_in(&r, SESSION_COOKIE);
    assert_eq!(r.location(), "/");
    assert!(client.cookie(SESSION_COOKIE).is_some());
    client
}

/// A browser signed in as `user` on the Postern at `url` (any Postern: the demo, or one read from files).
pub async fn sign_in_at(url: &str, user: &str) -> Client {
    let client = Client::new();
    let r = sign_in_flow(&client, url, "/", user).await;
    assert_signed_in(&r, SESSION_COOKIE);
    assert_eq!(r.location(), "/");
    client
}

/// A client-credentials token from `provider`'s `/token`, as a service would get one.
pub async fn client_credentials_token(provider: &postern::demo::provider::DevProvider) -> String {
    use base64::Engine as _;
    let config = provider.config();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", config.client_id, config.client_secret));
    let r = Client::new()
        .post(format!("{}/token", provider.issuer()))
        .header("authorization", &format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&scope={}", encode("api://postern/.default")))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["access_token"].as_str().expect("an access token").to_string()
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

/// The groups of the demo policy, for policies written by tests.
pub const DEMO_GROUPS: &str = r#"
[groups]
eng = "5b1c3d2e-0000-0000-0000-000000000001"
admins = "9e2a4f6b-0000-0000-0000-000000000002"
"#;
