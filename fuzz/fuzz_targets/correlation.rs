//! Correlation entries read back from shared data: first line the request id asked for, the rest the
//! slot's value. Whatever the slot holds, reading it and planning over it must not fail; an entry that
//! reads back re-encodes to one that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trace_context::correlation::{decode, encode, look, plan, slot_keys, MAX_REQUEST_ID_LEN};

fuzz_target!(|data: &[u8]| {
    let (request_id, entry) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            data.get(..i).unwrap_or(b""),
            data.get(i + 1..).unwrap_or(b""),
        ),
        None => (&b""[..], data),
    };
    // The entry's own request id too, so the fuzzer reaches the fields after it.
    let own_id = entry.split(|b| *b == b'\n').next().unwrap_or(b"");
    for id in [request_id, own_id] {
        for now in filters_fuzz::NOWS_NS {
            let seen = look(Some(entry), id, 0x4bf92f3577b34da6a3ce929d0e0e4736, now);
            let _ = plan(&[seen, seen]);
            if let Some(restored) = decode(entry, id, now) {
                // Ids too long to store are never stored, but an entry holding one still reads.
                let Some(again) = encode(id, &restored.context, &restored.tracestate, u64::MAX)
                else {
                    assert!(id.is_empty() || id.len() > MAX_REQUEST_ID_LEN, "{id:?}");
                    continue;
                };
                let back = decode(&again, id, now);
                assert_eq!(back.as_ref().map(|r| &r.context), Some(&restored.context));
            }
        }
    }
    let seed = filter_common::slots::Seed([1, 2]);
    assert_eq!(slot_keys(&seed, request_id, 1024).count(), 4);
});
