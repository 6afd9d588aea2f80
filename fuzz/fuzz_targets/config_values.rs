//! The configuration values with parsers of their own: status sets (`"503"`, `"500-599"`, lists), gRPC
//! code lists, durations, and the rules' Envoy reasons and triggers.
#![no_main]

use filter_common::config::from_slice;
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
    if let Ok(codes) = from_slice::<GrpcCodes>(data) {
        assert!(codes
            .0
            .iter()
            .all(|c| *c <= filter_common::failure::MAX_GRPC_CODE));
    }
    if let Ok(size) = from_slice::<ByteSize>(data) {
        let _ = size.0;
    }
    let _ = from_slice::<fallback::trigger::Triggers>(data);
    let _ = from_slice::<filter_common::duration::ConfigDuration>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_duration(text);
    }
});

#[derive(serde::Deserialize)]
struct GrpcCodes(#[serde(deserialize_with = "filter_common::failure::grpc_codes")] Vec<u32>);

#[derive(serde::Deserialize)]
struct ByteSize(#[serde(deserialize_with = "filter_common::limits::byte_size")] u64);
