//! Stale-if-error entries. The cache is a fixed number of shared-data slots, one response each, so its
//! memory is bounded by configuration whatever the traffic; a key that hashes to a taken slot evicts the
//! older entry.

const VERSION: u8 = 1;

/// A cached good response. The key is kept as a 128-bit hash, so an entry's size does not depend on how
/// long the request's path and key headers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: u128,
    pub stored_at_ns: u64,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The cache key: authority, path (with its query) and the raw values of the rule's key headers, each
/// framed so that no two different requests run together, hashed to 128 bits (two FNV-1a streams).
pub fn key(authority: &[u8], path: &[u8], header_values: &[Option<&[u8]>]) -> u128 {
    let mut lo = Fnv(0xcbf2_9ce4_8422_2325);
    let mut hi = Fnv(0x6c62_272e_07bb_0142);
    let mut feed = |part: Option<&[u8]>| {
        let (tag, bytes): (u8, &[u8]) = match part {
            Some(b) => (1, b),
            None => (0, b""),
        };
        let len = (bytes.len() as u64).to_le_bytes();
        for chunk in [&[tag][..], &len[..], bytes] {
            lo.write(chunk);
            hi.write(chunk);
        }
    };
    feed(Some(authority));
    feed(Some(path));
    for v in header_values {
        feed(*v);
    }
    (u128::from(hi.0) << 64) | u128::from(lo.0)
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The slot of a key, among `slots`.
pub fn slot(key: u128, slots: u32) -> u32 {
    ((key >> 64) as u64 % u64::from(slots.max(1))) as u32
}

/// Bytes of an entry besides its content type and body.
const FIXED: usize = 1 + 16 + 8 + 4;

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.push(VERSION);
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.stored_at_ns.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(self.content_type.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (key, rest) = rest.split_first_chunk::<16>()?;
        let (stored, rest) = rest.split_first_chunk::<8>()?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (ct, body) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
        Some(Entry {
            key: u128::from_le_bytes(*key),
            stored_at_ns: u64::from_le_bytes(*stored),
            content_type: String::from_utf8(ct.to_vec()).ok()?,
            body: body.to_vec(),
        })
    }

    /// The entry's age in seconds when it is the response for `key` and younger than `ttl_ns`.
    pub fn fresh_age(&self, key: u128, now_ns: u64, ttl_ns: u64) -> Option<u64> {
        let age = now_ns.checked_sub(self.stored_at_ns)?;
        (self.key == key && age < ttl_ns).then_some(age / 1_000_000_000)
    }

    /// Shared-data bytes this entry takes.
    pub fn size(&self) -> usize {
        FIXED + self.content_type.len() + self.body.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn entry() -> Entry {
        Entry {
            key: key(b"shop", b"/item?id=1", &[Some(b"application/json"), None]),
            stored_at_ns: 100 * SEC,
            content_type: "application/json".into(),
            body: b"{\"id\": 1}".to_vec(),
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_is_rejected() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(bytes.len(), e.size());
        assert_eq!(Entry::decode(&bytes), Some(e));
        for cut in 0..FIXED {
            assert_eq!(Entry::decode(&bytes[..cut]), None);
        }
        assert_eq!(Entry::decode(&[2, 0, 0]), None);
    }

    #[test]
    fn freshness_needs_the_same_key_within_the_ttl() {
        let e = entry();
        let k = e.key;
        assert_eq!(e.fresh_age(k, 105 * SEC, 30 * SEC), Some(5));
        assert_eq!(e.fresh_age(k, 130 * SEC, 30 * SEC), None, "expired");
        assert_eq!(
            e.fresh_age(k ^ 1, 101 * SEC, 30 * SEC),
            None,
            "another key in the slot"
        );
        assert_eq!(
            e.fresh_age(k, 99 * SEC, 30 * SEC),
            None,
            "clock before the entry"
        );
    }

    #[test]
    fn keys_separate_hosts_header_values_and_raw_bytes() {
        let k = |a: &[u8], p: &[u8], h: &[Option<&[u8]>]| key(a, p, h);
        assert_ne!(k(b"a.example", b"/me", &[]), k(b"b.example", b"/me", &[]));
        assert_ne!(k(b"h", b"/a", &[Some(b"x")]), k(b"h", b"/a", &[Some(b"y")]));
        assert_ne!(k(b"h", b"/a", &[None]), k(b"h", b"/a", &[Some(b"")]));
        assert_ne!(k(b"h", b"/ab", &[]), k(b"h", b"/a", &[Some(b"b")]));
        assert_ne!(
            k(b"h", b"/", &[Some(&[0xff])]),
            k(b"h", b"/", &[Some(&[0xfe])]),
            "non-UTF-8 values differ"
        );
        for i in 0..1000u32 {
            assert!(slot(k(b"h", &i.to_le_bytes(), &[]), 7) < 7);
        }
    }
}
