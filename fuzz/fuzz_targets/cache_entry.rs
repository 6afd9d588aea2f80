//! Fallback cache entries read back from shared data (another version, truncated, or garbage): decoding
//! never fails, and an entry that decodes re-encodes to the same bytes.
#![no_main]

use fallback::cache::Entry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(entry) = Entry::decode(data) else {
        return;
    };
    assert_eq!(entry.encode(), data, "an entry re-encodes differently");
    assert_eq!(entry.size(), data.len());
    for now in filters_fuzz::NOWS_NS {
        for ttl in [0, 60_000_000_000, u64::MAX] {
            let _ = entry.servable_age(entry.key, now, ttl);
        }
    }
    let _ = entry.vary_names();
    let _ = entry.is_recent_copy_of(&entry);
    let _ = fallback::cache::slot(&filter_common::keyed_hash::Seed([1, 2]), entry.key, 1024);
    assert_eq!(fallback::cache::key_of(data), Some(entry.key));
    let _ = entry.staleness_s(u64::MAX);
    let _ = fallback::reply::stale_answer(&entry.content_type, u64::from(entry.initial_age_s));
});
