//! The admin listener: `/healthz` (alive), `/readyz` (ready once the provider is discovered, "draining" from
//! the moment shutdown starts, while requests in flight still finish) and `/metrics` (Prometheus text:
//! requests by route, decision and reason; sign-ins; bearer tokens and their cache).

use http::StatusCode;
use postern::demo::DEMO_POLICY;

use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

/// The demo policy plus a public route to the echo's `/slow`.
async fn start_with_admin() -> Postern {
    start_postern(Options {
        policy: format!(
            r#"{DEMO_POLICY}
[[route]]
name = "slow"
host = "*"
path = "/slow"
upstream = "http://127.0.0.1:8081"
public = true
"#
        ),
        ..Options::default()
    })
    .await
}

async fn get(postern: &Postern, path: &str) -> Resp {
    Client::new().get(postern.admin(path)).send().await
}

/// Polls `/readyz` until it answers `status`, and returns that answer.
async fn readyz_until(postern: &Postern, status: StatusCode) -> Resp {
    for _ in 0..400 {
        let r = get(postern, "/readyz").await;
        if r.status == status {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("/readyz never answered {status}");
}

/// The sum of the samples of metric `name` whose labels include every one of `labels` (`key="value"`);
/// 0 when there is none yet.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name && labels.iter().all(|l| series_labels.contains(l))
        })
        .map(|(_, value)| value.parse::<f64>().expect("a sample value"))
        .sum()
}

async fn metrics(postern: &Postern) -> String {
    let r = get(postern, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/plain")), "{:?}", r.headers);
    r.text()
}

#[tokio::test]
async fn healthz_answers_200_and_unknown_admin_paths_404() {
    let postern = start_with_admin().await;

    let health = get(&postern, "/healthz").await;
    let unknown = get(&postern, "/admin").await;

    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_is_200_once_the_provider_is_discovered() {
    let postern = start_with_admin().await;

    let r = readyz_until(&postern, StatusCode::OK).await;

    assert!(r.text().contains("ready"), "{}", r.text());
    // Ready means a sign-in can start at once.
    let start = Client::new().get(postern.at("/oauth2/start?rd=%2F")).browser().send().await;
    assert_eq!(start.status, StatusCode::FOUND, "{}", start.text());
}

#[tokio::test]
async fn readyz_says_draining_from_the_start_of_shutdown_while_a_request_in_flight_completes() {
    let mut postern = start_with_admin().await;
    readyz_until(&postern, StatusCode::OK).await;
    let url = postern.at("/slow?ms=1500");
    let slow = tokio::spawn(async move { Client::new().get(url).api().send().await });
    // Until Postern counts it in flight, the request may not have arrived yet.
    let mut in_flight = false;
    for _ in 0..400 {
        if sample(&metrics(&postern).await, "postern_in_flight_requests", &[]) >= 1.0 {
            in_flight = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(in_flight, "the slow request reached Postern");

    postern.begin_shutdown();

    let r = readyz_until(&postern, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(r.text().contains("draining"), "{}", r.text());
    assert_eq!(get(&postern, "/healthz").await.status, StatusCode::OK, "still alive while draining");
    let slow = slow.await.expect("the slow request ran");
    assert_eq!(slow.upstream().uri(), "/slow?ms=1500");
    postern.stopped().await;
}

/// Carol is in no group. On `/admin` the only rule wants a group (`groups-unauthorized`); on `/` the rules
/// want a group or a bearer token's role, so no single kind failed (`no-rule-matched`), as the README says.
#[tokio::test]
async fn metrics_count_refused_requests_by_route_decision_reason_and_status() {
    let postern = start_with_admin().await;
    let carol = sign_in_at(&postern.url, "carol").await;
    for (path, labels) in [
        (
            "/admin",
            [r#"route="demo-admin""#, r#"decision="deny""#, r#"reason="groups-unauthorized""#, r#"status="403""#],
        ),
        ("/", [r#"route="demo""#, r#"decision="deny""#, r#"reason="no-rule-matched""#, r#"status="403""#]),
    ] {
        let before = sample(&metrics(&postern).await, "postern_requests_total", &labels);

        let r = carol.get(postern.at(path)).api().send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");

        let after = metrics(&postern).await;
        assert_eq!(sample(&after, "postern_requests_total", &labels), before + 1.0, "{path}: {after}");
    }
}

#[tokio::test]
async fn metrics_count_a_successful_sign_in() {
    let postern = start_with_admin().await;
    let labels = [r#"outcome="success""#];
    let before = sample(&metrics(&postern).await, "postern_sign_ins_total", &labels);

    sign_in_at(&postern.url, "alice").await;

    assert_eq!(sample(&metrics(&postern).await, "postern_sign_ins_total", &labels), before + 1.0);
}

#[tokio::test]
async fn metrics_count_a_refused_bearer_token_with_its_reason() {
    let postern = start_with_admin().await;
    let labels = [r#"outcome="failure""#, r#"reason="token-malformed""#];
    let before = sample(&metrics(&postern).await, "postern_bearer_tokens_total", &labels);

    let r = Client::new().get(postern.at("/")).bearer("not.a.jwt").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    let after = metrics(&postern).await;
    assert_eq!(sample(&after, "postern_bearer_tokens_total", &labels), before + 1.0, "{after}");
}

#[tokio::test]
async fn metrics_count_bearer_cache_hits_when_a_valid_token_comes_again() {
    let postern = start_with_admin().await;
    let token = client_credentials_token(&postern.stack.provider).await;
    let first = Client::new().get(postern.at("/deploy")).bearer(&token).send().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let before = metrics(&postern).await;

    for _ in 0..3 {
        let again = Client::new().get(postern.at("/deploy")).bearer(&token).send().await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    }

    let after = metrics(&postern).await;
    let hits = |m: &str| sample(m, "postern_bearer_cache_hits_total", &[]);
    let verifications = |m: &str| sample(m, "postern_bearer_signature_verifications_total", &[]);
    assert_eq!(hits(&after), hits(&before) + 3.0, "{after}");
    assert_eq!(verifications(&after), verifications(&before), "no signature was checked again");
    let success = [r#"outcome="success""#];
    assert_eq!(
        sample(&after, "postern_bearer_tokens_total", &success),
        sample(&before, "postern_bearer_tokens_total", &success) + 3.0
    );
}

#[tokio::test]
async fn metrics_count_key_fetches_of_the_sign_in_provider() {
    let postern = start_with_admin().await;
    readyz_until(&postern, StatusCode::OK).await;

    let m = metrics(&postern).await;
    let issuer = format!(r#"issuer="{}""#, postern.stack.provider.issuer());
    assert!(sample(&m, "postern_key_fetches_total", &[&issuer, r#"outcome="success""#]) >= 1.0, "{m}");
    assert_eq!(sample(&m, "postern_key_fetches_total", &[&issuer, r#"outcome="failure""#]), 0.0, "{m}");
}
