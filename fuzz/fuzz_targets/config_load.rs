//! The config loader (`postern::config::from_text`) on arbitrary text: never panics.
//!
//! Files named in the text are read relative to a directory that does not exist; inputs that could name a
//! device or a kernel file by absolute path (`/dev/zero` would never end) are skipped.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let lower = text.to_ascii_lowercase();
    if ["/dev", "/proc", "/sys", "/run", "\\u", "\\U"].iter().any(|s| lower.contains(&s.to_ascii_lowercase())) {
        return;
    }
    // Every environment variable is set, to a 32-byte secret: the loader goes past the secrets.
    let env = |_: &str| Some("0123456789abcdef0123456789abcdef".to_string());
    match postern::config::from_text(Path::new("/nonexistent-postern-fuzz/postern.toml"), text, &env) {
        Ok((config, warnings)) => {
            let _ = (config.redirect_uri(), config.public_origin(), warnings.to_string());
        }
        Err(d) => {
            assert!(d.has_errors());
            let _ = d.to_string();
        }
    }
});
