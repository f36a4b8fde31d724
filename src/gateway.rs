//! The path of every request, top to bottom: reserved paths, route, authenticate, decide, forward, audit.
//! Each step is one call into the module that owns it; every failure becomes one response here.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::time::Instant;

use crate::authn::{self, Authn, Principal};
use crate::body::{Body, full};
use crate::identity_headers;
use crate::metrics::{OutcomeLabels, RequestLabels, RouteLabels};

use crate::oidc::login;
use crate::oidc::redirect::{ReturnTo, safe_return_path, safe_return_target};
use crate::pages::{self, Page, json_response, wants_html};
use crate::policy::path::{matching_path, normalize_host, normalize_path};
use crate::policy::{Route, decide};
use crate::state::{Shared, State};
use crate::upstream::headers as hdr;
use crate::upstream::{Forward, PinnedUpstream};

/// The connection a request arrived on.
#[derive(Debug)]
pub struct Conn {
    /// The peer's address.
    pub peer: SocketAddr,
    /// True on an HTTPS listener.
    pub tls: bool,
    /// The upstream connection this client connection keeps for itself (`[limits] upstream_connection_per_client`).
    pub pinned: Option<PinnedUpstream>,
    /// The peer's IP address as header text, for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
}

impl Conn {
    /// A connection from `peer`.
    pub fn new(peer: SocketAddr, tls: bool, pinned: Option<PinnedUpstream>) -> Conn {
        let peer_ip =
            HeaderValue::try_from(peer.ip().to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Conn { peer, tls, pinned, peer_ip }
    }
}

/// What became of a request, for metrics and the audit log.
struct Outcome {
    response: Response<Body>,
    route: Option<Arc<Route>>,
    allow: bool,
    reason: &'static str,
}

impl Outcome {
    fn deny(response: Response<Body>, route: Option<&Arc<Route>>, reason: &'static str) -> Outcome {
        Outcome { response, route: route.cloned(), allow: false, reason }
    }
}

/// Handles one request.
pub async fn handle(shared: &Shared, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let st = shared.load_full();
    let request_id = request_id(&st, conn, &req);
    // Shed load rather than queue without bound: beyond `max_in_flight`, answer at once and ask to retry.
    let Ok(_permit) = st.in_flight.clone().try_acquire_owned() else {
        return overloaded(&st, &req, &request_id);
    };
    st.metrics.in_flight.inc();
    let outcome = route_and_forward(&st, conn, req, &request_id, started).await;
    st.metrics.in_flight.dec();
    let route = outcome.route.as_ref().map_or_else(|| Arc::from("-"), |r| r.name.clone());
    let labels = RequestLabels {
        route: route.clone(),
        decision: if outcome.allow { "allow" } else { "deny" },
        reason: outcome.reason,
        status: outcome.response.status().as_u16(),
    };
    st.metrics.requests.get_or_create(&labels).inc();
    st.metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    outcome.response
}

/// 503 with `Retry-After`, when more requests are in flight than `[limits] max_in_flight`.
fn overloaded(st: &State, req: &Request<Incoming>, request_id: &str) -> Response<Body> {
    tracing::warn!(request_id, limit = st.config.limits.max_in_flight, "shedding a request: too many in flight");
    let labels = RequestLabels { route: Arc::from("-"), decision: "deny", reason: "overloaded", status: 503 };
    st.metrics.requests.get_or_create(&labels).inc();
    let mut r = Page::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Too busy",
        "Postern is handling as many requests as it may right now. Please try again in a moment.",
        "overloaded",
        request_id,
    )
    .render(wants_html(req.headers()));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn route_and_forward(
    st: &State,
    conn: &Conn,
    req: Request<Incoming>,
    request_id: &str,
    started: Instant,
) -> Outcome {
    let html = wants_html(req.headers());

    // 1. Reserved paths: Postern's own endpoints, on every host; the SCIM endpoint, when enabled.
    if let Some(scim) = &st.config.scim
        && crate::scim::owns(req.uri().path(), &scim.path)
    {
        let response = Box::pin(crate::scim::handle(st, req, request_id)).await;
        return Outcome { response, route: None, allow: true, reason: "scim" };
    }
    if let Some(response) = reserved(st, conn, &req, request_id, html).await {
        return Outcome { response, route: None, allow: true, reason: "postern-endpoint" };
    }

    // 2. Route, on the normalised host and path (also what the upstream will see).
    let path = match normalize_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            let page = Page::new(StatusCode::BAD_REQUEST, "Bad request", e.to_string(), "bad-path", request_id);
            return Outcome::deny(page.render(html), None, "bad-path");
        }
    };
    // Postern's namespace reached through dot segments or encodings (`/x/../oauth2/userinfo`) is neither
    // Postern's endpoint nor the upstream's: refuse it rather than guess.
    let matching = matching_path(&path);
    if ["/oauth2/", "/.well-known/postern/"]
        .iter()
        .any(|p| matching.starts_with(p) || matching == p.trim_end_matches('/'))
    {
        let page = Page::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "Postern's own endpoints are reached only by their plain path.",
            "no-such-endpoint",
            request_id,
        );
        return Outcome::deny(page.render(html), None, "no-such-endpoint");
    }
    let Some(host) = request_host(&req) else {
        let page =
            Page::new(StatusCode::BAD_REQUEST, "Bad request", "The request names no host.", "missing-host", request_id);
        return Outcome::deny(page.render(html), None, "missing-host");
    };
    let Some(route) = st.policy.route(&host, &matching, req.method()).cloned() else {
        tracing::info!(target: "audit", request_id, host = %host, path = %path, decision = "deny", reason = "no-route", status = 404u16, "no route");
        let page = Page::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "Postern has no route for this address.",
            "no-route",
            request_id,
        );
        return Outcome::deny(page.render(html), None, "no-route");
    };

    // 3. Authenticate.
    let principal = if route.public {
        None
    } else {
        match authn::authenticate(st, req.headers(), &route, request_id).await {
            Authn::Principal(p) => {
                if let Principal::Bearer(_) = p {
                    st.metrics.bearer.get_or_create(&OutcomeLabels { outcome: "success", reason: "ok" }).inc();
                }
                Some(p)
            }
            Authn::Anonymous => {
                let response = Box::pin(challenge(st, &req, &route, &path, request_id, html)).await;
                audit_deny(request_id, &route, None, "unauthenticated", response.status(), started);
                return Outcome::deny(response, Some(&route), "unauthenticated");
            }
            Authn::BearerRefused(e) => {
                st.metrics.bearer.get_or_create(&OutcomeLabels { outcome: "failure", reason: e.code() }).inc();
                audit_deny(request_id, &route, None, e.code(), StatusCode::UNAUTHORIZED, started);
                let response = bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", &e.to_string(), request_id);
                return Outcome::deny(response, Some(&route), e.code());
            }
            Authn::StoreUnavailable => {
                audit_deny(request_id, &route, None, "store-unavailable", StatusCode::SERVICE_UNAVAILABLE, started);
                let page = Page::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "Postern cannot check your session right now because its session store is unreachable. Nothing is wrong with your account: try again in a moment.",
                    "store-unavailable",
                    request_id,
                );
                let mut response = page.render(html);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return Outcome::deny(response, Some(&route), "store-unavailable");
            }
            Authn::BearerNotAccepted => {
                audit_deny(request_id, &route, None, "bearer-not-accepted", StatusCode::UNAUTHORIZED, started);
                let response = bearer_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request",
                    "this route does not accept bearer tokens",
                    request_id,
                );
                return Outcome::deny(response, Some(&route), "bearer-not-accepted");
            }
        }
    };

    // 4. Decide.
    let mut rule = None;
    if let Some(p) = &principal {
        let decision = decide(&route, p.identity());
        if !decision.allow {
            audit_deny(request_id, &route, Some(p), decision.reason, StatusCode::FORBIDDEN, started);
            return Outcome::deny(
                forbidden(&route, p, decision.reason, request_id, html),
                Some(&route),
                decision.reason,
            );
        }
        rule = decision.rule;
    }

    // 5. Forward: first, a body announced larger than the route accepts is refused before it is read.
    let max_body = route.max_body.unwrap_or(st.config.limits.max_request_body);
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body) {
        audit_deny(request_id, &route, principal.as_ref(), "body-too-large", StatusCode::PAYLOAD_TOO_LARGE, started);
        let page = Page::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            format!("The route \"{}\" accepts request bodies of at most {max_body} bytes.", route.name),
            "body-too-large",
            request_id,
        );
        return Outcome::deny(page.render(html), Some(&route), "body-too-large");
    }
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let identity_headers = principal.as_ref().map(|p| identity_headers::for_request(st, &route, p));
    let forward = Forward {
        route: &route,
        path_and_query: &path_and_query,
        client_ip: &conn.peer_ip,
        trusted_peer: st.config.server.trusted_proxies.iter().any(|r| r.contains(conn.peer.ip())),
        proto: if conn.tls { "https" } else { "http" },
        identity_headers,
        strip_authorization: matches!(principal, Some(Principal::Bearer(_))),
        timeout: route.timeout.unwrap_or(st.config.upstream.timeout),
        max_body,
        request_id,
        // An HTTP/1 client's requests come one at a time, so one upstream connection serves them all.
        pinned: conn.pinned.as_ref().filter(|_| req.version() <= http::Version::HTTP_11),
    };
    let mut req = req;
    hdr::remove_own_cookies(req.headers_mut(), |name| st.cookies.is_own_cookie(name));
    let result = st.upstream.forward(req, forward).await;

    // 6. Audit.
    let identity = principal.as_ref().map(|p| p.identity());
    let subject = identity.map(|i| i.subject.as_str()).unwrap_or("-");
    let tenant = identity.and_then(|i| i.tenant.as_deref()).unwrap_or("-");
    let auth = identity.map(|i| i.proof.as_str()).unwrap_or("public");
    let rule = rule.as_deref().unwrap_or("public");
    let reason = if route.public { "public" } else { "allowed" };
    match result {
        Ok(response) => {
            tracing::info!(
                target: "audit", request_id, route = %route.name, subject, tenant, auth, decision = "allow", rule,
                status = response.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64, "allowed"
            );
            Outcome { response, route: Some(route), allow: true, reason }
        }
        Err(e) => {
            tracing::warn!(
                target: "audit", request_id, route = %route.name, subject, tenant, auth, decision = "allow", rule,
                reason = e.code(), status = e.status().as_u16(), error = %e,
                latency_ms = started.elapsed().as_millis() as u64, "upstream failed"
            );
            let labels = RequestLabels {
                route: route.name.clone(),
                decision: "allow",
                reason: e.code(),
                status: e.status().as_u16(),
            };
            st.metrics.upstream_errors.get_or_create(&labels).inc();
            let (title, message) = match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => (
                    "Request too large",
                    "The request body is larger than this route accepts; it was not delivered in full.",
                ),
                StatusCode::GATEWAY_TIMEOUT => (
                    "The tool did not answer in time",
                    "The service behind this address took too long to answer. Please try again.",
                ),
                _ => (
                    "The tool is unreachable",
                    "Postern could not reach the service behind this address. Please try again later.",
                ),
            };
            let response = Page::new(e.status(), title, message, e.code(), request_id).render(html);
            Outcome { response, route: Some(route), allow: true, reason: e.code() }
        }
    }
}

/// The request id: a trusted front proxy's `X-Request-Id` when it set a sane one, else a new random id.
fn request_id(st: &State, conn: &Conn, req: &Request<Incoming>) -> String {
    let trusted = st.config.server.trusted_proxies.iter().any(|r| r.contains(conn.peer.ip()));
    if trusted
        && let Some(id) = req.headers().get(hdr::X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return id.to_string();
    }
    new_request_id()
}

/// A new request id: a random per-process prefix and a counter. Unique, cheap, and not a secret (it is shown on
/// error pages), so it does not need the system's random generator on every request.
fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::secret::random_token(6));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Written by hand: `format!` costs more than the rest of this function and grows its string twice.
    let digits = (64 - n.leading_zeros() as usize).div_ceil(4).max(1);
    let mut id = String::with_capacity(prefix.len() + 1 + digits);
    id.push_str(prefix);
    id.push('-');
    for i in (0..digits).rev() {
        id.push(char::from(b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]));
    }
    id
}

/// Postern's own endpoints.
async fn reserved(
    st: &State,
    conn: &Conn,
    req: &Request<Incoming>,
    request_id: &str,
    html: bool,
) -> Option<Response<Body>> {
    let path = req.uri().path();
    let query = req.uri().query();
    // Each endpoint's future is boxed: inline, the largest of them (sign-in, with its token exchange) would
    // size the future of every request, and hyper moves that future at least once per request.
    let response = match path {
        "/oauth2/start" => {
            let rd = query
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "rd").map(|(_, v)| v.into_owned())
                })
                .and_then(|rd| safe_return_target(&rd, &st.config.server.public_url, &st.policy))
                .unwrap_or_else(|| ReturnTo::Local("/".to_string()));
            Box::pin(login::start(st, req.headers(), &rd, request_id, html)).await
        }
        "/oauth2/handoff" => {
            let host = request_host(req).unwrap_or_default();
            Box::pin(login::handoff(st, &host, query, request_id, html)).await
        }
        "/oauth2/callback" => Box::pin(login::callback(st, req.headers(), query, request_id, html)).await,
        "/oauth2/sign_out" => Box::pin(login::sign_out(st, req.headers(), query, request_id)).await,
        "/oauth2/frontchannel_logout" => Box::pin(login::frontchannel_logout(st, query, request_id)).await,
        "/oauth2/signed_out" => login::signed_out(st, query, request_id, html),
        "/oauth2/auth" => Box::pin(forward_auth(st, conn, req, request_id)).await,
        p if p.starts_with("/oauth2/auth/") => Box::pin(forward_auth(st, conn, req, request_id)).await,
        "/oauth2/userinfo" => Box::pin(userinfo(st, req, request_id)).await,
        "/.well-known/postern/jwks.json" => {
            let mut r = Response::new(full(st.assertion.jwks()));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }
        p if p.starts_with("/oauth2/") || p.starts_with("/.well-known/postern/") => Page::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such Postern endpoint.",
            "no-such-endpoint",
            request_id,
        )
        .render(html),
        _ => return None,
    };
    Some(response)
}

/// Forward-auth (`/oauth2/auth`, for nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`, Envoy
/// `ext_authz`): decides on the original request described by `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`,
/// answering 202 with identity headers, 401 or 403. Those headers are believed only from `trusted_proxies`: a
/// client talking to Postern directly must not choose which URL gets authorised.
///
/// Envoy's HTTP `ext_authz` sends no such headers: it repeats the original request with its path appended to a
/// prefix, so `/oauth2/auth/<path>` decides on `<path>` with the request's own method and host.
///
/// With `?on_unauthenticated=redirect`, a browser's GET without a session gets a 302 to sign in (returning to
/// the original URL) instead of 401: Traefik, Caddy and Envoy pass that answer on to the browser; nginx's
/// `auth_request` cannot, and uses `error_page 401` instead.
/// The request a forward-auth request asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// The original method.
    pub method: http::Method,
    /// The original `Host`, as the proxy sent it (for the sign-in link).
    pub raw_host: String,
    /// The same, normalised for route matching.
    pub host: String,
    /// The original request target (path and query) as sent.
    pub uri: String,
    /// Its path, normalised.
    pub path: String,
    /// Envoy's form: the original path after `/oauth2/auth`, with the original method, host and query.
    pub envoy: bool,
}

/// Reads the original request out of a forward-auth request: nginx, Traefik and Caddy send
/// `X-Forwarded-Method` (default GET), `X-Forwarded-Host` (else `Host`) and `X-Forwarded-Uri` (required:
/// defaulting to "/" would authorise every path as "/"); Envoy appends the original path to `/oauth2/auth`
/// and keeps the method and host. An error is the reason code of a 400 answer.
pub fn forwarded_request(
    method: &http::Method,
    uri: &http::Uri,
    h: &http::HeaderMap,
) -> Result<ForwardedRequest, &'static str> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let envoy_path = uri.path().strip_prefix("/oauth2/auth").filter(|rest| rest.starts_with('/'));
    let method = match (envoy_path, get("x-forwarded-method").map(|m| http::Method::from_bytes(m.as_bytes()))) {
        (Some(_), _) => method.clone(),
        (None, None) => http::Method::GET,
        (None, Some(Ok(m))) => m,
        (None, Some(Err(_))) => return Err("bad-forwarded-method"),
    };
    let raw_host = match envoy_path {
        Some(_) => get("host").map(str::to_string).or_else(|| uri.authority().map(|a| a.to_string())),
        None => get("x-forwarded-host").or_else(|| get("host")).map(str::to_string),
    };
    let raw_host = raw_host.ok_or("missing-forwarded-host")?;
    let host = normalize_host(&raw_host).into_owned();
    let target = match envoy_path {
        Some(path) => path.to_string(),
        None => get("x-forwarded-uri").ok_or("missing-forwarded-uri")?.to_string(),
    };
    let raw_path = target.split(['?', '#']).next().unwrap_or("/");
    let path = normalize_path(raw_path).map_err(|_| "bad-path")?;
    Ok(ForwardedRequest { method, raw_host, host, uri: target, path, envoy: envoy_path.is_some() })
}

async fn forward_auth(st: &State, conn: &Conn, req: &Request<Incoming>, request_id: &str) -> Response<Body> {
    let answer =
        |status: StatusCode, reason: &str| json_response(status, &json!({"error": reason, "request_id": request_id}));
    if !st.config.server.trusted_proxies.iter().any(|r| r.contains(conn.peer.ip())) {
        tracing::warn!(request_id, peer = %conn.peer.ip(), "forward-auth request from an address not in trusted_proxies");
        return answer(StatusCode::FORBIDDEN, "untrusted-proxy");
    }
    let h = req.headers();
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let ForwardedRequest { method, raw_host, host, uri, path, envoy } =
        match forwarded_request(req.method(), req.uri(), h) {
            Ok(f) => f,
            Err(reason) => return answer(StatusCode::BAD_REQUEST, reason),
        };
    let Some(route) = st.policy.route(&host, &matching_path(&path), &method).cloned() else {
        tracing::info!(target: "audit", request_id, mode = "forward-auth", host = %host, path = %path, decision = "deny", reason = "no-route", "no route");
        return answer(StatusCode::FORBIDDEN, "no-route");
    };
    let granted = |reason: &str| {
        json_response(StatusCode::ACCEPTED, &json!({"decision": "allow", "reason": reason, "request_id": request_id}))
    };
    if route.public {
        return granted("public");
    }
    let principal = match authn::authenticate(st, h, &route, request_id).await {
        Authn::Principal(p) => p,
        Authn::Anonymous => {
            // Envoy's request carries the original query, so it asks for redirects with a header instead.
            let redirect = get("x-postern-on-unauthenticated") == Some("redirect")
                || (!envoy
                    && req.uri().query().is_some_and(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .any(|(k, v)| k == "on_unauthenticated" && v == "redirect")
                    }));
            if redirect && method == http::Method::GET && route.accepts_session && wants_html(h) {
                let original_query = if envoy {
                    req.uri().query().map(|q| format!("?{q}")).unwrap_or_default()
                } else {
                    uri.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default()
                };
                if let Some(to) = sign_in_link(st, &raw_host, &format!("{path}{original_query}")) {
                    return pages::redirect(&to);
                }
            }
            let mut r = answer(StatusCode::UNAUTHORIZED, "unauthenticated");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"postern\""));
            return r;
        }
        Authn::BearerRefused(e) => {
            return bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", &e.to_string(), request_id);
        }
        Authn::BearerNotAccepted => return answer(StatusCode::UNAUTHORIZED, "bearer-not-accepted"),
        Authn::StoreUnavailable => return answer(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
    };
    let decision = decide(&route, principal.identity());
    let id = principal.identity();
    tracing::info!(
        target: "audit", request_id, mode = "forward-auth", route = %route.name, subject = %id.subject,
        tenant = id.tenant.as_deref().unwrap_or("-"), auth = id.proof.as_str(),
        decision = if decision.allow { "allow" } else { "deny" }, rule = decision.rule.as_deref().unwrap_or("-"),
        reason = decision.reason, "forward-auth decision"
    );
    if !decision.allow {
        return answer(StatusCode::FORBIDDEN, decision.reason);
    }
    let mut r = granted("allowed");
    // Each identity header twice: under oauth2-proxy's `X-Auth-Request-*` names (nginx `auth_request_set`,
    // Caddy `copy_headers` renames them) and under the names upstreams read (Traefik and Envoy copy headers
    // without renaming). Every name is present, empty when there is no value, so a proxy that copies them
    // replaces whatever a client sent under those names instead of letting it through.
    let aliases = [
        (hdr::X_FORWARDED_USER, HeaderName::from_static("x-auth-request-user")),
        (hdr::X_FORWARDED_EMAIL, HeaderName::from_static("x-auth-request-email")),
        (hdr::X_FORWARDED_PREFERRED_USERNAME, HeaderName::from_static("x-auth-request-preferred-username")),
        (hdr::X_FORWARDED_GROUPS, HeaderName::from_static("x-auth-request-groups")),
    ];
    for (name, value) in identity_headers::for_request(st, &route, &principal).iter() {
        if let Some((_, alias)) = aliases.iter().find(|(n, _)| n == name) {
            r.headers_mut().insert(alias.clone(), value.clone());
        }
        r.headers_mut().insert(name.clone(), value.clone());
    }
    let empty = HeaderValue::from_static("");
    for (name, alias) in aliases {
        for name in [name, alias] {
            r.headers_mut().entry(name).or_insert_with(|| empty.clone());
        }
    }
    r.headers_mut().entry(hdr::X_POSTERN_JWT_ASSERTION).or_insert(empty);
    r
}

/// The signed-in identity as JSON.
async fn userinfo(st: &State, req: &Request<Incoming>, request_id: &str) -> Response<Body> {
    let ticket = st.cookies.session_ticket(req.headers());
    let session = match ticket {
        Some(t) => st.sessions.get(&t).await.ok().flatten(),
        None => None,
    };
    let Some(session) = session else {
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "unauthenticated", "message": "not signed in", "request_id": request_id}),
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let expires_at = session.expires_at;
    // With a group overage, the groups shown are Graph's, as policies see them.
    let principal = authn::with_graph_groups(st, Principal::Session(session), request_id).await;
    let id = principal.identity();
    json_response(
        StatusCode::OK,
        &json!({
            "user": id.subject,
            "sub": id.sub,
            "oid": id.oid,
            "tenant": id.tenant,
            "issuer": id.issuer,
            "name": id.name,
            "email": id.email,
            "preferred_username": id.preferred_username,
            "groups": id.groups,
            "groups_unresolved": id.groups_unresolved,
            "guest": id.guest,
            "roles": id.roles,
            "amr": id.amr,
            "auth": id.proof.as_str(),
            "session_expires_at": expires_at,
        }),
    )
}

/// The host a request is for: the URI's authority (HTTP/2, absolute-form), else `Host`.
fn request_host(req: &Request<Incoming>) -> Option<std::borrow::Cow<'_, str>> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = normalize_host(raw);
    (!host.is_empty()).then_some(host)
}

/// No identity: a browser is sent to sign in; any other client gets 401.
async fn challenge(
    st: &State,
    req: &Request<Incoming>,
    route: &Route,
    path: &str,
    request_id: &str,
    html: bool,
) -> Response<Body> {
    if html && route.accepts_session && req.method() == http::Method::GET {
        let mut return_to = path.to_string();
        if let Some(q) = req.uri().query() {
            return_to.push('?');
            return_to.push_str(q);
        }
        let public = &st.config.server.public_url;
        let public_host = public.host_str().map(normalize_host).unwrap_or_default();
        if request_host(req).is_some_and(|h| h != public_host) {
            // Another host: sign in on the public host, which then hands the session over (a `__Host-` cookie
            // cannot be shared between hosts).
            let authority = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            if let Some(start) = sign_in_link(st, &authority, &return_to) {
                return pages::redirect(&start);
            }
            return Page::new(
                StatusCode::UNAUTHORIZED,
                "Sign in required",
                format!(
                    "Sign in at {} first; this host is not one Postern can send you back to.",
                    st.config.public_origin()
                ),
                "unauthenticated",
                request_id,
            )
            .link("Sign in", format!("{}/oauth2/start", st.config.public_origin()))
            .render(true);
        }
        let return_to = safe_return_path(&return_to, public).unwrap_or_else(|| "/".to_string());
        return login::start(st, req.headers(), &ReturnTo::Local(return_to), request_id, html).await;
    }
    if html && route.accepts_session {
        return Page::new(
            StatusCode::UNAUTHORIZED,
            "Sign in required",
            "Please sign in, then repeat what you were doing.",
            "unauthenticated",
            request_id,
        )
        .link("Sign in", "/oauth2/start")
        .render(true);
    }
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "unauthenticated", "message": "this route needs a bearer token or a signed-in session", "request_id": request_id}),
    );
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"postern\""));
    r
}

/// The sign-in URL on the public host that returns to `path_and_query` on `authority` — through the handoff
/// when that is another host a route names. `None` when Postern may not send a browser back there.
fn sign_in_link(st: &State, authority: &str, path_and_query: &str) -> Option<String> {
    let public = &st.config.server.public_url;
    let absolute = format!("{}://{authority}{path_and_query}", public.scheme());
    let target = safe_return_target(&absolute, public, &st.policy)?;
    Some(format!(
        "{}/oauth2/start?rd={}",
        st.config.public_origin(),
        url::form_urlencoded::byte_serialize(target.as_string().as_bytes()).collect::<String>()
    ))
}

/// RFC 6750 error response. `description` is one of our own messages; never the token.
fn bearer_error(status: StatusCode, error: &str, description: &str, request_id: &str) -> Response<Body> {
    let mut r =
        json_response(status, &json!({"error": error, "error_description": description, "request_id": request_id}));
    let challenge =
        format!("Bearer realm=\"postern\", error=\"{error}\", error_description=\"{}\"", description.replace('"', "'"));
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn forbidden(route: &Route, p: &Principal, reason: &'static str, request_id: &str, html: bool) -> Response<Body> {
    match p {
        Principal::Bearer(_) if reason == "groups-unavailable" => bearer_error(StatusCode::FORBIDDEN, "insufficient_scope", "the token's groups did not fit in it and Microsoft Graph could not be asked for them; try again later", request_id),
        Principal::Bearer(_) => bearer_error(StatusCode::FORBIDDEN, "insufficient_scope", "the token is valid but no rule of this route allows it", request_id),
        Principal::Session(_) if reason == "groups-unavailable" => Page::new(
            StatusCode::FORBIDDEN,
            "Access denied for now",
            format!(
                "You are signed in as {}, but you are in too many groups for your sign-in token to list them, and Postern could not look them up in Microsoft Graph just now. Please try again in a moment; if it persists, quote the request id below.",
                p.identity().display()
            ),
            reason,
            request_id,
        )
        .render(html),
        Principal::Session(_) => Page::new(
            StatusCode::FORBIDDEN,
            "Access denied",
            format!(
                "You are signed in as {}, but the route \"{}\" does not allow you in. If you think you should have access, ask for it and quote the request id below.",
                p.identity().display(),
                route.name
            ),
            reason,
            request_id,
        )
        .link("Sign out", "/oauth2/sign_out")
        .render(html),
    }
}

fn audit_deny(
    request_id: &str,
    route: &Route,
    p: Option<&Principal>,
    reason: &str,
    status: StatusCode,
    started: Instant,
) {
    tracing::info!(
        target: "audit", request_id, route = %route.name,
        subject = p.map(|p| p.identity().subject.as_str()).unwrap_or("-"),
        auth = p.map(|p| p.identity().proof.as_str()).unwrap_or("-"),
        decision = "deny", reason, status = status.as_u16(), latency_ms = started.elapsed().as_millis() as u64, "denied"
    );
}

#[cfg(test)]
mod future_size {
    use super::*;

    fn size_of_future<A, B, C, F: std::future::Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves each request's future at least once, and every move copies all of it: rare, large steps
    /// (sign-in, refresh, Graph, SCIM) are boxed so that the common request's future stays small. It was
    /// 17 KiB before they were (6.7 % of the CPU in memmove under load).
    #[test]
    fn a_requests_future_stays_small() {
        let handle = size_of_future(|s: &'static Shared, c: &'static Conn, r: Request<Incoming>| handle(s, c, r));
        assert!(handle <= 6 * 1024, "gateway::handle's future is {handle} bytes: box the large, rare awaits");
        let validate = size_of_future(
            |b: &'static crate::token::BearerValidator, t: &'static str, a: Option<&'static [String]>| b.validate(t, a),
        );
        assert!(validate <= 1024, "a cached bearer token's future is {validate} bytes: box the verification");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_a_process_prefix_and_a_hexadecimal_counter() {
        let (a, b) = (super::new_request_id(), super::new_request_id());
        let (prefix, n) = a.rsplit_once('-').unwrap();
        let (prefix_b, m) = b.rsplit_once('-').unwrap();
        assert_eq!(prefix, prefix_b);
        assert!(!n.is_empty() && n.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert!(n == "0" || !n.starts_with('0'), "{a}");
        let (n, m) = (u64::from_str_radix(n, 16).unwrap(), u64::from_str_radix(m, 16).unwrap());
        assert!(m > n, "{a} then {b}");
    }
}
