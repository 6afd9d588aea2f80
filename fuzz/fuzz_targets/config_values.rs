//! The configuration values with parsers of their own: status sets (`"503"`, `"500-599"`, lists), gRPC
//! code lists, durations, and the rules' Envoy reasons and triggers.
#![no_main]

use filter_common::config::{from_slice, Path};
use filter_common::duration::parse_duration;
use filter_common::status::StatusSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = from_slice::<StatusSet>(data) {
        assert!(!set.0.is_empty());
        for r in &set.0 {
            assert!(
                (100..=599).contains(&r.0) && r.0 <= r.1 && r.1 <= 599,
                "{r:?}"
            );
        }
    }
    if let Ok(doc) = filter_common::json::parse(data, filter_common::limits::MAX_STRING_LEN) {
        if let Ok(codes) = filter_common::failure::grpc_codes(&doc, &Path::ROOT) {
            assert!(codes
                .iter()
                .all(|c| *c <= filter_common::failure::MAX_GRPC_CODE));
        }
    }
    let _ = from_slice::<fallback::trigger::Triggers>(data);
    let _ = from_slice::<filter_common::duration::ConfigDuration>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_duration(text);
    }
});
