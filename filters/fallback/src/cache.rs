//! Stale-if-error entries. The cache is a fixed number of shared-data slots, one response each, so its
//! memory is bounded by configuration whatever the traffic; a key that hashes to a taken slot evicts the
//! older entry.

const VERSION: u8 = 1;

/// A cached good response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub stored_at_ns: u64,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The cache key: the path (with its query) and the values of the rule's key headers.
pub fn key(path: &str, header_values: &[Option<&[u8]>]) -> String {
    let mut k = String::with_capacity(path.len() + 32);
    k.push_str(path);
    for v in header_values {
        k.push('\n');
        match v {
            Some(v) => k.push_str(&String::from_utf8_lossy(v)),
            // Absent differs from empty.
            None => k.push('\0'),
        }
    }
    k
}

/// The slot of a key, among `slots`.
pub fn slot(key: &str, slots: u32) -> u32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash % u64::from(slots.max(1))) as u32
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(17 + self.key.len() + self.content_type.len() + self.body.len());
        out.push(VERSION);
        out.extend_from_slice(&self.stored_at_ns.to_le_bytes());
        for part in [self.key.as_bytes(), self.content_type.as_bytes()] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (stored, rest) = rest.split_first_chunk::<8>()?;
        let (key, rest) = take_str(rest)?;
        let (content_type, body) = take_str(rest)?;
        Some(Entry {
            key,
            stored_at_ns: u64::from_le_bytes(*stored),
            content_type,
            body: body.to_vec(),
        })
    }

    /// The entry's age in seconds when it is the response for `key` and younger than `ttl_ns`.
    pub fn fresh_age(&self, key: &str, now_ns: u64, ttl_ns: u64) -> Option<u64> {
        let age = now_ns.checked_sub(self.stored_at_ns)?;
        (self.key == key && age < ttl_ns).then_some(age / 1_000_000_000)
    }

    /// Shared-data bytes this entry takes.
    pub fn size(&self) -> usize {
        17 + self.key.len() + self.content_type.len() + self.body.len()
    }
}

fn take_str(b: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    let (s, rest) = rest.split_at_checked(u32::from_le_bytes(*len) as usize)?;
    Some((String::from_utf8(s.to_vec()).ok()?, rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn entry() -> Entry {
        Entry {
            key: key("/item?id=1", &[Some(b"application/json"), None]),
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
        for cut in 0..17 {
            assert_eq!(Entry::decode(&bytes[..cut]), None);
        }
        assert_eq!(Entry::decode(&[2, 0, 0]), None);
    }

    #[test]
    fn freshness_needs_the_same_key_within_the_ttl() {
        let e = entry();
        let k = e.key.clone();
        assert_eq!(e.fresh_age(&k, 105 * SEC, 30 * SEC), Some(5));
        assert_eq!(e.fresh_age(&k, 130 * SEC, 30 * SEC), None, "expired");
        assert_eq!(
            e.fresh_age("/other", 101 * SEC, 30 * SEC),
            None,
            "another key in the slot"
        );
        assert_eq!(
            e.fresh_age(&k, 99 * SEC, 30 * SEC),
            None,
            "clock before the entry"
        );
    }

    #[test]
    fn keys_separate_header_values_and_slots_stay_in_range() {
        assert_ne!(key("/a", &[Some(b"x")]), key("/a", &[Some(b"y")]));
        assert_ne!(key("/a", &[None]), key("/a\n", &[]));
        for i in 0..1000 {
            assert!(slot(&format!("/p{i}"), 7) < 7);
        }
    }
}
