//! Policy reload without a restart: on SIGHUP or when a file in the policy directory changes, the policies are
//! loaded and checked again; a good set replaces the running one atomically (requests in flight finish under the
//! policy they started with), a bad set is logged with every problem and the last good policy keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::Diagnostics;
use crate::policy::load_dir;
use crate::state::Shared;

/// Loads the policy directory again and swaps the new policy in; on errors, keeps the running policy.
pub fn reload(shared: &Shared) -> Result<Diagnostics, Diagnostics> {
    let current = shared.load_full();
    match load_dir(&current.config.policies_dir) {
        Ok((policy, warnings)) => {
            let routes = policy.routes().len();
            shared.store(Arc::new(current.with_policy(policy)));
            for w in warnings.warnings() {
                tracing::warn!(%w, "policy warning");
            }
            tracing::info!(dir = %current.config.policies_dir.display(), routes, "policies reloaded");
            Ok(warnings)
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(problem = %e, "policy reload refused; the last good policy keeps serving");
            }
            Err(errors)
        }
    }
}

/// Watches the policy directory and reloads after changes settle (250 ms without events). The watcher stops
/// when the returned value is dropped.
pub fn watch(shared: Shared) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher;
    let dir: PathBuf = shared.load().config.policies_dir.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // Any change counts, not only to `*.toml`: a Kubernetes ConfigMap update swaps a `..data` symlink
            // and touches no file named `.toml`. A needless reload is cheap, and debounced.
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })?;
    // The directory, not the files: editors and Kubernetes ConfigMaps replace files by rename.
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: an editor's save is several events.
            loop {
                match tokio::time::timeout(Duration::from_millis(250), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let _ = reload(&shared);
        }
    });
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::state::State;
    use arc_swap::ArcSwap;
    use http::Method;

    fn route(name: &str, path: &str) -> String {
        format!(
            "[[route]]\nname = \"{name}\"\nhost = \"*\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:9\"\nallow = [{{ groups = [\"5b1c3d2e-0000-0000-0000-000000000001\"] }}]\n"
        )
    }

    #[tokio::test]
    async fn a_good_reload_swaps_and_a_bad_one_keeps_the_last_good_policy() {
        let dir = std::env::temp_dir().join(format!("postern-reload-{}", crate::secret::random_token(6)));
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        std::fs::write(dir.join("policies/a.toml"), route("one", "/one")).unwrap();
        let text = "[server]\npublic_url = \"http://127.0.0.1:1\"\nlisten = [\"127.0.0.1:0\"]\n[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }\n";
        let env = |_: &str| Some("secret".to_string());
        let (config, _) = crate::config::from_text(&dir.join("postern.toml"), text, &env).unwrap();
        let (policy, _) = load_dir(&config.policies_dir).unwrap();
        let state = State::build(config, policy, State::memory_store(), Clock::system()).unwrap();
        let shared: Shared = Arc::new(ArcSwap::from_pointee(state));
        let before = shared.load_full();
        let names = |s: &Shared| s.load().policy.routes().iter().map(|r| r.name.to_string()).collect::<Vec<_>>();

        std::fs::write(dir.join("policies/b.toml"), route("two", "/two")).unwrap();
        reload(&shared).unwrap();
        assert_eq!(names(&shared), ["one", "two"]);
        assert!(shared.load().policy.route("x", "/two", &Method::GET).is_some());
        // A request that started before the reload keeps its snapshot.
        assert!(before.policy.route("x", "/two", &Method::GET).is_none());

        std::fs::write(dir.join("policies/b.toml"), "[[route]]\nname = \"broken\"\nhost = \"*\"\n").unwrap();
        let errors = reload(&shared).unwrap_err();
        assert!(errors.to_string().contains("b.toml"), "{errors}");
        assert_eq!(names(&shared), ["one", "two"], "the last good policy keeps serving");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A Kubernetes ConfigMap volume: `a.toml -> ..data/a.toml`, `..data -> ..v1`. An update writes `..v2`,
    /// points `..data_tmp` at it and renames that over `..data`; no `.toml` name is touched.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_watcher_reloads_on_a_configmap_style_symlink_swap() {
        let dir = std::env::temp_dir().join(format!("postern-watch-{}", crate::secret::random_token(6)));
        let policies = dir.join("policies");
        std::fs::create_dir_all(policies.join("..v1")).unwrap();
        std::fs::write(policies.join("..v1/a.toml"), route("one", "/one")).unwrap();
        std::os::unix::fs::symlink("..v1", policies.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/a.toml", policies.join("a.toml")).unwrap();
        let text = "[server]\npublic_url = \"http://127.0.0.1:1\"\nlisten = [\"127.0.0.1:0\"]\n[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = { env = \"S\" }\n";
        let env = |_: &str| Some("secret".to_string());
        let (config, _) = crate::config::from_text(&dir.join("postern.toml"), text, &env).unwrap();
        let (policy, _) = load_dir(&config.policies_dir).unwrap();
        let state = State::build(config, policy, State::memory_store(), Clock::system()).unwrap();
        let shared: Shared = Arc::new(ArcSwap::from_pointee(state));
        let _watcher = watch(shared.clone()).unwrap();

        std::fs::create_dir_all(policies.join("..v2")).unwrap();
        std::fs::write(policies.join("..v2/a.toml"), route("renamed", "/one")).unwrap();
        std::os::unix::fs::symlink("..v2", policies.join("..data_tmp")).unwrap();
        std::fs::rename(policies.join("..data_tmp"), policies.join("..data")).unwrap();

        let mut seen: Vec<String> = Vec::new();
        for _ in 0..100 {
            seen = shared.load().policy.routes().iter().map(|r| r.name.to_string()).collect();
            if seen == ["renamed"] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen, ["renamed"], "the swap was picked up");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
