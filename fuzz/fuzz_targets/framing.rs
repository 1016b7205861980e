//! Any bytes, cut anywhere: the framing tracker never panics, gives the same verdict and
//! request count for every split, and refuses only a stream that names both framings, or
//! HTTP/2's preface after a request.
#![no_main]

use cutover::proxy::client::framing::{Refusal, Tracker, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose two cuts; the rest is the connection's bytes.
    let (cuts, bytes) = data.split_at(data.len().min(2));
    let mut whole = Tracker::new();
    let expect = whole.feed(bytes);
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) * bytes.len() / 255)
        .collect();
    at.sort_unstable();
    let mut split = Tracker::new();
    let mut last = 0;
    let mut got = Verdict::Continue;
    for cut in at.into_iter().chain([bytes.len()]) {
        got = split.feed(&bytes[last..cut]);
        last = cut;
    }
    assert_eq!(got, expect, "a split changed the verdict");
    assert_eq!(split.requests(), whole.requests());
    let mut bytewise = Tracker::new();
    for b in bytes {
        bytewise.feed(std::slice::from_ref(b));
    }
    assert_eq!(
        bytewise.verdict(),
        expect,
        "byte by byte changed the verdict"
    );
    match expect {
        Verdict::Reject { head_at } => {
            let head_at = usize::try_from(head_at).expect("offset");
            assert!(head_at < bytes.len());
            let lower = bytes[head_at..].to_ascii_lowercase();
            let has = |n: &[u8]| lower.windows(n.len()).any(|w| w == n);
            match whole.refusal() {
                Refusal::ConflictingFraming => {
                    assert!(has(b"content-length") && has(b"transfer-encoding"))
                }
                Refusal::LateHttp2 => assert!(has(b"http/2") && whole.requests() > 0),
            }
            assert_eq!(split.refusal(), whole.refusal());
        }
        Verdict::PassThrough { at } => assert!(at <= bytes.len() as u64),
        Verdict::Continue => {}
    }
});
