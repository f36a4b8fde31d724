//! `postern::duration::parse` on arbitrary text: never panics; what it accepts is made of digits and units.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if postern::duration::parse(text).is_ok() {
        let t = text.trim();
        assert!(t.starts_with(|c: char| c.is_ascii_digit()), "{text:?} accepted");
        assert!(t.chars().all(|c| c.is_ascii_digit() || "mshd".contains(c)), "{text:?} accepted");
    }
});
