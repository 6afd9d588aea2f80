//! The circuit breaker's state read back from shared data (first byte: 0 a key's record, 1 a stripe, 2
//! the lease table, 3 the seed; the rest the value), including records of the older layout, truncated
//! values and garbage. Decoding never fails; what decodes re-encodes to the same bytes; the decisions
//! taken on a decoded value (admission, probes, trips, slot ownership, window totals, leases) never
//! fail at any clock reading.
#![no_main]

use std::sync::OnceLock;

use circuit_breaker::config::{BreakerConfig, WindowType};
use circuit_breaker::leases::Table;
use circuit_breaker::slots::{self, Seed};
use circuit_breaker::state::{self, ProbeOutcome, Record};
use circuit_breaker::window::{self, Stripe};
use libfuzzer_sys::fuzz_target;

/// The default breaker (a time window) and one with a count window and a consecutive-failure rule.
fn configs() -> &'static [BreakerConfig; 2] {
    static C: OnceLock<[BreakerConfig; 2]> = OnceLock::new();
    C.get_or_init(|| {
        let mut count = BreakerConfig::default();
        count.window.kind = WindowType::Count;
        count.window.size = 10;
        count.consecutive_failures = 3;
        [BreakerConfig::default(), count]
    })
}

const FP: u64 = 0x5eed_f00d_0000_0001;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, value)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => record(value),
        1 => stripe(value),
        2 => leases(value),
        _ => seed(value),
    }
});

fn record(value: &[u8]) {
    let Some(rec) = Record::decode(value) else {
        return;
    };
    if value.len() == state::RECORD_LEN {
        assert_eq!(
            rec.encode().as_slice(),
            value,
            "a record re-encodes differently"
        );
    }
    assert_eq!(Record::decode(&rec.encode()), Some(rec));
    for cfg in configs() {
        for now in filters_fuzz::NOWS_NS {
            for jitter in [-1.0, 0.0, 1.0] {
                let step = state::on_request(&rec, now, cfg, jitter);
                if let Some(w) = step.write {
                    assert_eq!(Record::decode(&w.encode()), Some(w));
                }
                for outcome in [
                    ProbeOutcome::Success,
                    ProbeOutcome::Failure,
                    ProbeOutcome::Ignored,
                ] {
                    let _ = state::on_probe_result(&rec, rec.gen, outcome, now, cfg, jitter);
                }
                let _ = state::on_trip(&rec, rec.gen, now, cfg, jitter);
                let _ = slots::look(&rec, FP, now, cfg, jitter);
                let _ = slots::look(&rec, rec.owner, now, cfg, jitter);
                let _ = slots::claim(&rec, FP, now, cfg, jitter);
            }
            let _ = state::is_free(&rec, now, cfg);
            let _ = state::claimed(&rec, FP, now);
        }
    }
}

fn stripe(value: &[u8]) {
    // Stored behind the 8-byte id of the worker that wrote it; the reader strips it.
    let Some(s) = Stripe::decode(value) else {
        return;
    };
    // Bits of an entry's flags byte that no version defines are dropped; everything else survives.
    assert_eq!(
        Stripe::decode(&s.encode()).as_ref(),
        Some(&s),
        "a stripe re-encodes differently"
    );
    for cfg in configs() {
        let own = Stripe::new(s.gen, cfg);
        let all = [s.clone(), own];
        for now in filters_fuzz::NOWS_NS {
            let t = window::totals(&all, s.gen, now, cfg);
            let _ = window::evaluate(&t, cfg);
        }
        let _ = s.fits(cfg);
    }
}

fn leases(value: &[u8]) {
    let mut table = Table::decode(value);
    assert_eq!(Table::decode(&table.encode()), table);
    for now in [0, 1_764_000_000, u64::MAX] {
        let live: Vec<_> = table.live(now).collect();
        assert!(live.len() <= circuit_breaker::leases::MAX_STRIPES);
        for (i, owner) in live {
            assert!(table.holds(i, owner, now));
            let _ = table.due(i, owner, now);
        }
        if let Some(i) = table.claim(FP, now) {
            assert!(i < circuit_breaker::leases::MAX_STRIPES);
            assert!(table.holds(i, FP, now));
            let _ = table.renew(i, FP, now);
        }
    }
}

fn seed(value: &[u8]) {
    let Some(seed) = Seed::decode(value) else {
        return;
    };
    assert_eq!(seed.encode().as_slice(), value);
    let fp = slots::fingerprint(&seed, value);
    assert_ne!(fp, 0, "a fingerprint is never 0");
    for max_keys in [1, 7, 1024, u32::MAX] {
        for slot in slots::probes(fp, max_keys) {
            assert!(slot < max_keys);
        }
    }
}
