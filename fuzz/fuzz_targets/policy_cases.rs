//! Policy test-case files (`postern::policy::cases::load_cases`, then `run` against the example policies) on
//! arbitrary text: never panics.
#![no_main]

#[path = "common.rs"]
mod common;

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use postern::policy::cases::{load_cases, run};

fuzz_target!(|text: &str| {
    let files = vec![(PathBuf::from("policies/fuzz.test.toml"), text.to_string())];
    match load_cases(&files) {
        Ok(cases) => {
            for result in run(common::example_policy(), &cases) {
                let _ = format!("{result:?}");
            }
        }
        Err(d) => assert!(d.has_errors()),
    }
});
