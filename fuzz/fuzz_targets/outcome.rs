//! How a finished call counts for the circuit breaker, from what the response says: its classification
//! rules (the defaults, and rules given as JSON after a 24-byte header of observed values: HTTP status,
//! gRPC status, Envoy's response flags, flag bits, `response.code_details`), over every response a
//! sidecar can see, including a missing status and flags no Envoy version sets. Each filter module
//! exports the SDK's `_initialize`, so a target links one filter crate: the fallback's triggers are the
//! `trigger` target, over the same inputs.
#![no_main]

use circuit_breaker::classify::{judge, Call, Outcome, Rule};
use circuit_breaker::config::default_rules;
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

    let call = Call {
        status: (bits & 1 != 0).then_some(status),
        grpc_status: (bits & 2 != 0).then_some(grpc),
        response_flags,
        local_reply: !upstream,
    };
    let configured: Vec<Rule> = serde_json::from_slice(rest).unwrap_or_default();
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
