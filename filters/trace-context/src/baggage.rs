//! W3C Baggage (<https://www.w3.org/TR/baggage/>) and its translation to and from the one-header-per-key
//! forms of Jaeger (`uberctx-{key}`) and OpenTracing (`ot-baggage-{key}`).
//!
//! Values stay percent-encoded as received; they are decoded only when written to a prefixed header,
//! because those carry plain text.

use std::collections::BTreeSet;

use crate::headers::{trim_ows, HeaderEdits, RequestHeaders};

/// The spec's minimum: a platform must propagate at least 64 members...
pub const DEFAULT_MAX_MEMBERS: usize = 64;
/// ...and at least 8192 bytes.
pub const DEFAULT_MAX_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaggageMember {
    /// An RFC 7230 token.
    pub key: String,
    /// As received: baggage-octets and `%XX` escapes.
    pub value: String,
    /// The raw text after the first `;` (validated, otherwise kept as is); empty when there is none.
    pub properties: String,
}

impl BaggageMember {
    /// Bytes this member takes in `Baggage::to_header`'s output, without a separating comma.
    pub fn rendered_len(&self) -> usize {
        let props = if self.properties.is_empty() {
            0
        } else {
            1 + self.properties.len()
        };
        self.key.len() + 1 + self.value.len() + props
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    /// In received order; keys unique (every constructor keeps the first occurrence).
    members: Vec<BaggageMember>,
}

/// What `Baggage::apply` lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaggageLimits {
    pub max_members: usize,
    /// Size of the rendered header (`to_header`), commas included.
    pub max_bytes: usize,
    /// When set, only these keys pass (ASCII case-insensitive).
    pub allow: Option<Vec<String>>,
    /// These keys never pass (ASCII case-insensitive), whatever `allow` says.
    pub deny: Vec<String>,
}

impl Default for BaggageLimits {
    fn default() -> Self {
        BaggageLimits {
            max_members: DEFAULT_MAX_MEMBERS,
            max_bytes: DEFAULT_MAX_BYTES,
            allow: None,
            deny: Vec::new(),
        }
    }
}

impl BaggageLimits {
    /// Key lists are matched ignoring ASCII case: prefixed headers arrive lower-cased, and a deny list
    /// must not be bypassed by sending `Secret` instead of `secret`.
    pub fn permits(&self, key: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(key));
        !listed(&self.deny) && self.allow.as_deref().is_none_or(listed)
    }
}

impl Baggage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every `baggage` header value, in order, as if joined with `,`. An invalid member is
    /// dropped whole (the spec allows removing entries not in its format) and so is a later duplicate of
    /// a key; the second result counts both. Empty members (stray commas) are skipped and not counted.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> (Baggage, usize) {
        let mut members = Vec::new();
        // A tree, not a scan of `members`, so a hostile header with thousands of members stays
        // O(n log n); it allocates nothing until the first insert.
        let mut seen: BTreeSet<&'a [u8]> = BTreeSet::new();
        let mut dropped = 0usize;
        // Splitting each header alone equals splitting the joined text: no member spans a join.
        for header in values {
            for raw in header.split(|&b| b == b',') {
                let raw = trim_ows(raw);
                if raw.is_empty() {
                    continue;
                }
                let Some((key, value, properties)) = split_member(raw) else {
                    dropped += 1;
                    continue;
                };
                if !seen.insert(key) {
                    dropped += 1;
                    continue;
                }
                // Validation admits ASCII only, so this cannot fail; counted rather than trusted.
                match (
                    std::str::from_utf8(key),
                    std::str::from_utf8(value),
                    std::str::from_utf8(properties),
                ) {
                    (Ok(key), Ok(value), Ok(properties)) => members.push(BaggageMember {
                        key: key.to_owned(),
                        value: value.to_owned(),
                        properties: properties.to_owned(),
                    }),
                    _ => dropped += 1,
                }
            }
        }
        (Baggage { members }, dropped)
    }

    /// Collects `{prefix}{key}` headers (Jaeger `uberctx-`, OpenTracing `ot-baggage-`): the key is the
    /// rest of the header name, the value the header's plain text, percent-encoded. The first header of
    /// a name wins; a name whose rest is not a token is skipped.
    pub fn from_prefixed(h: &RequestHeaders, prefix: &str) -> Baggage {
        let mut members = Vec::new();
        if prefix.is_empty() {
            // Every header would match; that is a configuration mistake, not baggage.
            return Baggage { members };
        }
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (name, value) in h.iter() {
            let Some(key) = strip_prefix_ignore_case(name, prefix) else {
                continue;
            };
            if !is_token(key.as_bytes()) || !seen.insert(key) {
                continue;
            }
            members.push(BaggageMember {
                key: key.to_owned(),
                value: percent_encode(trim_ows(value)),
                properties: String::new(),
            });
        }
        Baggage { members }
    }

    /// Appends `other`'s members whose keys are not present yet (existing keys win).
    pub fn merge(&mut self, other: Baggage) {
        if other.members.is_empty() {
            return;
        }
        let new: Vec<BaggageMember> = {
            // Inserted one by one: collecting into a BTreeSet sorts first, with core's stable sort
            // (about 3 KB of the module).
            let mut existing: BTreeSet<&str> = BTreeSet::new();
            for m in &self.members {
                existing.insert(m.key.as_str());
            }
            other
                .members
                .into_iter()
                .filter(|m| !existing.contains(m.key.as_str()))
                .collect()
        };
        self.members.extend(new);
    }

    /// Applies `limits` and returns how many members were dropped. Denied and not-allowed keys go first
    /// (they use none of the budget); then members are kept from the left while the count stays within
    /// `max_members`. A member that would push the rendered size past `max_bytes` is dropped whole, and
    /// later, smaller members may still be kept: one oversized entry should not cost all that follow it.
    pub fn apply(&mut self, limits: &BaggageLimits) -> usize {
        let before = self.members.len();
        let mut count = 0usize;
        let mut bytes = 0usize;
        self.members.retain(|m| {
            if count >= limits.max_members || !limits.permits(&m.key) {
                return false;
            }
            let add = m.rendered_len().saturating_add(usize::from(count > 0));
            let total = bytes.saturating_add(add);
            if total > limits.max_bytes {
                return false;
            }
            count += 1;
            bytes = total;
            true
        });
        before.saturating_sub(self.members.len())
    }

    /// `key=value[;properties]` joined with `,`; `None` when empty.
    pub fn to_header(&self) -> Option<String> {
        if self.members.is_empty() {
            return None;
        }
        let len = self
            .members
            .iter()
            .map(|m| m.rendered_len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        let mut out = String::with_capacity(len);
        for m in &self.members {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&m.key);
            out.push('=');
            out.push_str(&m.value);
            if !m.properties.is_empty() {
                out.push(';');
                out.push_str(&m.properties);
            }
        }
        Some(out)
    }

    /// Writes one `{prefix}{key}` header per member (name lower-cased, as HTTP/2 requires). The value is
    /// percent-decoded when the result is a clean header value (printable ASCII, no surrounding
    /// whitespace), else sent still encoded rather than corrupted. Properties have no place in these
    /// formats and are not written. Stale prefixed headers of the incoming request are the caller's to
    /// remove.
    pub fn to_prefixed(&self, prefix: &str, edits: &mut HeaderEdits) {
        for m in &self.members {
            let mut name = String::with_capacity(prefix.len() + m.key.len());
            name.push_str(prefix);
            name.push_str(&m.key);
            name.make_ascii_lowercase();
            let value = if m.value.contains('%') {
                percent_decode(m.value.as_bytes())
                    .filter(|d| is_plain_header_value(d))
                    .and_then(|d| String::from_utf8(d).ok())
                    .unwrap_or_else(|| m.value.clone())
            } else {
                m.value.clone()
            };
            edits.set(&name, value);
        }
    }

    pub fn members(&self) -> &[BaggageMember] {
        &self.members
    }

    pub fn get(&self, key: &str) -> Option<&BaggageMember> {
        self.members.iter().find(|m| m.key == key)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
}

/// Splits and validates `key OWS "=" OWS value *( OWS ";" OWS property )` (already trimmed); returns
/// the key, the value and the raw property text.
fn split_member(member: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = member.splitn(2, |&b| b == b';');
    let kv = parts.next()?;
    let properties = parts.next().unwrap_or(&[]);
    // The value may itself contain `=`; only the first one separates.
    let mut kv = kv.splitn(2, |&b| b == b'=');
    let key = trim_ows(kv.next()?);
    let value = trim_ows(kv.next()?);
    if !is_token(key) || !is_value(value) {
        return None;
    }
    if !properties
        .split(|&b| b == b';')
        .all(|p| is_property(trim_ows(p)))
    {
        return None;
    }
    Some((key, value, properties))
}

/// `key OWS "=" OWS value / key OWS`. An empty property (`k=v;` or `;;`) is tolerated like an empty
/// list member: rejecting the whole member for it would lose data for no safety gain.
fn is_property(p: &[u8]) -> bool {
    if p.is_empty() {
        return true;
    }
    let mut kv = p.splitn(2, |&b| b == b'=');
    match (kv.next(), kv.next()) {
        (Some(key), None) => is_token(trim_ows(key)),
        (Some(key), Some(value)) => is_token(trim_ows(key)) && is_value(trim_ows(value)),
        _ => false,
    }
}

/// RFC 7230 `token`: one or more `tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// US-ASCII except CTLs, whitespace, `"`, `,`, `;` and `\`.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// `*baggage-octet`, where every `%` must start a `%XX` escape: the spec calls the value URL-encoded
/// and requires a literal `%` to be encoded, so a stray `%` means the sender did not encode at all.
fn is_value(v: &[u8]) -> bool {
    let mut it = v.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hex = |c: Option<&u8>| c.is_some_and(u8::is_ascii_hexdigit);
            if !(hex(it.next()) && hex(it.next())) {
                return false;
            }
        } else if !is_baggage_octet(b) {
            return false;
        }
    }
    true
}

/// Encodes everything outside the baggage-octet set, and `%` itself, as `%XX`.
fn percent_encode(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if is_baggage_octet(b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_upper(b >> 4));
            out.push(hex_upper(b & 0x0f));
        }
    }
    out
}

fn hex_upper(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).map_or('0', |c| c.to_ascii_uppercase())
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b == b'%' {
            let hi = hex_value(*it.next()?)?;
            let lo = hex_value(*it.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// A value a header can carry unchanged: printable ASCII and inner spaces/tabs only, and no leading or
/// trailing whitespace (HTTP would strip it, changing the value).
fn is_plain_header_value(v: &[u8]) -> bool {
    v.iter().all(|&b| matches!(b, 0x20..=0x7e | b'\t'))
        && !matches!(v.first(), Some(b' ' | b'\t'))
        && !matches!(v.last(), Some(b' ' | b'\t'))
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        name.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::headers::HeaderEdit;

    fn parse_strs(values: &[&str]) -> (Baggage, usize) {
        Baggage::parse(values.iter().map(|v| v.as_bytes()))
    }

    fn keys(b: &Baggage) -> Vec<&str> {
        b.members().iter().map(|m| m.key.as_str()).collect()
    }

    fn member(b: &Baggage, key: &str) -> (String, String) {
        let m = b.get(key).unwrap();
        (m.value.clone(), m.properties.clone())
    }

    #[test]
    fn spec_example_with_properties() {
        let (b, dropped) = parse_strs(&[
            "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
        ]);
        assert_eq!(dropped, 0);
        assert_eq!(keys(&b), ["key1", "key2", "key3"]);
        assert_eq!(
            member(&b, "key1"),
            ("value1".into(), "property1;property2".into())
        );
        assert_eq!(member(&b, "key2"), ("value2".into(), "".into()));
        assert_eq!(
            member(&b, "key3"),
            ("value3".into(), " propertyKey=propertyValue".into())
        );
        assert_eq!(
            b.to_header().unwrap(),
            "key1=value1;property1;property2,key2=value2,key3=value3; propertyKey=propertyValue"
        );
    }

    #[test]
    fn multiple_headers_and_percent_encoding() {
        let (b, dropped) = parse_strs(&["userId=alice", "serverNode=DF%2028,isProduction=false"]);
        assert_eq!(dropped, 0);
        assert_eq!(keys(&b), ["userId", "serverNode", "isProduction"]);
        // Kept as received, not decoded or re-encoded.
        assert_eq!(b.get("serverNode").unwrap().value, "DF%2028");
        assert_eq!(
            b.to_header().unwrap(),
            "userId=alice,serverNode=DF%2028,isProduction=false"
        );
        // Lower-case escapes are valid too and kept as they are.
        let (b, _) = parse_strs(&["k=%e2%82%ac"]);
        assert_eq!(b.get("k").unwrap().value, "%e2%82%ac");
    }

    #[test]
    fn ows_around_keys_values_and_members() {
        let (b, dropped) = parse_strs(&[
            "userId =   alice",
            "serverNode = DF%2028, isProduction = false",
            "\t k \t=\t v \t",
        ]);
        assert_eq!(dropped, 0);
        assert_eq!(
            b.to_header().unwrap(),
            "userId=alice,serverNode=DF%2028,isProduction=false,k=v"
        );
    }

    #[test]
    fn values_may_contain_equals_and_be_empty() {
        let (b, dropped) = parse_strs(&["k=a=b==,e=,f= ;p"]);
        assert_eq!(dropped, 0);
        assert_eq!(b.get("k").unwrap().value, "a=b==");
        assert_eq!(b.get("e").unwrap().value, "");
        assert_eq!(member(&b, "f"), ("".into(), "p".into()));
        assert_eq!(b.to_header().unwrap(), "k=a=b==,e=,f=;p");
    }

    #[test]
    fn invalid_members_dropped_whole() {
        let (b, dropped) = parse_strs(&[
            "a=1,b c=2,=3,d,e=x y,f=\"q\",g=%zz,h=%2,i=ok,j=back\\slash,k=caf\u{e9},l=1;p q,m=1;=x,n=%",
        ]);
        assert_eq!(keys(&b), ["a", "i"]);
        assert_eq!(dropped, 12);
        // Key characters outside token: separators and delimiters.
        for bad in [
            "(k)=1", "k/=1", "k:=1", "k@=1", "k?=1", "{k}=1", "[k]=1", "k\"=1",
        ] {
            let (b, dropped) = parse_strs(&[bad]);
            assert!(b.is_empty(), "{bad:?}");
            assert_eq!(dropped, 1);
        }
        // Every tchar is a valid key.
        let (b, dropped) = parse_strs(&["!#$%&'*+-.^_`|~09AZaz=1"]);
        assert_eq!((b.len(), dropped), (1, 0));
    }

    #[test]
    fn all_baggage_octets_valid() {
        let value: String = (0x21u8..=0x7e)
            .filter(|&b| !matches!(b, b'"' | b',' | b';' | b'\\' | b'%'))
            .map(char::from)
            .collect();
        let (b, dropped) = parse_strs(&[&format!("k={value}")]);
        assert_eq!(dropped, 0);
        assert_eq!(b.get("k").unwrap().value, value);
    }

    #[test]
    fn empty_members_skipped_not_counted() {
        let (b, dropped) = parse_strs(&[",,a=1, ,\t,", "", ",b=2,"]);
        assert_eq!(keys(&b), ["a", "b"]);
        assert_eq!(dropped, 0);
        let (b, dropped) = parse_strs(&[]);
        assert!(b.is_empty());
        assert_eq!(b.to_header(), None);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn duplicates_keep_first() {
        let (b, dropped) = parse_strs(&["a=1,b=2,a=3"]);
        assert_eq!(b.to_header().unwrap(), "a=1,b=2");
        assert_eq!(dropped, 1);
        let (b, dropped) = parse_strs(&["a=1", "a=2;p", "A=3"]);
        // Keys are case-sensitive.
        assert_eq!(b.to_header().unwrap(), "a=1,A=3");
        assert_eq!(dropped, 1);
        // An invalid member does not claim its key.
        let (b, dropped) = parse_strs(&["a=x y,a=2"]);
        assert_eq!(b.to_header().unwrap(), "a=2");
        assert_eq!(dropped, 1);
    }

    #[test]
    fn property_forms() {
        let (b, dropped) = parse_strs(&["a=1;p1;p2=v2;p3 = v3 ; p4=a=b,b=2;,c=3;;x, d=4;p=%41"]);
        assert_eq!(dropped, 0);
        assert_eq!(b.get("a").unwrap().properties, "p1;p2=v2;p3 = v3 ; p4=a=b");
        assert_eq!(b.get("b").unwrap().properties, "");
        assert_eq!(b.get("c").unwrap().properties, ";x");
        assert_eq!(b.get("d").unwrap().properties, "p=%41");
        assert_eq!(
            b.to_header().unwrap(),
            "a=1;p1;p2=v2;p3 = v3 ; p4=a=b,b=2,c=3;;x,d=4;p=%41"
        );
        for bad in [
            "a=1;p=x y",
            "a=1;p=\"x\"",
            "a=1;p=%g0",
            "a=1;(p)",
            "a=1; =v",
        ] {
            let (b, dropped) = parse_strs(&[bad]);
            assert!(b.is_empty(), "{bad:?}");
            assert_eq!(dropped, 1);
        }
    }

    #[test]
    fn non_utf8_and_control_bytes() {
        let raw: &[u8] = b"a=\xff\xfe,b=2,\xc3\xa9=1,c=1;\x80,d=\x00,e=\x7f";
        let (b, dropped) = Baggage::parse([raw].into_iter());
        assert_eq!(keys(&b), ["b"]);
        assert_eq!(dropped, 5);
    }

    #[test]
    fn huge_input() {
        // 100k members, half of them duplicates: must stay fast (no quadratic duplicate scan).
        let mut s = String::new();
        for i in 0..100_000 {
            s.push_str(&format!("k{}=v,", i % 50_000));
        }
        let (mut b, dropped) = parse_strs(&[&s]);
        assert_eq!(b.len(), 50_000);
        assert_eq!(dropped, 50_000);
        assert_eq!(b.apply(&BaggageLimits::default()), 50_000 - 64);
        assert_eq!(b.len(), 64);

        let big_value = format!("k={}", "v".repeat(1 << 20));
        let (mut b, dropped) = parse_strs(&[&big_value, "small=1"]);
        assert_eq!((b.len(), dropped), (2, 0));
        assert_eq!(b.apply(&BaggageLimits::default()), 1);
        assert_eq!(b.to_header().unwrap(), "small=1");
    }

    fn numbered(n: usize) -> Baggage {
        let s: Vec<String> = (0..n).map(|i| format!("k{i:03}=v")).collect();
        parse_strs(&[&s.join(",")]).0
    }

    #[test]
    fn limits_defaults() {
        let l = BaggageLimits::default();
        assert_eq!(l.max_members, 64);
        assert_eq!(l.max_bytes, 8192);
        assert_eq!(l.allow, None);
        assert!(l.deny.is_empty());
    }

    #[test]
    fn limit_64_members() {
        let mut b = numbered(64);
        assert_eq!(b.apply(&BaggageLimits::default()), 0);
        assert_eq!(b.len(), 64);

        let mut b = numbered(70);
        assert_eq!(b.apply(&BaggageLimits::default()), 6);
        assert_eq!(b.len(), 64);
        assert!(!b.is_empty());
        assert_eq!(b.members()[0].key, "k000");
        assert_eq!(b.members()[63].key, "k063");
    }

    #[test]
    fn limit_8192_bytes_never_partial() {
        // 10 members of 1000 bytes each ("kN=" + 997 chars): 8 of them plus 7 commas = 8007 bytes.
        let members: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "v".repeat(997)))
            .collect();
        let (mut b, _) = parse_strs(&[&members.join(",")]);
        assert_eq!(b.apply(&BaggageLimits::default()), 2);
        let out = b.to_header().unwrap();
        assert_eq!(out, members[..8].join(","));
        assert!(out.len() <= 8192);

        // Exactly 8192 bytes is kept; one more byte drops the last member whole.
        let first = format!("a={}", "x".repeat(8192 - 2 - 4));
        let (mut b, _) = parse_strs(&[&first, "b=1"]);
        assert_eq!(b.clone().to_header().unwrap().len(), 8192);
        assert_eq!(b.apply(&BaggageLimits::default()), 0);
        let (mut b, _) = parse_strs(&[&format!("{first}x"), "b=1"]);
        assert_eq!(b.apply(&BaggageLimits::default()), 1);
        assert_eq!(b.to_header().unwrap(), format!("{first}x"));

        // Properties count toward the size.
        let (mut b, _) = parse_strs(&["a=1;p", "b=2;q"]);
        let limits = BaggageLimits {
            max_bytes: 9,
            ..BaggageLimits::default()
        };
        assert_eq!(b.apply(&limits), 1);
        assert_eq!(b.to_header().unwrap(), "a=1;p");

        // Every comma counts: "a=1,b=2,c=3" is 11 bytes, so a limit of 10 keeps two members.
        for (max_bytes, kept) in [(10, "a=1,b=2"), (11, "a=1,b=2,c=3")] {
            let (mut b, _) = parse_strs(&["a=1,b=2,c=3"]);
            let limits = BaggageLimits {
                max_bytes,
                ..BaggageLimits::default()
            };
            b.apply(&limits);
            assert_eq!(b.to_header().unwrap(), kept, "{max_bytes}");
        }
    }

    #[test]
    fn oversized_member_does_not_hide_later_ones() {
        let huge = format!("big={}", "x".repeat(9000));
        let (mut b, _) = parse_strs(&["a=1", &huge, "c=3"]);
        assert_eq!(b.apply(&BaggageLimits::default()), 1);
        assert_eq!(b.to_header().unwrap(), "a=1,c=3");
    }

    #[test]
    fn zero_limits_drop_everything() {
        let mut b = numbered(3);
        let limits = BaggageLimits {
            max_members: 0,
            ..BaggageLimits::default()
        };
        assert_eq!(b.apply(&limits), 3);
        assert!(b.is_empty());
        assert_eq!(b.to_header(), None);
    }

    #[test]
    fn allow_and_deny() {
        let (b, _) = parse_strs(&["user=alice,Secret=x,tenant=t1,debug=1"]);

        let mut denied = b.clone();
        let limits = BaggageLimits {
            deny: vec!["secret".into()],
            ..BaggageLimits::default()
        };
        assert_eq!(denied.apply(&limits), 1);
        assert_eq!(denied.to_header().unwrap(), "user=alice,tenant=t1,debug=1");

        let mut allowed = b.clone();
        let limits = BaggageLimits {
            allow: Some(vec!["USER".into(), "tenant".into(), "secret".into()]),
            deny: vec!["Secret".into()],
            ..BaggageLimits::default()
        };
        assert_eq!(allowed.apply(&limits), 2);
        assert_eq!(allowed.to_header().unwrap(), "user=alice,tenant=t1");

        let mut none = b.clone();
        let limits = BaggageLimits {
            allow: Some(vec![]),
            ..BaggageLimits::default()
        };
        assert_eq!(none.apply(&limits), 4);
        assert!(none.is_empty());

        // Denied members use none of the count budget.
        let mut counted = b;
        let limits = BaggageLimits {
            max_members: 2,
            deny: vec!["user".into()],
            ..BaggageLimits::default()
        };
        assert_eq!(counted.apply(&limits), 2);
        assert_eq!(counted.to_header().unwrap(), "Secret=x,tenant=t1");
    }

    #[test]
    fn merge_existing_keys_win() {
        let (mut a, _) = parse_strs(&["x=1,y=2"]);
        let (b, _) = parse_strs(&["y=20;p,z=30"]);
        a.merge(b);
        assert_eq!(a.to_header().unwrap(), "x=1,y=2,z=30");
        a.merge(Baggage::new());
        assert_eq!(a.len(), 3);
        let mut empty = Baggage::new();
        empty.merge(a.clone());
        assert_eq!(empty, a);
    }

    #[test]
    fn from_prefixed_jaeger_and_ot() {
        let h = RequestHeaders::new(vec![
            ("uberctx-user".into(), b"alice smith".to_vec()),
            ("uberctx-pct".into(), b"50%".to_vec()),
            (
                "uberctx-bytes".into(),
                vec![b'a', 0xff, b',', b';', b'"', b'\\'],
            ),
            ("uberctx-user".into(), b"second".to_vec()),
            ("uberctx-".into(), b"nokey".to_vec()),
            ("uberctx-empty".into(), b"".to_vec()),
            ("ot-baggage-other".into(), b"ignored".to_vec()),
            ("x-uberctx-not".into(), b"ignored".to_vec()),
            ("Uberctx-Case".into(), b"  trimmed\t".to_vec()),
        ]);
        let b = Baggage::from_prefixed(&h, "uberctx-");
        assert_eq!(keys(&b), ["user", "pct", "bytes", "empty", "case"]);
        assert_eq!(b.get("user").unwrap().value, "alice%20smith");
        assert_eq!(b.get("pct").unwrap().value, "50%25");
        assert_eq!(b.get("bytes").unwrap().value, "a%FF%2C%3B%22%5C");
        assert_eq!(b.get("empty").unwrap().value, "");
        assert_eq!(b.get("case").unwrap().value, "trimmed");
        assert!(b.members().iter().all(|m| m.properties.is_empty()));
        // The result is valid W3C baggage.
        let header = b.to_header().unwrap();
        let (reparsed, dropped) = parse_strs(&[&header]);
        assert_eq!((reparsed, dropped), (b, 0));

        let ot = Baggage::from_prefixed(&h, "ot-baggage-");
        assert_eq!(ot.to_header().unwrap(), "other=ignored");
        assert!(Baggage::from_prefixed(&h, "").is_empty());
        assert!(Baggage::from_prefixed(&h, "absent-").is_empty());
    }

    #[test]
    fn to_prefixed_decodes_when_safe() {
        let (b, dropped) = parse_strs(&[
            "user=alice%20smith;prop,plain=x,Mixed=1,nl=a%0Ab,bin=%FF,trail=a%20,lead=%09a,utf8=caf%C3%A9,pct=50%25,empty=",
        ]);
        assert_eq!(dropped, 0);
        let mut edits = HeaderEdits::default();
        b.to_prefixed("uberctx-", &mut edits);
        assert_eq!(edits.get("uberctx-user"), Some(Some("alice smith")));
        assert_eq!(edits.get("uberctx-plain"), Some(Some("x")));
        assert_eq!(edits.get("uberctx-mixed"), Some(Some("1")));
        assert_eq!(edits.get("uberctx-nl"), Some(Some("a%0Ab")));
        assert_eq!(edits.get("uberctx-bin"), Some(Some("%FF")));
        assert_eq!(edits.get("uberctx-trail"), Some(Some("a%20")));
        assert_eq!(edits.get("uberctx-lead"), Some(Some("%09a")));
        assert_eq!(edits.get("uberctx-utf8"), Some(Some("caf%C3%A9")));
        assert_eq!(edits.get("uberctx-pct"), Some(Some("50%")));
        assert_eq!(edits.get("uberctx-empty"), Some(Some("")));
        assert_eq!(edits.len(), 10);
        assert!(edits.iter().all(|e| matches!(e, HeaderEdit::Set(..))));
    }

    #[test]
    fn prefixed_round_trip() {
        let h = RequestHeaders::new(vec![
            ("ot-baggage-user".into(), b"alice smith".to_vec()),
            ("ot-baggage-pct".into(), b"100%".to_vec()),
            ("ot-baggage-q".into(), b"a=b;c,d \"e\"".to_vec()),
            ("ot-baggage-bin".into(), vec![0xff]),
        ]);
        let b = Baggage::from_prefixed(&h, "ot-baggage-");
        // Through a W3C header and back.
        let (b, _) = parse_strs(&[&b.to_header().unwrap()]);
        let mut edits = HeaderEdits::default();
        b.to_prefixed("uberctx-", &mut edits);
        assert_eq!(edits.get("uberctx-user"), Some(Some("alice smith")));
        assert_eq!(edits.get("uberctx-pct"), Some(Some("100%")));
        assert_eq!(edits.get("uberctx-q"), Some(Some("a=b;c,d \"e\"")));
        // Not representable as a header string: stays encoded.
        assert_eq!(edits.get("uberctx-bin"), Some(Some("%FF")));
    }

    #[test]
    fn percent_helpers() {
        assert_eq!(percent_decode(b"a%41%2a"), Some(b"aA*".to_vec()));
        assert_eq!(percent_decode(b"%"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%4g"), None);
        assert_eq!(percent_decode(b"%+1"), None);
        assert_eq!(percent_encode(b"a b%\x00\x7f~"), "a%20b%25%00%7F~");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(percent_decode(percent_encode(&all).as_bytes()), Some(all));
    }

    #[test]
    fn rendered_len_matches_to_header() {
        let (b, _) = parse_strs(&["a=1;p, bb=22 , c=;x=y"]);
        let sum: usize = b.members().iter().map(|m| m.rendered_len()).sum();
        assert_eq!(b.to_header().unwrap().len(), sum + b.len() - 1);
    }
}
