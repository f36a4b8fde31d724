//! Putting the parts together: bind the configured listeners, build the state, serve. Used by `postern serve`,
//! `postern demo` and the integration tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::{self, Listener};
use crate::state::{Shared, State};

/// Binds every listener of `config`.
pub async fn bind(config: &Config) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    for addr in &config.server.listen {
        let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listeners.push(Listener { tcp, tls: None });
    }
    if !config.server.tls_listen.is_empty() {
        let files = config.server.tls.as_ref().ok_or("tls_listen needs [server] tls")?;
        let acceptor = server::tls::acceptor(&files.cert, &files.key)?;
        for addr in &config.server.tls_listen {
            let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            listeners.push(Listener { tcp, tls: Some(acceptor.clone()) });
        }
    }
    Ok(listeners)
}

/// The addresses listeners are bound to.
pub fn addresses(listeners: &[Listener]) -> Vec<SocketAddr> {
    listeners.iter().filter_map(|l| l.tcp.local_addr().ok()).collect()
}

/// Serves `state` on `listeners` in a task until `shutdown`; returns the shared state (for reloads) and the task.
pub fn launch(
    state: State,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Shared, JoinHandle<()>) {
    let grace = state.config.server.shutdown_grace;
    // Discover the provider now, so the first sign-in does not wait for it; failures are retried on demand.
    let provider = state.provider.clone();
    tokio::spawn(async move {
        let _ = provider.discovered().await;
    });
    // Revocations, ended sessions and group changes made by another process (the admin CLI) reach this one
    // within 100 ms.
    state.directory.spawn_refresher(
        std::time::Duration::from_millis(100),
        state.config.session.idle_timeout,
        state.clock.clone(),
    );
    let health = state.health.clone();
    let shared: Shared = Arc::new(ArcSwap::from_pointee(state));
    let draining = async move {
        shutdown.await;
        // Readiness turns false first, so load balancers stop sending while requests in flight finish.
        health.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let task = tokio::spawn(server::run(listeners, shared.clone(), draining, grace));
    (shared, task)
}
