//! Microsoft Graph, for Entra group overage: when a token says its groups did not fit (or `[graph] always`),
//! a user's transitive group ids come from `GET /users/{oid}/transitiveMemberOf/microsoft.graph.group`,
//! every page followed, with an app-only token from the client-credentials grant. Results are remembered per
//! user for `cache_ttl` (and, with Redis, shared with the other replicas through the store for as long), and
//! concurrent lookups of one user make one call. A failure is never remembered and
//! never turns into "no groups": the caller keeps the groups unresolved, and group rules fail closed.
//! Never logs a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde_json::Value;
use url::Url;

use crate::config::GraphConfig;
use crate::http_client::HttpClient;
use crate::identity::Identity;
use crate::oidc::{Provider, entra};
use crate::secret::Secret;

/// At most this many pages (of up to 999 groups each) per user: a loop guard, far above any real membership.
const MAX_PAGES: usize = 100;

/// Why a lookup failed. The message carries no token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// The app-only token could not be obtained.
    #[error("cannot get an app-only token for Microsoft Graph: {0}")]
    Token(String),
    /// Graph could not be reached or answered with an error.
    #[error("Microsoft Graph failed: {0}")]
    Unavailable(String),
    /// Graph answered something that is not a group list.
    #[error("Microsoft Graph answered an unexpected document: {0}")]
    BadResponse(String),
    /// The identity has no object id (or not a GUID) to look up.
    #[error("the identity has no directory object id to look up")]
    NoObjectId,
}

impl GraphError {
    /// Reason code for logs.
    pub fn code(&self) -> &'static str {
        match self {
            GraphError::Token(_) => "graph-token-failed",
            GraphError::Unavailable(_) => "graph-unavailable",
            GraphError::BadResponse(_) => "graph-bad-response",
            GraphError::NoObjectId => "graph-no-object-id",
        }
    }
}

struct TokenExpiry;

impl moka::Expiry<String, (Secret<String>, u64)> for TokenExpiry {
    fn expire_after_create(&self, _: &String, value: &(Secret<String>, u64), _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(value.1))
    }
}

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct GraphStats {
    /// Lookups that went to Graph (cache misses).
    pub lookups: AtomicU64,
    /// Lookups that failed.
    pub failures: AtomicU64,
}

/// Group lookups through Microsoft Graph.
pub struct GraphGroups {
    config: GraphConfig,
    provider: Arc<Provider>,
    http: HttpClient,
    app_tokens: moka::future::Cache<String, (Secret<String>, u64)>,
    groups: moka::future::Cache<String, Arc<Vec<String>>>,
    /// Where replicas share their lookups (Redis); `None` in tests.
    shared: Option<Arc<dyn crate::store::Store>>,
    /// Counters.
    pub stats: GraphStats,
}

impl std::fmt::Debug for GraphGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphGroups").field("base_url", &self.config.base_url.as_str()).finish_non_exhaustive()
    }
}

impl GraphGroups {
    /// Lookups configured by `config`, authenticating as `provider`'s client.
    pub fn new(config: GraphConfig, provider: Arc<Provider>, http: HttpClient) -> GraphGroups {
        GraphGroups {
            app_tokens: moka::future::Cache::builder().max_capacity(1_000).expire_after(TokenExpiry).build(),
            groups: moka::future::Cache::builder().max_capacity(100_000).time_to_live(config.cache_ttl).build(),
            config,
            provider,
            http,
            shared: None,
            stats: GraphStats::default(),
        }
    }

    /// Shares lookups with the other replicas through `store` (with Redis: one Graph lookup per user and
    /// `cache_ttl` serves them all; embedded stores share nothing).
    pub fn with_store(mut self, store: Arc<dyn crate::store::Store>) -> GraphGroups {
        self.shared = Some(store);
        self
    }

    /// True when `id`'s groups must come from Graph: its token reported an overage, or `always` is set and it
    /// is a user of the sign-in provider (app-only tokens and other issuers' tokens are left alone).
    pub fn needs_lookup(&self, id: &Identity) -> bool {
        (id.groups_unresolved || (self.config.always && !entra::is_app_only(&id.claims)))
            && entra::could_match(&self.provider.config().issuer, &id.issuer)
    }

    /// The transitive group ids of the user `oid` in tenant `tid`, from the cache or from Graph.
    pub async fn groups(&self, tid: Option<&str>, oid: &str) -> Result<Arc<Vec<String>>, GraphError> {
        if !entra::is_tenant_id(oid) {
            return Err(GraphError::NoObjectId);
        }
        let key = format!("{}/{oid}", tid.unwrap_or("-"));
        self.groups
            .try_get_with(key.clone(), async {
                let shared_key = format!("graph:{key}");
                if let Some(store) = &self.shared {
                    // A lookup another replica made; a store that cannot answer only costs a Graph call.
                    match store.recall(&shared_key).await {
                        Ok(Some(bytes)) => match serde_json::from_slice::<Vec<String>>(&bytes) {
                            Ok(groups) => return Ok(Arc::new(groups)),
                            Err(_) => tracing::warn!("a shared Graph lookup is damaged: looking up again"),
                        },
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot read the shared Graph lookups"),
                    }
                }
                self.stats.lookups.fetch_add(1, Ordering::Relaxed);
                let result = self.fetch(tid, oid).await.map(Arc::new);
                match (&result, &self.shared) {
                    (Err(_), _) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    (Ok(groups), Some(store)) => {
                        let stored = match serde_json::to_vec(&**groups) {
                            Ok(bytes) => store.remember(&shared_key, bytes, self.config.cache_ttl).await,
                            Err(e) => Err(crate::session::StoreError(e.to_string())),
                        };
                        if let Err(e) = stored {
                            tracing::warn!(error = %e, "cannot share a Graph lookup with the other replicas");
                        }
                    }
                    (Ok(_), None) => {}
                }
                result
            })
            .await
            .map_err(|e| (*e).clone())
    }

    async fn fetch(&self, tid: Option<&str>, oid: &str) -> Result<Vec<String>, GraphError> {
        let token = self.app_token(tid).await?;
        let authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| GraphError::Token("the token is not valid header text".into()))?;
        let mut url = self.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| GraphError::BadResponse("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["users", oid, "transitiveMemberOf", "microsoft.graph.group"]);
        url.query_pairs_mut().append_pair("$select", "id").append_pair("$top", "999");
        let mut groups = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Value = self
                .http
                .get_json_authorized(&url, authorization.clone())
                .await
                .map_err(|e| GraphError::Unavailable(e.to_string()))?;
            let values = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| GraphError::BadResponse("no \"value\" array".into()))?;
            groups.extend(values.iter().filter_map(|g| g.get("id").and_then(Value::as_str)).map(str::to_string));
            let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) else {
                return Ok(groups);
            };
            let next = Url::parse(next).map_err(|_| GraphError::BadResponse("@odata.nextLink is not a URL".into()))?;
            // The app token goes only where Graph is: a next link elsewhere would hand it to a stranger.
            if next.origin() != self.config.base_url.origin() {
                return Err(GraphError::BadResponse("@odata.nextLink leaves Microsoft Graph".into()));
            }
            url = next;
        }
        Err(GraphError::BadResponse(format!("more than {MAX_PAGES} pages of groups")))
    }

    /// An app-only token for Graph, for tenant `tid` when the token URL names `{tenantid}`; remembered until
    /// shortly before it expires.
    async fn app_token(&self, tid: Option<&str>) -> Result<Secret<String>, GraphError> {
        let token_url = match (&self.config.token_url, tid) {
            (Some(t), Some(tid)) if entra::is_template(t) => {
                if !entra::is_tenant_id(tid) {
                    return Err(GraphError::Token("the user's tenant id is not a GUID".into()));
                }
                Some(entra::substitute(t, tid))
            }
            (Some(t), None) if entra::is_template(t) => {
                return Err(GraphError::Token("the token URL needs the user's tenant (tid)".into()));
            }
            (Some(t), _) => Some(t.clone()),
            (None, _) => None,
        };
        let key = token_url.clone().unwrap_or_default();
        let entry = self
            .app_tokens
            .try_get_with(key, async {
                let url = token_url
                    .as_deref()
                    .map(Url::parse)
                    .transpose()
                    .map_err(|_| GraphError::Token("the token URL is not a URL".into()))?;
                let token = self
                    .provider
                    .client_credentials(url.as_ref(), &self.config.scope)
                    .await
                    .map_err(|e| GraphError::Token(e.to_string()))?;
                // Renewed a minute early, so a token never expires between the cache and Graph.
                Ok::<_, GraphError>((token.access_token, token.expires_in.saturating_sub(60).max(1)))
            })
            .await
            .map_err(|e| (*e).clone())?;
        Ok(entry.0)
    }
}
