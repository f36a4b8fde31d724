//! `postern demo`: a development OpenID provider, an echo upstream and Postern, all on 127.0.0.1, with no
//! files and no setup. Never binds anything but a loopback address.

pub mod echo;
pub mod provider;

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::server::Listener;
use crate::state::{Shared, State};
use echo::EchoUpstream;
use provider::{DevProvider, DevProviderConfig};

/// The demo's policy, as shipped in `policies/demo.toml`.
pub const DEMO_POLICY: &str = include_str!("../../policies/demo.toml");

/// The upstream address written in the demo policy; replaced by wherever the echo upstream is bound.
pub const DEMO_POLICY_UPSTREAM: &str = "http://127.0.0.1:8081";

/// What to start.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Postern's address (loopback only).
    pub listen: SocketAddr,
    /// Where the echo upstream should listen, if free (else any free port).
    pub echo_listen: SocketAddr,
    /// Extra lines for the `[oidc]` table of the generated config (tests use this).
    pub oidc_extra: String,
    /// Extra top-level tables for the generated config (tests use this); `{provider_graph}` in it stands for the
    /// development provider's fake Microsoft Graph base URL.
    pub config_extra: String,
    /// The policy text; `DEMO_POLICY` by default. `http://127.0.0.1:8081` in it means the echo upstream.
    pub policy: String,
    /// The development provider's settings (multi-tenant mode, v1 tokens, registered credentials).
    pub provider: DevProviderConfig,
    /// Replaces the `client_secret = ...` line of `[oidc]` (tests of other credentials use this).
    pub credential: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            echo_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            oidc_extra: String::new(),
            config_extra: String::new(),
            policy: DEMO_POLICY.to_string(),
            provider: DevProviderConfig::default(),
            credential: None,
        }
    }
}

/// A running demo.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Postern's URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Postern's address.
    pub addr: SocketAddr,
    /// The development provider.
    pub provider: DevProvider,
    /// The echo upstream.
    pub echo: EchoUpstream,
    /// Postern's state (for reloads in tests).
    pub shared: Shared,
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Not a loopback address.
    #[error("the demo only listens on loopback addresses (127.0.0.1, ::1), not {0}")]
    NotLoopback(SocketAddr),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

async fn bind_loopback(addr: SocketAddr, fallback_to_any_port: bool) -> Result<TcpListener, DemoError> {
    if !addr.ip().is_loopback() {
        return Err(DemoError::NotLoopback(addr));
    }
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(_) if fallback_to_any_port => {
            TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await.map_err(|source| DemoError::Bind { addr, source })
        }
        Err(source) => Err(DemoError::Bind { addr, source }),
    }
}

async fn until(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

/// Starts the provider, the echo upstream and Postern; all stop when `stop` turns true.
pub async fn start(options: DemoOptions, stop: watch::Receiver<bool>) -> Result<Demo, DemoError> {
    let postern_listener = bind_loopback(options.listen, false).await?;
    let addr = postern_listener.local_addr().map_err(|e| DemoError::Other(e.to_string()))?;
    let echo_listener = bind_loopback(options.echo_listen, true).await?;
    let echo =
        EchoUpstream::start(echo_listener, until(stop.clone())).await.map_err(|e| DemoError::NotLoopback(e.0))?;
    let provider_listener = bind_loopback(SocketAddr::new(options.listen.ip(), 0), true).await?;
    let provider = DevProvider::start(provider_listener, options.provider.clone(), until(stop.clone()))
        .await
        .map_err(|e| DemoError::Other(e.to_string()))?;

    let url = format!("http://{addr}");
    let secret = provider.config().client_secret.clone();
    let session_secret = crate::secret::random_token(48);
    let credential =
        options.credential.clone().unwrap_or_else(|| "client_secret = { env = \"DEMO_CLIENT_SECRET\" }".to_string());
    // Multi-tenant mode needs an allow-list; the provider's own tenant, unless the caller writes one.
    let tenants = if provider.config().multi_tenant && !options.oidc_extra.contains("allowed_tenants") {
        format!("allowed_tenants = [\"{}\"]", provider.config().tenant_id)
    } else {
        String::new()
    };
    // The fake Microsoft Graph resolves group overage (dave, in 250 groups), unless the caller configures Graph.
    let graph = if options.config_extra.contains("[graph]") {
        String::new()
    } else {
        format!("[graph]\nbase_url = \"{}\"\n", provider.graph_base_url())
    };
    let text = format!(
        r#"
[server]
public_url = "{url}"
listen = ["{addr}"]
shutdown_grace = "5s"

[oidc]
issuer = "{issuer}"
discovery_url = "{discovery_url}"
client_id = "{client_id}"
{credential}
jwks_refetch_interval = "1s"
{tenants}
{oidc_extra}

[session]
secret = {{ env = "DEMO_SESSION_SECRET" }}

[bearer]
audiences = ["{audience}"]

{graph}
{config_extra}
"#,
        issuer = provider.issuer(),
        discovery_url = provider.discovery_url(),
        client_id = provider.config().client_id,
        audience = provider.config().access_token_audience,
        oidc_extra = options.oidc_extra,
        config_extra = options.config_extra.replace("{provider_graph}", &provider.graph_base_url()),
    );
    let env = move |name: &str| match name {
        "DEMO_CLIENT_SECRET" => Some(secret.clone()),
        "DEMO_SESSION_SECRET" => Some(session_secret.clone()),
        _ => None,
    };
    let (mut config, _) = crate::config::from_text(Path::new("<demo>/postern.toml"), &text, &env)
        .map_err(|e| DemoError::Other(e.to_string()))?;
    let pem = crate::assertion::generate_key_pem().map_err(|e| DemoError::Other(e.to_string()))?;
    config.assertion.signing_key = Some(crate::secret::Secret::new(pem));
    let policy_text = options.policy.replace(DEMO_POLICY_UPSTREAM, &echo.url());
    let (policy, _) = crate::policy::load_sources(&[(Path::new("policies/demo.toml").to_path_buf(), policy_text)])
        .map_err(|e| DemoError::Other(e.to_string()))?;
    // In memory, unless the extra config names a Redis store (the load benchmark's Redis case).
    let store = match &config.store {
        crate::store::StoreConfig::Redis(_) => {
            State::open_store(&mut config).map_err(|e| DemoError::Other(e.to_string()))?
        }
        _ => State::memory_store(),
    };
    let state = State::build(config, policy, store, Clock::system()).map_err(|e| DemoError::Other(e.to_string()))?;
    let (shared, _task) = crate::app::launch(state, vec![Listener { tcp: postern_listener, tls: None }], until(stop));
    Ok(Demo { url, addr, provider, echo, shared })
}
