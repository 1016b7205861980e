//! Any bytes from an upstream: the hand-written response parser never panics, and a chunked
//! body decodes to the same data, the same end and the same verdict however it is cut.
#![no_main]

use cutover::proxy::upstream::h1::{parse_response, Chunked, EnvFraming, Parsed, Step};
use libfuzzer_sys::fuzz_target;

/// What a chunked body decodes to when it arrives in the pieces `cuts` makes: its data and
/// where it ended (`None`: it had not ended), or an error.
fn decode(body: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Option<usize>), ()> {
    let mut dec = Chunked::default();
    let mut data = Vec::new();
    let mut ends = cuts.iter().copied().chain([body.len()]);
    let mut have = ends.next().unwrap_or(body.len());
    let mut at = 0;
    loop {
        match dec.step(&body[at..have]).map_err(|_| ())? {
            Step::Data { skip, len } => {
                assert!(len > 0 && at + skip + len <= have);
                data.extend_from_slice(&body[at + skip..at + skip + len]);
                dec.took(len);
                at += skip + len;
            }
            Step::More { skip } => {
                at += skip;
                assert_eq!(at, have, "asked for more with bytes left");
                match ends.next() {
                    Some(next) => have = next.max(have),
                    None => return Ok((data, None)),
                }
            }
            Step::End { skip } => {
                assert!(dec.is_done());
                return Ok((data, Some(at + skip)));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (cut, bytes) = data.split_at(data.len().min(1));
    let Ok(Parsed::EnvHead(head, len)) = parse_response(bytes, false) else {
        return;
    };
    assert!(len <= bytes.len());
    if head.framing == EnvFraming::Chunked {
        assert!(head.headers.get("content-length").is_none());
        let body = &bytes[len..];
        let whole = decode(body, &[]);
        let at = cut.first().map_or(0, |c| usize::from(*c) * body.len() / 255);
        assert_eq!(decode(body, &[at]), whole, "a cut changed the body");
        let bytewise: Vec<usize> = (1..body.len()).collect();
        assert_eq!(decode(body, &bytewise), whole, "byte by byte changed the body");
    }
});
