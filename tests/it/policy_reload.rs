//! Policy reload on a running Postern (what SIGHUP and the file watcher call): a good policy directory replaces
//! the running policy atomically, with no request failing while it happens; a broken one is refused with the
//! file, line and column of each problem, and the last good policy keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;

use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

/// One route for eng on every host, telling the upstream which version of the policy let the request through.
fn policy(version: &str) -> String {
    format!(
        r#"{DEMO_GROUPS}
[[route]]
name = "tools"
host = "*"
upstream = "http://127.0.0.1:8081"
headers = {{ "X-Policy-Version" = "{version}" }}
allow = [{{ groups = ["eng"] }}]
"#
    )
}

async fn start_with_policy(version: &str) -> Postern {
    start_postern(Options { policy: policy(version), ..Options::default() }).await
}

/// The policy version that let `client`'s request to `path` through.
async fn served_by(postern: &Postern, client: &Client, path: &str) -> String {
    let up = client.get(postern.at(path)).api().send().await.upstream();
    up.get("x-policy-version").expect("the route names its version").to_string()
}

/// 1-based line and column of the first `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("the needle is in the text");
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, column)
}

#[tokio::test]
async fn a_broken_policy_file_is_refused_with_its_position_and_the_last_good_policy_keeps_serving() {
    let postern = start_with_policy("good").await;
    let alice = sign_in_at(&postern.url, "alice").await;
    assert_eq!(served_by(&postern, &alice, "/").await, "good");
    let broken = r#"[[route]]
name = "wiki"
host = "wiki.example.com"
upstream = "http://127.0.0.1:8081"
allow = [{ groups = ["ghosts"] }]
"#;
    let path = postern.write_policy("wiki.toml", broken);
    let (line, column) = position(broken, "\"ghosts\"");

    let errors = postern::reload::reload(&postern.shared).expect_err("the broken file is refused").to_string();

    let at = format!("{}:{line}:{column}", path.display());
    assert!(errors.contains(&at), "expected {at} in:\n{errors}");
    assert!(errors.contains("ghosts"), "{errors}");
    let r = alice.get(postern.at("/")).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(served_by(&postern, &alice, "/").await, "good");
}

#[tokio::test]
async fn a_policy_file_edited_into_a_broken_one_leaves_the_loaded_policy_serving() {
    let postern = start_with_policy("good").await;
    let alice = sign_in_at(&postern.url, "alice").await;
    // The running policy's own file, now without its upstream.
    let broken = policy("broken").replace("upstream = \"http://127.0.0.1:8081\"\n", "");
    let path = postern.write_policy("policy.toml", &broken);

    let errors = postern::reload::reload(&postern.shared).expect_err("the broken file is refused").to_string();

    assert!(errors.contains(&format!("{}:", path.display())), "{errors}");
    assert!(errors.contains("upstream"), "{errors}");
    assert_eq!(served_by(&postern, &alice, "/").await, "good");
}

#[tokio::test]
async fn a_route_added_by_a_reload_is_served_and_one_removed_by_a_reload_is_gone() {
    let postern = start_with_policy("v1").await;
    let status_page = r#"[[route]]
name = "status"
host = "*"
path = "/status-page"
upstream = "http://127.0.0.1:8081"
public = true
"#;
    let nobody = Client::new();
    assert_eq!(nobody.get(postern.at("/status-page")).api().send().await.status, StatusCode::UNAUTHORIZED);

    let path = postern.write_policy("status.toml", status_page);
    postern::reload::reload(&postern.shared).expect("the new file is good");
    let r = nobody.get(postern.at("/status-page")).api().send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    std::fs::remove_file(path).expect("removed");
    postern::reload::reload(&postern.shared).expect("the rest is good");
    assert_eq!(nobody.get(postern.at("/status-page")).api().send().await.status, StatusCode::UNAUTHORIZED);
}

/// Waits until `counter` reaches `at_least`.
async fn wait_for(counter: &AtomicUsize, at_least: usize) {
    while counter.load(Ordering::SeqCst) < at_least {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A request loads one policy snapshot and keeps it; reloads swap whole snapshots. So a client sending
/// requests while the policy is swapped twenty times sees every request allowed, each by one whole version,
/// never an older one than the request before it saw. The client and the reloads take turns loosely (each
/// reload waits for some requests, and each stretch of requests for some reloads), so both run concurrently
/// and every version is in use for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_good_policies_during_traffic_switches_versions_and_fails_no_request() {
    const REQUESTS: usize = 300;
    const RELOADS: usize = 20;
    const PER_RELOAD: usize = REQUESTS / RELOADS;
    let postern = Arc::new(start_with_policy("v0").await);
    let alice = sign_in_at(&postern.url, "alice").await;
    let (done, reloaded) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic = {
        let (postern, done, reloaded) = (postern.clone(), done.clone(), reloaded.clone());
        tokio::spawn(async move {
            let mut seen = Vec::with_capacity(REQUESTS);
            for i in 0..REQUESTS {
                wait_for(&reloaded, i / PER_RELOAD).await;
                let r = alice.get(postern.at(&format!("/work/{i}"))).api().send().await;
                let version =
                    (r.status == StatusCode::OK).then(|| r.upstream().get("x-policy-version").map(str::to_string));
                seen.push((r.status, version.flatten()));
                done.fetch_add(1, Ordering::SeqCst);
            }
            seen
        })
    };

    for reload in 1..=RELOADS {
        wait_for(&done, (reload - 1) * PER_RELOAD).await;
        postern.write_policy("policy.toml", &policy(&format!("v{reload}")));
        postern::reload::reload(&postern.shared).expect("every version is good");
        reloaded.fetch_add(1, Ordering::SeqCst);
    }

    let seen = traffic.await.expect("the client ran");
    let failed: Vec<_> = seen.iter().enumerate().filter(|(_, (status, _))| *status != StatusCode::OK).collect();
    assert!(failed.is_empty(), "requests failed during reloads: {failed:?}");
    let versions: Vec<usize> = seen
        .iter()
        .map(|(_, v)| {
            let v = v.as_deref().expect("every allowed request names its policy version");
            v.trim_start_matches('v').parse().expect("a version")
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] <= w[1]), "a request never goes back to an older policy: {versions:?}");
    let distinct = versions.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct >= RELOADS / 2, "the traffic saw the versions change: {versions:?}");
    assert_eq!(served_by(&postern, &sign_in_at(&postern.url, "alice").await, "/").await, format!("v{RELOADS}"));
}
