//! The sign-in flow's handlers: `/oauth2/start`, `/oauth2/callback`, `/oauth2/sign_out`, `/oauth2/signed_out`.
//! Every failure ends on a readable page with the request id and a link to try again: never a redirect loop,
//! never a session. Never logs a code, a token, a state or a cookie.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{HeaderValue, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::redirect::{ReturnTo, safe_return_path, safe_return_target};
use crate::body::Body;
use crate::identity::{Identity, Proof};
use crate::jwt::constant_time_eq;
use crate::metrics::OutcomeLabels;
use crate::pages::{Page, redirect};
use crate::secret::random_token;
use crate::session::cookie::MAX_PENDING_LOGINS;
use crate::state::State;

/// How long a sign-in may take between leaving for the provider and coming back.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// A sign-in in progress, kept (encrypted) in its own login cookie.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    /// `state` sent to the provider.
    s: String,
    /// `nonce` sent to the provider.
    n: String,
    /// PKCE verifier.
    v: String,
    /// Where to return, a path on Postern's origin.
    r: String,
    /// When the sign-in started.
    t: u64,
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        // A repeated parameter is ambiguous; keep the first, as the provider would have seen it.
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

fn set_cookie(response: &mut Response<Body>, cookie: &cookie::Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(SET_COOKIE, v);
    }
}

fn start_link(return_to: &str) -> String {
    format!("/oauth2/start?rd={}", url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>())
}

/// How long a handoff link is good for: it only has to survive one redirect.
const HANDOFF_TTL: u64 = 60;

/// A session handed from the public host to another host a route names, inside a one-time sealed link.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    /// One-time id.
    i: String,
    /// The session ticket.
    k: String,
    /// The host it is for.
    h: String,
    /// The path (and query) to land on.
    p: String,
    /// Expiry.
    e: u64,
}

/// The redirect that hands the session `ticket` to `target`'s host.
fn handoff_redirect(st: &State, ticket: &str, target: &url::Url) -> Option<Response<Body>> {
    let mut path = target.path().to_string();
    if let Some(q) = target.query() {
        path.push('?');
        path.push_str(q);
    }
    let handoff = Handoff {
        i: random_token(16),
        k: ticket.to_string(),
        h: crate::policy::path::normalize_host(target.host_str()?).into_owned(),
        p: path,
        e: st.clock.now() + HANDOFF_TTL,
    };
    let sealed = st.cookies.seal_for(HANDOFF_PURPOSE, &serde_json::to_string(&handoff).ok()?)?;
    let mut url = target.clone();
    url.set_path("/oauth2/handoff");
    url.set_query(None);
    url.query_pairs_mut().append_pair("t", &sealed);
    Some(redirect(url.as_str()))
}

const HANDOFF_PURPOSE: &str = "postern-handoff";

/// `/oauth2/handoff` on another host: checks the one-time link and sets this host's session cookie.
pub async fn handoff(st: &State, host: &str, query: Option<&str>, request_id: &str, html: bool) -> Response<Body> {
    let q = query_map(query);
    let fail = |reason: &'static str| {
        tracing::warn!(request_id, reason, "session handoff refused");
        Page::new(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This sign-in link is invalid, expired or already used.",
            reason,
            request_id,
        )
        .link("Try again", "/")
        .render(html)
    };
    let Some(handoff) = q
        .get("t")
        .and_then(|t| st.cookies.open_for(HANDOFF_PURPOSE, t))
        .and_then(|v| serde_json::from_str::<Handoff>(&v).ok())
    else {
        return fail("handoff-invalid");
    };
    if handoff.h != host {
        return fail("handoff-wrong-host");
    }
    if st.clock.now() > handoff.e {
        return fail("handoff-expired");
    }
    let used = format!("handoff:{}", handoff.i);
    if st.used_states.contains_key(&used) {
        return fail("handoff-replayed");
    }
    st.used_states.insert(used, ());
    let session = match st.sessions.get(&handoff.k).await {
        Ok(Some(s)) => s,
        _ => return fail("handoff-session-ended"),
    };
    let Some(cookie) = st.cookies.session_cookie(&handoff.k, st.sessions.cookie_max_age(&session)) else {
        return fail("session-cookie-failed");
    };
    let path = if handoff.p.starts_with('/') && !handoff.p.starts_with("//") { handoff.p } else { "/".to_string() };
    let mut response = redirect(&path);
    set_cookie(&mut response, &cookie);
    response
}

/// Starts a sign-in that returns to `return_to` (already checked to be safe). When the target is another host
/// and this browser is already signed in here, the session is handed over without asking the provider again.
pub async fn start(
    st: &State,
    headers: &HeaderMap,
    return_to: &ReturnTo,
    request_id: &str,
    html: bool,
) -> Response<Body> {
    if let ReturnTo::Remote(target) = return_to
        && let Some(ticket) = st.cookies.session_ticket(headers)
        && let Ok(Some(_)) = st.sessions.get(&ticket).await
        && let Some(response) = handoff_redirect(st, &ticket, target)
    {
        return response;
    }
    let return_to = return_to.as_string();
    let return_to = return_to.as_str();
    let state = random_token(32);
    let nonce = random_token(32);
    let verifier = random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    let url = match st.provider.authorization_url(&state, &nonce, &challenge).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(request_id, reason = e.code(), error = %e, "cannot start sign-in");
            return Page::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable",
                "The sign-in provider cannot be reached right now. Please try again in a moment.",
                e.code(),
                request_id,
            )
            .link("Try again", start_link(return_to))
            .render(html);
        }
    };
    let pending = PendingLogin { s: state.clone(), n: nonce, v: verifier, r: return_to.to_string(), t: st.clock.now() };
    let mut response = redirect(url.as_str());
    // Bound the number of pending sign-ins per browser: drop the oldest (and any that no longer open).
    let mut existing: Vec<(String, u64)> = st
        .cookies
        .login_cookies(headers)
        .into_iter()
        .map(|(name, value)| {
            let started = value.and_then(|v| serde_json::from_str::<PendingLogin>(&v).ok()).map(|p| p.t).unwrap_or(0);
            (name, started)
        })
        .collect();
    existing.sort_by_key(|(_, t)| *t);
    let excess = (existing.len() + 1).saturating_sub(MAX_PENDING_LOGINS);
    for (name, _) in existing.iter().take(excess) {
        set_cookie(&mut response, &st.cookies.removal(name));
    }
    let Some(cookie) =
        serde_json::to_string(&pending).ok().and_then(|v| st.cookies.login_cookie(&state, &v, LOGIN_TTL))
    else {
        return Page::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "Postern could not start the sign-in.",
            "login-cookie-failed",
            request_id,
        )
        .render(html);
    };
    set_cookie(&mut response, &cookie);
    tracing::debug!(request_id, "sign-in started");
    response
}

/// Where a failed callback happened: the request, and the sign-in attempt when known.
#[derive(Clone, Copy)]
struct CallbackContext<'a> {
    st: &'a State,
    state: Option<&'a str>,
    return_to: &'a str,
    request_id: &'a str,
    html: bool,
}

/// A failed callback: the page, and the login cookie removed.
fn callback_failure(
    cx: &CallbackContext<'_>,
    status: StatusCode,
    message: &str,
    reason: &'static str,
) -> Response<Body> {
    let CallbackContext { st, state, return_to, request_id, html } = *cx;
    tracing::warn!(request_id, reason, "sign-in failed");
    st.metrics.sign_ins.get_or_create(&OutcomeLabels { outcome: "failure", reason }).inc();
    let mut response = Page::new(status, "Sign-in failed", message, reason, request_id)
        .link("Try again", start_link(return_to))
        .render(html);
    if let Some(state) = state {
        set_cookie(&mut response, &st.cookies.removal(&st.cookies.login_cookie_name(state)));
    }
    response
}

/// Completes a sign-in: checks the login cookie and `state`, exchanges the code with the PKCE verifier, verifies
/// the ID token with the nonce, creates the session and returns the browser where it started.
pub async fn callback(
    st: &State,
    headers: &HeaderMap,
    query: Option<&str>,
    request_id: &str,
    html: bool,
) -> Response<Body> {
    let q = query_map(query);
    let Some(state) = q.get("state").filter(|s| !s.is_empty() && s.len() <= 256) else {
        let cx = CallbackContext { st, state: None, return_to: "/", request_id, html };
        return callback_failure(
            &cx,
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete (no state). Start again from the page you wanted.",
            "login-state-missing",
        );
    };
    let pending = st.cookies.login_value(headers, state).and_then(|v| serde_json::from_str::<PendingLogin>(&v).ok());
    let Some(pending) = pending else {
        let cx = CallbackContext { st, state: Some(state), return_to: "/", request_id, html };
        return callback_failure(
            &cx,
            StatusCode::BAD_REQUEST,
            "This sign-in was not started in this browser, has already been used, or took too long. Start again.",
            "login-state-missing",
        );
    };
    let target = safe_return_target(&pending.r, &st.config.server.public_url, &st.policy)
        .unwrap_or_else(|| ReturnTo::Local("/".to_string()));
    let return_to = target.as_string();
    let cx = CallbackContext { st, state: Some(state), return_to: &return_to, request_id, html };
    let fail = |status, message: &str, reason| callback_failure(&cx, status, message, reason);
    if !constant_time_eq(pending.s.as_bytes(), state.as_bytes()) {
        return fail(
            StatusCode::BAD_REQUEST,
            "This sign-in does not match the one this browser started. Start again.",
            "login-state-mismatch",
        );
    }
    if st.clock.now().saturating_sub(pending.t) > LOGIN_TTL.as_secs() {
        return fail(StatusCode::BAD_REQUEST, "This sign-in took too long. Start again.", "login-expired");
    }
    // A state is good for one callback: a replayed callback (even with a copied cookie) is refused.
    if st.used_states.contains_key(state) {
        return fail(
            StatusCode::BAD_REQUEST,
            "This sign-in has already been completed. Start again.",
            "login-replayed",
        );
    }
    st.used_states.insert(state.clone(), ());
    if let Some(error) = q.get("error") {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        tracing::warn!(request_id, provider_error = %error, "the provider refused the sign-in");
        let message = format!("The sign-in provider refused the sign-in ({error}).");
        return fail(StatusCode::FORBIDDEN, &message, "provider-error");
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The provider sent no authorization code. Start again.",
            "login-code-missing",
        );
    };
    let tokens = match st.provider.exchange_code(code, &pending.v).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(request_id, reason = e.code(), error = %e, "code exchange failed");
            return fail(
                StatusCode::BAD_GATEWAY,
                "The sign-in provider did not complete the sign-in. Please try again.",
                e.code(),
            );
        }
    };
    let id_token = tokens.id_token.unwrap_or_default();
    let claims = match st.provider.verify_id_token(&id_token, Some(&pending.n)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(request_id, reason = e.code(), error = %e, "ID token refused");
            return fail(
                StatusCode::UNAUTHORIZED,
                "The sign-in provider's answer could not be verified, so you are not signed in.",
                e.code(),
            );
        }
    };
    // An ID token issued before this sign-in started cannot be the answer to it.
    let issued = claims.get("iat").and_then(|v| v.as_u64()).unwrap_or(0);
    if issued.saturating_add(st.provider.config().leeway.as_secs()) < pending.t {
        return fail(
            StatusCode::UNAUTHORIZED,
            "The sign-in provider's answer is older than this sign-in.",
            "token-stale",
        );
    }
    let identity = Identity::from_claims(claims, Proof::Session);
    let who = identity.display().to_string();
    let subject = identity.subject.clone();
    if let crate::directory::Access::Revoked(reason) = st.directory.check(&identity) {
        tracing::warn!(target: "audit", request_id, event = "sign-in-refused", subject = %subject, user = %who, reason = %reason, "sign-in refused: access revoked");
        return fail(
            StatusCode::FORBIDDEN,
            "Your access has been revoked, so you cannot sign in. If you think this is a mistake, contact your administrator and quote the request id below.",
            "user-revoked",
        );
    }
    let session = match st.sessions.create(identity, Some(id_token), tokens.refresh_token).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(request_id, error = %e, "cannot save the session");
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "Postern could not save your session. Please try again.",
                "session-store-failed",
            );
        }
    };
    let Some(cookie) = st.cookies.session_cookie(session.id.expose(), st.sessions.cookie_max_age(&session)) else {
        return fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Postern could not create your session cookie.",
            "session-cookie-failed",
        );
    };
    tracing::info!(target: "audit", request_id, event = "sign-in", subject = %subject, user = %who, "signed in");
    st.metrics.sign_ins.get_or_create(&OutcomeLabels { outcome: "success", reason: "ok" }).inc();
    let mut response = match &target {
        ReturnTo::Remote(url) => handoff_redirect(st, session.id.expose(), url).unwrap_or_else(|| redirect("/")),
        ReturnTo::Local(path) => redirect(path),
    };
    set_cookie(&mut response, &cookie);
    set_cookie(&mut response, &st.cookies.removal(&st.cookies.login_cookie_name(state)));
    response
}

/// Ends the session and, when the provider supports it, signs out there too.
pub async fn sign_out(st: &State, headers: &HeaderMap, query: Option<&str>, request_id: &str) -> Response<Body> {
    let q = query_map(query);
    let return_to =
        q.get("rd").and_then(|r| safe_return_path(r, &st.config.server.public_url)).unwrap_or_else(|| "/".to_string());
    let mut id_token_hint = None;
    let mut logout_hint = None;
    if let Some(ticket) = st.cookies.session_ticket(headers) {
        if let Ok(Some(session)) = st.sessions.get(&ticket).await {
            id_token_hint = session.id_token.as_ref().map(|t| t.expose().clone());
            logout_hint =
                session.identity.claims.get("login_hint").and_then(serde_json::Value::as_str).map(str::to_string);
            tracing::info!(target: "audit", request_id, event = "sign-out", subject = %session.identity.subject, "signed out");
        }
        if let Err(e) = st.sessions.end(&ticket).await {
            tracing::error!(request_id, error = %e, "cannot remove the session");
        }
    }
    let signed_out = format!("{}/oauth2/signed_out", st.config.public_origin());
    let target = match st
        .provider
        .end_session_url(id_token_hint.as_deref(), logout_hint.as_deref(), &signed_out, &return_to)
        .await
    {
        Some(url) => url.to_string(),
        None => format!(
            "/oauth2/signed_out?state={}",
            url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
        ),
    };
    let mut response = redirect(&target);
    set_cookie(&mut response, &st.cookies.removal(st.cookies.session_name()));
    response
}

/// Front-channel logout (`/oauth2/frontchannel_logout?sid=…&iss=…`), called by the provider in a hidden frame
/// when the user signs out there: ends every session that sign-in created. The cookie is not used (a cross-site
/// frame does not send a `SameSite=Lax` cookie); the `sid` names the sessions.
pub async fn frontchannel_logout(st: &State, query: Option<&str>, request_id: &str) -> Response<Body> {
    let q = query_map(query);
    if let Some(iss) = q.get("iss")
        && !super::entra::could_match(&st.provider.config().issuer, iss)
    {
        tracing::warn!(request_id, "front-channel logout for another issuer ignored");
        return Page::new(
            StatusCode::BAD_REQUEST,
            "Not signed out",
            "This logout is for another issuer.",
            "logout-wrong-issuer",
            request_id,
        )
        .render(true);
    }
    let Some(sid) = q.get("sid").filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Page::new(
            StatusCode::BAD_REQUEST,
            "Not signed out",
            "The logout request names no session (sid).",
            "logout-no-sid",
            request_id,
        )
        .render(true);
    };
    match st.sessions.end_by_sid(sid).await {
        Ok(n) => {
            tracing::info!(target: "audit", request_id, event = "front-channel-logout", sessions = n, "sessions ended by the provider");
            Page::new(
                StatusCode::OK,
                "Signed out",
                "Your Postern sessions from this sign-in have ended.",
                "signed-out",
                request_id,
            )
            .render(true)
        }
        Err(e) => {
            tracing::error!(request_id, error = %e, "front-channel logout failed");
            Page::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not signed out",
                "Postern could not end the sessions.",
                "session-store-failed",
                request_id,
            )
            .render(true)
        }
    }
}

/// The page shown after sign-out.
pub fn signed_out(st: &State, query: Option<&str>, request_id: &str, html: bool) -> Response<Body> {
    let q = query_map(query);
    let back = q
        .get("state")
        .and_then(|r| safe_return_path(r, &st.config.server.public_url))
        .unwrap_or_else(|| "/".to_string());
    Page::new(StatusCode::OK, "You are signed out", "You have been signed out of Postern.", "signed-out", request_id)
        .link("Sign in again", start_link(&back))
        .render(html)
}
