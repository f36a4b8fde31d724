//! The upstream connection an HTTP/1 client connection keeps for itself.
//!
//! An HTTP/1 client sends one request at a time on a connection, so the upstream connection that served its
//! last request is free for its next one: reusing it skips the shared pool's checkout, its locks and its
//! channel between tasks (about 2 µs and a cross-task wake-up per request, a tenth of Postern's throughput).
//! It is opened on first use, replaced when the request goes to another upstream or the upstream closed
//! it, and closed with the client's connection. HTTP/2 clients, whose requests run side by side, and
//! protocol upgrades use the pool.

use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

/// How long a kept connection may take to finish its previous exchange before a new one is opened instead.
const READY_WAIT: Duration = Duration::from_secs(1);

/// The connector the pool uses too: plain TCP or TLS, by the upstream's scheme.
pub(super) type Connector = HttpsConnector<HttpConnector>;

/// One client connection's upstream connection, if it has one yet.
#[derive(Debug, Default)]
pub struct PinnedUpstream {
    slot: Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    /// The upstream URL it was opened for.
    upstream: url::Url,
    sender: http1::SendRequest<Limited<Incoming>>,
}

/// Why a request did not go out on the pinned connection.
pub(super) enum PinnedError {
    /// It was never sent: the caller may send it another way.
    NotSent(Box<Request<Limited<Incoming>>>),
    /// No connection could be opened.
    Connect(String),
    /// Sent, and then the exchange failed.
    Http(hyper::Error),
}

impl PinnedUpstream {
    /// Sends `req`, whose URI is absolute, to `upstream` on this client connection's upstream connection,
    /// opening one when there is none for that upstream or it can no longer be used.
    pub(super) async fn send(
        &self,
        connector: &Connector,
        upstream: &url::Url,
        mut req: Request<Limited<Incoming>>,
    ) -> Result<Response<Incoming>, PinnedError> {
        let absolute = req.uri().clone();
        // Never a guess: a URI without its origin form goes through the pool as it is.
        let Some(origin) = origin_form(&absolute) else { return Err(PinnedError::NotSent(Box::new(req))) };
        let reusable = match self.take(upstream) {
            Some(mut held) => match tokio::time::timeout(READY_WAIT, held.sender.ready()).await {
                Ok(Ok(())) => Some(held),
                _ => None,
            },
            None => None,
        };
        let Held { upstream, mut sender } = match reusable {
            Some(held) => held,
            None => Held { upstream: upstream.clone(), sender: connect(connector, &absolute).await? },
        };
        // On its own connection the request goes in origin form (`/path?query`); Host is already set.
        *req.uri_mut() = origin;
        match sender.try_send_request(req).await {
            Ok(response) => {
                self.put(Held { upstream, sender });
                Ok(response)
            }
            Err(mut e) => match e.take_message() {
                Some(mut req) => {
                    tracing::debug!(error = %e.error(), "the kept upstream connection closed before the request went out");
                    *req.uri_mut() = absolute;
                    Err(PinnedError::NotSent(Box::new(req)))
                }
                None => Err(PinnedError::Http(e.into_error())),
            },
        }
    }

    /// The kept connection, if it is to `upstream` (one to another upstream is dropped, which closes it).
    fn take(&self, upstream: &url::Url) -> Option<Held> {
        let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take().filter(|held| held.upstream == *upstream)
    }

    /// Keeps `held` for the next request; its URL is cloned only when a connection is opened.
    fn put(&self, held: Held) {
        *self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(held);
    }
}

async fn connect(connector: &Connector, uri: &Uri) -> Result<http1::SendRequest<Limited<Incoming>>, PinnedError> {
    let mut connector = connector.clone();
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| PinnedError::Connect(super::error_chain(&*e)))?;
    let io = connector.call(uri.clone()).await.map_err(|e| PinnedError::Connect(super::error_chain(&*e)))?;
    let (sender, connection) = http1::Builder::new().handshake(io).await.map_err(PinnedError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "an upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// `/path?query` of an absolute URI.
fn origin_form(uri: &Uri) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.scheme = None;
    parts.authority = None;
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_keeps_path_and_query_only() {
        let uri: Uri = "https://gitlab.internal:8443/base/a?x=1".parse().unwrap();
        assert_eq!(origin_form(&uri).unwrap().to_string(), "/base/a?x=1");
        let uri: Uri = "http://10.0.0.5".parse().unwrap();
        assert_eq!(origin_form(&uri).unwrap().to_string(), "/");
    }
}
