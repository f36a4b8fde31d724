//! [`State`]: everything a request needs — config, compiled policy, provider, keys, stores — as one immutable
//! snapshot behind [`Shared`]. A request loads one snapshot and keeps it to the end; a policy reload builds a
//! new snapshot and swaps it in atomically, so no request ever sees a half-loaded policy.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::assertion::AssertionSigner;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::http_client::HttpClient;
use crate::metrics::Metrics;
use crate::oidc::Provider;
use crate::policy::Policy;
use crate::session::Sessions;
use crate::session::cookie::CookieCodec;
use crate::session::memory::MemoryStore;
use crate::store::Store;
use crate::token::BearerValidator;
use crate::upstream::UpstreamClient;

/// The snapshot a request works with.
#[derive(Clone, Debug)]
pub struct State {
    /// The resolved configuration.
    pub config: Arc<Config>,
    /// The compiled policy.
    pub policy: Arc<Policy>,
    /// The wall clock.
    pub clock: Clock,
    /// The sign-in provider.
    pub provider: Arc<Provider>,
    /// Sessions.
    pub sessions: Sessions,
    /// Where sessions and the directory are kept.
    pub store: Arc<dyn Store>,
    /// The directory provisioned over SCIM, and revocations.
    pub directory: Arc<Directory>,
    /// Cookie sealing.
    pub cookies: CookieCodec,
    /// Identity assertions.
    pub assertion: Arc<AssertionSigner>,
    /// Upstream connections.
    pub upstream: UpstreamClient,
    /// Bearer tokens.
    pub bearer: Arc<BearerValidator>,
    /// Group lookups through Microsoft Graph (Entra group overage), when `[graph]` is configured.
    pub graph: Option<Arc<crate::graph::GraphGroups>>,
    /// `state` values already used by a callback, so a callback cannot be replayed.
    pub used_states: moka::sync::Cache<String, ()>,
    /// Refreshes in flight, so that concurrent requests of one session refresh once.
    pub refreshes: moka::future::Cache<String, Arc<crate::session::Session>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// Permits for requests in flight (`[limits] max_in_flight`); shared across policy reloads.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    /// Set when shutdown begins: not ready for new traffic.
    pub draining: std::sync::atomic::AtomicBool,
}

/// The current snapshot, swapped atomically on reload.
pub type Shared = Arc<ArcSwap<State>>;

/// Why Postern cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A key or certificate could not be loaded.
    #[error("{0}")]
    Keys(String),
}

impl State {
    /// Builds the services for `config` and `policy`, with sessions and the directory in `store`. Reads the
    /// directory now (blocking), so that no request is served before revocations are known.
    pub fn build(config: Config, policy: Policy, store: Arc<dyn Store>, clock: Clock) -> Result<State, StartError> {
        let directory = Arc::new(
            Directory::open(store.clone(), config.directory.clone())
                .map_err(|e| StartError::Keys(format!("cannot read the directory: {e}")))?,
        );
        let http = HttpClient::new(config.oidc.ca_file.as_deref(), Duration::from_secs(10))
            .map_err(|e| StartError::Keys(e.to_string()))?;
        let provider = Arc::new(Provider::new(config.oidc.clone(), http.clone(), config.redirect_uri(), clock.clone()));
        let mut config = config;
        let session_key = ensure_session_secret(&mut config);
        let cookies = CookieCodec::new(&session_keys(&config, &session_key), config.public_is_https());
        let pem = match &config.assertion.signing_key {
            Some(pem) => pem.expose().clone(),
            None => {
                tracing::warn!(
                    "no [assertion] signing_key configured: using a key generated now, so assertions will not verify across restarts or replicas; `postern keygen` writes one"
                );
                crate::assertion::generate_key_pem().map_err(|e| StartError::Keys(e.to_string()))?
            }
        };
        let previous_pems: Vec<&str> =
            config.assertion.previous_signing_keys.iter().map(|p| p.expose().as_str()).collect();
        let assertion = AssertionSigner::new(&pem, config.public_origin(), config.assertion.ttl, clock.clone())
            .and_then(|signer| signer.with_previous(&previous_pems))
            .map_err(|e| StartError::Keys(e.to_string()))?;
        let upstream = UpstreamClient::new(
            config.upstream.connect_timeout,
            config.limits.upstream_max_idle_per_host,
            config.limits.upstream_idle_timeout,
        )
        .map_err(StartError::Keys)?;
        let bearer = BearerValidator::new(
            &config.bearer,
            provider.clone(),
            http,
            config.oidc.leeway,
            config.oidc.jwks_refetch_interval,
            clock.clone(),
        );
        let graph = match &config.graph {
            Some(g) => {
                let graph_http = HttpClient::new(config.oidc.ca_file.as_deref(), g.timeout)
                    .map_err(|e| StartError::Keys(e.to_string()))?;
                Some(Arc::new(
                    crate::graph::GraphGroups::new(g.clone(), provider.clone(), graph_http).with_store(store.clone()),
                ))
            }
            None => None,
        };
        let sessions = Sessions::new(store.clone(), config.session.clone(), clock.clone());
        let bearer = Arc::new(bearer);
        let config_limits_in_flight = config.limits.max_in_flight.min(tokio::sync::Semaphore::MAX_PERMITS);
        let mut metrics = Metrics::new();
        metrics.watch_bearer(bearer.clone());
        if let Some(g) = &graph {
            metrics.watch_graph(g.clone());
        }
        if let Some(m) = store.metrics() {
            metrics.watch_store(m);
        }
        Ok(State {
            config: Arc::new(config),
            policy: Arc::new(policy),
            clock,
            provider,
            sessions,
            store,
            directory,
            cookies,
            assertion: Arc::new(assertion),
            upstream,
            bearer,
            graph,
            used_states: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(crate::oidc::login::LOGIN_TTL + Duration::from_secs(60))
                .build(),
            refreshes: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
            metrics: Arc::new(metrics),
            health: Arc::new(Health::default()),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config_limits_in_flight)),
        })
    }

    /// A store in memory: nothing survives a restart (tests and `postern demo`).
    pub fn memory_store() -> Arc<dyn Store> {
        Arc::new(MemoryStore::new(1_000_000))
    }

    /// Opens the store `[store]` names, with `config`'s session key sealing session secrets at rest; gives
    /// `config` a random session key first when it has none (with a warning), so that the store and the cookies
    /// use the same one.
    pub fn open_store(config: &mut Config) -> Result<Arc<dyn Store>, StartError> {
        let key = ensure_session_secret(config);
        crate::store::open(&config.store, &session_keys(config, &key)).map_err(|e| match &config.store {
            crate::store::StoreConfig::Redis(r) => {
                StartError::Keys(format!("{e}; check [store] url ({}) and that Redis is reachable", r.display))
            }
            _ => StartError::Keys(format!(
                "{e}; [store] path must be a file in a directory Postern can write, such as /var/lib/postern/postern.db (the systemd unit's StateDirectory)"
            )),
        })
    }

    /// This snapshot with another policy: what a reload swaps in.
    pub fn with_policy(&self, policy: Policy) -> State {
        State { policy: Arc::new(policy), ..self.clone() }
    }
}

/// The session key ring: `current` (which seals), then `[session] previous_secrets` (which still open).
fn session_keys<'a>(config: &'a Config, current: &'a [u8]) -> Vec<&'a [u8]> {
    std::iter::once(current).chain(config.session.previous_secrets.iter().map(|k| k.expose().as_slice())).collect()
}

/// The session key of `config`, set to a random one (with a warning) when none is configured.
fn ensure_session_secret(config: &mut Config) -> Vec<u8> {
    if let Some(s) = &config.session.secret {
        return s.expose().clone();
    }
    tracing::warn!(
        "no [session] secret configured: using a random key, so sessions end when Postern restarts and replicas cannot read each other's cookies; `postern keygen` writes one"
    );
    let key = crate::config::decode_key_material(crate::secret::random_token(48).as_bytes());
    config.session.secret = Some(crate::secret::Secret::new(key.clone()));
    key
}
