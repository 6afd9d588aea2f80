//! Which fallback rule fires, from what the response says: the triggers given as JSON after the
//! `outcome` target's 24-byte header of observed values (HTTP status, gRPC status, Envoy's response
//! flags, flag bits, `response.code_details`).
#![no_main]

use fallback::trigger::{fire, Observed, Reason, Triggers};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(r) = filters_fuzz::response(data) else {
        return;
    };

    let observed = Observed {
        status: r.status,
        grpc_status: (r.bits & 2 != 0).then_some(r.grpc_status),
        response_flags: r.response_flags,
        from_upstream: r.from_upstream,
        circuit_breaker: r.bits & 4 != 0,
    };
    let triggers: Triggers = filter_common::config::from_slice(r.rest).unwrap_or_default();
    if let Some(reason) = fire(&triggers, &observed) {
        let _ = reason.label();
        // As documented: a gRPC OK never fires a status trigger.
        if reason == Reason::Status {
            assert_ne!(observed.grpc_status, Some(0), "{observed:?}");
        }
    }
});
