//! A read-only view of request headers and the edits a writer asks for. The filter reads every header
//! once through the host's header-pairs API (so duplicates stay visible) and applies the edits in one pass.

/// Request headers as the host gave them: names lower case (HTTP/2 and Envoy normalise them), values as
/// raw bytes because a header value need not be UTF-8.
#[derive(Debug, Default, Clone)]
pub struct RequestHeaders {
    pairs: Vec<(String, Vec<u8>)>,
}

impl RequestHeaders {
    pub fn new(pairs: Vec<(String, Vec<u8>)>) -> Self {
        // Envoy already lower-cases names, so this allocates only for other callers.
        let mut pairs = pairs;
        for (name, _) in &mut pairs {
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                name.make_ascii_lowercase();
            }
        }
        RequestHeaders { pairs }
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
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
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
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// All pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
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
