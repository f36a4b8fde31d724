//! The shared store for several replicas: sessions, the directory and revocations in one Redis (or Valkey),
//! so any replica serves any request and a sign-out or a revocation on one holds on all. Sessions are keyed by
//! a hash of their ticket and sealed with a key derived from the ticket itself (AES-256-GCM), so a Redis dump
//! without the cookies opens nothing; each session key expires with the session. Directory writes take a short
//! lock in Redis and commit in one Lua script, with the sessions they end. Every change is announced on a
//! pub/sub channel, so other replicas drop what they cached within milliseconds; a replica that lost its
//! subscription trusts no cache until it has subscribed again. Fails closed: any Redis error is a
//! [`StoreError`], except that an optional short grace serves sessions this replica verified just before
//! Redis went away. Never logs a ticket, a session's content or the password of the URL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisResult, Script, TlsMode};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use serde::{Deserialize, Serialize};

use super::{ChangeFn, Committed, DirData, Resource, Revocation, Store, StoreMetrics, session_handle};
use crate::scim::ScimError;
use crate::secret::Secret;
use crate::session::{Session, SessionInfo, SessionStore, StoreError, StoreFuture};

/// Every key Postern writes starts with this. The hash tag `{postern}` puts them all in one slot of a Redis
/// Cluster, so that one Lua script may touch any of them.
const PREFIX: &str = "{postern}:";
/// The pub/sub channel of invalidations.
const CHANNEL: &str = "postern:events";
/// One Redis call may take this long before it counts as a failure (and the request fails closed).
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a directory writer may hold the lock; a crashed writer blocks others no longer than this.
const DIR_LOCK_TTL: Duration = Duration::from_secs(10);

/// Where Redis is.
#[derive(Clone, PartialEq, Eq)]
enum Target {
    /// One server: its URL, password included.
    Single(Secret<String>),
    /// The master that Sentinels name for `service`. The sentinels are asked without credentials; `master`
    /// is a URL (placeholder host) carrying the master's credentials, database and TLS.
    Sentinel { sentinels: Vec<(String, u16)>, service: String, master: Secret<String>, tls: bool },
    /// A Redis Cluster, through these seed nodes (URLs, password included).
    Cluster(Vec<Secret<String>>),
}

/// `[store] kind = "redis"`, resolved: where Redis is, with its password, which never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    target: Target,
    /// The URL with the password replaced by `***`, for logs and errors.
    pub display: String,
    /// While Redis is unreachable, a session this replica verified within this long keeps working from its
    /// cache (zero: fail closed at once).
    pub grace: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig").field("url", &self.display).field("grace", &self.grace).finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Sentinel,
    Cluster,
}

impl RedisConfig {
    /// Checks `url` and sets `password` in it when given: `redis://` or `rediss://` (TLS) for one server,
    /// `redis+sentinel://host:26379,host:26379/service[/db]` for the master that Sentinels name,
    /// `redis+cluster://host:6379,host:6379` for a Redis Cluster (`rediss+...` for TLS). The error never
    /// repeats the URL, which may hold a password.
    pub fn parse(url: &str, password: Option<&str>) -> Result<RedisConfig, String> {
        let url = url.trim();
        let expected = "expected redis://host:6379, rediss:// (TLS), redis+sentinel://host:26379,host:26379/service or redis+cluster://host:6379,host:6379";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("not a URL: {expected}"));
        };
        let (mode, tls) = match scheme {
            "redis" => (Mode::Single, false),
            "rediss" => (Mode::Single, true),
            "redis+sentinel" => (Mode::Sentinel, false),
            "rediss+sentinel" => (Mode::Sentinel, true),
            "redis+cluster" => (Mode::Cluster, false),
            "rediss+cluster" => (Mode::Cluster, true),
            // Not repeated: a mistyped URL may hold a password anywhere.
            _ => return Err(format!("unknown scheme: {expected}")),
        };
        if mode == Mode::Single {
            return Self::parse_single(url, password);
        }
        let base = if tls { "rediss" } else { "redis" };
        // `[user[:password]@]host:port,host:port[/path]`: the credentials end at the last `@`.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let default_port = if mode == Mode::Sentinel { 26379 } else { 6379 };
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let parsed = url::Url::parse(&format!("{base}://{host}"))
                .ok()
                .filter(|u| {
                    u.host_str().is_some_and(|h| !h.is_empty()) && u.path().is_empty() && u.username().is_empty()
                })
                .ok_or_else(|| {
                    let shown = if host.len() > 64 { "?" } else { host };
                    format!("\"{shown}\" is not host:port")
                })?;
            let host = parsed.host_str().unwrap_or_default().to_string();
            nodes.push((host, parsed.port().unwrap_or(default_port)));
        }
        let hosts_text = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",");
        // The credentials, checked by the url crate on a placeholder host.
        let mut creds =
            url::Url::parse(&format!("{base}://{}placeholder", userinfo.map(|u| format!("{u}@")).unwrap_or_default()))
                .map_err(|_| "the user or password is not valid in a URL (percent-encode it)".to_string())?;
        if let Some(p) = password
            && creds.set_password(Some(p)).is_err()
        {
            return Err("cannot put the password into the URL".into());
        }
        let shown_creds = match (creds.username(), creds.password()) {
            ("", None) => String::new(),
            (u, None) => format!("{u}@"),
            (u, Some(_)) => format!("{u}:***@"),
        };
        let with_host = |host: &str, port: u16, path: &str| -> Result<Secret<String>, String> {
            let mut u = creds.clone();
            u.set_host(Some(host)).map_err(|_| "a host is not valid".to_string())?;
            u.set_port(Some(port)).map_err(|_| "a port is not valid".to_string())?;
            u.set_path(path);
            Ok(Secret::new(u.to_string()))
        };
        let (target, display) = match mode {
            Mode::Sentinel => {
                let (service, db) = path.split_once('/').unwrap_or((path, ""));
                if service.is_empty()
                    || service.len() > 128
                    || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(
                        "the path must name the Sentinel service (the master's name), such as /mymaster or /mymaster/0"
                            .into(),
                    );
                }
                if !db.is_empty() && db.parse::<u16>().is_err() {
                    return Err("after the service name, only a database number, such as /mymaster/0".into());
                }
                let master = with_host("placeholder", 6379, db)?;
                ::redis::IntoConnectionInfo::into_connection_info(master.expose().as_str())
                    .map_err(|e| format!("the redis client refuses it: {}", e.kind_str()))?;
                let shown_path = if db.is_empty() { service.to_string() } else { format!("{service}/{db}") };
                (
                    Target::Sentinel { sentinels: nodes, service: service.to_string(), master, tls },
                    format!("{scheme}://{shown_creds}{hosts_text}/{shown_path}"),
                )
            }
            _ => {
                if !path.is_empty() && path != "0" {
                    return Err("a Redis Cluster has only database 0: no path after the hosts".into());
                }
                let urls = nodes.iter().map(|(h, p)| with_host(h, *p, "")).collect::<Result<Vec<_>, _>>()?;
                ::redis::cluster::ClusterClient::new(urls.iter().map(|u| u.expose().as_str()).collect::<Vec<_>>())
                    .map_err(|e| format!("the redis client refuses it: {}", e.kind_str()))?;
                (Target::Cluster(urls), format!("{scheme}://{shown_creds}{hosts_text}"))
            }
        };
        Ok(RedisConfig { target, display, grace: Duration::ZERO })
    }

    fn parse_single(url: &str, password: Option<&str>) -> Result<RedisConfig, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e}): expected redis://host:6379"))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("no host: expected redis://host:6379".into());
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err("the path must be a database number, such as /0".into());
        }
        if let Some(p) = password
            && parsed.set_password(Some(p)).is_err()
        {
            return Err("cannot put the password into the URL".into());
        }
        Client::open(parsed.as_str()).map_err(|e| format!("the redis client refuses it: {}", e.kind_str()))?;
        let mut display = parsed.clone();
        if display.password().is_some() {
            let _ = display.set_password(Some("***"));
        }
        Ok(RedisConfig {
            target: Target::Single(Secret::new(parsed.to_string())),
            display: display.to_string(),
            grace: Duration::ZERO,
        })
    }
}

/// Requests fail fast: a request waits at most about a second for Redis, then fails closed.
fn async_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(1000)))
        .set_response_timeout(Some(Duration::from_millis(1500)))
}

/// How to reach Redis: one server, the master the Sentinels name, or a cluster.
enum Connector {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster { client: ClusterClient, nodes: Vec<Client> },
}

impl Connector {
    fn new(target: &Target) -> RedisResult<Connector> {
        Ok(match target {
            Target::Single(url) => Connector::Single(Client::open(url.expose().as_str())?),
            Target::Sentinel { sentinels, service, master, tls } => {
                let addrs = sentinels.iter().map(|(host, port)| {
                    if *tls {
                        ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
                    } else {
                        ConnectionAddr::Tcp(host.clone(), *port)
                    }
                });
                let info = ::redis::IntoConnectionInfo::into_connection_info(master.expose().as_str())?;
                let redis = info.redis_settings();
                let mut builder = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)?
                    .set_client_to_redis_db(redis.db());
                if let Some(u) = redis.username() {
                    builder = builder.set_client_to_redis_username(u);
                }
                if let Some(p) = redis.password() {
                    builder = builder.set_client_to_redis_password(p);
                }
                if *tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                }
                Connector::Sentinel(tokio::sync::Mutex::new(builder.build()?))
            }
            Target::Cluster(urls) => {
                let seeds: Vec<&str> = urls.iter().map(|u| u.expose().as_str()).collect();
                let client = ClusterClient::builder(seeds.clone())
                    .connection_timeout(Duration::from_millis(1000))
                    .response_timeout(Duration::from_millis(1500))
                    .retries(2)
                    .max_retry_wait(200)
                    .build()?;
                let nodes = seeds.into_iter().map(Client::open).collect::<RedisResult<Vec<_>>>()?;
                Connector::Cluster { client, nodes }
            }
        })
    }

    /// A client for the current master (Sentinel asked now).
    async fn master(&self) -> RedisResult<Client> {
        match self {
            Connector::Single(c) => Ok(c.clone()),
            Connector::Sentinel(s) => {
                let mut s = s.lock().await;
                s.async_get_client().await
            }
            Connector::Cluster { nodes, .. } => nodes
                .first()
                .cloned()
                .ok_or_else(|| ::redis::RedisError::from((::redis::ErrorKind::InvalidClientConfig, "no node"))),
        }
    }

    /// A connection for this runtime only.
    async fn connect(self: &Arc<Self>) -> RedisResult<Conn> {
        Ok(match &**self {
            Connector::Single(c) => Conn::Plain(c.get_multiplexed_async_connection_with_config(&async_config()).await?),
            Connector::Sentinel(_) => Conn::Resolved(Resolved::new(self.clone())),
            Connector::Cluster { client, .. } => Conn::Cluster(client.get_async_connection().await?),
        })
    }

    /// A subscription: to the master, or in a cluster (where PUBLISH reaches every node) to any node.
    async fn pubsub(&self) -> RedisResult<::redis::aio::PubSub> {
        match self {
            Connector::Cluster { nodes, .. } => {
                let mut last = None;
                for node in nodes {
                    match node.get_async_pubsub().await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| (::redis::ErrorKind::InvalidClientConfig, "no node").into()))
            }
            other => other.master().await?.get_async_pubsub().await,
        }
    }
}

/// A connection to the master the Sentinels name, asked again after any failure: after a failover the old
/// master drops its clients (or is gone, or answers READONLY), and the next call finds the new one.
#[derive(Clone)]
struct Resolved {
    connector: Arc<Connector>,
    /// The master's address and the connection to it.
    current: Arc<Mutex<Option<(String, MultiplexedConnection)>>>,
    db: i64,
}

impl Resolved {
    fn new(connector: Arc<Connector>) -> Resolved {
        Resolved { connector, current: Arc::default(), db: 0 }
    }

    async fn get(&self) -> RedisResult<MultiplexedConnection> {
        if let Some((_, c)) = lock(&self.current).clone() {
            return Ok(c);
        }
        let client = self.connector.master().await?;
        let conn = client.get_multiplexed_async_connection_with_config(&async_config()).await?;
        *lock(&self.current) = Some((client.get_connection_info().addr().to_string(), conn.clone()));
        Ok(conn)
    }

    /// Asks the Sentinels which master is current: a failover promotes a replica before the old master learns
    /// of it (and drops its clients), and writes in between would be lost. True when the master changed.
    async fn follow(&self) -> RedisResult<bool> {
        let named = self.connector.master().await?.get_connection_info().addr().to_string();
        let mut current = lock(&self.current);
        let moved = current.as_ref().is_some_and(|(addr, _)| *addr != named);
        if moved {
            *current = None;
        }
        Ok(moved)
    }

    fn check<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result
            && (e.code().is_none() || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING")))
        {
            *lock(&self.current) = None;
        }
        result
    }
}

/// A cluster connection made at the first call (the store opens without waiting for Redis); it then follows
/// the cluster's slots and nodes by itself.
#[derive(Clone)]
struct Lazy {
    client: Arc<ClusterClient>,
    current: Arc<tokio::sync::Mutex<Option<ClusterConnection>>>,
}

impl Lazy {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        let mut current = self.current.lock().await;
        if let Some(c) = &*current {
            return Ok(c.clone());
        }
        let conn = self.client.get_async_connection().await?;
        *current = Some(conn.clone());
        Ok(conn)
    }
}

/// The connection requests use.
#[derive(Clone)]
enum Conn {
    /// One server, reconnecting by itself.
    Manager(ConnectionManager),
    /// One server, for one runtime.
    Plain(MultiplexedConnection),
    /// The master the Sentinels name.
    Resolved(Resolved),
    /// A cluster, following its slots by itself.
    Cluster(ClusterConnection),
    /// The same, connected at the first call.
    Lazy(Lazy),
}

impl ::redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a ::redis::Cmd) -> ::redis::RedisFuture<'a, ::redis::Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Resolved(r) => Box::pin(async move {
                let result = match r.get().await {
                    Ok(mut c) => c.req_packed_command(cmd).await,
                    Err(e) => Err(e),
                };
                r.check(result)
            }),
            Conn::Lazy(l) => Box::pin(async move { l.get().await?.req_packed_command(cmd).await }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a ::redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> ::redis::RedisFuture<'a, Vec<::redis::Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Resolved(r) => Box::pin(async move {
                let result = match r.get().await {
                    Ok(mut c) => c.req_packed_commands(pipeline, offset, count).await,
                    Err(e) => Err(e),
                };
                r.check(result)
            }),
            Conn::Lazy(l) => Box::pin(async move { l.get().await?.req_packed_commands(pipeline, offset, count).await }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Resolved(r) => r.db,
            Conn::Lazy(_) => 0,
        }
    }
}

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for ::redis::RedisError {
    /// What went wrong, without the error's free text: Redis echoes arguments in some messages.
    fn kind_str(&self) -> String {
        if self.is_timeout() {
            "timeout".into()
        } else if self.is_connection_refusal() {
            "connection refused".into()
        } else if self.is_connection_dropped() || self.is_io_error() {
            "connection lost".into()
        } else {
            match self.code() {
                // The server's error code, such as WRONGPASS, NOAUTH or NOPERM: a word, never an argument.
                Some(code) if code.len() <= 32 && code.bytes().all(|b| b.is_ascii_uppercase()) => {
                    format!("Redis answered {code}")
                }
                _ => format!("{:?}", self.kind()),
            }
        }
    }
}

/// The store in Redis. Cloning shares the connection and the caches.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.inner.display).finish()
    }
}

struct Inner {
    /// Where Redis is, to connect afresh (at start-up, outside the runtime).
    target: Target,
    connector: Arc<Connector>,
    conn: Conn,
    display: String,
    /// This process, so that it ignores its own announcements.
    origin: String,
    /// Sessions by handle, as last read or written here; trusted only while `subscribed`.
    cache: moka::sync::Cache<String, Arc<Session>>,
    /// With a grace: sessions verified within it, used only while Redis is unreachable. Cleared by every
    /// end of a session this replica hears of, kept when the subscription drops.
    grace: Option<moka::sync::Cache<String, Arc<Session>>>,
    /// Bumped whenever cached sessions are dropped; a read caches what it read only when no drop happened since
    /// it started, so an ended session is never put back.
    generation: AtomicU64,
    /// True while the invalidation channel is subscribed: only then can the cache be trusted.
    subscribed: AtomicBool,
    /// Set when another process announced a directory change (or the announcements may have been missed).
    dir_dirty: AtomicBool,
    /// The directory as of `version`.
    dir: Mutex<DirCopy>,
    /// False after a failed call, true after a good one: readiness.
    up: AtomicBool,
    /// Wakes the directory's refresher: another process changed the directory.
    changed: Arc<tokio::sync::Notify>,
    /// Wakes the subscriber to reconnect (the connection came back) or to stop (the store is dropped).
    resubscribe: Arc<tokio::sync::Notify>,
    metrics: StoreMetrics,
}

#[derive(Default)]
struct DirCopy {
    version: u64,
    data: Option<Arc<DirData>>,
    checked: Option<tokio::time::Instant>,
}

/// What is kept in clear beside a sealed session: what admins list and revocations match, as SQLite keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    subject: String,
    sub: String,
    user_name: Option<String>,
    sid: Option<String>,
    created_at: u64,
    last_seen: u64,
    expires_at: u64,
}

fn err(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("redis: {context}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The key sealing a session, derived from its ticket (256 random bits) under a label of its own; the handle
/// (the lookup key) is a plain hash of the same ticket, which cannot be turned into this key.
fn session_key(ticket: &str) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, b"postern redis session v1").extract(ticket.as_bytes());
    let okm = prk.expand(&[b"seal"], &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Seals `session` for `handle`: nonce, then ciphertext and tag; the handle is the associated data.
fn seal(handle: &str, session: &Session) -> Result<Vec<u8>, StoreError> {
    let key = session_key(session.id.expose()).ok_or_else(|| StoreError("cannot derive a session key".into()))?;
    let mut data = serde_json::to_vec(session).map_err(|e| err("cannot encode a session", e))?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| StoreError("no randomness".into()))?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(handle.as_bytes()), &mut data)
        .map_err(|_| StoreError("cannot seal a session".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

fn open_sealed(ticket: &str, handle: &str, sealed: &[u8]) -> Option<Session> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let key = session_key(ticket)?;
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = rest.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(handle.as_bytes()), &mut data).ok()?;
    let session: Session = serde_json::from_slice(plain).ok()?;
    // A record is only ever the session of the ticket that opened it.
    (session.id.expose() == ticket).then_some(session)
}

fn session_key_name(handle: &str) -> String {
    format!("{PREFIX}s:{handle}")
}

/// Lua: `end_handles(list)` removes sessions and their index entries; returns how many existed.
const END_HANDLES_FN: &str = r#"
local p = ARGV[1]
local function end_handles(handles)
  local n = 0
  for _, h in ipairs(handles) do
    local k = p .. 's:' .. h
    local m = redis.call('HGET', k, 'm')
    if m then
      local ok, meta = pcall(cjson.decode, m)
      if ok and type(meta) == 'table' then
        for _, f in ipairs({'subject', 'sub', 'user_name'}) do
          if type(meta[f]) == 'string' then redis.call('SREM', p .. 'u:' .. meta[f], h) end
        end
        if type(meta.sid) == 'string' then redis.call('SREM', p .. 'sid:' .. meta.sid, h) end
      end
      n = n + redis.call('DEL', k)
    end
    redis.call('ZREM', p .. 'sessions', h)
    redis.call('ZREM', p .. 'sessions:seen', h)
  end
  if #handles > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3] .. '|s|' .. table.concat(handles, ',')) end
  return n
end
local function members(keys)
  local seen, out = {}, {}
  for _, key in ipairs(keys) do
    for _, h in ipairs(redis.call('SMEMBERS', p .. key)) do
      if not seen[h] then seen[h] = true; out[#out + 1] = h end
    end
  end
  return out
end
"#;

/// Lua, ends sessions. ARGV: prefix, channel, origin, `h` (handles follow) or `set` (index keys follow).
const END_SESSIONS: &str = r#"
local rest = {}
for i = 5, #ARGV do rest[#rest + 1] = ARGV[i] end
if ARGV[4] == 'h' then return end_handles(rest) end
return end_handles(members(rest))
"#;

/// Lua, saves a session. KEYS: the session, the session index (by end), the index by last use, then the user
/// and sid index sets. ARGV: prefix, channel, origin, `new` or `update`, meta, sealed, ttl in ms, handle,
/// expires_at, last_seen.
const SAVE: &str = r#"
if ARGV[4] == 'update' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'm', ARGV[5], 'x', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[9], ARGV[8])
redis.call('ZADD', KEYS[3], ARGV[10], ARGV[8])
local ttl = tonumber(ARGV[7])
for i = 4, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[8])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
if ARGV[4] == 'update' then redis.call('PUBLISH', ARGV[2], ARGV[3] .. '|s|' .. ARGV[8]) end
return 1
"#;

/// Lua, commits a directory change if the directory is still at the expected version. ARGV: prefix, channel,
/// origin, expected version, the change as JSON. Returns {sessions ended, new version}, or {-1, version}.
const TRANSACT: &str = r#"
local v = tonumber(redis.call('GET', p .. 'dir:version') or '0')
if v ~= tonumber(ARGV[4]) then return {-1, v} end
local c = cjson.decode(ARGV[5])
for _, e in ipairs(c.pu) do redis.call('HSET', p .. 'dir:users', e[1], e[2]) end
for _, id in ipairs(c.du) do redis.call('HDEL', p .. 'dir:users', id) end
for _, e in ipairs(c.pg) do redis.call('HSET', p .. 'dir:groups', e[1], e[2]) end
for _, id in ipairs(c.dg) do redis.call('HDEL', p .. 'dir:groups', id) end
for _, k in ipairs(c.ur) do redis.call('HDEL', p .. 'dir:revocations', k) end
for _, e in ipairs(c.rv) do redis.call('HSET', p .. 'dir:revocations', e[1], e[2]) end
local keys = {}
for _, u in ipairs(c.es) do keys[#keys + 1] = 'u:' .. u end
local n = end_handles(members(keys))
for _, k in ipairs(keys) do redis.call('DEL', p .. k) end
v = redis.call('INCR', p .. 'dir:version')
redis.call('PUBLISH', ARGV[2], ARGV[3] .. '|d|' .. v)
return {n, v}
"#;

/// Lua: deletes a lock only when it still holds our token.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

static END_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{END_HANDLES_FN}{END_SESSIONS}")));
static SAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SAVE));
static TRANSACT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{END_HANDLES_FN}{TRANSACT}")));
static UNLOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNLOCK));

#[derive(Serialize)]
struct ChangeJson<'a> {
    pu: Vec<(&'a str, String)>,
    du: &'a [String],
    pg: Vec<(&'a str, String)>,
    dg: &'a [String],
    rv: Vec<(&'a str, String)>,
    ur: &'a [String],
    es: Vec<String>,
}

/// JSON text of a stored record.
fn enc<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| err("encode", e))
}

type DirHashes = (Option<u64>, HashMap<String, String>, HashMap<String, String>, HashMap<String, String>);

/// Lua, reads the whole directory at once. KEYS: the version (which routes it in a cluster). ARGV: prefix.
const READ_DIR: &str = r#"
local p = ARGV[1]
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', p .. 'dir:users'),
  redis.call('HGETALL', p .. 'dir:groups'), redis.call('HGETALL', p .. 'dir:revocations')}
"#;

static READ_DIR_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ_DIR));

fn read_dir_invocation() -> ::redis::ScriptInvocation<'static> {
    let mut inv = READ_DIR_SCRIPT.prepare_invoke();
    inv.key(format!("{PREFIX}dir:version")).arg(PREFIX);
    inv
}

fn decode_dir((version, users, groups, revocations): DirHashes) -> Result<(u64, DirData), StoreError> {
    let mut data = DirData::default();
    for text in users.values() {
        let r: Resource = serde_json::from_str(text).map_err(|e| err("a stored user is damaged", e))?;
        data.users.insert(r.id.clone(), Arc::new(r));
    }
    for text in groups.values() {
        let r: Resource = serde_json::from_str(text).map_err(|e| err("a stored group is damaged", e))?;
        data.groups.insert(r.id.clone(), Arc::new(r));
    }
    for text in revocations.values() {
        let r: Revocation = serde_json::from_str(text).map_err(|e| err("a stored revocation is damaged", e))?;
        data.revocations.insert(r.key.clone(), r);
    }
    Ok((version.unwrap_or(0), data))
}

impl RedisStore {
    /// A store on the Redis `config` names. Connects lazily (the first call connects), reconnects by itself,
    /// and starts the subscriber of invalidations and a health check on the current tokio runtime.
    pub fn open(config: &RedisConfig) -> Result<RedisStore, StoreError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(StoreError("the redis store needs a tokio runtime".into()));
        };
        let connector = Arc::new(Connector::new(&config.target).map_err(|e| err("bad url", e.kind_str()))?);
        let _guard = runtime.enter();
        let conn = match &*connector {
            Connector::Single(client) => {
                // Fail fast: a request waits at most about a second for Redis, then fails closed; reconnection
                // is retried in the background (and by the health check) rather than inside a request.
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(1000)))
                    .set_response_timeout(Some(Duration::from_millis(1500)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200));
                Conn::Manager(
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                        .map_err(|e| err("cannot set up the connection", e.kind_str()))?,
                )
            }
            Connector::Sentinel(_) => Conn::Resolved(Resolved::new(connector.clone())),
            Connector::Cluster { client, .. } => {
                // The cluster connection connects at once; until it can, every call tries again.
                Conn::Lazy(Lazy { client: Arc::new(client.clone()), current: Arc::default() })
            }
        };
        let inner = Arc::new(Inner {
            target: config.target.clone(),
            connector,
            conn,
            display: config.display.clone(),
            origin: crate::secret::random_token(12),
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(5 * 60))
                .time_to_live(Duration::from_secs(15 * 60))
                .build(),
            grace: (!config.grace.is_zero())
                .then(|| moka::sync::Cache::builder().max_capacity(100_000).time_to_live(config.grace).build()),
            generation: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            dir_dirty: AtomicBool::new(true),
            dir: Mutex::new(DirCopy::default()),
            up: AtomicBool::new(true),
            changed: Arc::new(tokio::sync::Notify::new()),
            resubscribe: Arc::new(tokio::sync::Notify::new()),
            metrics: StoreMetrics::new(),
        });
        runtime.spawn(subscriber(Arc::downgrade(&inner)));
        runtime.spawn(health_check(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The subscriber holds no reference to this; wake it so that it notices and stops.
        self.resubscribe.notify_waiters();
    }
}

impl Inner {
    /// Runs one Redis call with a deadline, counting it; a failure marks the store down.
    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(OP_TIMEOUT, fut).await;
        self.metrics.latency.observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(err(op, e.kind_str())),
            Err(_) => Err(err(op, "timeout")),
        };
        match &outcome {
            Ok(_) => self.mark_up(),
            Err(e) => {
                self.metrics.errors.get_or_create(&super::StoreOpLabels { op }).inc();
                self.mark_down(e);
            }
        }
        outcome
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::warn!(redis = %self.display, "the redis store is reachable again");
        }
    }

    fn mark_down(&self, e: &StoreError) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(redis = %self.display, error = %e, "the redis store is unreachable: requests that need it fail closed");
        }
    }

    /// Forgets every cached session and the directory's freshness: after a missed announcement.
    fn drop_local(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
        self.dir_dirty.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }

    fn forget(&self, handles: &[&str]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for h in handles {
            self.cache.invalidate(*h);
            if let Some(g) = &self.grace {
                g.invalidate(*h);
            }
        }
    }

    /// `session` was verified just now: it may serve through the grace.
    fn verified(&self, handle: &str, session: &Arc<Session>) {
        if let Some(g) = &self.grace {
            g.insert(handle.to_string(), session.clone());
        }
    }

    /// An announcement: `origin|s|handle,handle` (sessions changed or ended) or `origin|d|version`.
    fn on_event(&self, payload: &str) {
        let mut parts = payload.splitn(3, '|');
        let (Some(origin), Some(kind), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        match kind {
            // Our own writes already updated or cleared our cache.
            "s" if origin != self.origin => self.forget(&rest.split(',').collect::<Vec<_>>()),
            "d" => {
                let ours = origin == self.origin && rest.parse::<u64>().ok() == Some(lock(&self.dir).version);
                if !ours {
                    self.dir_dirty.store(true, Ordering::SeqCst);
                    self.changed.notify_one();
                }
            }
            _ => {}
        }
    }

    async fn end_sessions(&self, mode: &str, names: &[String]) -> Result<usize, StoreError> {
        let mut inv = END_SCRIPT.prepare_invoke();
        // The key only routes the script to our slot in a cluster.
        inv.key(format!("{PREFIX}dir:version")).arg(PREFIX).arg(CHANNEL).arg(&self.origin).arg(mode);
        for n in names {
            inv.arg(n);
        }
        let mut conn = self.conn.clone();
        let n: usize = self.call("end sessions", inv.invoke_async(&mut conn)).await?;
        // Which handles ended is known only to Redis: forget the whole cache (ending sessions is rare).
        self.drop_local_sessions();
        Ok(n)
    }

    /// Sessions may have ended without this replica learning which: forget them all, the grace too.
    fn drop_local_sessions(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
        if let Some(g) = &self.grace {
            g.invalidate_all();
        }
    }

    async fn read_directory(&self) -> Result<(u64, DirData), StoreError> {
        let mut conn = self.conn.clone();
        let hashes: DirHashes = self.call("read the directory", read_dir_invocation().invoke_async(&mut conn)).await?;
        decode_dir(hashes)
    }

    async fn load_uncached(&self, id: &str, handle: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let seen = self.generation.load(Ordering::SeqCst);
        let mut conn = self.conn.clone();
        let sealed: Option<Vec<u8>> = self
            .call("load a session", ::redis::cmd("HGET").arg(session_key_name(handle)).arg("x").query_async(&mut conn))
            .await?;
        // A record that does not open is no session.
        let session = sealed.and_then(|s| open_sealed(id, handle, &s)).map(Arc::new);
        if let Some(s) = &session
            && self.generation.load(Ordering::SeqCst) == seen
        {
            self.verified(handle, s);
            if self.subscribed.load(Ordering::SeqCst) {
                self.cache.insert(handle.to_string(), s.clone());
            }
        }
        Ok(session)
    }
}

/// Listens for announcements of other replicas; on every (re)subscription, drops the local caches, which may
/// have missed some while nobody listened.
async fn subscriber(weak: Weak<Inner>) {
    use futures_util::StreamExt;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let (connector, wake) = (inner.connector.clone(), inner.resubscribe.clone());
        drop(inner);
        let connected = tokio::time::timeout(OP_TIMEOUT, async {
            let mut pubsub = connector.pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        })
        .await;
        if let Ok(Ok(pubsub)) = connected {
            let Some(inner) = weak.upgrade() else { return };
            inner.drop_local();
            inner.subscribed.store(true, Ordering::SeqCst);
            tracing::info!(redis = %inner.display, "subscribed to the store's invalidations");
            drop(inner);
            let mut messages = std::pin::pin!(pubsub.into_on_message());
            loop {
                let resubscribe = wake.notified();
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::select! {
                    msg = messages.next() => match msg {
                        Some(msg) => {
                            let Some(inner) = weak.upgrade() else { return };
                            if let Ok(payload) = std::str::from_utf8(msg.get_payload_bytes()) {
                                inner.on_event(payload);
                            }
                        }
                        None => break,
                    },
                    _ = resubscribe => break,
                }
            }
            let Some(inner) = weak.upgrade() else { return };
            inner.subscribed.store(false, Ordering::SeqCst);
            inner.drop_local();
            tracing::warn!(redis = %inner.display, "lost the subscription to the store's invalidations; caches dropped");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pings Redis twice a second: readiness follows, a dead connection is noticed without a request, and the
/// subscriber is told to reconnect when the connection came back (it may have missed announcements).
async fn health_check(weak: Weak<Inner>) {
    let mut was_up = true;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(inner) = weak.upgrade() else { return };
        let mut conn = inner.conn.clone();
        // EXISTS on a key of ours rather than PING: in a cluster it goes to the node that holds our keys.
        let mut ok = inner
            .call("ping", ::redis::cmd("EXISTS").arg(format!("{PREFIX}dir:version")).query_async::<i64>(&mut conn))
            .await
            .is_ok();
        if let Conn::Resolved(r) = &inner.conn {
            match tokio::time::timeout(OP_TIMEOUT, r.follow()).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    tracing::warn!(redis = %inner.display, "the Sentinels name another master: following it");
                    // Subscribe again, on the new master; until then no cache is trusted.
                    inner.subscribed.store(false, Ordering::SeqCst);
                    inner.drop_local();
                    inner.resubscribe.notify_waiters();
                }
                Ok(Err(e)) => {
                    tracing::warn!(redis = %inner.display, error = %e.kind_str(), "cannot ask the Sentinels for the master");
                    ok = false;
                }
                Err(_) => ok = false,
            }
        }
        if !ok {
            inner.subscribed.store(false, Ordering::SeqCst);
            inner.drop_local();
        }
        if ok && !was_up {
            inner.resubscribe.notify_waiters();
        }
        was_up = ok;
    }
}

impl SessionStore for RedisStore {
    fn load<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let handle = session_handle(id);
            if self.inner.subscribed.load(Ordering::SeqCst)
                && let Some(s) = self.inner.cache.get(&handle)
            {
                self.inner.verified(&handle, &s);
                return Ok(Some(s));
            }
            match self.inner.load_uncached(id, &handle).await {
                Err(e) => match self.inner.grace.as_ref().and_then(|g| g.get(&handle)) {
                    // Redis is away, and this session was good a moment ago: the configured grace.
                    Some(s) => Ok(Some(s)),
                    None => Err(e),
                },
                other => other,
            }
        })
    }

    fn save<'a>(&'a self, session: Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let inner = &self.inner;
            let seen = inner.generation.load(Ordering::SeqCst);
            let handle = session_handle(session.id.expose());
            let sealed = seal(&handle, &session)?;
            let id = &session.identity;
            let meta = Meta {
                subject: id.subject.to_lowercase(),
                sub: id.sub.to_lowercase(),
                user_name: id.preferred_username.as_ref().map(|u| u.to_lowercase()),
                sid: session.sid.clone(),
                created_at: session.created_at,
                last_seen: session.last_seen,
                expires_at: session.expires_at,
            };
            let ttl_ms = session.expires_at.saturating_sub(unix_now()).max(1).saturating_mul(1000);
            // A new sign-in creates; a later save (use, refresh) only updates, so that a session ended
            // meanwhile (revoked on another replica, say) is not brought back.
            let mode = if session.last_seen == session.created_at { "new" } else { "update" };
            let mut inv = SAVE_SCRIPT.prepare_invoke();
            inv.key(session_key_name(&handle)).key(format!("{PREFIX}sessions")).key(format!("{PREFIX}sessions:seen"));
            let mut indexed = vec![meta.subject.clone(), meta.sub.clone()];
            indexed.extend(meta.user_name.clone());
            indexed.sort();
            indexed.dedup();
            for u in &indexed {
                inv.key(format!("{PREFIX}u:{u}"));
            }
            if let Some(sid) = &meta.sid {
                inv.key(format!("{PREFIX}sid:{sid}"));
            }
            inv.arg(PREFIX)
                .arg(CHANNEL)
                .arg(&inner.origin)
                .arg(mode)
                .arg(enc(&meta)?)
                .arg(sealed)
                .arg(ttl_ms)
                .arg(&handle)
                .arg(session.expires_at)
                .arg(session.last_seen);
            let mut conn = inner.conn.clone();
            let written: i64 = inner.call("save a session", inv.invoke_async(&mut conn)).await?;
            if written > 0 && inner.generation.load(Ordering::SeqCst) == seen {
                let session = Arc::new(session);
                inner.verified(&handle, &session);
                if inner.subscribed.load(Ordering::SeqCst) {
                    inner.cache.insert(handle, session);
                }
            } else {
                inner.forget(&[&handle]);
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let handle = session_handle(id);
            self.inner.forget(&[&handle]);
            self.inner.end_sessions("h", &[handle]).await.map(|_| ())
        })
    }

    fn delete_by_sid<'a>(&'a self, sid: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move { self.inner.end_sessions("set", &[format!("sid:{sid}")]).await })
    }

    fn delete_by_user<'a>(&'a self, user: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move { self.inner.end_sessions("set", &[format!("u:{}", user.to_lowercase())]).await })
    }

    fn delete_by_handle<'a>(&'a self, handle: &'a str) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let handle = handle.to_ascii_lowercase();
            if handle.is_empty() || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(0);
            }
            self.inner.end_sessions("h", &[handle]).await
        })
    }

    fn list<'a>(&'a self, user: Option<&'a str>) -> StoreFuture<'a, Vec<SessionInfo>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn.clone();
            let handles: Vec<String> = match user {
                Some(u) => {
                    inner
                        .call(
                            "list sessions",
                            ::redis::cmd("SMEMBERS")
                                .arg(format!("{PREFIX}u:{}", u.to_lowercase()))
                                .query_async(&mut conn),
                        )
                        .await?
                }
                None => {
                    inner
                        .call(
                            "list sessions",
                            ::redis::cmd("ZRANGE")
                                .arg(format!("{PREFIX}sessions"))
                                .arg(0)
                                .arg(-1)
                                .query_async(&mut conn),
                        )
                        .await?
                }
            };
            if handles.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = ::redis::pipe();
            for h in &handles {
                pipe.hget(session_key_name(h), "m");
            }
            let metas: Vec<Option<String>> = inner.call("list sessions", pipe.query_async(&mut conn)).await?;
            let mut out: Vec<SessionInfo> = handles
                .into_iter()
                .zip(metas)
                .filter_map(|(handle, m)| {
                    // Gone (expired) since it was indexed, or unreadable: not listed.
                    let m: Meta = serde_json::from_str(&m?).ok()?;
                    Some(SessionInfo {
                        handle,
                        subject: m.subject,
                        user_name: m.user_name,
                        created_at: m.created_at,
                        last_seen: m.last_seen,
                        expires_at: m.expires_at,
                    })
                })
                .collect();
            out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.handle.cmp(&b.handle)));
            Ok(out)
        })
    }
}

impl Store for RedisStore {
    fn load_directory(&self) -> Result<DirData, StoreError> {
        // Blocking, at start-up: connections of its own on a runtime of its own, in a thread of its own, so that
        // it may be called from anywhere (even from within the runtime the store's connection lives on).
        let target = self.inner.target.clone();
        let display = self.inner.display.clone();
        let read = move || -> Result<DirHashes, StoreError> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| err("cannot start a runtime", e))?;
            runtime.block_on(async {
                let connector = Arc::new(Connector::new(&target).map_err(|e| err("bad url", e.kind_str()))?);
                let read = async {
                    let mut conn = connector.connect().await?;
                    read_dir_invocation().invoke_async::<DirHashes>(&mut conn).await
                };
                match tokio::time::timeout(OP_TIMEOUT * 2, read).await {
                    Ok(Ok(h)) => Ok(h),
                    Ok(Err(e)) => Err(err(&format!("cannot read the directory from {display}"), e.kind_str())),
                    Err(_) => Err(err(&format!("cannot read the directory from {display}"), "timeout")),
                }
            })
        };
        let hashes = std::thread::scope(|s| s.spawn(read).join())
            .map_err(|_| StoreError("redis: the directory reader failed".into()))??;
        let (version, data) = decode_dir(hashes)?;
        let mut copy = lock(&self.inner.dir);
        copy.version = version;
        copy.data = Some(Arc::new(data.clone()));
        copy.checked = Some(tokio::time::Instant::now());
        Ok(data)
    }

    fn transact<'a>(&'a self, f: ChangeFn<ScimError>) -> StoreFuture<'a, Result<Committed, ScimError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn.clone();
            // One writer at a time across replicas, like SQLite's BEGIN IMMEDIATE: what `f` sees is what it
            // changes.
            let token = crate::secret::random_token(16);
            let lock_key = format!("{PREFIX}dir:lock");
            let deadline = tokio::time::Instant::now() + DIR_LOCK_TTL;
            loop {
                let got: Option<String> = inner
                    .call(
                        "lock the directory",
                        ::redis::cmd("SET")
                            .arg(&lock_key)
                            .arg(&token)
                            .arg("NX")
                            .arg("PX")
                            .arg(DIR_LOCK_TTL.as_millis() as u64)
                            .query_async(&mut conn),
                    )
                    .await?;
                if got.is_some() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError("redis: the directory stayed locked by another writer".into()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let result = self.transact_locked(f).await;
            let unlocked: Result<i64, _> = inner
                .call("unlock the directory", UNLOCK_SCRIPT.key(&lock_key).arg(&token).invoke_async(&mut conn))
                .await;
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "cannot release the directory lock; it expires by itself");
            }
            result
        })
    }

    fn reload_if_changed<'a>(&'a self) -> StoreFuture<'a, Option<Arc<DirData>>> {
        Box::pin(async move {
            let inner = &self.inner;
            let now = tokio::time::Instant::now();
            {
                let copy = lock(&inner.dir);
                let recent = copy.checked.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
                // Announcements arrive within milliseconds; still look once a second, in case one was lost.
                if recent && !inner.dir_dirty.load(Ordering::SeqCst) && inner.subscribed.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            inner.dir_dirty.store(false, Ordering::SeqCst);
            let mut conn = inner.conn.clone();
            let version: Option<u64> = match inner
                .call(
                    "directory version",
                    ::redis::cmd("GET").arg(format!("{PREFIX}dir:version")).query_async(&mut conn),
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    inner.dir_dirty.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            {
                let mut copy = lock(&inner.dir);
                copy.checked = Some(now);
                if version.unwrap_or(0) == copy.version && copy.data.is_some() {
                    return Ok(None);
                }
            }
            let (version, data) = match inner.read_directory().await {
                Ok(d) => d,
                Err(e) => {
                    inner.dir_dirty.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            };
            // Another replica changed the directory: it may have ended sessions cached here.
            inner.drop_local_sessions();
            let data = Arc::new(data);
            let mut copy = lock(&inner.dir);
            copy.version = version;
            copy.data = Some(data.clone());
            Ok(Some(data))
        })
    }

    fn purge_expired<'a>(&'a self, now: u64, idle_before: u64) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            // Redis expires the session keys by itself at their end; this removes their index entries, and
            // the sessions the idle timeout ended (their keys would otherwise stay until their end).
            let inner = &self.inner;
            let mut purged = 0;
            for (index, cutoff) in [("sessions", now), ("sessions:seen", idle_before)] {
                let mut conn = inner.conn.clone();
                let handles: Vec<String> = inner
                    .call(
                        "purge sessions",
                        ::redis::cmd("ZRANGEBYSCORE")
                            .arg(format!("{PREFIX}{index}"))
                            .arg("-inf")
                            .arg(cutoff)
                            .arg("LIMIT")
                            .arg(0)
                            .arg(1000)
                            .query_async(&mut conn),
                    )
                    .await?;
                if !handles.is_empty() {
                    purged += inner.end_sessions("h", &handles).await?;
                }
            }
            Ok(purged)
        })
    }

    fn unavailable(&self) -> Option<String> {
        (!self.inner.up.load(Ordering::Relaxed)).then(|| "the redis store is unreachable".to_string())
    }

    fn metrics(&self) -> Option<StoreMetrics> {
        Some(self.inner.metrics.clone())
    }

    fn changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(self.inner.changed.clone())
    }

    fn lock_refresh<'a>(&'a self, id: &'a str, ttl: Duration) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let token = crate::secret::random_token(16);
            let mut conn = self.inner.conn.clone();
            let got: Option<String> = self
                .inner
                .call(
                    "lock a refresh",
                    ::redis::cmd("SET")
                        .arg(format!("{PREFIX}refresh:{}", session_handle(id)))
                        .arg(&token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl.as_millis().max(1) as u64)
                        .query_async(&mut conn),
                )
                .await?;
            Ok(got.map(|_| token))
        })
    }

    fn unlock_refresh<'a>(&'a self, id: &'a str, token: String) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let key = format!("{PREFIX}refresh:{}", session_handle(id));
            let _: i64 =
                self.inner.call("unlock a refresh", UNLOCK_SCRIPT.key(key).arg(token).invoke_async(&mut conn)).await?;
            Ok(())
        })
    }

    fn load_fresh<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<Session>>> {
        Box::pin(async move {
            let handle = session_handle(id);
            self.inner.forget(&[&handle]);
            self.inner.load_uncached(id, &handle).await
        })
    }

    fn recall<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            self.inner.call("recall", ::redis::cmd("GET").arg(format!("{PREFIX}c:{key}")).query_async(&mut conn)).await
        })
    }

    fn remember<'a>(&'a self, key: &'a str, value: Vec<u8>, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.inner.conn.clone();
            let mut set = ::redis::cmd("SET");
            set.arg(format!("{PREFIX}c:{key}")).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64);
            self.inner.call("remember", set.query_async::<()>(&mut conn)).await
        })
    }
}

impl RedisStore {
    async fn transact_locked(&self, f: ChangeFn<ScimError>) -> Result<Result<Committed, ScimError>, StoreError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let version: Option<u64> = inner
            .call("directory version", ::redis::cmd("GET").arg(format!("{PREFIX}dir:version")).query_async(&mut conn))
            .await?;
        let cached = {
            let copy = lock(&inner.dir);
            copy.data.clone().filter(|_| copy.version == version.unwrap_or(0))
        };
        let (version, mut data) = match cached {
            Some(d) => (version.unwrap_or(0), (*d).clone()),
            None => inner.read_directory().await?,
        };
        let change = match f(&data) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let pairs = |items: &[Resource]| -> Result<Vec<(String, String)>, StoreError> {
            items.iter().map(|r| Ok((r.id.clone(), enc(r)?))).collect()
        };
        let (pu, pg) = (pairs(&change.put_users)?, pairs(&change.put_groups)?);
        let rv = change.revoke.iter().map(|r| Ok((r.key.clone(), enc(r)?))).collect::<Result<Vec<_>, StoreError>>()?;
        let json = enc(&ChangeJson {
            pu: pu.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            du: &change.delete_users,
            pg: pg.iter().map(|(k, v)| (k.as_str(), v.clone())).collect(),
            dg: &change.delete_groups,
            rv: rv.iter().map(|(k, v): &(String, String)| (k.as_str(), v.clone())).collect(),
            ur: &change.unrevoke,
            es: change.end_sessions.iter().map(|u| u.to_lowercase()).collect(),
        })?;
        let (ended, new_version): (i64, u64) = inner
            .call(
                "write the directory",
                TRANSACT_SCRIPT
                    .key(format!("{PREFIX}dir:version"))
                    .arg(PREFIX)
                    .arg(CHANNEL)
                    .arg(&inner.origin)
                    .arg(version)
                    .arg(json)
                    .invoke_async(&mut conn),
            )
            .await?;
        if ended < 0 {
            // Only a writer that outlived its lock gets here; nothing was written.
            inner.dir_dirty.store(true, Ordering::SeqCst);
            return Err(StoreError("redis: the directory changed during the write; nothing was written".into()));
        }
        if !change.end_sessions.is_empty() {
            inner.drop_local_sessions();
        }
        data.apply(&change);
        let data = Arc::new(data);
        let mut copy = lock(&inner.dir);
        copy.version = new_version;
        copy.data = Some(data.clone());
        Ok(Ok(Committed { data, sessions_ended: ended as usize, change }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `redis-server` of our own on a free loopback port, in a temp dir, nothing saved; killed when dropped.
    pub struct TestRedis {
        child: std::process::Child,
        dir: std::path::PathBuf,
        /// `redis://127.0.0.1:PORT`
        pub url: String,
        pub port: u16,
    }

    impl TestRedis {
        /// SIGKILL.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Starts one, or returns `None` (with a notice) when redis-server is not installed, unless
    /// POSTERN_REQUIRE_REDIS=1 demands it.
    pub fn start_redis() -> Option<TestRedis> {
        start_server(|_, _| Vec::new())
    }

    /// Starts a redis-server with the arguments `args(port, dir)` gives (a config file first, if any).
    pub fn start_server(args: impl Fn(u16, &std::path::Path) -> Vec<String>) -> Option<TestRedis> {
        let dir = std::env::temp_dir().join(format!(
            "postern-redis-{}-{}",
            std::process::id(),
            crate::secret::random_token(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("redis-server")
                .args(args(port, &dir))
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    assert!(
                        std::env::var("POSTERN_REQUIRE_REDIS").as_deref() != Ok("1"),
                        "redis-server is not installed and POSTERN_REQUIRE_REDIS=1"
                    );
                    eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                }
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(TestRedis { child, dir, url: format!("redis://127.0.0.1:{port}"), port });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start");
    }

    fn store(url: &str) -> Arc<RedisStore> {
        Arc::new(RedisStore::open(&RedisConfig::parse(url, None).unwrap()).unwrap())
    }

    #[tokio::test]
    async fn redis_store_conforms() {
        let Some(sessions) = start_redis() else { return };
        crate::session::memory::conformance::run(store(&sessions.url)).await;
        let Some(directory) = start_redis() else { return };
        let url = directory.url.clone();
        crate::store::conformance::run(store(&url), Some(Box::new(move || store(&url) as Arc<dyn Store>))).await;
    }

    #[tokio::test]
    async fn sessions_are_sealed_with_their_own_ticket_and_keyed_by_its_hash() {
        let Some(redis) = start_redis() else { return };
        let a = store(&redis.url);
        let claims = serde_json::json!({"sub": "s", "oid": "o", "exp": 1});
        let identity = crate::identity::Identity::from_claims(
            claims.as_object().cloned().unwrap(),
            crate::identity::Proof::Session,
        );
        let session = Session {
            id: Secret::new("the-ticket-value-with-256-bits-of-randomness".into()),
            identity,
            id_token: Some(Secret::new("the-id-token".into())),
            refresh_token: Some(Secret::new("the-refresh-token".into())),
            created_at: 1,
            last_seen: 1,
            expires_at: unix_now() + 3600,
            sid: None,
        };
        a.save(session.clone()).await.unwrap();
        let mut conn = Client::open(redis.url.as_str()).unwrap().get_connection().unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        let key = session_key_name(&session_handle(session.id.expose()));
        assert!(keys.contains(&key), "{keys:?}");
        let mut dump = Vec::new();
        for k in &keys {
            let kind: String = ::redis::cmd("TYPE").arg(k).query(&mut conn).unwrap();
            if kind == "hash" {
                let fields: Vec<Vec<u8>> = ::redis::cmd("HVALS").arg(k).query(&mut conn).unwrap();
                fields.into_iter().for_each(|f| dump.extend(f));
            }
            dump.extend(k.as_bytes());
        }
        for secret in ["the-ticket-value", "the-id-token", "the-refresh-token"] {
            assert!(!dump.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is in Redis");
        }
        let ttl: i64 = ::redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
        assert!((3590..=3600).contains(&ttl), "the key expires with the session: {ttl}");
        // Another replica reads it; a record moved under another ticket's handle opens nothing.
        let b = store(&redis.url);
        assert!(b.load(session.id.expose()).await.unwrap().is_some());
        let other = "another-ticket";
        let sealed: Vec<u8> = ::redis::cmd("HGET").arg(&key).arg("x").query(&mut conn).unwrap();
        assert!(open_sealed(other, &session_handle(other), &sealed).is_none());
    }

    #[tokio::test]
    async fn a_session_ended_on_one_replica_is_forgotten_by_the_others_at_once() {
        let Some(redis) = start_redis() else { return };
        ended_sessions_are_forgotten_at_once(&redis.url).await;
    }

    async fn ended_sessions_are_forgotten_at_once(url: &str) {
        let (a, b) = (store(url), store(url));
        for s in [&a, &b] {
            while !s.inner.subscribed.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        a.save(session("ticket-1")).await.unwrap();
        assert!(b.load("ticket-1").await.unwrap().is_some(), "b reads it, and caches it");
        a.delete("ticket-1").await.unwrap();
        let started = std::time::Instant::now();
        while b.load("ticket-1").await.unwrap().is_some() {
            assert!(started.elapsed() < Duration::from_secs(1), "b still honours an ended session");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eprintln!("b forgot the ended session after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn concurrent_directory_writes_from_two_replicas_lose_nothing() {
        let Some(redis) = start_redis() else { return };
        concurrent_directory_writes_lose_nothing(&redis.url).await;
    }

    async fn concurrent_directory_writes_lose_nothing(url: &str) {
        let (a, b) = (store(url), store(url));
        a.load_directory().unwrap();
        b.load_directory().unwrap();
        let put = |s: Arc<RedisStore>, id: String| async move {
            s.transact(Box::new(move |d: &DirData| {
                let mut r = Resource { id, doc: serde_json::Map::new(), created: 1, modified: 1, version: 1 };
                r.doc.insert("seen".into(), serde_json::json!(d.users.len()));
                Ok(crate::store::Change { put_users: vec![r], ..Default::default() })
            }))
            .await
            .unwrap()
            .unwrap()
        };
        // Twenty writes at once, half through each replica: each sees all the writes before it.
        let writes = (0..20).map(|i| put(if i % 2 == 0 { a.clone() } else { b.clone() }, format!("u{i:02}")));
        let done = futures_util::future::join_all(writes).await;
        let mut seen: Vec<u64> =
            done.iter().map(|c| c.data.users[&c.change.put_users[0].id].doc["seen"].as_u64().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<u64>>(), "every write saw exactly the ones before it");
        assert_eq!(a.load_directory().unwrap().users.len(), 20);
        assert!(b.reload_if_changed().await.unwrap().is_none_or(|d| d.users.len() == 20));
        assert_eq!(b.load_directory().unwrap().users.len(), 20);
    }

    pub fn session(ticket: &str) -> Session {
        let claims = serde_json::json!({"sub": "s", "oid": "o", "exp": 1});
        let identity = crate::identity::Identity::from_claims(
            claims.as_object().cloned().unwrap(),
            crate::identity::Proof::Session,
        );
        let now = unix_now();
        Session {
            id: Secret::new(ticket.into()),
            identity,
            id_token: None,
            refresh_token: None,
            created_at: now,
            last_seen: now,
            expires_at: now + 3600,
            sid: None,
        }
    }

    fn query<T: ::redis::FromRedisValue>(port: u16, args: &[&str]) -> ::redis::RedisResult<T> {
        let mut conn = Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()?;
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    /// A master, its replica and one Sentinel, on free ports; then a failover. The store follows the new
    /// master, and the sessions written before it are there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sentinel_failover_moves_the_store_to_the_new_master() {
        let Some(master) = start_redis() else { return };
        let mport = master.port;
        let Some(replica) = start_server(|_, _| vec!["--replicaof".into(), "127.0.0.1".into(), mport.to_string()])
        else {
            return;
        };
        let Some(mut sentinel) = start_server(|port, dir| {
            let conf = dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {mport} 1\n\
                     sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n"
                ),
            )
            .unwrap();
            vec![conf.to_string_lossy().into_owned(), "--sentinel".into()]
        }) else {
            return;
        };
        let started = std::time::Instant::now();
        let url = format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port);
        let store = Arc::new(RedisStore::open(&RedisConfig::parse(&url, None).unwrap()).unwrap());
        store.load_directory().unwrap();
        store.save(session("before-failover")).await.unwrap();
        // The replica has it, and the Sentinel knows the replica.
        let _: i64 = query(mport, &["WAIT", "1", "5000"]).unwrap();
        let mut asked = 0;
        loop {
            asked += 1;
            match query::<String>(sentinel.port, &["SENTINEL", "FAILOVER", "mymaster"]) {
                Ok(_) => break,
                Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "no failover: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let failover = std::time::Instant::now();
        loop {
            let addr: Vec<String> = query(sentinel.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]).unwrap();
            if addr.get(1).map(String::as_str) == Some(replica.port.to_string().as_str()) {
                break;
            }
            assert!(failover.elapsed() < Duration::from_secs(15), "the sentinel never promoted the replica");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let promoted = failover.elapsed();
        // Requests may fail closed for a moment; then the store writes to the new master.
        let (mut failed, mut tries) = (0, 0);
        let recovered = loop {
            let ticket = format!("after-failover-{tries}");
            tries += 1;
            if store.save(session(&ticket)).await.is_err() {
                failed += 1;
            } else {
                let key = session_key_name(&session_handle(&ticket));
                if query::<i64>(replica.port, &["EXISTS", &key]).unwrap() == 1 {
                    break ticket;
                }
            }
            assert!(failover.elapsed() < Duration::from_secs(20), "the store never reached the new master");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let switched = failover.elapsed() - promoted;
        assert!(store.load("before-failover").await.unwrap().is_some(), "the session survived the failover");
        assert!(store.load(&recovered).await.unwrap().is_some());
        // The old master may go away for good: the store never needed it again.
        drop(master);
        store.save(session("after-the-old-master-died")).await.unwrap();
        assert!(store.load("after-the-old-master-died").await.unwrap().is_some());
        sentinel.kill();
        eprintln!(
            "sentinel failover: asked {asked} times; promoted after {promoted:?}; the store wrote to the new master \
             {switched:?} after that ({failed} of {tries} writes failed closed meanwhile); {:?} in all",
            started.elapsed()
        );
    }

    /// Three masters on free ports joined into a Redis Cluster (`redis-cli --cluster create`).
    pub fn start_cluster() -> Option<Vec<TestRedis>> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(start_server(|port, _| {
                ["--cluster-enabled", "yes", "--cluster-config-file", &format!("nodes-{port}.conf")]
                    .map(String::from)
                    .to_vec()
            })?);
        }
        let status = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        let started = std::time::Instant::now();
        for n in &nodes {
            while !query::<String>(n.port, &["CLUSTER", "INFO"]).unwrap().contains("cluster_state:ok") {
                assert!(started.elapsed() < Duration::from_secs(15), "the cluster never became ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(nodes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_cluster_store_conforms() {
        let Some(nodes) = start_cluster() else { return };
        let started = std::time::Instant::now();
        let url = format!(
            "redis+cluster://{}",
            nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
        );
        crate::session::memory::conformance::run(store(&url)).await;
        for n in &nodes {
            let _: () = query(n.port, &["FLUSHALL"]).unwrap();
        }
        let factory = url.clone();
        crate::store::conformance::run(store(&url), Some(Box::new(move || store(&factory) as Arc<dyn Store>))).await;
        // The subscription is on the first node, the keys on another: announcements cross the cluster.
        ended_sessions_are_forgotten_at_once(&url).await;
        for n in &nodes {
            let _: () = query(n.port, &["FLUSHALL"]).unwrap();
        }
        concurrent_directory_writes_lose_nothing(&url).await;
        // Every key in one slot, on one node.
        let per_node: Vec<usize> =
            nodes.iter().map(|n| query::<Vec<String>>(n.port, &["KEYS", "*"]).unwrap().len()).collect();
        assert_eq!(per_node.iter().filter(|&&k| k > 0).count(), 1, "keys on several nodes: {per_node:?}");
        eprintln!("cluster conformance in {:?}; keys per node {per_node:?}", started.elapsed());
    }

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        let c = RedisConfig::parse("rediss://app:pw-secret@redis.example.com:6380/2", None).unwrap();
        assert_eq!(c.display, "rediss://app:***@redis.example.com:6380/2");
        assert!(!format!("{c:?}").contains("pw-secret"));
        let c = RedisConfig::parse("redis://redis:6379", Some("from-a-file")).unwrap();
        let Target::Single(url) = &c.target else { panic!() };
        assert!(url.expose().contains("from-a-file") && !c.display.contains("from-a-file"));
        let c = RedisConfig::parse("redis+sentinel://app:pw-secret@s1:26379,s2/mymaster/2", None).unwrap();
        assert_eq!(c.display, "redis+sentinel://app:***@s1:26379,s2:26379/mymaster/2");
        assert!(!format!("{c:?}").contains("pw-secret"));
        let Target::Sentinel { sentinels, service, master, tls } = &c.target else { panic!() };
        assert_eq!((sentinels.len(), service.as_str(), *tls), (2, "mymaster", false));
        assert!(master.expose().contains("pw-secret") && master.expose().ends_with("/2"));
        let c = RedisConfig::parse("rediss+cluster://n1:7000,n2:7001,n3", Some("p@ss/word")).unwrap();
        assert_eq!(c.display, "rediss+cluster://:***@n1:7000,n2:7001,n3:6379");
        let Target::Cluster(nodes) = &c.target else { panic!() };
        assert_eq!(nodes.len(), 3);
        let client = Client::open(nodes[2].expose().as_str()).unwrap();
        assert_eq!(client.get_connection_info().redis_settings().password(), Some("p@ss/word"));
        for bad in [
            "http://x:1",
            "redis://",
            "redis://h/notadb",
            "not a url with pw-secret",
            "redis+sentinel://u:pw-secret@s1:26379",
            "redis+sentinel://u:pw-secret@s1:26379/my master",
            "redis+sentinel://u:pw-secret@s1:26379/m/x",
            "redis+cluster://u:pw-secret@n1:7000,,n2:7001",
            "redis+cluster://u:pw-secret@n1:7000/3",
            "redis+pw-secret://h",
        ] {
            let e = RedisConfig::parse(bad, None).unwrap_err();
            assert!(!e.contains("pw-secret"), "{e}");
        }
    }
}

#[cfg(test)]
mod grace_tests {
    use super::*;

    #[tokio::test]
    async fn a_session_verified_within_the_grace_is_served_while_redis_is_away() {
        let Some(mut redis) = tests::start_redis() else { return };
        let mut config = RedisConfig::parse(&redis.url, None).unwrap();
        config.grace = Duration::from_secs(30);
        let store = RedisStore::open(&config).unwrap();
        let session = tests::session("ticket-g");
        store.save(session).await.unwrap();
        assert!(store.load("ticket-g").await.unwrap().is_some());
        redis.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.load("ticket-g").await.unwrap().is_some(), "served through the grace");
        assert!(store.load("another").await.is_err(), "anything else fails closed");
    }
}
