//! Forwarding an allowed request to its upstream: a pooled client, header rules (`headers`), bodies streamed
//! both ways without buffering, protocol upgrades (WebSocket) spliced through, and failures mapped to 502
//! (cannot connect, broken answer) and 504 (no answer in time).

pub mod headers;
pub mod pinned;

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{Body, boxed};
use crate::policy::Route;

pub use pinned::PinnedUpstream;
use pinned::{Connector, PinnedError};

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream could not be reached (502).
    #[error("cannot connect to the upstream: {0}")]
    Connect(String),
    /// The upstream did not answer in time (504).
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// The upstream's answer was broken (502).
    #[error("the upstream's answer was broken: {0}")]
    Protocol(String),
    /// The upstream URL could not be built.
    #[error("bad upstream URL: {0}")]
    BadUrl(String),
    /// The client sent more body than the route allows (413).
    #[error("the request body is larger than the {0} bytes this route accepts")]
    BodyTooLarge(u64),
}

impl UpstreamError {
    /// 502 or 504.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Reason code.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "upstream-unreachable",
            UpstreamError::Timeout(_) => "upstream-timeout",
            UpstreamError::Protocol(_) => "upstream-bad-response",
            UpstreamError::BadUrl(_) => "upstream-bad-url",
            UpstreamError::BodyTooLarge(_) => "body-too-large",
        }
    }
}

/// What the gateway decided about a request, for the forwarder.
#[derive(Debug)]
pub struct Forward<'a> {
    /// The route.
    pub route: &'a Route,
    /// Normalised path plus the original query.
    pub path_and_query: &'a str,
    /// The client's address, as header text (made once per connection).
    pub client_ip: &'a HeaderValue,
    /// True when the client is a trusted proxy, whose `X-Forwarded-*` are kept and extended.
    pub trusted_peer: bool,
    /// `http` or `https`: how the client reached Postern.
    pub proto: &'static str,
    /// Identity headers to add (after removing whatever the client sent under those names).
    pub identity_headers: Option<crate::identity_headers::Headers>,
    /// Remove `Authorization` (a bearer token meant for Postern is not the upstream's business).
    pub strip_authorization: bool,
    /// Time for the upstream to start answering.
    pub timeout: Duration,
    /// Largest request body in bytes; a body that grows past it is cut off and answered 413.
    pub max_body: u64,
    /// The request id, passed on as `X-Request-Id`.
    pub request_id: &'a str,
    /// The client connection's own upstream connection, for a client that speaks HTTP/1 (see `pinned`).
    pub pinned: Option<&'a PinnedUpstream>,
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the current thread as server worker `index` (from 1), so that it uses a connection pool of its own.
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The pooled client for all upstreams: one pool per server worker thread (index 0 for any other thread), so
/// a connection is checked out and driven on the thread that uses it.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    clients: std::sync::Arc<Vec<Client<Connector, Limited<Incoming>>>>,
    connector: Connector,
}

impl UpstreamClient {
    /// A client that connects within `connect_timeout` and keeps at most `max_idle_per_host` idle connections
    /// per upstream for `idle_timeout` (in all: each worker's pool keeps its share, at least one), trusting the
    /// system's roots for HTTPS upstreams.
    pub fn new(
        connect_timeout: Duration,
        max_idle_per_host: usize,
        idle_timeout: Duration,
    ) -> Result<UpstreamClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let pools = workers + 1;
        let max_idle_per_pool = max_idle_per_host.div_ceil(workers);
        let clients = (0..pools)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(idle_timeout)
                    .pool_max_idle_per_host(max_idle_per_pool)
                    .set_host(false)
                    .build(https.clone())
            })
            .collect();
        Ok(UpstreamClient { clients: std::sync::Arc::new(clients), connector: https })
    }

    fn client(&self) -> &Client<Connector, Limited<Incoming>> {
        let i = WORKER.with(std::cell::Cell::get);
        &self.clients[i % self.clients.len()]
    }

    /// Sends `req` to the route's upstream and returns its answer, streaming.
    pub async fn forward(&self, mut req: Request<Incoming>, f: Forward<'_>) -> Result<Response<Body>, UpstreamError> {
        let uri = upstream_uri(&f.route.upstream, f.path_and_query)?;
        let wants_upgrade = headers::upgrade_requested(req.headers());
        let upgrade_protocol = req.headers().get(header::UPGRADE).cloned();
        let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));

        // The authority the request was routed by: the URI's (absolute-form, HTTP/2 :authority), else Host. RFC 9112
        // §3.2.2: with an absolute-form target, Host is ignored and replaced — else a request could be judged for
        // one host and delivered to another.
        let original_host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| req.headers().get(header::HOST).cloned());

        let h = req.headers_mut();
        headers::remove_hop_by_hop(h);
        headers::remove_identity_headers(h);
        if f.strip_authorization {
            h.remove(header::AUTHORIZATION);
        }
        forwarded_headers(h, &f, original_host.as_ref());
        match (&original_host, f.route.preserve_host) {
            (Some(host), true) => {
                h.insert(header::HOST, host.clone());
            }
            _ => {
                if let Some(authority) = uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) {
                    h.insert(header::HOST, authority);
                }
            }
        }
        // Whatever the client sent under a name Postern sets is replaced, never merged.
        let identity = f.identity_headers.as_deref().unwrap_or_default();
        for (name, _) in identity {
            h.remove(name);
        }
        for (name, value) in identity {
            h.append(name.clone(), value.clone());
        }
        if let Ok(id) = HeaderValue::from_str(f.request_id) {
            h.insert(headers::X_REQUEST_ID, id);
        }
        if let (true, Some(protocol)) = (wants_upgrade, upgrade_protocol) {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, protocol);
        }
        *req.uri_mut() = uri;
        // The pool speaks HTTP/1.1 to upstreams whatever the client spoke to us.
        *req.version_mut() = Version::HTTP_11;
        let max_body = f.max_body;
        let req = req.map(|body| Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)));

        // An upgraded connection is the client's for good: upgrades go through the pool.
        let pinned = f.pinned.filter(|_| !wants_upgrade);
        let mut response =
            match tokio::time::timeout(f.timeout, self.send(req, &f.route.upstream, pinned, max_body)).await {
                Err(_) => return Err(UpstreamError::Timeout(f.timeout)),
                Ok(result) => result?,
            };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return Err(UpstreamError::Protocol("101 without an upgrade request".into()));
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade did not complete"),
                }
            });
            return Ok(response.map(boxed));
        }
        headers::remove_hop_by_hop(response.headers_mut());
        Ok(response.map(boxed))
    }
}

impl UpstreamClient {
    /// Sends on the client connection's pinned upstream connection when there is one, else (or when that
    /// connection closed before the request went out) through the pool.
    async fn send(
        &self,
        req: Request<Limited<Incoming>>,
        upstream: &url::Url,
        pinned: Option<&PinnedUpstream>,
        max_body: u64,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let req = match pinned {
            None => req,
            Some(pinned) => match pinned.send(&self.connector, upstream, req).await {
                Ok(response) => return Ok(response),
                Err(PinnedError::NotSent(req)) => *req,
                Err(PinnedError::Connect(e)) => return Err(UpstreamError::Connect(e)),
                Err(PinnedError::Http(e)) if caused_by_length_limit(&e) => {
                    return Err(UpstreamError::BodyTooLarge(max_body));
                }
                Err(PinnedError::Http(e)) => return Err(UpstreamError::Protocol(error_chain(&e))),
            },
        };
        match self.client().request(req).await {
            Ok(response) => Ok(response),
            Err(e) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Err(e) if caused_by_length_limit(&e) => Err(UpstreamError::BodyTooLarge(max_body)),
            Err(e) => Err(UpstreamError::Protocol(error_chain(&e))),
        }
    }
}

fn forwarded_headers(h: &mut http::HeaderMap, f: &Forward<'_>, original_host: Option<&HeaderValue>) {
    let (xff, xfp, xfh) = (headers::X_FORWARDED_FOR, headers::X_FORWARDED_PROTO, headers::X_FORWARDED_HOST);
    if f.trusted_peer {
        let chain = h.get_all(&xff).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ");
        let value = match (chain.is_empty(), f.client_ip.to_str()) {
            (true, _) => Some(f.client_ip.clone()),
            (false, Ok(client)) => HeaderValue::from_str(&format!("{chain}, {client}")).ok(),
            (false, Err(_)) => None,
        };
        if let Some(v) = value {
            h.insert(xff, v);
        }
        if !h.contains_key(&xfp) {
            h.insert(xfp, HeaderValue::from_static(f.proto));
        }
        if let (false, Some(host)) = (h.contains_key(&xfh), original_host) {
            h.insert(xfh, host.clone());
        }
    } else {
        // From an untrusted client these headers are claims anyone can make; replace them.
        h.remove(header::FORWARDED);
        h.insert(xff, f.client_ip.clone());
        h.insert(xfp, HeaderValue::from_static(f.proto));
        match original_host {
            Some(host) => {
                h.insert(xfh, host.clone());
            }
            None => {
                h.remove(xfh);
            }
        }
    }
}

/// The upstream's URI for a request: the upstream's scheme and authority, its base path joined with the
/// request's normalised path, and the query.
pub fn upstream_uri(upstream: &url::Url, path_and_query: &str) -> Result<Uri, UpstreamError> {
    use url::Position;
    let scheme = upstream.scheme();
    // Host and port, never user information.
    let authority = &upstream[Position::BeforeHost..Position::AfterPort];
    let base = upstream.path().trim_end_matches('/');
    let mut text = String::with_capacity(scheme.len() + 3 + authority.len() + base.len() + path_and_query.len());
    for part in [scheme, "://", authority, base, path_and_query] {
        text.push_str(part);
    }
    // From a String, the URI keeps the text it was given instead of copying it.
    Uri::try_from(text).map_err(|e| UpstreamError::BadUrl(e.to_string()))
}

/// True when a client error came from the request body growing past its limit.
fn caused_by_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.is::<LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_join_base_path_and_request() {
        let u = url::Url::parse("http://10.0.0.5:8080/base/").unwrap();
        assert_eq!(upstream_uri(&u, "/a/b?x=1").unwrap().to_string(), "http://10.0.0.5:8080/base/a/b?x=1");
        let u = url::Url::parse("https://gitlab.internal").unwrap();
        assert_eq!(upstream_uri(&u, "/").unwrap().to_string(), "https://gitlab.internal/");
        let u = url::Url::parse("https://user:secret@[::1]:8443/").unwrap();
        assert_eq!(upstream_uri(&u, "/x").unwrap().to_string(), "https://[::1]:8443/x", "no user information");
    }
}
