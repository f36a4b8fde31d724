//! The admin listener, separate from the public one: `/metrics` (Prometheus text), `/healthz` (alive),
//! `/readyz` (ready once the provider's keys and the policies are loaded; not ready while draining or while the
//! store is unreachable), and the
//! admin API under `/api/` for service-desk automation (list and end sessions, disable and enable users),
//! open only to bearer tokens carrying an app role from `[admin_api] roles`. Never logs a token.

use std::future::Future;
use std::sync::atomic::Ordering;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::body::{Body, full};
use crate::state::Shared;

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shared: Shared, shutdown: impl Future<Output = ()> + Send + 'static) {
    let handler = move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            if req.uri().path().starts_with("/api/") {
                let st = shared.load_full();
                return api(&st, &req).await;
            }
            handle(&shared, &req)
        }
    };
    crate::server::simple::serve(listener, handler, shutdown).await;
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers one admin request.
pub fn handle(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let st = shared.load();
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", st.metrics.encode()),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if st.health.draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining: shutting down\n".into())
            } else if let Some(why) = st.store.unavailable() {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {why}\n"))
            } else if !st.provider.is_discovered() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: the sign-in provider's keys are not loaded yet\n".into(),
                )
            } else {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

fn api_json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    crate::pages::json_response(status, body)
}

fn api_error(status: StatusCode, error: &str, message: &str) -> Response<Body> {
    let mut r = api_json(status, &serde_json::json!({"error": error, "message": message}));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"postern-admin\", error=\"{error}\""))
    {
        r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The admin API. `GET /api/sessions[?user=X]`, `DELETE /api/sessions?user=X`, `DELETE /api/sessions/<handle>`,
/// `POST /api/users/<name>/disable`, `POST /api/users/<name>/enable`.
pub async fn api(st: &crate::state::State, req: &Request<Incoming>) -> Response<Body> {
    use http::Method;
    use serde_json::json;
    let Some(config) = &st.config.admin_api else {
        return api_error(
            StatusCode::NOT_FOUND,
            "disabled",
            "the admin API is off: add [admin_api] roles = [...] to the config",
        );
    };
    let Some(token) = crate::authn::bearer_token(req.headers()) else {
        return api_error(StatusCode::UNAUTHORIZED, "invalid_request", "send a bearer token with an admin app role");
    };
    let caller = match st.bearer.validate(token, None).await {
        Ok(identity) => identity,
        Err(e) => return api_error(StatusCode::UNAUTHORIZED, "invalid_token", &e.to_string()),
    };
    if let crate::directory::Access::Revoked(_) = st.directory.check(&caller) {
        return api_error(StatusCode::UNAUTHORIZED, "invalid_token", "the caller's access has been revoked");
    }
    if !caller.roles.iter().any(|r| config.roles.contains(r)) {
        tracing::warn!(target: "audit", event = "admin-api-forbidden", caller = %caller.subject, "admin API call without an admin role");
        return api_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "the token lacks an app role allowed by [admin_api] roles",
        );
    }
    let path = req.uri().path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(2).collect();
    let user_param = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "user").map(|(_, v)| v.into_owned())
    });
    let by = format!("admin API {} {} by {}", req.method(), path, caller.subject);
    let now = st.clock.now();
    let store_failed = |e: crate::session::StoreError| {
        tracing::error!(error = %e, "admin API: the store failed");
        api_error(StatusCode::INTERNAL_SERVER_ERROR, "store-failed", "the store failed; nothing was changed")
    };
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["sessions"]) => match st.store.list(user_param.as_deref()).await {
            Ok(list) => api_json(StatusCode::OK, &json!({"sessions": list})),
            Err(e) => store_failed(e),
        },
        (Method::DELETE, ["sessions"]) => {
            let Some(user) = user_param.filter(|u| !u.trim().is_empty()) else {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "missing-user",
                    "DELETE /api/sessions needs ?user=<oid or user name>",
                );
            };
            match st.store.delete_by_user(&user).await {
                Ok(n) => {
                    tracing::warn!(target: "audit", event = "sessions-revoked", user = %user, sessions_ended = n, by = %by, "sessions ended by an admin");
                    api_json(StatusCode::OK, &json!({"sessions_ended": n}))
                }
                Err(e) => store_failed(e),
            }
        }
        (Method::DELETE, ["sessions", handle]) => match st.store.delete_by_handle(handle).await {
            Ok(0) => api_error(StatusCode::NOT_FOUND, "no-such-session", "no session has this handle"),
            Ok(n) => {
                tracing::warn!(target: "audit", event = "session-revoked", session = %handle, by = %by, "session ended by an admin");
                api_json(StatusCode::OK, &json!({"sessions_ended": n}))
            }
            Err(e) => store_failed(e),
        },
        (Method::POST, ["users", name, action @ ("disable" | "enable")]) => {
            let name = crate::scim::percent_decode(name);
            let result = if *action == "disable" {
                crate::directory::disable(&st.directory, &name, &by, now).await
            } else {
                crate::directory::enable(&st.directory, &name, &by, now).await
            };
            match result {
                Ok(c) => {
                    crate::scim::audit(&c, &by, "-");
                    api_json(
                        StatusCode::OK,
                        &json!({"user": name, "action": action, "sessions_ended": c.sessions_ended}),
                    )
                }
                Err(crate::store::WriteError::Refused(e)) => api_error(e.status, "refused", &e.detail),
                Err(crate::store::WriteError::Store(e)) => store_failed(e),
            }
        }
        _ => api_error(
            StatusCode::NOT_FOUND,
            "no-such-endpoint",
            "try GET /api/sessions, DELETE /api/sessions?user=X, DELETE /api/sessions/<handle>, POST /api/users/<name>/disable or /enable",
        ),
    }
}
