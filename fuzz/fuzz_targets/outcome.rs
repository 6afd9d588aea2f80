//! How a finished call counts for the circuit breaker, from what the response says: its classification
//! rules (the defaults, and rules given as JSON after a 24-byte header of observed values: HTTP status,
//! gRPC status, Envoy's response flags, flag bits, `response.code_details`), over every response a
//! sidecar can see, including a missing status and flags no Envoy version sets. Each filter module
//! exports the SDK's `_initialize`, so a target links one filter crate: the fallback's triggers are the
//! `trigger` target, over the same inputs.
#![no_main]

use circuit_breaker::classify::{judge, Call, Outcome, Rule};
use circuit_breaker::config::default_rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(r) = filters_fuzz::response(data) else {
        return;
    };

    let call = Call {
        status: (r.bits & 1 != 0).then_some(r.status),
        grpc_status: (r.bits & 2 != 0).then_some(r.grpc_status),
        response_flags: r.response_flags,
        local_reply: !r.from_upstream,
    };
    let configured: Vec<Rule> = filter_common::config::from_slice(r.rest).unwrap_or_default();
    for rules in [default_rules(), configured] {
        for slow in [false, true] {
            let v = judge(&rules, &call, slow);
            let _ = v.probe();
            let _ = v.counts_in_window(1);
            // A cancelled call counts only as a slow success, and only when it was slow.
            if v.cancelled {
                assert_eq!(v.outcome == Outcome::Success, slow, "{v:?}");
            }
        }
    }
});
