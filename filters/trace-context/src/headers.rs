//! A read-only view of request headers and the edits a writer asks for. The filter reads every header
//! once through the host's header-pairs API (so duplicates stay visible) and applies the edits in one pass.

use filter_common::wire;
use std::ops::Range;

/// Request headers as the host gave them: names lower case (HTTP/2 and Envoy normalise them), values as
/// raw bytes because a header value need not be UTF-8. They are kept in the one buffer the host returned,
/// with the position of each name and value, so reading them costs two allocations, not two per header.
#[derive(Debug, Default, Clone)]
pub struct RequestHeaders {
    buf: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl RequestHeaders {
    /// Headers from the host's encoded map (`filter_common::wire`); a malformed map reads as empty.
    pub fn from_encoded(buf: Vec<u8>) -> Self {
        match wire::decode_spans(&buf) {
            Some(spans) => RequestHeaders { buf, spans },
            None => RequestHeaders::default(),
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

    /// Pairs with the name as bytes: lookups compare bytes and skip UTF-8 validation.
    fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
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

    /// The headers as they are after `edits` (edited headers move to the end), as the next hop sees them.
    pub fn apply(&self, edits: &HeaderEdits) -> RequestHeaders {
        let mut pairs: Vec<(String, Vec<u8>)> = self
            .iter()
            .filter(|(n, _)| edits.get(n).is_none())
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        for e in edits.iter() {
            if let HeaderEdit::Set(n, v) = e {
                pairs.push((n.clone(), v.clone().into_bytes()));
            }
        }
        RequestHeaders::new(pairs)
    }
}

/// Strips RFC 7230 OWS (space and tab only) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A header occurred more than once where the format allows only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate;

/// Header edits, applied in order by the adapter: `Set` replaces every value of the header, `Remove`
/// deletes every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    Set(String, String),
    Remove(String),
}

/// Collects edits; a later edit of the same header supersedes an earlier one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderEdits {
    edits: Vec<HeaderEdit>,
}

impl HeaderEdits {
    pub fn set(&mut self, name: &str, value: String) {
        self.forget(name);
        self.edits.push(HeaderEdit::Set(name.to_string(), value));
    }

    pub fn remove(&mut self, name: &str) {
        self.forget(name);
        self.edits.push(HeaderEdit::Remove(name.to_string()));
    }

    fn forget(&mut self, name: &str) {
        self.edits.retain(|e| match e {
            HeaderEdit::Set(n, _) | HeaderEdit::Remove(n) => n != name,
        });
    }

    /// The value this set of edits gives `name`: `Some(Some(v))` set, `Some(None)` removed, `None` untouched.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.edits.iter().find_map(|e| match e {
            HeaderEdit::Set(n, v) if n == name => Some(Some(v.as_str())),
            HeaderEdit::Remove(n) if n == name => Some(None),
            _ => None,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeaderEdit> {
        self.edits.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    pub fn len(&self) -> usize {
        self.edits.len()
    }
}
