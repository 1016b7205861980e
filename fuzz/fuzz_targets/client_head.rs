//! Any bytes from a client: the client lane's head reader (`cutover::proxy::client::h1`) never
//! panics, leaves whatever it does not take byte for byte for hyper, takes only requests
//! without a body, and agrees with the framing tracker (`cutover::proxy::client::framing`, itself
//! checked against hyper) on where every request it takes ends.
#![no_main]

use bytes::BytesMut;
use cutover::proxy::client::framing::{Tracker, Verdict};
use cutover::proxy::client::h1::{parse_request, Unfit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut taken = 0u64;
    loop {
        let before = buf.clone();
        match parse_request(&mut buf, 8 * 1024, 100) {
            Ok(Some(head)) => {
                taken += 1;
                let req = head.req;
                assert!(req.uri().path().starts_with('/'));
                assert_ne!(req.method(), http::Method::CONNECT);
                for name in ["content-length", "transfer-encoding", "upgrade", "expect"] {
                    assert!(!req.headers().contains_key(name), "took a request with {name}");
                }
                assert!(buf.len() < before.len(), "took a head without consuming it");
                assert_eq!(&before[before.len() - buf.len()..], &buf[..]);
            }
            Ok(None) => {
                assert_eq!(buf, before, "a partial head consumed bytes");
                break;
            }
            Err(Unfit) => {
                assert_eq!(buf, before, "a head left for hyper was not left whole");
                break;
            }
        }
    }
    // The bytes the lane consumed are exactly `taken` whole requests to the tracker.
    let consumed = &data[..data.len() - buf.len()];
    let mut tracker = Tracker::new();
    assert_eq!(tracker.feed(consumed), Verdict::Continue);
    assert_eq!(tracker.requests(), taken, "the tracker saw other request boundaries");
});
