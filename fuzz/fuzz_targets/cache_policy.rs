//! The fallback cache's policy over a response's and a request's headers (an encoded header map as the
//! host returns it, so malformed maps are tried too): Cache-Control, Age, Vary, what may be stored and
//! what is private, and what a caller's own Cache-Control accepts.
#![no_main]

use fallback::policy::{age, is_private, storable, vary_hash, vary_names, window, CacheControl};
use filter_common::headers::HeaderMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let h = HeaderMap::from_encoded(data.to_vec());
    let cc = CacheControl::parse(h.get_all("cache-control"));
    let a = age(h.get_all("age"));
    let _ = window(&cc, a);
    if let Some(names) = vary_names(h.get_all("vary")) {
        assert!(names.iter().map(String::len).sum::<usize>() <= fallback::policy::MAX_VARY_BYTES);
        let _ = vary_hash(&names, &h);
    }
    for limit in [0, 1024, usize::MAX] {
        if let Ok(s) = storable(&h, limit) {
            assert!(s.content_type.len() <= fallback::policy::MAX_CONTENT_TYPE_LEN);
        }
    }
    let private: Vec<String> = fallback::config::DEFAULT_PRIVATE_HEADERS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for staleness in [0, 1, u64::MAX] {
        let _ = cc.accepts(staleness);
    }
    let _ = is_private(&h, &private, &["x-tenant".to_string()]);
    let _ = fallback::render::negotiate(h.get_first("accept"));
});
