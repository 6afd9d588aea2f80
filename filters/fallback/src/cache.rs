//! Stale-if-error entries. The cache is a fixed number of shared-data slots, one response each, so its
//! memory is bounded by configuration whatever the traffic; a key that hashes to a taken slot evicts the
//! older entry. Slots are chosen by a keyed hash with the sidecar's secret seed, so a caller cannot
//! compute offline a path that lands in another's slot.

use filter_common::hash::Fnv1a;
use filter_common::keyed_hash::{self, Seed};

/// 3: the freshness lifetime was added (modules before read such entries as garbage, and back).
const VERSION: u8 = 3;

/// A cached good response. The key is kept as a 128-bit hash, so an entry's size does not depend on how
/// long the request's path and key headers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: u128,
    pub stored_at_ns: u64,
    /// The response's `Age` when it arrived, in seconds (it was that old already).
    pub initial_age_s: u32,
    /// Its freshness lifetime in seconds (`s-maxage`, else `max-age`, else 0): how stale it is.
    pub lifetime_s: u32,
    /// How long after `stored_at_ns` it may be served at most (its own directives); `u64::MAX` when
    /// only the rule's ttl bounds it.
    pub serve_for_ns: u64,
    /// The request headers the response varies on (`Vary`, lower case, comma-separated; bounded by
    /// `policy::MAX_VARY_BYTES`), and the hash of the storing request's values for them.
    pub vary: String,
    pub vary_hash: u128,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The cache key: authority, path (with its query) and the raw values of the rule's key headers, each
/// framed so that no two different requests run together, hashed to 128 bits (two FNV-1a streams).
pub fn key(authority: &[u8], path: &[u8], header_values: &[Option<&[u8]>]) -> u128 {
    let mut lo = Fnv1a::default();
    let mut hi = Fnv1a::with_offset(0x6c62_272e_07bb_0142);
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
    (u128::from(hi.finish()) << 64) | u128::from(lo.finish())
}

/// The slot of a key, among `slots`: keyed by the sidecar's seed.
pub fn slot(seed: &Seed, key: u128, slots: u32) -> u32 {
    keyed_hash::slot(seed, key, slots)
}

/// Bytes of an entry besides its Vary names, content type and body.
pub const FIXED: usize = 1 + 16 + 8 + 4 + 4 + 8 + 16 + 2 + 4;

/// The key of an encoded entry, read without decoding the rest.
pub fn key_of(bytes: &[u8]) -> Option<u128> {
    let (&version, rest) = bytes.split_first()?;
    let key = rest.first_chunk::<16>()?;
    (version == VERSION).then(|| u128::from_le_bytes(*key))
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.push(VERSION);
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.stored_at_ns.to_le_bytes());
        out.extend_from_slice(&self.initial_age_s.to_le_bytes());
        out.extend_from_slice(&self.lifetime_s.to_le_bytes());
        out.extend_from_slice(&self.serve_for_ns.to_le_bytes());
        out.extend_from_slice(&self.vary_hash.to_le_bytes());
        out.extend_from_slice(
            &u16::try_from(self.vary.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(self.vary.as_bytes());
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
        let (initial_age, rest) = rest.split_first_chunk::<4>()?;
        let (lifetime, rest) = rest.split_first_chunk::<4>()?;
        let (serve_for, rest) = rest.split_first_chunk::<8>()?;
        let (vary_hash, rest) = rest.split_first_chunk::<16>()?;
        let (vary_len, rest) = rest.split_first_chunk::<2>()?;
        let (vary, rest) = rest.split_at_checked(usize::from(u16::from_le_bytes(*vary_len)))?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let (ct, body) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
        Some(Entry {
            key: u128::from_le_bytes(*key),
            stored_at_ns: u64::from_le_bytes(*stored),
            initial_age_s: u32::from_le_bytes(*initial_age),
            lifetime_s: u32::from_le_bytes(*lifetime),
            serve_for_ns: u64::from_le_bytes(*serve_for),
            vary: String::from_utf8(vary.to_vec()).ok()?,
            vary_hash: u128::from_le_bytes(*vary_hash),
            content_type: String::from_utf8(ct.to_vec()).ok()?,
            body: body.to_vec(),
        })
    }

    /// The entry's age in seconds (its `Age` when stored plus its time here) when it is the response
    /// for `key` and was stored less than `ttl_ns` and its own serving window ago. Whether the request
    /// selects this variant (`Vary`) is checked by the caller.
    pub fn servable_age(&self, key: u128, now_ns: u64, ttl_ns: u64) -> Option<u64> {
        let resident = now_ns.checked_sub(self.stored_at_ns)?;
        (self.key == key && resident < ttl_ns.min(self.serve_for_ns))
            .then(|| resident / 1_000_000_000 + u64::from(self.initial_age_s))
    }

    /// How many seconds past its freshness lifetime the entry is at `age_s`.
    pub fn staleness_s(&self, age_s: u64) -> u64 {
        age_s.saturating_sub(u64::from(self.lifetime_s))
    }

    /// The Vary names, as stored.
    pub fn vary_names(&self) -> Vec<String> {
        self.vary
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The same variant of the same key, stored less than a second before `newer`: rewriting it would
    /// only take shared data's one global lock again.
    pub fn is_recent_copy_of(&self, newer: &Entry) -> bool {
        self.key == newer.key
            && self.vary_hash == newer.vary_hash
            && newer.stored_at_ns.saturating_sub(self.stored_at_ns) < 1_000_000_000
    }

    /// Shared-data bytes this entry takes.
    pub fn size(&self) -> usize {
        FIXED + self.vary.len() + self.content_type.len() + self.body.len()
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
            initial_age_s: 0,
            lifetime_s: 0,
            serve_for_ns: u64::MAX,
            vary: "accept-language,x-tenant".into(),
            vary_hash: 7,
            content_type: "application/json".into(),
            body: b"{\"id\": 1}".to_vec(),
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_is_rejected() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(bytes.len(), e.size());
        assert_eq!(Entry::decode(&bytes), Some(e.clone()));
        for cut in 0..FIXED {
            assert_eq!(Entry::decode(&bytes[..cut]), None);
        }
        assert_eq!(Entry::decode(&[1, 0, 0]), None, "another version");
        assert_eq!(key_of(&bytes), Some(e.key));
        let mut older = bytes.clone();
        older[0] = 2;
        assert_eq!((Entry::decode(&older), key_of(&older)), (None, None));
        assert_eq!(key_of(&bytes[..16]), None);
    }

    #[test]
    fn serving_needs_the_same_key_within_the_ttl_and_the_own_window() {
        let mut e = entry();
        let k = e.key;
        assert_eq!(e.servable_age(k, 105 * SEC, 30 * SEC), Some(5));
        assert_eq!(e.servable_age(k, 130 * SEC, 30 * SEC), None, "expired");
        assert_eq!(
            e.servable_age(k ^ 1, 101 * SEC, 30 * SEC),
            None,
            "another key in the slot"
        );
        assert_eq!(
            e.servable_age(k, 99 * SEC, 30 * SEC),
            None,
            "clock before the entry"
        );
        e.serve_for_ns = 3 * SEC;
        e.initial_age_s = 40;
        assert_eq!(
            e.servable_age(k, 102 * SEC, 30 * SEC),
            Some(42),
            "Age counts"
        );
        assert_eq!(e.servable_age(k, 103 * SEC, 30 * SEC), None, "own window");
        e.lifetime_s = 30;
        assert_eq!((e.staleness_s(42), e.staleness_s(10)), (12, 0));
        assert_eq!(e.vary_names(), vec!["accept-language", "x-tenant"]);
        e.vary.clear();
        assert!(e.vary_names().is_empty());
    }

    #[test]
    fn only_the_same_variant_stored_within_a_second_is_a_recent_copy() {
        let old = entry();
        let later = |ns: u64| Entry {
            stored_at_ns: old.stored_at_ns + ns,
            body: b"{\"id\": 2}".to_vec(),
            ..entry()
        };
        assert!(old.is_recent_copy_of(&later(0)));
        assert!(old.is_recent_copy_of(&later(SEC - 1)));
        assert!(
            !old.is_recent_copy_of(&later(SEC)),
            "a second later it is rewritten"
        );
        let other_key = Entry {
            key: old.key ^ 1,
            ..later(0)
        };
        assert!(!old.is_recent_copy_of(&other_key));
        let other_variant = Entry {
            vary_hash: old.vary_hash ^ 1,
            ..later(0)
        };
        assert!(!old.is_recent_copy_of(&other_variant));
    }

    #[test]
    fn keys_have_two_independent_64_bit_halves() {
        // Two FNV-1a streams with different offsets: a 128-bit key, not one 64-bit hash twice.
        for path in ["/", "/a", "/item?id=1"] {
            let k = key(b"shop", path.as_bytes(), &[]);
            let (hi, lo) = ((k >> 64) as u64, k as u64);
            assert!(hi != 0 && lo != 0 && hi != lo, "{path}: {k:#x}");
        }
        let (a, b) = (key(b"h", b"/a", &[]), key(b"h", b"/b", &[]));
        assert_ne!(a >> 64, b >> 64);
        assert_ne!(a as u64, b as u64);
    }

    #[test]
    fn slots_are_keyed_by_the_seed() {
        // A key that shares its slot with another under one seed rarely does under another: the slot a
        // caller's path lands in cannot be computed without the sidecar's seed.
        let (a, b) = (Seed([1, 2]), Seed([3, 4]));
        let keys: Vec<u128> = (0..2000u32)
            .map(|i| key(b"shop", format!("/p/{i}").as_bytes(), &[]))
            .collect();
        let victim = keys[0];
        let colliding: Vec<u128> = keys[1..]
            .iter()
            .copied()
            .filter(|k| slot(&a, *k, 64) == slot(&a, victim, 64))
            .collect();
        assert!(!colliding.is_empty());
        let still = colliding
            .iter()
            .filter(|k| slot(&b, **k, 64) == slot(&b, victim, 64))
            .count();
        assert!(
            still * 4 < colliding.len(),
            "{still} of {}",
            colliding.len()
        );
        // Slots spread evenly: no slot of 64 holds more than twice its share of 2000 keys.
        let mut per_slot = [0u32; 64];
        for k in &keys {
            per_slot[slot(&a, *k, 64) as usize] += 1;
        }
        assert!(per_slot.iter().all(|n| *n < 2 * 2000 / 64), "{per_slot:?}");
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
        let seed = Seed([5, 6]);
        for i in 0..1000u32 {
            assert!(slot(&seed, k(b"h", &i.to_le_bytes(), &[]), 7) < 7);
        }
    }
}
