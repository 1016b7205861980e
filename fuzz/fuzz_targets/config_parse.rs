//! Any text: `Config::parse` must not panic, and every problem must point into the text.
#![no_main]

use cutover::config::{Config, ConfigError};
use cutover::diag::position_in;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz.toml") {
        Ok(_) => {}
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "an invalid config with no problem");
            for p in &problems {
                assert!(position_in(text, p.line, p.col), "outside the text: {p}");
            }
        }
        Err(e) => panic!("unexpected error kind from parse: {e}"),
    }
});
