//! The client Postern uses to talk to identity providers (discovery, keys, token endpoint): rustls with the
//! system's roots plus an optional extra CA file, a timeout on every call, and a cap on response size, so
//! that a misbehaving provider can slow a sign-in down but never hang or exhaust Postern.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use url::Url;

/// Largest response accepted from a provider.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Why a call to a provider failed. The messages never carry secrets or tokens.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connection refused, TLS failure, reset.
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The URL, without query.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// No answer in time.
    #[error("{url} did not answer within {secs} s")]
    Timeout {
        /// The URL, without query.
        url: String,
        /// The timeout.
        secs: u64,
    },
    /// The answer was too large or the stream broke.
    #[error("{url}: bad response body: {detail}")]
    Body {
        /// The URL, without query.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A non-success status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL, without query.
        url: String,
        /// The status.
        status: StatusCode,
        /// The body, for OAuth error responses.
        body: Bytes,
    },
    /// The body was not the JSON expected.
    #[error("{url} answered with something that is not the expected JSON: {detail}")]
    Json {
        /// The URL, without query.
        url: String,
        /// The parser's message.
        detail: String,
    },
    /// A trust root could not be loaded.
    #[error("cannot load trusted certificates: {0}")]
    Roots(String),
}

/// A pooled HTTPS client for provider calls.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

/// An HTTP response, read in full (and capped).
#[derive(Debug)]
pub struct FetchedResponse {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: Bytes,
}

impl HttpClient {
    /// A client trusting the system's roots and, when given, the certificates in `extra_ca` (PEM).
    pub fn new(extra_ca: Option<&Path>, timeout: Duration) -> Result<HttpClient, FetchError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A broken system certificate is skipped, not fatal: the others still work.
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| FetchError::Roots(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(FetchError::Roots(format!("{}: no PEM certificates found", path.display())));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| FetchError::Roots(format!("{}: {e}", path.display())))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Roots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpClient { client, timeout })
    }

    /// GET `url` and parse the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url) -> Result<T, FetchError> {
        let response = self.send(Method::GET, url, None, None).await?;
        parse_json(url, response)
    }

    /// POST a form to `url`; `basic` is an `Authorization` header value. Any status is returned, so that OAuth
    /// error bodies can be read.
    pub async fn post_form(
        &self,
        url: &Url,
        form: &[(&str, &str)],
        authorization: Option<HeaderValue>,
    ) -> Result<FetchedResponse, FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        self.send(Method::POST, url, Some(Bytes::from(body)), authorization).await
    }

    /// GETs JSON with an `Authorization` header (never logged).
    pub async fn get_json_authorized<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        authorization: HeaderValue,
    ) -> Result<T, FetchError> {
        let response = self.send(Method::GET, url, None, Some(authorization)).await?;
        parse_json(url, response)
    }

    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<Bytes>,
        authorization: Option<HeaderValue>,
    ) -> Result<FetchedResponse, FetchError> {
        let shown = redacted_url(url);
        let mut builder = Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("postern/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| FetchError::Unreachable { url: shown.clone(), detail: e.to_string() })?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Unreachable { url: shown.clone(), detail: error_chain(&e) })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| FetchError::Body { url: shown.clone(), detail: e.to_string() })?
                .to_bytes();
            Ok(FetchedResponse { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout { url: shown, secs: self.timeout.as_secs() }),
        }
    }
}

/// Parses a successful JSON response.
pub fn parse_json<T: serde::de::DeserializeOwned>(url: &Url, response: FetchedResponse) -> Result<T, FetchError> {
    if !response.status.is_success() {
        return Err(FetchError::Status { url: redacted_url(url), status: response.status, body: response.body });
    }
    serde_json::from_slice(&response.body)
        .map_err(|e| FetchError::Json { url: redacted_url(url), detail: e.to_string() })
}

/// The URL without its query string, which may hold a secret.
fn redacted_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    u.to_string()
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
