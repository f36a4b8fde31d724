//! `postern`: the command line. Parses arguments, sets up logging, reads the environment, and calls the library.
//! Nothing below this file reads the environment or exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use postern::clock::Clock;
use postern::state::State;

/// Postern: an identity-aware reverse proxy. People sign in with OpenID Connect (Microsoft Entra ID or any
/// provider with a discovery document), services present bearer tokens, and policy files say who may reach
/// which tool.
#[derive(Parser, Debug)]
#[command(name = "postern", version, about, long_about = None, after_help = "Examples:\n  postern demo                                  try it: provider, upstream and Postern on 127.0.0.1\n  postern check --config /etc/postern/postern.toml\n  postern serve --config /etc/postern/postern.toml\n  postern explain --config /etc/postern/postern.toml --url https://gitlab.example.com/admin --group eng\n  postern keygen --out-dir /etc/postern\n  postern version")]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "POSTERN_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `postern=debug,audit=info`); RUST_LOG is used when unset.
    #[arg(long, global = true, env = "POSTERN_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run Postern with a config file.
    ///
    /// Example: postern serve --config /etc/postern/postern.toml
    Serve {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
    },
    /// Try Postern: a development OpenID provider, an echo upstream and Postern on 127.0.0.1, no files needed.
    ///
    /// Open the printed URL and sign in as alice (groups eng, admins), bob (eng) or carol (no group).
    ///
    /// Example: postern demo --listen 127.0.0.1:8080
    Demo {
        /// Postern's address; loopback only. The echo upstream takes the next port when it is free.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Send the demo routes to this upstream (a tool of yours on loopback) instead of the echo upstream.
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// Keep the demo's sessions and directory in this Redis instead of memory (redis://127.0.0.1:6379).
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
    },
    /// Check a config file and its policies without starting anything; exits non-zero on errors.
    ///
    /// Example: postern check --config /etc/postern/postern.toml
    Check {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
    },
    /// Explain the decision for one request: the route chosen, each rule, and why it is allowed or denied.
    ///
    /// Example: postern explain --url https://gitlab.example.com/admin --group eng --group admins
    ///
    /// Example: postern explain --method POST --url https://gitlab.example.com/api/v4/packages --auth bearer --claims token-claims.json
    Explain {
        /// The config file (for its policy directory).
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request's URL (scheme and host included).
        #[arg(long)]
        url: String,
        /// A group the caller is in (alias from [groups] or id); repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// An app role the caller has; repeatable.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A JSON file of the caller's token claims (sub, oid, tid, iss, amr, custom claims…).
        #[arg(long)]
        claims: Option<PathBuf>,
        /// How the caller proves who they are: session or bearer.
        #[arg(long, default_value = "session")]
        auth: String,
        /// Explain the request as if nobody were signed in.
        #[arg(long, conflicts_with_all = ["groups", "roles", "claims"])]
        anonymous: bool,
    },
    /// Write a session secret (session.key) and an assertion signing key (signing.pem), readable by the owner only.
    ///
    /// Example: postern keygen --out-dir /etc/postern
    Keygen {
        /// Where to write the keys.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sessions in the store: list them, or end them at once.
    ///
    /// Works on the database file named by [store] in the config, also while `postern serve` runs.
    Sessions {
        #[command(subcommand)]
        action: SessionsCommand,
    },
    /// Cut a user off at once (sessions ended, bearer tokens refused), or let them back in.
    ///
    /// Example: postern users disable alice@example.com --config /etc/postern/postern.toml
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum SessionsCommand {
    /// List sessions, newest first.
    ///
    /// Example: postern sessions list --user alice@example.com
    List {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
        /// Only this user's sessions (object id, sub or user name).
        #[arg(long)]
        user: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End every session of a user, or one session by its handle (from `sessions list`).
    ///
    /// Example: postern sessions revoke --user alice@example.com
    Revoke {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
        /// The user (object id, sub or user name).
        #[arg(long, required_unless_present = "session", conflicts_with = "session")]
        user: Option<String>,
        /// The session's handle.
        #[arg(long)]
        session: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// Deactivate a user: their sessions end and their bearer tokens are refused until enabled again.
    Disable {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
        /// The user: directory id, userName, externalId, or an object id the directory does not know.
        user: String,
    },
    /// Let a disabled user back in.
    Enable {
        /// The config file.
        #[arg(long, short, default_value = "postern.toml", env = "POSTERN_CONFIG")]
        config: PathBuf,
        /// The user, as given to `disable`.
        user: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log.as_deref());
    // One crypto provider for the whole process; an error means one is already installed, which is fine.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Keygen { out_dir, force } => keygen(&out_dir, force),
        Command::Explain { config, method, url, groups, roles, claims, auth, anonymous } => {
            explain(&config, &method, &url, &groups, &roles, claims.as_deref(), &auth, anonymous)
        }
        Command::Version => {
            println!("postern {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Serve { config } => runtime().and_then(|rt| rt.block_on(serve(&config))),
        Command::Demo { listen, upstream, redis } => {
            runtime().and_then(|rt| rt.block_on(demo(listen, upstream, redis)))
        }
        Command::Sessions { action } => runtime().and_then(|rt| rt.block_on(sessions(action))),
        Command::Users { action } => runtime().and_then(|rt| rt.block_on(users(action))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

fn init_logging(format: LogFormat, filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and checks config and policies, printing warnings; the error lists every problem.
fn load(config_path: &Path) -> Result<(postern::config::Config, postern::policy::Policy)> {
    let (config, warnings) =
        postern::config::load(config_path, &env).map_err(|d| anyhow::anyhow!("the config has errors:\n{d}"))?;
    for w in warnings.warnings() {
        eprintln!("{w}");
    }
    let (policy, warnings) = postern::policy::load_dir(&config.policies_dir)
        .map_err(|d| anyhow::anyhow!("the policies have errors:\n{d}"))?;
    for w in warnings.warnings() {
        eprintln!("{w}");
    }
    Ok((config, policy))
}

fn check(config_path: &Path) -> Result<()> {
    let (config, policy) = load(config_path)?;
    // What `serve` would read besides the config: the TLS certificate and key, the signing key, the CA file.
    if let Some(tls) = &config.server.tls {
        postern::server::tls::acceptor(&tls.cert, &tls.key)
            .map_err(|e| anyhow::anyhow!("{}: [server] tls: {e}", config_path.display()))?;
    }

    // Policy tests: *.test.toml beside the policies.
    let cases = postern::policy::cases::load_case_files(&config.policies_dir)
        .map_err(|d| anyhow::anyhow!("the policy tests have errors:\n{d}"))?;
    let results = postern::policy::cases::run(&policy, &cases);
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        println!("{r}");
    }
    if failed > 0 {
        bail!("{failed} of {} policy test case{} failed", results.len(), if results.len() == 1 { "" } else { "s" });
    }
    if !results.is_empty() {
        println!("{} policy test case{} passed", results.len(), if results.len() == 1 { "" } else { "s" });
    }
    let (routes, dir) = (policy.routes().len(), config.policies_dir.clone());
    postern::state::State::build(
        config,
        policy,
        postern::state::State::memory_store(),
        postern::clock::Clock::system(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    println!(
        "{}: OK ({routes} route{} from {})",
        config_path.display(),
        if routes == 1 { "" } else { "s" },
        dir.display()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn explain(
    config_path: &Path,
    method: &str,
    url: &str,
    groups: &[String],
    roles: &[String],
    claims: Option<&Path>,
    auth: &str,
    anonymous: bool,
) -> Result<()> {
    let (_, policy) = load(config_path)?;
    let method =
        http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).context("--method is not an HTTP method")?;
    let proof = match auth {
        "session" => postern::identity::Proof::Session,
        "bearer" => postern::identity::Proof::Bearer,
        other => bail!("--auth {other}: expected session or bearer"),
    };
    let explanation = if anonymous {
        postern::policy::explain::explain_anonymous(&policy, &method, url)
    } else {
        let claims = match claims {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                Some(serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?)
            }
            None => None,
        };
        let identity = postern::policy::explain::identity_from_flags(groups, roles, claims, proof, &policy);
        postern::policy::explain::explain(&policy, &method, url, &identity)
    };
    println!("{explanation}");
    Ok(())
}

async fn serve(config_path: &Path) -> Result<()> {
    let (mut config, policy) = load(config_path)?;
    let listeners = postern::app::bind(&config).await.map_err(anyhow::Error::msg)?;
    let addrs = postern::app::addresses(&listeners);
    let store = State::open_store(&mut config)?;
    let state = State::build(config, policy, store, Clock::system())?;
    tracing::info!(listen = ?addrs, public_url = %state.config.server.public_url, "postern is serving");
    // The admin listener (metrics, health) defaults to loopback; an address that was asked for must bind.
    let admin_addr = state.config.server.admin_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090)));
    let admin = match tokio::net::TcpListener::bind(admin_addr).await {
        Ok(l) => Some(l),
        Err(e) if state.config.server.admin_listen.is_none() => {
            tracing::warn!(addr = %admin_addr, error = %e, "cannot open the default admin listener; set [server] admin_listen");
            None
        }
        Err(e) => bail!("cannot listen on admin_listen {admin_addr}: {e}"),
    };
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let (shared, task) = postern::app::launch(state, listeners, shutdown_signal());
    if let Some(listener) = admin {
        tracing::info!(addr = %admin_addr, "admin listener: /metrics /healthz /readyz");
        tokio::spawn(postern::admin::serve(listener, shared.clone(), async move {
            let _ = admin_stopped.await;
        }));
    }
    // Policy changes are picked up without a restart: from the file watcher and on SIGHUP.
    let _watcher = match postern::reload::watch(shared.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policy directory; reload with SIGHUP");
            None
        }
    };
    #[cfg(unix)]
    {
        let shared = shared.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading policies");
                    let _ = postern::reload::reload(&shared);
                }
            });
        }
    }
    task.await.context("the server stopped unexpectedly")?;
    // The admin listener outlives the drain, so /readyz can say "draining" until the end.
    let _ = admin_stop.send(());
    Ok(())
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

/// The store named by the config at `config_path`, for the admin commands.
fn open_store(config_path: &Path) -> Result<(postern::config::Config, std::sync::Arc<dyn postern::store::Store>)> {
    let (mut config, _) =
        postern::config::load(config_path, &env).map_err(|d| anyhow::anyhow!("the config has errors:\n{d}"))?;
    if config.store == postern::store::StoreConfig::Memory {
        bail!(
            "[store] kind = \"memory\": sessions live inside the running postern only; use the admin API on its admin listener"
        );
    }
    let store = State::open_store(&mut config)?;
    Ok((config, store))
}

async fn sessions(action: SessionsCommand) -> Result<()> {
    use postern::scim::model::rfc3339;
    match action {
        SessionsCommand::List { config, user, json } => {
            let (_, store) = open_store(&config)?;
            let list = store.list(user.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            println!(
                "{:<32}  {:<30}  {:<36}  {:<20}  {:<20}  EXPIRES",
                "SESSION", "USER", "SUBJECT", "SIGNED IN", "LAST SEEN"
            );
            for s in &list {
                println!(
                    "{:<32}  {:<30}  {:<36}  {:<20}  {:<20}  {}",
                    s.handle,
                    s.user_name.as_deref().unwrap_or("-"),
                    s.subject,
                    rfc3339(s.created_at),
                    rfc3339(s.last_seen),
                    rfc3339(s.expires_at)
                );
            }
            println!("{} session{}", list.len(), if list.len() == 1 { "" } else { "s" });
            Ok(())
        }
        SessionsCommand::Revoke { config, user, session } => {
            let (_, store) = open_store(&config)?;
            let ended = match (user, session) {
                (Some(user), _) => store.delete_by_user(&user).await?,
                (None, Some(handle)) => store.delete_by_handle(&handle).await?,
                (None, None) => bail!("name --user or --session"),
            };
            tracing::warn!(target: "audit", event = "sessions-revoked", sessions_ended = ended, by = "postern sessions revoke", "sessions ended by an admin");
            println!("ended {ended} session{}", if ended == 1 { "" } else { "s" });
            if ended == 0 {
                bail!("no session matched");
            }
            Ok(())
        }
    }
}

async fn users(action: UsersCommand) -> Result<()> {
    let (disable, config, user) = match action {
        UsersCommand::Disable { config, user } => (true, config, user),
        UsersCommand::Enable { config, user } => (false, config, user),
    };
    let (config, store) = open_store(&config)?;
    let directory = postern::directory::Directory::open(store, config.directory.clone())?;
    let now = Clock::system().now();
    let by = if disable { "postern users disable" } else { "postern users enable" };
    let result = if disable {
        postern::directory::disable(&directory, &user, by, now).await
    } else {
        postern::directory::enable(&directory, &user, by, now).await
    };
    match result {
        Ok(c) => {
            postern::scim::audit(&c, by, "-");
            if disable {
                println!(
                    "{user} is disabled: {} session{} ended; bearer tokens are refused (a running postern notices within a tenth of a second)",
                    c.sessions_ended,
                    if c.sessions_ended == 1 { "" } else { "s" }
                );
            } else {
                println!("{user} is enabled again");
            }
            Ok(())
        }
        Err(postern::store::WriteError::Refused(e)) => bail!("{}", e.detail),
        Err(postern::store::WriteError::Store(e)) => bail!("{e}"),
    }
}

async fn demo(listen: SocketAddr, upstream: Option<String>, redis: Option<String>) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let echo_listen = SocketAddr::new(listen.ip(), listen.port().wrapping_add(1));
    let mut options = postern::demo::DemoOptions { listen, echo_listen, ..Default::default() };
    if let Some(url) = redis {
        // Checked like [store] url; the TOML string escapes keep a quote in it from ending the string.
        postern::store::redis::RedisConfig::parse(&url, None).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
        options.config_extra.push_str(&format!("\n[store]\nkind = \"redis\"\nurl = {}\n", toml_string(&url)));
    }
    if let Some(upstream) = upstream {
        let url = url::Url::parse(&upstream).context("--upstream is not a URL")?;
        if !url.host().as_ref().is_some_and(postern::config::is_loopback_host) {
            bail!("--upstream must be on a loopback address: the demo's provider is for development only");
        }
        options.policy = options.policy.replace(postern::demo::DEMO_POLICY_UPSTREAM, upstream.trim_end_matches('/'));
    }
    let demo = postern::demo::start(options, stop_rx).await?;
    println!();
    println!("  Postern demo is running. Open {}/ in a browser.", demo.url);
    println!("  Sign in as alice (groups eng, admins), bob (eng) or carol (no group); try {}/admin too.", demo.url);
    println!(
        "  dave is in 250 groups: his token has an Entra group overage, resolved through the provider's fake Microsoft Graph."
    );
    println!("  erin is a guest (acct = 1); frank signs in to another tenant.");
    println!("  Development OpenID provider (for development only): {}", demo.provider.issuer());
    println!("  Echo upstream: {}", demo.echo.url());
    println!();
    println!("  A service calling with a client-credentials token:");
    println!(
        "    TOKEN=$(curl -s -u {id}:{secret} -d grant_type=client_credentials -d scope=api://postern/.default {issuer}/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')",
        id = demo.provider.config().client_id,
        secret = demo.provider.config().client_secret,
        issuer = demo.provider.issuer()
    );
    println!("    curl -H \"Authorization: Bearer $TOKEN\" {}/", demo.url);
    println!();
    println!("  Press Ctrl-C to stop.");
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

fn keygen(out_dir: &Path, force: bool) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let session = out_dir.join("session.key");
    let signing = out_dir.join("signing.pem");
    for f in [&session, &signing] {
        if f.exists() && !force {
            bail!("{} exists; pass --force to replace it (replacing the session key signs everyone out)", f.display());
        }
    }
    let write = |path: &Path, content: &str| -> Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(content.as_bytes())?;
        Ok(())
    };
    let key = {
        use base64::Engine;
        let raw = postern::config::decode_key_material(postern::secret::random_token(64).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    write(&session, &format!("{key}\n"))?;
    write(&signing, &postern::assertion::generate_key_pem()?)?;
    println!(
        "wrote {} (session secret) and {} (assertion signing key), mode 0600",
        session.display(),
        signing.display()
    );
    println!(
        "config:\n  [session]\n  secret = {{ file = \"{}\" }}\n\n  [assertion]\n  signing_key = \"{}\"",
        session.display(),
        signing.display()
    );
    Ok(())
}
