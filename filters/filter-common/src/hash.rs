//! FNV-1a, 64-bit: cheap, stable across VMs, builds and restarts, and good enough to spread keys that
//! callers do not choose. Not for keys an attacker chooses to collide where a collision shares or evicts
//! state: the breaker's key slots and trace-context's correlation slots use the keyed hash of
//! [`crate::slots`].

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A running FNV-1a hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(OFFSET_BASIS)
    }
}

impl Fnv1a {
    /// A stream started from another offset: two streams of the same input make a 128-bit hash.
    pub fn with_offset(offset: u64) -> Self {
        Fnv1a(offset)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(PRIME);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }
}

/// The FNV-1a hash of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_from_another_offset_is_another_hash() {
        let mut other = Fnv1a::with_offset(0x6c62_272e_07bb_0142);
        other.write(b"a");
        assert_ne!(other.finish(), fnv1a(b"a"));
        let mut same = Fnv1a::with_offset(0xcbf2_9ce4_8422_2325);
        same.write(b"a");
        assert_eq!(
            same.finish(),
            fnv1a(b"a"),
            "the offset basis is the default stream"
        );
    }

    #[test]
    fn known_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let mut split = Fnv1a::default();
        split.write(b"foo");
        split.write(b"bar");
        assert_eq!(split.finish(), fnv1a(b"foobar"));
    }
}
