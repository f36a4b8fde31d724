//! A small HTTP server for Postern's side services — the admin listener, and the demo's development provider
//! and echo upstream: an accept loop serving HTTP/1.1 (with upgrades, for WebSocket) and h2c, stopped
//! gracefully by a shutdown future.
//!
//! The demo servers never listen on anything but a loopback address: they check [`ensure_loopback`] before
//! they start, because they hand out tokens and echo headers to anyone.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::Body;

/// How long in-flight requests may take to finish once shutdown has begun.
const GRACE_PERIOD: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers; keeps idle half-open connections from
/// piling up in long test runs.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A demo server was asked to listen on an address other than loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to listen on {0}: the demo servers are for development only and bind loopback addresses \
     (127.0.0.1, ::1) only"
)]
pub struct NotLoopback(pub SocketAddr);

/// Succeeds only when `addr` is a loopback address (127.0.0.0/8 or ::1).
pub fn ensure_loopback(addr: SocketAddr) -> Result<(), NotLoopback> {
    if addr.ip().is_loopback() { Ok(()) } else { Err(NotLoopback(addr)) }
}

/// Serves `handler` on every connection accepted from `listener` until `shutdown` completes.
///
/// Each connection speaks HTTP/1.1 or HTTP/2 without TLS (h2c), whichever the client opens with;
/// HTTP/1.1 upgrades (WebSocket) are supported. When `shutdown` completes, the listener is closed,
/// idle connections are closed, and requests in flight get up to 10 seconds to finish; then this
/// function returns. Connections already upgraded (WebSocket) are not tracked here: their owner
/// stops them.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F, shutdown: impl Future<Output = ()> + Send + 'static)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually a transient per-connection failure (reset before accept) or running out
                    // of file descriptors; back off briefly rather than spinning.
                    tracing::warn!(%error, "demo server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let response = handler(request);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "demo server: connection ended with an error");
            }
        });
    }

    drop(listener);
    if tokio::time::timeout(GRACE_PERIOD, graceful.shutdown()).await.is_err() {
        tracing::warn!("demo server: requests still in flight after the grace period; leaving them");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(ensure_loopback(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).is_ok());
        assert!(ensure_loopback(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 80))).is_ok());
        assert!(ensure_loopback(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))).is_ok());
        assert!(ensure_loopback(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).is_err());
        assert!(ensure_loopback(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 0))).is_err());
        assert!(ensure_loopback(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).is_err());
    }

    #[tokio::test]
    async fn serves_until_shutdown_then_returns() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            |request: Request<Incoming>| async move { Response::new(crate::body::full(request.uri().path().to_owned())) },
            async move {
                let _ = stopped.await;
            },
        ));

        let client = Client::builder(TokioExecutor::new()).build_http::<crate::body::Body>();
        let response = client.get(format!("http://{addr}/hello").parse().unwrap()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"/hello");

        stop.send(()).unwrap();
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn speaks_h2c_and_lets_requests_in_flight_finish_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            |request: Request<Incoming>| async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Response::new(crate::body::full(format!("{:?}", request.version())))
            },
            async move {
                let _ = stopped.await;
            },
        ));

        let client = Client::builder(TokioExecutor::new()).http2_only(true).build_http::<crate::body::Body>();
        let in_flight = tokio::spawn(client.get(format!("http://{addr}/").parse().unwrap()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();

        let response = in_flight.await.unwrap().unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"HTTP/2.0");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}
