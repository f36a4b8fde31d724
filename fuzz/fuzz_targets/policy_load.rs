//! The policy loader (`postern::policy::load_sources`) on arbitrary text, alone and beside a valid file:
//! never panics; every diagnostic points inside the file; a loaded policy routes without panicking.
#![no_main]

use std::path::PathBuf;

use http::Method;
use libfuzzer_sys::fuzz_target;
use postern::policy::load_sources;

const GITLAB: &str = include_str!("../../policies/gitlab.toml");

fuzz_target!(|text: &str| {
    let alone = vec![(PathBuf::from("policies/fuzz.toml"), text.to_string())];
    let beside = vec![
        (PathBuf::from("policies/gitlab.toml"), GITLAB.to_string()),
        (PathBuf::from("policies/fuzz.toml"), text.to_string()),
    ];
    for files in [alone, beside] {
        match load_sources(&files) {
            Ok((policy, warnings)) => {
                let _ = warnings.to_string();
                for route in policy.routes() {
                    let _ = policy.route("gitlab.example.com", &route.path, &Method::GET);
                    let _ = policy.candidates("x.example.com");
                }
            }
            Err(d) => {
                assert!(d.has_errors());
                let lines = text.lines().count().max(1);
                for diag in &d.0 {
                    if diag.file == PathBuf::from("policies/fuzz.toml") {
                        assert!(diag.line <= lines + 1, "line {} of {lines}: {diag}", diag.line);
                    }
                }
                let _ = d.to_string();
            }
        }
    }
});
