//! A keyed hash for slot tables whose slots a caller's input picks (the fallback's cache slots): SipHash
//! with a secret seed, one per sidecar, kept in shared data so every worker maps keys alike. A caller
//! who can compute an unkeyed slot offline can aim at a victim's slot; with the seed it cannot. The seed, and
//! its loading from shared data, are `crate::slots`', which the breaker and trace-context use too.

pub use crate::slots::Seed;

/// Bytes of an encoded [`Seed`].
pub const SEED_LEN: usize = 16;

/// Keyed SipHash-2-4 of a 128-bit value's little-endian bytes (the number std's `SipHasher` gives).
/// Hand-written for this one input size: two message words and the length block, no buffering, about a third of the code of
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    /// std's streaming SipHash-2-4 with the seed's keys.
    fn hash(seed: &Seed, bytes: &[u8]) -> u64 {
        use std::hash::Hasher;
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(seed.0[0], seed.0[1]);
        h.write(bytes);
        h.finish()
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
}
