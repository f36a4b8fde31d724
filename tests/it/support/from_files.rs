//! Postern started from files written for one test — `postern.toml` with the test's own `[server]` lines
//! (trusted proxies, shutdown grace) and a policy directory on disk that the test can rewrite and reload —
//! with the admin listener (`/metrics`, `/healthz`, `/readyz`) beside it, in front of an in-process provider
//! and echo upstream. Everything stops when it is dropped; a test can also start the shutdown itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use postern::clock::Clock;
use postern::demo::{DEMO_POLICY, DEMO_POLICY_UPSTREAM};
use postern::server::Listener;
use postern::state::{Shared, State};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::files::{Stack, TempDir, start_stack};

/// What to start.
pub struct Options {
    /// Extra lines for `[server]`, such as `trusted_proxies = ["127.0.0.1"]`.
    pub server_extra: String,
    /// The policy, written to `policies/policy.toml`; `http://127.0.0.1:8081` in it means the echo upstream.
    pub policy: String,
    /// `[server] shutdown_grace`: how long requests in flight may take to finish at shutdown.
    pub shutdown_grace: &'static str,
    /// Extra top-level tables, such as `[limits]` or `[scim]` (the file `scim.token` holds [`SCIM_TOKEN`]).
    pub config_extra: String,
}

/// The SCIM secret in `scim.token` beside every config these helpers write.
pub const SCIM_TOKEN: &str = "test-scim-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// `[scim]` reading [`SCIM_TOKEN`] from `scim.token`.
pub const SCIM_CONFIG: &str = "[scim]\npath = \"/scim/v2\"\ntoken = { file = \"scim.token\" }\n";

impl Default for Options {
    fn default() -> Self {
        Options {
            server_extra: String::new(),
            policy: DEMO_POLICY.to_string(),
            shutdown_grace: "5s",
            config_extra: String::new(),
        }
    }
}

/// A running Postern read from files.
pub struct Postern {
    /// `http://127.0.0.1:PORT`, also its public URL.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin_url: String,
    /// Its state, for reloads.
    pub shared: Shared,
    /// The provider and the echo upstream.
    pub stack: Stack,
    /// The directory holding `postern.toml` and `policies/`.
    pub dir: TempDir,
    stop: watch::Sender<bool>,
    _admin_stop: watch::Sender<bool>,
    served: Option<JoinHandle<()>>,
}

async fn until(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

impl Postern {
    /// A URL on Postern's public listener.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A URL on the admin listener.
    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.admin_url)
    }

    /// Writes policy file `name` into the policy directory (`http://127.0.0.1:8081` means the echo upstream)
    /// and returns its path. Postern sees it at the next reload.
    pub fn write_policy(&self, name: &str, text: &str) -> PathBuf {
        self.dir.write(&format!("policies/{name}"), &text.replace(DEMO_POLICY_UPSTREAM, &self.stack.echo.url()))
    }

    /// Starts the shutdown, as SIGTERM would: readiness turns false and requests in flight may finish.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the public listener has stopped serving (after [`Postern::begin_shutdown`]).
    pub async fn stopped(&mut self) {
        if let Some(task) = self.served.take() {
            task.await.expect("the server task ends cleanly");
        }
    }
}

/// Writes the files for `options` and starts Postern on them, with the admin listener.
pub async fn start_postern(options: Options) -> Postern {
    let stack = start_stack().await;
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("an address");
    let dir = TempDir::new("postern");
    dir.write("client_secret", &stack.provider.config().client_secret);
    dir.write("session.key", "test session key: not a secret, for integration tests only\n");
    dir.write("scim.token", &format!("{SCIM_TOKEN}\n"));
    dir.write("policies/policy.toml", &options.policy.replace(DEMO_POLICY_UPSTREAM, &stack.echo.url()));
    let text = format!(
        r#"[server]
public_url = "http://{addr}"
listen = ["{addr}"]
shutdown_grace = "{grace}"
{server_extra}

[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = {{ file = "client_secret" }}

[session]
secret = {{ file = "session.key" }}

[policies]
dir = "policies"

[bearer]
audiences = ["{audience}"]

{config_extra}
"#,
        config_extra = options.config_extra,
        grace = options.shutdown_grace,
        server_extra = options.server_extra,
        issuer = stack.provider.issuer(),
        client_id = stack.provider.config().client_id,
        audience = stack.provider.config().access_token_audience,
    );
    let path = dir.write("postern.toml", &text);
    let (mut config, _) =
        postern::config::load(&path, &|_| None).unwrap_or_else(|e| panic!("the config is valid: {e}"));
    let (policy, _) =
        postern::policy::load_dir(&config.policies_dir).unwrap_or_else(|e| panic!("the policy is valid: {e}"));
    // The default store: the database file beside the config.
    let store = State::open_store(&mut config).expect("the store opens");
    let state = State::build(config, policy, store, Clock::system()).expect("the state builds");
    let (stop, stopped) = watch::channel(false);
    let (shared, served) = postern::app::launch(state, vec![Listener { tcp, tls: None }], until(stopped));
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_url = format!("http://{}", admin.local_addr().expect("an address"));
    let (admin_stop, admin_stopped) = watch::channel(false);
    tokio::spawn(postern::admin::serve(admin, shared.clone(), until(admin_stopped)));
    Postern {
        url: format!("http://{addr}"),
        addr,
        admin_url,
        shared,
        stack,
        dir,
        stop,
        _admin_stop: admin_stop,
        served: Some(served),
    }
}
