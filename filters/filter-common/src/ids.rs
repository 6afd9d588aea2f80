//! Random ids. One generator per VM, seeded once from the host's entropy (WASI `random_get`), then a
//! cheap xoshiro256** step per id: a request must not pay for a host call to get randomness.

/// xoshiro256** (Blackman and Vigna): fast, 256-bit state, good statistical quality; not for secrets,
/// which trace ids are not.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    s: [u64; 4],
}

impl IdGenerator {
    /// Seeds from the OS/host entropy, falling back to `fallback_seed` (for example the current time)
    /// when none is available.
    pub fn from_entropy(fallback_seed: u64) -> Self {
        let mut seed = [0u8; 8];
        let seed = match getrandom::getrandom(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => fallback_seed,
        };
        Self::from_seed(seed)
    }

    /// Expands a 64-bit seed with splitmix64, as the xoshiro authors recommend.
    pub fn from_seed(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        IdGenerator {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.s;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// A non-zero 64-bit id (zero is "invalid" in every trace format).
    pub fn span_id(&mut self) -> u64 {
        loop {
            let v = self.next_u64();
            if v != 0 {
                return v;
            }
        }
    }

    /// A non-zero 128-bit id.
    pub fn trace_id(&mut self) -> u128 {
        loop {
            let v = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if v != 0 {
                return v;
            }
        }
    }

    /// True with probability `ratio` (0.0 ..= 1.0).
    pub fn chance(&mut self, ratio: f64) -> bool {
        if ratio >= 1.0 {
            return true;
        }
        if ratio <= 0.0 {
            return false;
        }
        // 53 random bits give a uniform float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_are_the_generator_s_draws() {
        let mut g = IdGenerator::from_seed(0);
        assert_eq!(g.span_id(), 0x99ec_5f36_cb75_f2b4);
        assert_eq!(g.trace_id(), 0xbf6e_1f78_4956_452a_1a5f_849d_4933_e6e0);
    }

    #[test]
    fn the_generator_is_xoshiro256_star_star_seeded_by_splitmix64() {
        // Reference values of Vigna's splitmix64.c (seed 0) and xoshiro256starstar.c from that state.
        let mut g = IdGenerator::from_seed(0);
        assert_eq!(
            g.s,
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f,
                0xf88b_b8a8_724c_81ec
            ]
        );
        assert_eq!(g.next_u64(), 0x99ec_5f36_cb75_f2b4);
        assert_eq!(g.next_u64(), 0xbf6e_1f78_4956_452a);
        assert_eq!(g.next_u64(), 0x1a5f_849d_4933_e6e0);
    }

    #[test]
    fn ids_are_nonzero_and_vary() {
        let mut g = IdGenerator::from_seed(1);
        let a = g.trace_id();
        let b = g.trace_id();
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_ne!(g.span_id(), 0);
    }

    #[test]
    fn chance_is_a_draw_below_the_ratio() {
        // The first draw of seed 0 is 0x99ec5f36cb75f2b4: its top 53 bits over 2^53 is the unit drawn.
        // [0, ratio) has probability ratio, so a draw equal to the ratio is outside.
        let unit = (0x99ec_5f36_cb75_f2b4u64 >> 11) as f64 / (1u64 << 53) as f64;
        assert!(!IdGenerator::from_seed(0).chance(unit));
        let next = unit + 1.0 / (1u64 << 53) as f64;
        assert!(IdGenerator::from_seed(0).chance(next));
    }

    #[test]
    fn chance_follows_the_ratio() {
        let mut g = IdGenerator::from_seed(7);
        let hits = (0..100_000).filter(|_| g.chance(0.25)).count();
        assert!((23_500..26_500).contains(&hits), "{hits}");
        assert!(g.chance(1.0));
        assert!(!g.chance(0.0));
    }

    #[test]
    fn entropy_seeds_differ() {
        let a = IdGenerator::from_entropy(0).next_u64();
        let b = IdGenerator::from_entropy(0).next_u64();
        assert_ne!(a, b);
    }
}
