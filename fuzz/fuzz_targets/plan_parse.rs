//! Any text: `plan::parse` must not panic, and every diagnostic must point into the text.
#![no_main]

use cutover::diag::position_in;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diags) = cutover::plan::parse(text) {
        assert!(!diags.is_empty(), "an invalid plan with no diagnostic");
        for d in &diags {
            assert!(position_in(text, d.line, d.col), "outside the text: {d}");
        }
    }
});
