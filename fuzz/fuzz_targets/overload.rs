//! The overload checks' outside data (issue 20): a permit table read back from shared data (first byte
//! 0), a `Retry-After` value (1) or a `grpc-retry-pushback-ms` value (2) from an upstream. Decoding never
//! fails and stays bounded; what decodes re-encodes to a table that decodes the same; admission never
//! hands out a permit over the limit; a parsed wait is capped by `maxPushback` whatever it says.
#![no_main]

use std::time::Duration;

use circuit_breaker::permits::{self, Table, MAX_VALUE_BYTES};
use circuit_breaker::pushback;
use libfuzzer_sys::fuzz_target;

const NOW_S: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => table(value),
        1 => wait(pushback::parse_retry_after(value, Duration::from_secs(NOW_S))),
        _ => wait(pushback::parse_grpc_pushback(value)),
    }
});

fn table(value: &[u8]) {
    let t = Table::decode(value);
    let bytes = t.encode();
    assert!(bytes.len() <= MAX_VALUE_BYTES);
    assert_eq!(Table::decode(&bytes), t);
    for now_s in [0, NOW_S, u64::MAX] {
        for limit in [1u32, 3, 1_000_000] {
            if permits::fits(&t, 7, 0, limit, now_s) {
                if let Some((next, _)) = t.with_own(7, 1, now_s) {
                    assert!(next.total(now_s) <= u64::from(limit));
                }
            }
        }
    }
}

fn wait(asked: Option<Duration>) {
    let Some(asked) = asked else {
        return;
    };
    let max = Duration::from_secs(30);
    let now_ns = NOW_S * 1_000_000_000;
    let until = pushback::deadline_ns(asked, max, now_ns);
    assert!(until >= now_ns && until - now_ns <= 30_000_000_000);
}
