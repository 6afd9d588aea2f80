//! Which of a table's shared-data slots a caller-chosen key (a breaker key, an `x-request-id`) may use:
//! a keyed hash with a secret seed per sidecar, kept in shared data so every worker VM picks the same
//! slots, and a short run of slots from the key's home slot. Without the key, a caller could compute
//! offline keys that land in a victim's slot (the hash of the filters is public); with it, which keys
//! collide is unknown outside the sidecar.

use crate::host::SharedWrite;
use crate::ids::IdGenerator;
use crate::shared::SharedData;

/// The secret that keys fingerprints, one per sidecar (kept in shared data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seed(pub [u64; 2]);

impl Seed {
    /// A new random seed.
    pub fn random(ids: &mut IdGenerator) -> Seed {
        Seed([ids.next_u64(), ids.next_u64()])
    }

    /// The two keys, each little-endian, first key first.
    pub fn encode(&self) -> [u8; 16] {
        ((u128::from(self.0[1]) << 64) | u128::from(self.0[0])).to_le_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Seed> {
        let both = u128::from_le_bytes(bytes.try_into().ok()?);
        Some(Seed([both as u64, (both >> 64) as u64]))
    }
}

/// A key's fingerprint: keyed SipHash-2-4 of its bytes, never 0 (0 can mark a slot nobody owns).
pub fn fingerprint(seed: &Seed, key: &[u8]) -> u64 {
    use std::hash::Hasher;
    // `SipHasher` is deprecated only in favour of `DefaultHasher`, whose keys cannot be chosen; every
    // worker VM must compute the same fingerprint.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(seed.0[0], seed.0[1]);
    h.write(key);
    h.finish().max(1)
}

/// The `count` slots of a table of `slots` that `fingerprint` may use, home slot first (distinct, fewer
/// when the table is smaller).
pub fn probes(fingerprint: u64, slots: u32, count: u32) -> impl Iterator<Item = u32> {
    let n = u64::from(slots.max(1));
    let home = fingerprint % n;
    (0..u64::from(count).min(n)).map(move |i| ((home + i) % n) as u32)
}

/// The sidecar's seed under `key`: the one in shared data, or `fresh` stored there by the first VM to
/// configure (Envoy's canary, on the main thread, before any worker serves), so every worker uses the
/// same one, across configuration pushes too. `None` when shared data fails.
pub fn shared_seed(store: &impl SharedData, key: &str, fresh: Seed) -> Option<Seed> {
    if let Ok(Some((bytes, _))) = store.get(key) {
        if let Some(seed) = Seed::decode(&bytes) {
            return Some(seed);
        }
    }
    if let SharedWrite::Failed(e) = store.set(key, &fresh.encode(), 0) {
        log::warn!("could not create {key}: {e}");
    }
    // Read back: whichever VM wrote last, every VM uses the stored seed.
    match store.get(key) {
        Ok(Some((bytes, _))) => Seed::decode(&bytes),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::shared::{Fault, MemoryStore};

    #[test]
    fn a_random_seed_is_the_generator_s_next_two_draws_and_round_trips() {
        let seed = Seed::random(&mut IdGenerator::from_seed(0));
        assert_eq!(seed, Seed([0x99ec_5f36_cb75_f2b4, 0xbf6e_1f78_4956_452a]));
        assert_eq!(Seed::decode(&seed.encode()), Some(seed));
        assert_eq!(seed.encode()[..8], 0x99ec_5f36_cb75_f2b4u64.to_le_bytes());
    }

    #[test]
    fn fingerprints_are_keyed_and_never_zero() {
        let s = Seed([1, 2]);
        assert_eq!(fingerprint(&s, b"acme"), fingerprint(&s, b"acme"));
        assert_ne!(fingerprint(&s, b"acme"), fingerprint(&s, b"evil-160"));
        assert_ne!(
            fingerprint(&s, b"acme"),
            fingerprint(&Seed([1, 3]), b"acme")
        );
        assert_ne!(fingerprint(&s, b""), 0);
        assert_eq!(Seed::decode(&s.encode()), Some(s));
        // The layout the breaker has kept in shared data since before this module.
        assert_eq!(
            Seed([0x0102, 0x0304]).encode(),
            [2, 1, 0, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(Seed::decode(&[0; 15]), None);
        assert_eq!(Seed::decode(&[0; 17]), None);
    }

    #[test]
    fn probes_are_distinct_and_bounded_by_the_table() {
        assert_eq!(probes(7, 100, 4).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert_eq!(probes(99, 100, 4).collect::<Vec<_>>(), vec![99, 0, 1, 2]);
        assert_eq!(probes(5, 2, 4).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(probes(5, 1, 4).collect::<Vec<_>>(), vec![0]);
        assert_eq!(probes(5, 0, 4).collect::<Vec<_>>(), vec![0]);
        assert_eq!(probes(5, 100, 1).collect::<Vec<_>>(), vec![5]);
        // Any fingerprint, the largest too.
        assert_eq!(probes(u64::MAX, 100, 2).collect::<Vec<_>>(), vec![15, 16]);
    }

    #[test]
    fn the_first_seed_stored_is_everyones() {
        let store = MemoryStore::new();
        let first = shared_seed(&store, "k", Seed([1, 2])).unwrap();
        assert_eq!(first, Seed([1, 2]));
        assert_eq!(shared_seed(&store, "k", Seed([3, 4])), Some(first));
        // A damaged value is replaced.
        store.set("k", b"short", 0);
        assert_eq!(shared_seed(&store, "k", Seed([5, 6])), Some(Seed([5, 6])));
        // Shared data failing: no seed.
        let store = MemoryStore::new();
        store.inject("k", Fault::ReadError);
        store.inject("k", Fault::WriteError);
        store.inject("k", Fault::ReadError);
        assert_eq!(shared_seed(&store, "k", Seed([1, 2])), None);
    }
}
