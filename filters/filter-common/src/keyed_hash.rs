//! A keyed hash for slot tables whose slots a caller's input picks (the fallback's cache slots): SipHash
//! with a secret seed, one per sidecar, kept in shared data so every worker maps keys alike. A caller
//! who can compute an unkeyed slot offline can aim at a victim's slot; with the seed it cannot. (The
//! circuit breaker's key slots use the same scheme in `circuit-breaker/src/slots.rs`.)

use crate::shared::SharedData;

/// The secret seed: two SipHash keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seed(pub [u64; 2]);

/// Bytes of an encoded [`Seed`].
pub const SEED_LEN: usize = 16;

impl Seed {
    pub fn encode(&self) -> [u8; SEED_LEN] {
        ((u128::from(self.0[1]) << 64) | u128::from(self.0[0])).to_le_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Seed> {
        let both = u128::from_le_bytes(bytes.try_into().ok()?);
        Some(Seed([both as u64, (both >> 64) as u64]))
    }
}

/// Keyed SipHash-2-4 of `bytes`.
pub fn hash(seed: &Seed, bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    // `SipHasher` is deprecated only in favour of `DefaultHasher`, whose keys cannot be chosen; every
    // worker VM must compute the same hash.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(seed.0[0], seed.0[1]);
    h.write(bytes);
    h.finish()
}

/// [`hash`] of a 128-bit value's little-endian bytes, the same number. Hand-written for this one
/// input size: two message words and the length block, no buffering, about a third of the code of
/// std's streaming `SipHasher` in a module near its size budget (checked against it in the tests).
pub fn hash_u128(seed: &Seed, value: u128) -> u64 {
    let [k0, k1] = seed.0;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // The message: two little-endian words, then the length (16) in the top byte of the last block.
    for m in [value as u64, (value >> 64) as u64, 16 << 56] {
        v[3] ^= m;
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^= m;
    }
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    let [mut v0, mut v1, mut v2, mut v3] = *v;
    v0 = v0.wrapping_add(v1);
    v1 = v1.rotate_left(13) ^ v0;
    v0 = v0.rotate_left(32);
    v2 = v2.wrapping_add(v3);
    v3 = v3.rotate_left(16) ^ v2;
    v0 = v0.wrapping_add(v3);
    v3 = v3.rotate_left(21) ^ v0;
    v2 = v2.wrapping_add(v1);
    v1 = v1.rotate_left(17) ^ v2;
    v2 = v2.rotate_left(32);
    *v = [v0, v1, v2, v3];
}

/// The slot of a 128-bit value among `slots`.
pub fn slot(seed: &Seed, value: u128, slots: u32) -> u32 {
    (hash_u128(seed, value) % u64::from(slots.max(1))) as u32
}

/// The sidecar's seed at `key`: the one in shared data, or a new random one (WASI's `random_get`, else
/// `fallback_entropy` mixed in) stored there by the first VM to configure (Envoy's canary, before any
/// worker serves), read back so every VM uses the stored one. `None` when shared data fails.
pub fn shared_seed(store: &impl SharedData, key: &str, fallback_entropy: u64) -> Option<Seed> {
    if let Ok(Some((bytes, _))) = store.get(key) {
        if let Some(seed) = Seed::decode(&bytes) {
            return Some(seed);
        }
    }
    let mut fresh = [0u8; SEED_LEN];
    if getrandom::getrandom(&mut fresh).is_err() {
        let mixed = fallback_entropy.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        fresh = Seed([mixed, mixed.rotate_left(29) ^ fallback_entropy]).encode();
    }
    // A failed write shows in the read back.
    let _ = store.set(key, &fresh, 0);
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
    fn hashes_and_slots_depend_on_the_seed() {
        let (a, b) = (Seed([1, 2]), Seed([1, 3]));
        assert_eq!(hash_u128(&a, 7), hash_u128(&a, 7));
        assert_ne!(hash_u128(&a, 7), hash_u128(&b, 7));
        // Over many values, the two seeds put most in different slots.
        let moved = (0..1000u128)
            .filter(|i| slot(&a, *i, 4096) != slot(&b, *i, 4096))
            .count();
        assert!(moved > 990, "{moved}");
        assert!((0..1000u128).all(|i| slot(&a, i << 64, 7) < 7));
        assert_eq!(slot(&a, 1, 0), 0);
        assert_eq!(Seed::decode(&a.encode()), Some(a));
        assert_eq!(a.encode()[..8], 1u64.to_le_bytes());
        assert_eq!(Seed::decode(&[0; 15]), None);
        assert_eq!(Seed::decode(&[0; 17]), None);
    }

    #[test]
    fn the_one_block_siphash_is_std_s() {
        // The reference vector of the SipHash paper's key (00 01 .. 0f) over 15 bytes 00..0e, through
        // std's hasher, and the hand-written one against std's over many seeds and values.
        let paper = Seed([0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]);
        let fifteen: Vec<u8> = (0..15).collect();
        assert_eq!(hash(&paper, &fifteen), 0xa129_ca61_49be_45e5);
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let seed = Seed([x, x.rotate_left(17) ^ 0xdead_beef]);
            let value = (u128::from(x.rotate_left(7)) << 64) | u128::from(x ^ 0x55);
            assert_eq!(hash_u128(&seed, value), hash(&seed, &value.to_le_bytes()));
        }
    }

    #[test]
    fn the_first_vm_creates_the_seed_and_later_ones_read_it() {
        let store = MemoryStore::new();
        let first = shared_seed(&store, "f/seed", 1).unwrap();
        assert_eq!(shared_seed(&store, "f/seed", 2), Some(first));
        // Garbage is replaced; a failing store gives none.
        store.set("g/seed", b"xx", 0);
        assert!(shared_seed(&store, "g/seed", 3).is_some());
        store.inject("h/seed", Fault::ReadError);
        store.inject("h/seed", Fault::WriteError);
        store.inject("h/seed", Fault::ReadError);
        assert_eq!(shared_seed(&store, "h/seed", 4), None);
    }
}
