//! The admin listener, separate from the public one: `/metrics` (Prometheus text), `/healthz` (alive),
//! `/readyz` (ready once the provider's keys and the policies are loaded; not ready while draining).

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
        async move { handle(&shared, &req) }
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
