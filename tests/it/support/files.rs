//! Config-file scenarios: a temporary directory holding `postern.toml`, secrets and policies, and the
//! development provider and echo upstream started in-process for a Postern that reads those files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use postern::demo::echo::EchoUpstream;
use postern::demo::provider::{DevProvider, DevProviderConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A directory under the system's temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory whose name includes `label`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "postern-it-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("the temp dir can be created");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `name` (creating parent directories) and returns the path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("the parent directory can be created");
        }
        std::fs::write(&path, content).expect("the file can be written");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released), for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("an ephemeral port").port()
}

/// The development provider and the echo upstream, in-process; both stop when this is dropped.
pub struct Stack {
    /// The provider.
    pub provider: DevProvider,
    /// The echo upstream.
    pub echo: EchoUpstream,
    _stop: watch::Sender<bool>,
    provider_stop: watch::Sender<bool>,
}

impl Stack {
    /// Stops the provider (it stops listening; connections to it are refused), as in an outage.
    pub fn stop_provider(&self) {
        let _ = self.provider_stop.send(true);
    }
}

async fn until(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            break;
        }
    }
}

/// Starts a provider and an echo upstream on ephemeral loopback ports.
pub async fn start_stack() -> Stack {
    let (stop, stopped) = watch::channel(false);
    let (provider_stop, provider_stopped) = watch::channel(false);
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let echo = EchoUpstream::start(TcpListener::bind(any).await.expect("bind"), until(stopped.clone()))
        .await
        .expect("the echo upstream starts");
    let provider =
        DevProvider::start(TcpListener::bind(any).await.expect("bind"), DevProviderConfig::default(), async move {
            tokio::select! {
                _ = until(stopped) => {}
                _ = until(provider_stopped) => {}
            }
        })
        .await
        .expect("the provider starts");
    Stack { provider, echo, _stop: stop, provider_stop }
}

/// The `[server]` listener lines of a config.
pub enum Listen {
    /// `listen = ["127.0.0.1:PORT"]`, `public_url = "http://127.0.0.1:PORT"`.
    Http(u16),
    /// `tls_listen = ["127.0.0.1:PORT"]` with the fixture certificate, `public_url = "https://127.0.0.1:PORT"`.
    Https(u16),
}

/// Writes `postern.toml` (plus its secret files) into `dir` for `provider`, with the policies in
/// `dir/policies`. Returns the config's path.
pub fn write_config(dir: &TempDir, listen: Listen, provider: &DevProvider) -> PathBuf {
    dir.write("client_secret", &provider.config().client_secret);
    // Not base64 (it has spaces), so it is taken as raw key material; more than 32 bytes.
    dir.write("session.key", "test session key: not a secret, for integration tests only\n");
    let server = match listen {
        Listen::Http(port) => {
            format!("public_url = \"http://127.0.0.1:{port}\"\nlisten = [\"127.0.0.1:{port}\"]")
        }
        Listen::Https(port) => format!(
            "public_url = \"https://127.0.0.1:{port}\"\ntls_listen = [\"127.0.0.1:{port}\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}",
            super::fixture("localhost.pem").display(),
            super::fixture("localhost.key").display()
        ),
    };
    let policies = dir.path().join("policies");
    let text = format!(
        r#"[server]
{server}
shutdown_grace = "1s"

[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
client_secret = {{ file = "client_secret" }}

[session]
secret = {{ file = "session.key" }}

[policies]
dir = "{policies}"

[bearer]
audiences = ["{audience}"]
"#,
        issuer = provider.issuer(),
        client_id = provider.config().client_id,
        audience = provider.config().access_token_audience,
        policies = policies.display(),
    );
    dir.write("postern.toml", &text)
}
