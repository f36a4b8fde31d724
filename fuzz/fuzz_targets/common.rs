//! Fixtures shared by the fuzz targets: the repository's example policies, compiled once.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use postern::policy::{Policy, load_sources};

/// The example policies in `policies/` (GitLab, Jira, registry, Space), as shipped.
pub fn example_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let files = vec![
            (PathBuf::from("policies/gitlab.toml"), include_str!("../../policies/gitlab.toml").to_string()),
            (PathBuf::from("policies/jira.toml"), include_str!("../../policies/jira.toml").to_string()),
            (PathBuf::from("policies/registry.toml"), include_str!("../../policies/registry.toml").to_string()),
            (PathBuf::from("policies/space.toml"), include_str!("../../policies/space.toml").to_string()),
        ];
        match load_sources(&files) {
            Ok((policy, _)) => policy,
            Err(d) => panic!("the example policies do not load: {d}"),
        }
    })
}

/// A small policy for redirect checks: one exact host, one wildcard, one catch-all on the public host.
pub fn redirect_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let text = r#"
[[route]]
name = "gitlab"
host = "gitlab.example.com"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]

[[route]]
name = "tools"
host = "*.tools.example.com"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]

[[route]]
name = "anything"
host = "*"
path = "/any"
upstream = "http://127.0.0.1:1"
allow = [{ users = ["x"] }]
"#;
        match load_sources(&[(PathBuf::from("redirect.toml"), text.to_string())]) {
            Ok((policy, _)) => policy,
            Err(d) => panic!("the redirect policy does not load: {d}"),
        }
    })
}
