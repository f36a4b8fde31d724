//! Raw file → resolved [`Config`]: defaults applied, every value checked, every problem collected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::Algorithm;
use toml::Spanned;
use url::Url;

use super::file::{FileConfig, SecretRef};
use super::*;
use crate::diag::{Diagnostics, Source};
use crate::duration;

/// Reads and checks the config file at `path`. `env` looks up environment variables for `{ env = "..." }`
/// secrets. On success, also returns the warnings.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<(Config, Diagnostics), Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => from_text(path, &text, env),
        Err(e) => {
            let mut d = Diagnostics::default();
            d.file_error(path, format!("cannot read the config file: {e}"));
            Err(d)
        }
    }
}

/// Checks config `text` as if read from `path` (relative paths inside it are relative to `path`'s directory).
pub fn from_text(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Diagnostics), Diagnostics> {
    let src = Source::new(path, text);
    let raw: FileConfig = src.parse_toml().map_err(|d| Diagnostics(vec![d]))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut v = Validator { src: &src, base, env, out: Diagnostics::default() };
    let config = v.config(raw);
    if v.out.has_errors() { Err(v.out) } else { Ok((config, v.out)) }
}

struct Validator<'a> {
    src: &'a Source<'a>,
    base: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    out: Diagnostics,
}

impl Validator<'_> {
    fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.out.0.push(self.src.error(span, message));
    }

    fn warn(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.out.0.push(self.src.warning(span, message));
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) }
    }

    fn duration(&mut self, value: Option<&Spanned<String>>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match duration::parse(s.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    self.error(s.span(), e);
                    default
                }
            },
        }
    }

    fn socket_addrs(&mut self, values: &[Spanned<String>]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for v in values {
            match v.get_ref().parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => self.error(
                    v.span(),
                    format!(
                        "\"{}\" is not a listen address; expected IP:PORT such as \"0.0.0.0:8443\" or \"[::]:8443\"",
                        v.get_ref()
                    ),
                ),
            }
        }
        out
    }

    fn url(&mut self, value: &Spanned<String>, what: &str) -> Option<Url> {
        match Url::parse(value.get_ref()) {
            Ok(u) if u.host().is_some() && (u.scheme() == "https" || u.scheme() == "http") => Some(u),
            _ => {
                self.error(value.span(), format!("{what}: \"{}\" is not an absolute http(s) URL", value.get_ref()));
                None
            }
        }
    }

    /// A URL Postern will fetch keys or tokens from: HTTPS, or HTTP on a loopback host for development.
    fn fetch_url(&mut self, value: &Spanned<String>, what: &str) -> Option<Url> {
        let url = self.url(value, what)?;
        if !is_secure_or_loopback(&url) {
            self.error(
                value.span(),
                format!("{what} must use https:// (http:// is accepted only for a loopback host such as 127.0.0.1, for development)"),
            );
            return None;
        }
        Some(url)
    }

    fn secret(&mut self, value: &Spanned<SecretRef>, what: &str) -> Option<Vec<u8>> {
        let r = value.get_ref();
        match (&r.env, &r.file) {
            (Some(name), None) => match (self.env)(name) {
                Some(v) if !v.is_empty() => Some(v.into_bytes()),
                _ => {
                    self.error(value.span(), format!("{what}: the environment variable {name} is not set or is empty"));
                    None
                }
            },
            (None, Some(file)) => match std::fs::read(self.path(file)) {
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    self.error(value.span(), format!("{what}: cannot read {}: {e}", self.path(file).display()));
                    None
                }
            },
            _ => {
                self.error(
                    value.span(),
                    format!("{what}: expected exactly one of {{ env = \"NAME\" }} or {{ file = \"path\" }}"),
                );
                None
            }
        }
    }

    fn config(&mut self, raw: FileConfig) -> Config {
        let server = self.server(&raw.server);
        let oidc = self.oidc(&raw.oidc);
        let session = self.session(&raw.session);
        let assertion = self.assertion(&raw.assertion);
        let policies_dir =
            raw.policies.dir.as_ref().map(|d| self.path(d.get_ref())).unwrap_or_else(|| self.path("policies"));
        let upstream = UpstreamConfig {
            connect_timeout: self.duration(raw.upstream.connect_timeout.as_ref(), Duration::from_secs(5)),
            timeout: self.duration(raw.upstream.timeout.as_ref(), Duration::from_secs(60)),
            group_filter: raw.upstream.group_filter.clone(),
        };
        let bearer = self.bearer(&raw.bearer);
        let limits = self.limits(&raw.limits);
        let graph = raw.graph.as_ref().map(|g| self.graph(g));
        if let (Some(g), Some(raw_graph)) = (&graph, &raw.graph)
            && crate::oidc::entra::is_template(&oidc.issuer)
            && !g.token_url.as_deref().is_some_and(crate::oidc::entra::is_template)
        {
            self.warn(
                raw_graph.span(),
                "with a {tenantid} issuer, set token_url = \"https://login.microsoftonline.com/{tenantid}/oauth2/v2.0/token\" so that each user's groups are read in their own tenant",
            );
        }
        let store = self.store(raw.store.as_ref());
        let scim = raw.scim.as_ref().and_then(|s| self.scim(s));
        let directory = crate::directory::DirectoryConfig {
            tenant: raw.directory.tenant.as_ref().map(|t| t.get_ref().trim().to_string()),
            match_user_name: raw.directory.match_user_name.unwrap_or(true),
            groups: raw.directory.groups.unwrap_or(true),
        };
        let admin_api = raw.admin_api.as_ref().map(|a| {
            let roles: Vec<String> =
                a.get_ref().roles.iter().map(|r| r.get_ref().trim().to_string()).filter(|r| !r.is_empty()).collect();
            if roles.is_empty() {
                self.error(
                    a.span(),
                    "[admin_api] needs roles = [\"...\"]: the app roles whose bearer tokens may call the admin API",
                );
            }
            AdminApiConfig { roles }
        });
        Config {
            source: self.src.path.to_path_buf(),
            server,
            oidc,
            session,
            assertion,
            policies_dir,
            upstream,
            bearer,
            limits,
            graph,
            store,
            scim,
            directory,
            admin_api,
        }
    }

    fn size(&mut self, value: Option<&Spanned<file::SizeValue>>, default: u64) -> u64 {
        match value.map(|v| (v.get_ref(), v.span())) {
            None => default,
            Some((file::SizeValue::Bytes(n), _)) => *n,
            Some((file::SizeValue::Text(t), span)) => crate::size::parse(t).unwrap_or_else(|e| {
                self.error(span, e);
                default
            }),
        }
    }

    fn count(&mut self, value: Option<&Spanned<u64>>, default: usize, what: &str) -> usize {
        match value {
            None => default,
            Some(v) if *v.get_ref() == 0 => {
                self.error(v.span(), format!("{what} must be at least 1"));
                default
            }
            Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        }
    }

    fn limits(&mut self, raw: &file::LimitsFile) -> LimitsConfig {
        let d = LimitsConfig::default();
        let max_header_bytes = self.size(raw.max_header_bytes.as_ref(), d.max_header_bytes as u64);
        if let Some(v) = &raw.max_header_bytes
            && !(8192..=16 << 20).contains(&max_header_bytes)
        {
            self.error(v.span(), "max_header_bytes must be between 8KiB and 16MiB");
        }
        LimitsConfig {
            max_header_bytes: usize::try_from(max_header_bytes.clamp(8192, 16 << 20)).unwrap_or(d.max_header_bytes),
            max_request_body: self.size(raw.max_request_body.as_ref(), d.max_request_body),
            header_read_timeout: self.duration(raw.header_read_timeout.as_ref(), d.header_read_timeout),
            idle_timeout: self.duration(raw.idle_timeout.as_ref(), d.idle_timeout),
            max_connections: self.count(raw.max_connections.as_ref(), d.max_connections, "max_connections"),
            max_in_flight: self.count(raw.max_in_flight.as_ref(), d.max_in_flight, "max_in_flight"),
            upstream_max_idle_per_host: raw
                .upstream_max_idle_per_host
                .as_ref()
                .map(|v| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX))
                .unwrap_or(d.upstream_max_idle_per_host),
            upstream_idle_timeout: self.duration(raw.upstream_idle_timeout.as_ref(), d.upstream_idle_timeout),
            upstream_connection_per_client: raw
                .upstream_connection_per_client
                .unwrap_or(d.upstream_connection_per_client),
        }
    }

    fn store(&mut self, raw: Option<&Spanned<file::StoreFile>>) -> crate::store::StoreConfig {
        let kind = raw.and_then(|r| r.get_ref().kind.as_ref());
        let path = raw.and_then(|r| r.get_ref().path.as_ref());
        let url = raw.and_then(|r| r.get_ref().url.as_ref());
        let password = raw.and_then(|r| r.get_ref().password.as_ref());
        let grace = raw.and_then(|r| r.get_ref().grace.as_ref());
        let kind_name = kind.map(|k| k.get_ref().as_str());
        if kind_name != Some("redis") {
            for span in
                [url.map(|u| u.span()), password.map(|p| p.span()), grace.map(|g| g.span())].into_iter().flatten()
            {
                self.warn(span, "url, password and grace are only used with kind = \"redis\"");
            }
        }
        match kind_name {
            None | Some("embedded") => crate::store::StoreConfig::Embedded(
                path.map(|p| self.path(p.get_ref())).unwrap_or_else(|| self.path("postern.db")),
            ),
            Some("memory") => {
                if let Some(p) = path {
                    self.warn(p.span(), "path is not used with kind = \"memory\"");
                }
                crate::store::StoreConfig::Memory
            }
            Some("redis") => {
                if let Some(p) = path {
                    self.warn(p.span(), "path is not used with kind = \"redis\"");
                }
                let password = password
                    .and_then(|p| self.secret(p, "[store] password"))
                    .map(|bytes| String::from_utf8_lossy(&bytes).trim_end_matches(['\r', '\n']).to_string());
                match url {
                    None => {
                        let span = kind.map(|k| k.span()).unwrap_or(0..0);
                        self.error(
                            span,
                            "kind = \"redis\" needs url = \"redis://host:6379\" (or rediss:// for TLS); put a password in the URL or in password = { file = \"...\" }",
                        );
                        crate::store::StoreConfig::Memory
                    }
                    Some(u) => match crate::store::redis::RedisConfig::parse(u.get_ref(), password.as_deref()) {
                        Ok(mut c) => {
                            c.grace = self.duration(grace, Duration::ZERO);
                            if let Some(g) = grace
                                && c.grace > Duration::from_secs(300)
                            {
                                self.error(g.span(), "[store] grace must be at most 5m: revocations made while Redis is away are not seen during the grace");
                            }
                            crate::store::StoreConfig::Redis(c)
                        }
                        Err(e) => {
                            // The message never repeats the URL: it may hold a password.
                            self.error(u.span(), format!("[store] url: {e}"));
                            crate::store::StoreConfig::Memory
                        }
                    },
                }
            }
            Some(other) => {
                if let Some(k) = kind {
                    self.error(k.span(), format!("store kind \"{other}\": expected \"embedded\" (a database file), \"redis\" (shared by several replicas) or \"memory\" (nothing survives a restart)"));
                }
                crate::store::StoreConfig::Memory
            }
        }
    }

    fn scim(&mut self, raw: &Spanned<file::ScimFile>) -> Option<ScimConfig> {
        let r = raw.get_ref();
        let path = r
            .path
            .as_ref()
            .map(|p| p.get_ref().trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| "/scim/v2".into());
        let reserved = ["/oauth2", "/.well-known/postern"];
        if !path.starts_with('/')
            || path.len() < 2
            || path.contains(['?', '#', ' '])
            || reserved.iter().any(|p| path.starts_with(p))
        {
            let span = r.path.as_ref().map(|p| p.span()).unwrap_or_else(|| raw.span());
            self.error(
                span,
                "[scim] path must be an absolute path such as \"/scim/v2\", outside /oauth2 and /.well-known/postern",
            );
        }
        let token = self.secret(&r.token, "scim token").map(|b| String::from_utf8_lossy(&b).trim().to_string())?;
        if token.len() < 32 {
            self.error(
                r.token.span(),
                "scim token: need at least 32 characters; generate one with `openssl rand -base64 32`",
            );
            return None;
        }
        Some(ScimConfig { path, token: Secret::new(token) })
    }

    fn server(&mut self, raw: &file::ServerFile) -> ServerConfig {
        let public_url = self.url(&raw.public_url, "public_url").unwrap_or_else(|| {
            Url::parse("https://invalid.invalid").unwrap_or_else(|_| unreachable!("a constant URL parses"))
        });
        if public_url.scheme() == "http" && !public_url.host().as_ref().is_some_and(is_loopback_host) {
            self.error(
                raw.public_url.span(),
                "public_url must be https:// (browsers only keep secure cookies over HTTPS); http:// is accepted only for a loopback host, for development",
            );
        }
        if public_url.path() != "/" || public_url.query().is_some() {
            self.error(
                raw.public_url.span(),
                "public_url must be an origin such as \"https://devtools.example.com\", without a path or query",
            );
        }
        let listen = self.socket_addrs(&raw.listen);
        let tls_listen = self.socket_addrs(&raw.tls_listen);
        let tls =
            raw.tls.as_ref().map(|t| TlsFiles { cert: self.path(&t.get_ref().cert), key: self.path(&t.get_ref().key) });
        if !tls_listen.is_empty()
            && tls.is_none()
            && let Some(first) = raw.tls_listen.first()
        {
            self.error(
                first.span(),
                "tls_listen needs a certificate: add tls = { cert = \"tls.crt\", key = \"tls.key\" } to [server]",
            );
        }
        if let (Some(t), true) = (&raw.tls, tls_listen.is_empty()) {
            self.warn(t.span(), "tls is set but there is no tls_listen address, so it is not used");
        }
        if raw.listen.is_empty() && raw.tls_listen.is_empty() {
            self.error(
                raw.public_url.span(),
                "[server] has no listener: add listen = [\"127.0.0.1:8080\"] or tls_listen = [\"0.0.0.0:8443\"]",
            );
        }
        let admin_listen = raw.admin_listen.as_ref().and_then(|a| self.socket_addrs(std::slice::from_ref(a)).pop());
        let mut trusted_proxies = Vec::new();
        for p in &raw.trusted_proxies {
            match IpRange::parse(p.get_ref()) {
                Ok(r) => trusted_proxies.push(r),
                Err(e) => self.error(p.span(), e),
            }
        }
        let shutdown_grace = self.duration(raw.shutdown_grace.as_ref(), Duration::from_secs(30));
        ServerConfig { public_url, listen, tls_listen, tls, admin_listen, trusted_proxies, shutdown_grace }
    }

    fn oidc(&mut self, raw: &Spanned<file::OidcFile>) -> OidcConfig {
        let r = raw.get_ref();
        let template = crate::oidc::entra::is_template(r.issuer.get_ref());
        // A template is not a URL to fetch; check the shape with a tenant id in place of the placeholder.
        let probe = Spanned::new(
            r.issuer.span(),
            crate::oidc::entra::substitute(r.issuer.get_ref(), "00000000-0000-0000-0000-000000000000"),
        );
        let issuer_url = self.fetch_url(&probe, "issuer");
        if let Some(u) = &issuer_url
            && (u.query().is_some() || u.fragment().is_some())
        {
            self.error(r.issuer.span(), "issuer must not have a query or fragment");
        }
        if let Some(u) = &issuer_url
            && !template
            && u.path_segments()
                .is_some_and(|mut s| s.any(|seg| ["common", "organizations", "consumers"].contains(&seg)))
        {
            self.error(
                r.issuer.span(),
                "no token carries a common/organizations/consumers issuer: for one tenant write issuer = \"https://login.microsoftonline.com/<tenant id>/v2.0\"; for several, write the template issuer = \"https://login.microsoftonline.com/{tenantid}/v2.0\" with discovery_url = \"https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration\" and allowed_tenants",
            );
        }
        let discovery_url = match &r.discovery_url {
            Some(d) => self.fetch_url(d, "discovery_url"),
            None if template => {
                self.error(
                    r.issuer.span(),
                    "a {tenantid} issuer needs discovery_url, e.g. \"https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration\"",
                );
                None
            }
            None => crate::oidc::provider::discovery_url(r.issuer.get_ref()).ok(),
        };
        let allowed_tenants: Vec<String> = r.allowed_tenants.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default();
        if template && allowed_tenants.is_empty() {
            let span = r.allowed_tenants.as_ref().map(|t| t.span()).unwrap_or_else(|| r.issuer.span());
            self.error(
                span,
                "a multi-tenant ({tenantid}) issuer needs allowed_tenants = [\"<tenant id>\", ...]: without it, anyone with an account in any Entra tenant could sign in",
            );
        }
        if let Some(t) = &r.allowed_tenants {
            for id in t.get_ref() {
                if !crate::oidc::entra::is_tenant_id(id) {
                    self.error(t.span(), format!("allowed_tenants: \"{id}\" is not a tenant id (a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)"));
                }
            }
        }
        if r.client_id.get_ref().trim().is_empty() {
            self.error(r.client_id.span(), "client_id must not be empty");
        }
        let credential = self.client_credential(raw);
        let scopes = match &r.scopes {
            None => ["openid", "profile", "email", "offline_access"].map(String::from).to_vec(),
            Some(s) => {
                if !s.get_ref().iter().any(|x| x == "openid") {
                    self.error(s.span(), "scopes must include \"openid\"");
                }
                s.get_ref().clone()
            }
        };
        let ca_file = r.ca_file.as_ref().map(|f| self.path(f.get_ref()));
        if let (Some(path), Some(spanned)) = (&ca_file, &r.ca_file)
            && let Err(e) = std::fs::metadata(path)
        {
            self.error(spanned.span(), format!("ca_file: cannot read {}: {e}", path.display()));
        }
        OidcConfig {
            // Kept exactly as written: it must equal the `iss` of every token, byte for byte.
            issuer: r.issuer.get_ref().clone(),
            discovery_url: discovery_url.unwrap_or_else(|| {
                Url::parse("https://invalid.invalid").unwrap_or_else(|_| unreachable!("a constant URL parses"))
            }),
            allowed_tenants,
            client_id: r.client_id.get_ref().clone(),
            credential,
            scopes,
            ca_file,
            jwks_refetch_interval: self.duration(r.jwks_refetch_interval.as_ref(), Duration::from_secs(300)),
            leeway: self.duration(r.leeway.as_ref(), Duration::from_secs(60)),
        }
    }

    fn secret_source(&mut self, value: &Spanned<SecretRef>, what: &str) -> Option<SecretSource> {
        let bytes = self.secret(value, what)?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if text.is_empty() {
            self.error(value.span(), format!("{what} is empty"));
            return None;
        }
        Some(match &value.get_ref().file {
            Some(f) => SecretSource::File(self.path(f), Secret::new(text)),
            None => SecretSource::Value(Secret::new(text)),
        })
    }

    fn client_credential(&mut self, raw: &Spanned<file::OidcFile>) -> ClientCredential {
        let r = raw.get_ref();
        let given = [r.client_secret.is_some(), r.client_certificate.is_some(), r.federated_token_file.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.error(
                raw.span(),
                "[oidc] needs exactly one credential: client_secret = { file = \"...\" }, client_certificate = { cert = \"...\", key = \"...\" }, or federated_token_file = \"...\"",
            );
        }
        let method = match r.token_endpoint_auth.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("client_secret_basic") => ClientAuth::SecretBasic,
            Some("client_secret_post") => ClientAuth::SecretPost,
            Some(other) => {
                if let Some(s) = &r.token_endpoint_auth {
                    self.error(s.span(), format!("token_endpoint_auth \"{other}\": expected \"client_secret_basic\" or \"client_secret_post\""));
                }
                ClientAuth::SecretBasic
            }
        };
        if let Some(prev) = &r.client_secret_previous
            && r.client_secret.is_none()
        {
            self.error(prev.span(), "client_secret_previous needs client_secret (the current one) beside it");
        }
        if let Some(c) = &r.client_certificate {
            let cc = c.get_ref();
            let alg = match cc.alg.as_deref() {
                None | Some("PS256") => Algorithm::PS256,
                Some("RS256") => Algorithm::RS256,
                Some(other) => {
                    self.error(
                        c.span(),
                        format!("client_certificate alg \"{other}\": expected \"PS256\" or \"RS256\""),
                    );
                    Algorithm::PS256
                }
            };
            let thumbprint = match std::fs::read(self.path(&cc.cert)) {
                Ok(pem) => match certificate_thumbprint(&pem) {
                    Some(t) => t,
                    None => {
                        self.error(
                            c.span(),
                            format!("client_certificate: {} holds no PEM certificate", self.path(&cc.cert).display()),
                        );
                        String::new()
                    }
                },
                Err(e) => {
                    self.error(
                        c.span(),
                        format!("client_certificate: cannot read {}: {e}", self.path(&cc.cert).display()),
                    );
                    String::new()
                }
            };
            let key_pem = match std::fs::read_to_string(self.path(&cc.key)) {
                Ok(pem) => {
                    if jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).is_err() {
                        self.error(
                            c.span(),
                            format!(
                                "client_certificate: {} is not a PEM RSA private key",
                                self.path(&cc.key).display()
                            ),
                        );
                    }
                    pem
                }
                Err(e) => {
                    self.error(
                        c.span(),
                        format!("client_certificate: cannot read {}: {e}", self.path(&cc.key).display()),
                    );
                    String::new()
                }
            };
            return ClientCredential::Certificate { key_pem: Secret::new(key_pem), x5t_s256: thumbprint, alg };
        }
        if let Some(f) = &r.federated_token_file {
            let token_file = self.path(f.get_ref());
            if let Err(e) = std::fs::metadata(&token_file) {
                self.error(f.span(), format!("federated_token_file: cannot read {}: {e}", token_file.display()));
            }
            return ClientCredential::Federated { token_file };
        }
        let current = r.client_secret.as_ref().and_then(|s| self.secret_source(s, "client_secret"));
        let previous = r.client_secret_previous.as_ref().and_then(|s| self.secret_source(s, "client_secret_previous"));
        ClientCredential::Secret {
            current: current.unwrap_or_else(|| SecretSource::Value(Secret::new(String::new()))),
            previous,
            method,
        }
    }

    fn graph(&mut self, raw: &Spanned<file::GraphFile>) -> GraphConfig {
        let r = raw.get_ref();
        let default_base =
            || Url::parse("https://graph.microsoft.com/v1.0").unwrap_or_else(|_| unreachable!("a constant URL parses"));
        let base_url = match &r.base_url {
            Some(b) => self.fetch_url(b, "graph base_url").unwrap_or_else(default_base),
            None => default_base(),
        };
        if let Some(t) = &r.token_url {
            let probe = Spanned::new(
                t.span(),
                crate::oidc::entra::substitute(t.get_ref(), "00000000-0000-0000-0000-000000000000"),
            );
            self.fetch_url(&probe, "graph token_url");
        }
        GraphConfig {
            base_url,
            token_url: r.token_url.as_ref().map(|t| t.get_ref().clone()),
            scope: r.scope.clone().unwrap_or_else(|| "https://graph.microsoft.com/.default".to_string()),
            cache_ttl: self.duration(r.cache_ttl.as_ref(), Duration::from_secs(600)),
            always: r.always,
            timeout: self.duration(r.timeout.as_ref(), Duration::from_secs(10)),
        }
    }

    fn session_key(&mut self, s: &Spanned<file::SecretRef>, what: &str) -> Option<Secret<Vec<u8>>> {
        let bytes = self.secret(s, what)?;
        let key = decode_key_material(&bytes);
        if key.len() < 32 {
            self.error(
                s.span(),
                format!("{what}: need at least 32 bytes of key material; `postern keygen` writes a good one"),
            );
            return None;
        }
        Some(Secret::new(key))
    }

    fn session(&mut self, raw: &file::SessionFile) -> SessionConfig {
        let secret = raw.secret.as_ref().and_then(|s| self.session_key(s, "session secret"));
        let previous_secrets =
            raw.previous_secrets.iter().filter_map(|s| self.session_key(s, "session previous_secrets")).collect();
        if raw.secret.is_none()
            && let Some(p) = raw.previous_secrets.first()
        {
            self.error(p.span(), "previous_secrets need a current secret: set [session] secret too");
        }
        let idle_timeout = self.duration(raw.idle_timeout.as_ref(), Duration::from_secs(8 * 3600));
        let max_lifetime = self.duration(raw.max_lifetime.as_ref(), Duration::from_secs(24 * 3600));
        if (idle_timeout.is_zero() || max_lifetime.is_zero())
            && let Some(s) = raw.idle_timeout.as_ref().or(raw.max_lifetime.as_ref())
        {
            self.error(s.span(), "session timeouts must be longer than zero");
        }
        let refresh_before = self.duration(raw.refresh_before.as_ref(), Duration::from_secs(60));
        SessionConfig { secret, previous_secrets, idle_timeout, max_lifetime, refresh_before }
    }

    fn read_pem(&mut self, f: &Spanned<String>, what: &str) -> Option<Secret<String>> {
        match std::fs::read_to_string(self.path(f.get_ref())) {
            Ok(pem) => Some(Secret::new(pem)),
            Err(e) => {
                self.error(f.span(), format!("{what}: cannot read {}: {e}", self.path(f.get_ref()).display()));
                None
            }
        }
    }

    fn assertion(&mut self, raw: &file::AssertionFile) -> AssertionConfig {
        let signing_key = raw.signing_key.as_ref().and_then(|f| self.read_pem(f, "signing_key"));
        let mut previous_signing_keys = Vec::new();
        for f in &raw.previous_signing_keys {
            match self.read_pem(f, "previous_signing_keys") {
                Some(pem) if crate::assertion::public_jwk(pem.expose()).is_ok() => previous_signing_keys.push(pem),
                Some(_) => self.error(f.span(), "previous_signing_keys: not a PEM PKCS#8 P-256 private key"),
                None => {}
            }
        }
        let ttl = self.duration(raw.ttl.as_ref(), Duration::from_secs(300));
        if (ttl > Duration::from_secs(300) || ttl < Duration::from_secs(30))
            && let Some(s) = &raw.ttl
        {
            self.error(s.span(), "assertion ttl must be between 30s and 5m");
        }
        AssertionConfig { signing_key, previous_signing_keys, ttl }
    }

    fn bearer(&mut self, raw: &file::BearerFile) -> BearerConfig {
        let mut issuers = Vec::new();
        for i in &raw.issuers {
            self.fetch_url(&i.issuer, "bearer issuer");
            if i.audiences.is_empty() {
                self.error(
                    i.issuer.span(),
                    "a bearer issuer needs audiences = [\"...\"]: tokens meant for other services must not be accepted",
                );
            }
            let jwks_url = i.jwks_url.as_ref().and_then(|u| self.fetch_url(u, "jwks_url"));
            let mut algorithms = Vec::new();
            for a in i.algorithms.iter().flatten() {
                match parse_asymmetric_algorithm(a.get_ref()) {
                    Ok(alg) => algorithms.push(alg),
                    Err(e) => self.error(a.span(), e),
                }
            }
            issuers.push(BearerIssuer {
                issuer: i.issuer.get_ref().clone(),
                audiences: i.audiences.iter().map(|a| a.get_ref().clone()).collect(),
                jwks_url,
                algorithms,
                ca_file: i.ca_file.as_ref().map(|f| self.path(f.get_ref())),
            });
        }
        BearerConfig {
            provider_audiences: raw.audiences.iter().map(|a| a.get_ref().clone()).collect(),
            issuers,
            cache_size: raw.cache_size.as_ref().map(|s| *s.get_ref()).unwrap_or(100_000),
            max_token_bytes: raw.max_token_bytes.as_ref().map(|s| *s.get_ref() as usize).unwrap_or(16 * 1024),
        }
    }
}

/// An algorithm name accepted in config: asymmetric only. `none` and HMAC are refused, since an HMAC "key"
/// published by an issuer is a secret everyone can read.
pub(crate) fn parse_asymmetric_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "algorithm \"{other}\" is not accepted; expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
            ));
        }
    };
    Ok(alg)
}

/// base64url SHA-256 of the first certificate in `pem`: the `x5t#S256` of a client assertion.
pub fn certificate_thumbprint(pem: &[u8]) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref());
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Key files hold base64 (what `postern keygen` writes); anything else is taken as raw bytes.
pub fn decode_key_material(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .unwrap_or_else(|_| trimmed.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cret".to_string())
    }

    const GOOD: &str = r#"
[server]
public_url = "https://devtools.example.com"
listen = ["127.0.0.1:8080"]

[oidc]
issuer = "https://login.example.com/tenant/v2.0"
client_id = "abc"
client_secret = { env = "SECRET" }
"#;

    #[test]
    fn a_minimal_config_gets_defaults() {
        let (c, warnings) = from_text(Path::new("/etc/postern/postern.toml"), GOOD, &env).unwrap();
        assert!(warnings.0.is_empty());
        assert_eq!(c.redirect_uri(), "https://devtools.example.com/oauth2/callback");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(8 * 3600));
        assert_eq!(c.policies_dir, PathBuf::from("/etc/postern/policies"));
        match &c.oidc.credential {
            ClientCredential::Secret { current: SecretSource::Value(s), previous: None, method } => {
                assert_eq!(s.expose(), "s3cret");
                assert_eq!(*method, ClientAuth::SecretBasic);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = GOOD
            .replace("https://devtools.example.com", "http://devtools.example.com")
            .replace("{ env = \"SECRET\" }", "{ env = \"MISSING\" }")
            .replace("issuer = \"https://login", "issuer = \"http://login");
        let err = from_text(Path::new("p.toml"), &text, &env).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(text.contains("p.toml:3:14: error: public_url must be https://"), "{text}");
        assert!(text.contains("MISSING is not set"), "{text}");
        assert!(text.contains("issuer must use https://"), "{text}");
        assert!(!text.contains("s3cret"));
    }

    #[test]
    fn store_scim_directory_and_admin_api_have_defaults_and_checks() {
        let (c, _) = from_text(Path::new("/etc/postern/postern.toml"), GOOD, &env).unwrap();
        assert_eq!(c.store, crate::store::StoreConfig::Embedded(PathBuf::from("/etc/postern/postern.db")));
        assert!(c.scim.is_none() && c.admin_api.is_none());
        assert!(c.directory.groups && c.directory.match_user_name && c.directory.tenant.is_none());

        let long = |name: &str| (name == "TOKEN").then(|| "t".repeat(40)).or_else(|| env(name));
        let text = format!(
            "{GOOD}\n[store]\nkind = \"memory\"\n[scim]\npath = \"/scim/\"\ntoken = {{ env = \"TOKEN\" }}\n[directory]\ntenant = \"t1\"\ngroups = false\n[admin_api]\nroles = [\"Postern.Admin\"]\n"
        );
        let (c, _) = from_text(Path::new("p.toml"), &text, &long).unwrap();
        assert_eq!(c.store, crate::store::StoreConfig::Memory);
        assert_eq!(c.scim.as_ref().map(|s| s.path.as_str()), Some("/scim"));
        assert_eq!(c.directory.tenant.as_deref(), Some("t1"));
        assert!(!c.directory.groups);
        assert_eq!(c.admin_api.map(|a| a.roles), Some(vec!["Postern.Admin".to_string()]));

        let bad = format!(
            "{GOOD}\n[store]\nkind = \"disk\"\n[scim]\npath = \"/oauth2/scim\"\ntoken = {{ env = \"SECRET\" }}\n[admin_api]\nroles = []\n"
        );
        let err = from_text(Path::new("p.toml"), &bad, &env).unwrap_err().to_string();
        assert!(err.contains("store kind \"disk\""), "{err}");
        assert!(err.contains("[scim] path must be"), "{err}");
        assert!(err.contains("scim token: need at least 32 characters"), "{err}");
        assert!(err.contains("[admin_api] needs roles"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_redis_store_needs_a_redis_url_and_never_shows_its_password() {
        let secret_env =
            |name: &str| (name == "REDIS_PASSWORD").then(|| "pw-from-env".to_string()).or_else(|| env(name));
        let text = format!(
            "{GOOD}\n[store]\nkind = \"redis\"\nurl = \"rediss://postern@redis.internal:6380/1\"\npassword = {{ env = \"REDIS_PASSWORD\" }}\n"
        );
        let (c, _) = from_text(Path::new("p.toml"), &text, &secret_env).unwrap();
        let crate::store::StoreConfig::Redis(r) = &c.store else { panic!("{:?}", c.store) };
        assert_eq!(r.display, "rediss://postern:***@redis.internal:6380/1");
        assert!(!format!("{:?}", c.store).contains("pw-from-env"));

        for (store, expected) in [
            ("kind = \"redis\"", "p.toml:"),
            (
                "kind = \"redis\"\nurl = \"http://user:hunter2@redis:6379\"",
                "expected redis://host:6379, rediss:// (TLS), redis+sentinel://",
            ),
            ("kind = \"redis\"\nurl = \"redis://:hunter2@redis:6379/x\"", "database number"),
        ] {
            let text = format!("{GOOD}\n[store]\n{store}\n");
            let err = from_text(Path::new("p.toml"), &text, &env).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("url"), "{err}");
            assert!(!err.contains("hunter2"), "the password is in the error: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let text = GOOD.replace("client_id = \"abc\"", "client_id = \"abc\"\nclient_sercet = 1");
        let err = from_text(Path::new("p.toml"), &text, &env).unwrap_err();
        assert!(err.to_string().contains("p.toml:9:1: error: unknown field `client_sercet`"), "{err}");
    }

    #[test]
    fn http_providers_are_accepted_only_on_loopback() {
        let text = GOOD.replace("https://login.example.com/tenant/v2.0", "http://127.0.0.1:9000");
        assert!(from_text(Path::new("p.toml"), &text, &env).is_ok());
    }

    #[test]
    fn a_multi_tenant_issuer_needs_allowed_tenants_and_a_discovery_url() {
        let multi =
            GOOD.replace("https://login.example.com/tenant/v2.0", "https://login.microsoftonline.com/{tenantid}/v2.0");
        let err = from_text(Path::new("p.toml"), &multi, &env).unwrap_err().to_string();
        assert!(err.contains("needs allowed_tenants"), "{err}");
        assert!(err.contains("needs discovery_url"), "{err}");
        let ok = multi.replace(
            "client_id = \"abc\"",
            "client_id = \"abc\"\ndiscovery_url = \"https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration\"\nallowed_tenants = [\"72f988bf-86f1-41af-91ab-2d7cd011db47\"]",
        );
        let (c, _) = from_text(Path::new("p.toml"), &ok, &env).unwrap();
        assert_eq!(c.oidc.allowed_tenants, ["72f988bf-86f1-41af-91ab-2d7cd011db47"]);
        let not_a_tenant = ok.replace("72f988bf-86f1-41af-91ab-2d7cd011db47", "contoso");
        assert!(
            from_text(Path::new("p.toml"), &not_a_tenant, &env).unwrap_err().to_string().contains("not a tenant id")
        );
        let organizations = GOOD
            .replace("https://login.example.com/tenant/v2.0", "https://login.microsoftonline.com/organizations/v2.0");
        let err = from_text(Path::new("p.toml"), &organizations, &env).unwrap_err().to_string();
        assert!(err.contains("{tenantid}"), "{err}");
    }

    #[test]
    fn exactly_one_client_credential() {
        let none = GOOD.replace("client_secret = { env = \"SECRET\" }", "");
        assert!(
            from_text(Path::new("p.toml"), &none, &env).unwrap_err().to_string().contains("exactly one credential")
        );
        let two = GOOD.replace(
            "client_secret = { env = \"SECRET\" }",
            "client_secret = { env = \"SECRET\" }\nfederated_token_file = \"/dev/null\"",
        );
        assert!(from_text(Path::new("p.toml"), &two, &env).unwrap_err().to_string().contains("exactly one credential"));
        let rotation = GOOD.replace(
            "client_secret = { env = \"SECRET\" }",
            "client_secret = { env = \"SECRET\" }\nclient_secret_previous = { env = \"SECRET\" }",
        );
        let (c, _) = from_text(Path::new("p.toml"), &rotation, &env).unwrap();
        assert!(matches!(c.oidc.credential, ClientCredential::Secret { previous: Some(_), .. }));
    }

    #[test]
    fn hmac_and_none_are_never_accepted_algorithms() {
        assert!(parse_asymmetric_algorithm("HS256").is_err());
        assert!(parse_asymmetric_algorithm("none").is_err());
        assert_eq!(parse_asymmetric_algorithm("ES256"), Ok(Algorithm::ES256));
    }
}
