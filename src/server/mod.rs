//! Listeners: accept TCP (and TLS) connections, serve HTTP/1.1 and HTTP/2 on them with upgrades, and shut
//! down gracefully — stop accepting, let requests in flight finish within the grace period. Tests bind port 0
//! and pass their own shutdown future.
//!
//! The runtime layout (tokio's multi-thread runtime, one accept loop per listener) is decided here only.

pub mod simple;
pub mod tls;

use std::future::Future;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::gateway::{self, Conn};
use crate::state::Shared;

/// A bound listener, plain or TLS.
pub struct Listener {
    /// The socket.
    pub tcp: TcpListener,
    /// TLS, for HTTPS listeners.
    pub tls: Option<TlsAcceptor>,
}

/// Time a client gets to send its request headers; a slow client cannot hold a connection forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listeners` until `shutdown` completes, then waits up to `grace` for requests in flight.
pub async fn run(listeners: Vec<Listener>, shared: Shared, shutdown: impl Future<Output = ()> + Send, grace: Duration) {
    let graceful = std::sync::Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    for listener in listeners {
        let shared = shared.clone();
        let mut stop = stop_rx.clone();
        let graceful = graceful.clone();
        loops.push(tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = listener.tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = stop.changed() => break,
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let builder = builder.clone();
                let tls = listener.tls.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let conn = Conn { peer, tls: tls.is_some() };
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(gateway::handle(&shared, conn, req).await) }
                    });
                    let result = match tls {
                        Some(acceptor) => {
                            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => {
                                    let connection =
                                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                                    watcher.watch(connection.into_owned()).await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => return,
                            }
                        }
                        None => {
                            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    let Ok(graceful) = std::sync::Arc::try_unwrap(graceful) else {
        return;
    };
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all requests finished"),
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period; closing them"
        ),
    }
}
