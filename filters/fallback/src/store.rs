//! The stale cache's shared-data I/O: a fixed set of slots (`filter_common::keys`), created before
//! traffic, read when a rule serves a stale response, written with compare-and-swap when a good response
//! completes.

use crate::cache::{self, Entry};
use crate::config::Config;
use filter_common::host::SharedWrite;
use filter_common::keyed_hash::Seed;
use filter_common::shared::{create_key, SharedData};

/// The key of the slot `key` lives in (keyed by the sidecar's `seed`).
pub fn slot_key(prefix: &str, seed: &Seed, key: u128, config: &Config) -> String {
    format!("{prefix}{}", cache::slot(seed, key, config.cache.slots()))
}

/// Creates every cache slot before traffic (empty), so every later write is a real compare-and-swap.
/// Nothing when no rule serves stale responses.
pub fn create_slots(store: &impl SharedData, prefix: &str, config: &Config) {
    if !config.serves_stale() {
        return;
    }
    for slot in 0..config.cache.slots() {
        let key = format!("{prefix}{slot}");
        if let Err(e) = create_key(store, &key, b"") {
            log::warn!("could not create cache slot {key}: {e}");
            return;
        }
    }
}

/// The entry in a slot, if it holds a readable one.
pub fn read(store: &impl SharedData, slot_key: &str) -> Option<Entry> {
    store
        .get(slot_key)
        .ok()
        .flatten()
        .and_then(|(bytes, _)| Entry::decode(&bytes))
}

/// A write that happened: whether it replaced another key's entry, and by how many bytes the cache grew.
pub struct Written {
    pub evicted: bool,
    pub bytes_delta: i64,
}

/// Writes `entry` into its slot unless the slot holds the same variant stored moments ago. The write is
/// a compare-and-swap against the value read, so the byte count stays exact when workers race; the loser
/// skips its store (the slot was just refreshed).
pub fn write(store: &impl SharedData, slot_key: &str, entry: &Entry) -> Option<Written> {
    // The bytes replaced count whatever they held (an entry of an older module version too), so the
    // byte gauge stays exact.
    let (previous, before, cas) = match store.get(slot_key).ok()? {
        Some((bytes, cas)) => (Entry::decode(&bytes), bytes.len(), cas),
        None => (None, 0, 0),
    };
    if previous
        .as_ref()
        .is_some_and(|p| p.is_recent_copy_of(entry))
    {
        return None;
    }
    match store.set(slot_key, &entry.encode(), cas) {
        SharedWrite::Written => {}
        SharedWrite::CasMismatch => return None,
        SharedWrite::Failed(e) => {
            log::warn!("could not cache a response: {e}");
            return None;
        }
    }
    Some(Written {
        evicted: previous.is_some_and(|p| p.key != entry.key),
        bytes_delta: i64::try_from(entry.size()).unwrap_or(i64::MAX)
            - i64::try_from(before).unwrap_or(0),
    })
}

/// Compare-and-swap attempts of a removal that keeps losing to other workers' writes.
const REMOVE_ATTEMPTS: u32 = 3;

/// Empties the slot when it holds an entry of `key` (any variant): a later response for the key that
/// forbids reuse (`policy::NotStored::ForbidsReuse`) ends the older entry's serving. Returns the bytes
/// freed, `None` when the slot holds another key's entry, nothing, or the host fails (the entry then
/// stays until the next such response; not logged: a failing shared data shows in every write).
pub fn remove(store: &impl SharedData, slot_key: &str, key: u128) -> Option<usize> {
    for _ in 0..REMOVE_ATTEMPTS {
        let (bytes, cas) = store.get(slot_key).ok()??;
        if cache::key_of(&bytes) != Some(key) {
            return None;
        }
        match store.set(slot_key, b"", cas) {
            SharedWrite::Written => return Some(bytes.len()),
            // Another worker wrote the slot meanwhile: look again.
            SharedWrite::CasMismatch => {}
            SharedWrite::Failed(_) => return None,
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use filter_common::config::parse;
    use filter_common::shared::{Fault, MemoryStore};
    use std::cell::Cell;

    const SLOT: &str = "fallback/fb/cache/0";
    const SEC: u64 = 1_000_000_000;

    fn entry(key: u128, body: &[u8], at: u64) -> Entry {
        Entry {
            key,
            stored_at_ns: at,
            initial_age_s: 0,
            lifetime_s: 0,
            serve_for_ns: u64::MAX,
            vary: String::new(),
            vary_hash: 0,
            content_type: "text/plain".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn slots_exist_only_for_a_stale_rule() {
        let store = MemoryStore::new();
        create_slots(&store, "fallback/fb/cache/", &Config::default());
        assert!(store.is_empty());
        let stale: Config = parse(Some(
            br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale", "maxBodyBytes": 1024}}], "cache": {"maxBytes": 4096, "maxBodyBytes": 1024}}"#,
        ))
        .unwrap();
        create_slots(&store, "fallback/fb/cache/", &stale);
        assert_eq!(store.len(), 4);
    }

    #[test]
    fn every_key_lands_in_a_slot_created_before_traffic() {
        let store = MemoryStore::new();
        let stale: Config = parse(Some(
            br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale", "maxBodyBytes": 1024}}], "cache": {"maxBytes": 8192, "maxBodyBytes": 1024}}"#,
        ))
        .unwrap();
        let prefix = "fallback/fb/cache/";
        create_slots(&store, prefix, &stale);
        assert_eq!(store.len(), 8);
        let seed = Seed([7, 9]);
        let mut used = std::collections::BTreeSet::new();
        for i in 0..200u32 {
            let k = cache::key(b"shop", format!("/p/{i}").as_bytes(), &[]);
            let slot = slot_key(prefix, &seed, k, &stale);
            assert_eq!(store.value(&slot), Some(Vec::new()), "{slot} was created");
            used.insert(slot);
        }
        assert_eq!(used.len(), 8, "keys spread over every slot");
    }

    #[test]
    fn writes_count_bytes_and_evictions_and_skip_a_fresh_copy() {
        let store = MemoryStore::new();
        let first = entry(1, b"abc", 0);
        let w = write(&store, SLOT, &first).unwrap();
        assert_eq!((w.evicted, w.bytes_delta), (false, first.size() as i64));
        assert!(
            write(&store, SLOT, &entry(1, b"abc", SEC / 2)).is_none(),
            "stored a moment ago"
        );
        let other = entry(2, b"a", 2 * SEC);
        let w = write(&store, SLOT, &other).unwrap();
        assert_eq!((w.evicted, w.bytes_delta), (true, -2));
        assert_eq!(read(&store, SLOT).unwrap(), other);
    }

    #[test]
    fn a_write_that_loses_a_race_or_fails_changes_nothing() {
        let raced = Cell::new(false);
        let store = MemoryStore::new();
        store.set(SLOT, b"", 0);
        store.before_write(|key, s| {
            if !raced.replace(true) {
                s.set(key, &entry(9, b"theirs", 0).encode(), 0);
            }
        });
        assert!(write(&store, SLOT, &entry(1, b"mine", 0)).is_none());
        assert_eq!(
            read(&store, SLOT).unwrap().key,
            9,
            "the other worker's entry stays"
        );
        store.inject(SLOT, Fault::WriteError);
        assert!(write(&store, SLOT, &entry(1, b"mine", 5 * SEC)).is_none());
        store.inject(SLOT, Fault::ReadError);
        assert!(write(&store, SLOT, &entry(1, b"mine", 5 * SEC)).is_none());
        store.inject(SLOT, Fault::ReadError);
        assert!(read(&store, SLOT).is_none());
        // Garbage in a slot reads as nothing and is replaced, its bytes counted as freed.
        store.set(SLOT, b"\x07garbage", 0);
        assert!(read(&store, SLOT).is_none());
        let mine = entry(1, b"mine", 5 * SEC);
        let w = write(&store, SLOT, &mine).unwrap();
        assert_eq!(w.bytes_delta, mine.size() as i64 - 8);
    }

    #[test]
    fn removal_empties_only_the_key_s_own_entry() {
        let store = MemoryStore::new();
        assert_eq!(remove(&store, SLOT, 1), None, "no slot");
        let e = entry(1, b"abc", 0);
        write(&store, SLOT, &e).unwrap();
        assert_eq!(remove(&store, SLOT, 2), None, "another key's entry stays");
        assert_eq!(read(&store, SLOT).unwrap(), e);
        assert_eq!(remove(&store, SLOT, 1), Some(e.size()));
        assert!(read(&store, SLOT).is_none());
        assert_eq!(remove(&store, SLOT, 1), None, "already empty");
        // A slot emptied this way takes the next entry as a store, not an eviction.
        let w = write(&store, SLOT, &entry(2, b"x", 0)).unwrap();
        assert!(!w.evicted);
    }

    #[test]
    fn removal_retries_a_lost_race_and_gives_up_on_errors() {
        let raced = Cell::new(false);
        let store = MemoryStore::new();
        write(&store, SLOT, &entry(1, b"abc", 0)).unwrap();
        // Another worker rewrites the same key between the read and the write: removed on the retry.
        store.before_write(|key, s| {
            if !raced.replace(true) {
                s.set(key, &entry(1, b"abcd", SEC).encode(), 0);
            }
        });
        assert_eq!(remove(&store, SLOT, 1), Some(entry(1, b"abcd", SEC).size()));
        assert!(read(&store, SLOT).is_none());
        write(&store, SLOT, &entry(1, b"abc", 0)).unwrap();
        store.inject(SLOT, Fault::WriteError);
        assert_eq!(remove(&store, SLOT, 1), None);
        store.inject(SLOT, Fault::ReadError);
        assert_eq!(remove(&store, SLOT, 1), None);
        assert!(read(&store, SLOT).is_some());
    }
}
