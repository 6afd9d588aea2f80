//! Which fallback rule fires, from what the response says: the triggers given as JSON after the
//! `outcome` target's 24-byte header of observed values (HTTP status, gRPC status, Envoy's response
//! flags, flag bits, `response.code_details`).
#![no_main]

use fallback::trigger::{fire, Observed, Reason, Triggers};
use filter_common::failure::is_upstream_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<24>() else {
        return;
    };
    let (status, head) = head.split_at(2);
    let (grpc, head) = head.split_at(4);
    let (flags, head) = head.split_at(8);
    let status = u16::from_le_bytes([status[0], status[1]]);
    let grpc = u32::from_le_bytes([grpc[0], grpc[1], grpc[2], grpc[3]]);
    let mut f = [0u8; 8];
    f.copy_from_slice(flags);
    let response_flags = u64::from_le_bytes(f);
    let bits = head[0];
    // The rest of the header: `response.code_details` as Envoy may give it.
    let details = &head[1..];
    let upstream = is_upstream_answer((bits & 16 != 0).then_some(details));

    let observed = Observed {
        status,
        grpc_status: (bits & 2 != 0).then_some(grpc),
        response_flags,
        from_upstream: upstream,
        circuit_breaker: bits & 4 != 0,
    };
    let triggers: Triggers = serde_json::from_slice(rest).unwrap_or_default();
    if let Some(reason) = fire(&triggers, &observed) {
        let _ = reason.label();
        // As documented: a gRPC OK never fires a status trigger.
        if reason == Reason::Status {
            assert_ne!(observed.grpc_status, Some(0), "{observed:?}");
        }
    }
});
