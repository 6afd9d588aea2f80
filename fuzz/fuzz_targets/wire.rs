//! The proxy-wasm header-map encoding as the host returns it (filter_common::wire): any buffer decodes
//! or is refused, the spans lie inside the buffer, and a decoded map re-encodes to the bytes it came
//! from.
#![no_main]

use filter_common::wire::{decode_map, decode_spans, encode_map};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spans = decode_spans(data);
    let map = decode_map(data);
    assert_eq!(spans.is_some(), map.is_some());
    let (Some(spans), Some(map)) = (spans, map) else {
        return;
    };
    assert_eq!(spans.len(), map.len());
    for (name, value) in &spans {
        assert!(name.end < data.len() && value.end < data.len());
    }
    let names_utf8 = spans.iter().all(|(n, _)| {
        data.get(n.clone())
            .is_some_and(|b| std::str::from_utf8(b).is_ok())
    });
    if names_utf8 {
        let pairs: Vec<(&str, &[u8])> = map
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let again = encode_map(&pairs);
        assert_eq!(
            data.get(..again.len()),
            Some(&again[..]),
            "re-encodes differently"
        );
    }
    let _ = HeaderMapCheck::run(data);
});

struct HeaderMapCheck;

impl HeaderMapCheck {
    fn run(data: &[u8]) -> usize {
        let h = filter_common::headers::HeaderMap::from_encoded(data.to_vec());
        let n = h.iter().count();
        for (name, _) in h.iter() {
            let _ = h.get_single(name);
            let _ = h.get_first(name);
        }
        n
    }
}
