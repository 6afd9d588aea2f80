//! A read-only view of a header map as the host returns it: one host call reads every header (so
//! duplicates stay visible), and lookups happen in place.

use crate::wire;
use std::ops::Range;

/// Headers as the host gave them: names lower case (HTTP/2 and Envoy normalise them), values as
/// raw bytes because a header value need not be UTF-8. They are kept in the one buffer the host returned,
/// with the position of each name and value, so reading them costs two allocations, not two per header.
#[derive(Debug, Default, Clone)]
pub struct HeaderMap {
    buf: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl HeaderMap {
    /// Headers from the host's encoded map (`filter_common::wire`); a malformed map reads as empty.
    pub fn from_encoded(buf: Vec<u8>) -> Self {
        match wire::decode_spans(&buf) {
            Some(spans) => HeaderMap { buf, spans },
            None => HeaderMap::default(),
        }
    }

    pub fn new(pairs: Vec<(String, Vec<u8>)>) -> Self {
        // Envoy already lower-cases names; other callers may not.
        let lowered: Vec<(String, Vec<u8>)> = pairs
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let refs: Vec<(&str, &[u8])> = lowered
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        Self::from_encoded(wire::encode_map(&refs))
    }

    /// Convenience for tests and tools: pairs from string slices.
    pub fn from_strs(pairs: &[(&str, &str)]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// Every value of `name` (lower case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.values(name)
    }

    /// The value of `name` when it occurs exactly once; `Err(())` when it occurs more than once.
    pub fn get_single(&self, name: &str) -> Result<Option<&[u8]>, Duplicate> {
        let mut it = self.values(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(Duplicate);
        }
        Ok(first)
    }

    /// The first value of `name`, if any.
    pub fn get_first(&self, name: &str) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// Like `get_all`, but the name need not outlive the values.
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.raw()
            .filter(move |(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Pairs with the name as bytes: lookups compare bytes and skip UTF-8 validation (what a pass
    /// that only classifies names wants; `iter` validates every name).
    pub fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|(n, v)| {
            (
                self.buf.get(n.clone()).unwrap_or_default(),
                self.buf.get(v.clone()).unwrap_or_default(),
            )
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.raw().any(|(n, _)| n == name.as_bytes())
    }

    /// All pairs, in order. A name that is not UTF-8 (Envoy never produces one) reads as empty.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.spans.iter().map(|(n, v)| {
            let name = self
                .buf
                .get(n.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("");
            (name, self.buf.get(v.clone()).unwrap_or_default())
        })
    }
}

/// A header occurred more than once where the format allows only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// Strips RFC 7230 OWS (space and tab only) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lookups_see_every_value_in_order() {
        let h = HeaderMap::from_strs(&[("a", "1"), ("B", "2"), ("a", "3")]);
        assert_eq!(h.get_first("a"), Some(&b"1"[..]));
        assert_eq!(
            h.get_all("a").collect::<Vec<_>>(),
            vec![&b"1"[..], &b"3"[..]]
        );
        assert_eq!(h.get_single("a"), Err(Duplicate));
        assert_eq!(
            h.get_single("b"),
            Ok(Some(&b"2"[..])),
            "names are lower-cased"
        );
        assert_eq!(h.get_single("c"), Ok(None));
        assert!(h.contains("b") && !h.contains("c"));
        assert_eq!(h.iter().count(), 3);
    }

    #[test]
    fn values_need_not_be_utf8_and_malformed_maps_read_empty() {
        let h = HeaderMap::new(vec![("x".to_string(), vec![0xff, 0xfe])]);
        assert_eq!(h.get_first("x"), Some(&[0xff, 0xfe][..]));
        assert_eq!(
            HeaderMap::from_encoded(vec![9, 0, 0, 0, 1]).iter().count(),
            0
        );
        assert_eq!(HeaderMap::from_encoded(Vec::new()).iter().count(), 0);
    }
}
