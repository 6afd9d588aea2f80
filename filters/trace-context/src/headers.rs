//! Request headers as trace-context sees them, and the edits a writer asks for. The filter reads every
//! header once through the host's header-pairs API (so duplicates stay visible) and applies the edits
//! in one pass.

pub use filter_common::headers::Duplicate;
use filter_common::headers::HeaderMap;
use std::ops::Deref;

/// The request headers (a [`HeaderMap`]), with what a format needs to see the next hop's view.
#[derive(Debug, Default, Clone)]
pub struct RequestHeaders(HeaderMap);

impl Deref for RequestHeaders {
    type Target = HeaderMap;

    fn deref(&self) -> &HeaderMap {
        &self.0
    }
}

impl From<HeaderMap> for RequestHeaders {
    fn from(map: HeaderMap) -> Self {
        RequestHeaders(map)
    }
}

impl RequestHeaders {
    pub fn from_encoded(buf: Vec<u8>) -> Self {
        RequestHeaders(HeaderMap::from_encoded(buf))
    }

    pub fn new(pairs: Vec<(String, Vec<u8>)>) -> Self {
        RequestHeaders(HeaderMap::new(pairs))
    }

    /// Convenience for tests and tools: pairs from string slices.
    pub fn from_strs(pairs: &[(&str, &str)]) -> Self {
        RequestHeaders(HeaderMap::from_strs(pairs))
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

pub(crate) use filter_common::headers::trim_ows;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_edit_of_a_header_supersedes_the_earlier_one() {
        let mut edits = HeaderEdits::default();
        assert!(edits.is_empty());
        edits.set("b3", "1".into());
        edits.set("x-b3-sampled", "1".into());
        edits.remove("b3");
        edits.set("x-b3-sampled", "0".into());
        assert!(!edits.is_empty());
        assert_eq!(edits.len(), 2);
        assert_eq!(edits.get("b3"), Some(None));
        assert_eq!(edits.get("x-b3-sampled"), Some(Some("0")));
        assert_eq!(edits.get("traceparent"), None);
        // One edit per header, so the host is never asked to set what it then removes.
        assert_eq!(
            edits.iter().cloned().collect::<Vec<_>>(),
            [
                HeaderEdit::Remove("b3".into()),
                HeaderEdit::Set("x-b3-sampled".into(), "0".into()),
            ]
        );
    }
}
