//! W3C Trace Context `tracestate` (<https://www.w3.org/TR/trace-context/#tracestate-header>): an ordered
//! list of vendor `key=value` members, left-most most recently updated.
//!
//! Keys follow the Level 2 grammar (<https://www.w3.org/TR/trace-context-2/#key>):
//! `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, where `keychar` includes `@` anywhere after the first
//! character; Level 1's `tenant@system` split and its 241/14 limits are gone.
//!
//! Parsing is all-or-nothing for invalid members: the spec lets a participant discard a `tracestate` it
//! cannot fully validate, and forwarding a half-understood list risks mixing state from different
//! vendors. A repeated key is not invalid syntax, so it does not cost the list: only one entry per key is
//! allowed, and the left-most is the most recent position, so later repeats are dropped.

use crate::headers::trim_ows;

/// The most list members a `tracestate` may have.
pub const MAX_MEMBERS: usize = 32;

/// The spec requires propagating at least this many characters; a smaller `to_header` limit breaks that.
pub const PROPAGATE_MIN: usize = 512;

const MAX_KEY_LEN: usize = 256;
const MAX_VALUE_LEN: usize = 256;

/// Members longer than this are the first to go when truncating (spec, "Mutating the tracestate Field").
const LARGE_MEMBER_LEN: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    /// `(key, value)`, left-most first; keys unique, at most `MAX_MEMBERS`, all validated.
    members: Vec<(String, String)>,
}

impl TraceState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every `tracestate` header value, in order, as if they were joined with `,`. Empty and
    /// whitespace-only members are skipped, and so is a later member whose key is already in the list
    /// (the left-most entry wins). Any invalid member or more than 32 members rejects the whole list.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<TraceState, &'static str> {
        let mut members: Vec<(String, String)> = Vec::new();
        // Splitting each header on its own is the same as splitting the joined string: the join adds a
        // `,`, so no member can span two headers.
        for header in values {
            for raw in header.split(|&b| b == b',') {
                let member = trim_ows(raw);
                if member.is_empty() {
                    continue;
                }
                let mut kv = member.splitn(2, |&b| b == b'=');
                let (Some(key), Some(value)) = (kv.next(), kv.next()) else {
                    return Err("tracestate member without '='");
                };
                if !valid_key(key) {
                    return Err("invalid tracestate key");
                }
                if !valid_value(value) {
                    return Err("invalid tracestate value");
                }
                if members.iter().any(|(k, _)| k.as_bytes() == key) {
                    continue;
                }
                // Valid repeats do not count: the list forwarded has at most 32 distinct keys. At most
                // 32 members are ever held, so a huge list costs at most 33 member checks per comma.
                if members.len() == MAX_MEMBERS {
                    return Err("tracestate has more than 32 members");
                }
                // Validation above admits ASCII only, so these cannot fail; no panic path either way.
                let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
                else {
                    return Err("invalid tracestate member");
                };
                members.push((key.to_owned(), value.to_owned()));
            }
        }
        Ok(TraceState { members })
    }

    /// Sets `key` to `value` and moves it to the left-most position, as the spec requires of an update.
    /// A 33rd member pushes out the right-most one. Returns false (and changes nothing) when the key or
    /// value is not valid `tracestate` syntax, so a caller cannot produce a header peers would reject.
    pub fn upsert(&mut self, key: &str, value: &str) -> bool {
        if !is_valid_key(key) || !is_valid_value(value) {
            return false;
        }
        self.members.retain(|(k, _)| k != key);
        self.members.insert(0, (key.to_owned(), value.to_owned()));
        self.members.truncate(MAX_MEMBERS);
        true
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, key: &str) {
        self.members.retain(|(k, _)| k != key);
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members as `(key, value)`, left-most first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Renders the list as one header value of at most `max_len` characters; `None` when nothing is left.
    /// When the list is too long, whole members are dropped as the spec orders: those longer than 128
    /// characters first (right-most first), then from the right. A member is never cut.
    pub fn to_header(&self, max_len: usize) -> Option<String> {
        if self.members.is_empty() {
            return None;
        }
        let mut count = self.members.len();
        let mut chars: usize = self.members.iter().map(member_len).sum();
        let rendered = |chars: usize, count: usize| chars + count.saturating_sub(1);

        if rendered(chars, count) <= max_len {
            return Some(self.render(|_| true, rendered(chars, count)));
        }

        let mut keep = vec![true; self.members.len()];
        for pass_large_only in [true, false] {
            for (kept, m) in keep.iter_mut().zip(&self.members).rev() {
                if rendered(chars, count) <= max_len {
                    break;
                }
                let len = member_len(m);
                if *kept && (!pass_large_only || len > LARGE_MEMBER_LEN) {
                    *kept = false;
                    chars -= len;
                    count -= 1;
                }
            }
        }
        if count == 0 {
            return None;
        }
        let mut flags = keep.iter();
        Some(self.render(
            |_| flags.next().copied().unwrap_or(false),
            rendered(chars, count),
        ))
    }

    /// Joins the members `include` selects (called once per member, in order).
    fn render(
        &self,
        mut include: impl FnMut(&(String, String)) -> bool,
        capacity: usize,
    ) -> String {
        let mut out = String::with_capacity(capacity);
        for m in &self.members {
            if !include(m) {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&m.0);
            out.push('=');
            out.push_str(&m.1);
        }
        out
    }
}

fn member_len((k, v): &(String, String)) -> usize {
    k.len() + 1 + v.len()
}

/// Checks a key against the Level 2 grammar (for configuration checks).
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if valid_key(key.as_bytes()) {
        Ok(())
    } else {
        Err("invalid tracestate key")
    }
}

/// Checks a value: 1..=256 printable ASCII characters other than `,` and `=`, not ending in a space.
pub fn validate_value(value: &str) -> Result<(), &'static str> {
    if valid_value(value.as_bytes()) {
        Ok(())
    } else {
        Err("invalid tracestate value")
    }
}

pub fn is_valid_key(key: &str) -> bool {
    valid_key(key.as_bytes())
}

pub fn is_valid_value(value: &str) -> bool {
    valid_value(value.as_bytes())
}

/// Level 2 `keychar`: `@` is an ordinary character after the first one.
fn is_key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@')
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`: at most 256 characters.
fn valid_key(key: &[u8]) -> bool {
    match key.split_first() {
        Some((&first, rest)) => {
            key.len() <= MAX_KEY_LEN
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && rest.iter().all(|&b| is_key_char(b))
        }
        None => false,
    }
}

fn valid_value(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_VALUE_LEN
        && value
            .iter()
            .all(|&b| matches!(b, 0x20..=0x7e) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn parse_strs(values: &[&str]) -> Result<TraceState, &'static str> {
        TraceState::parse(values.iter().map(|v| v.as_bytes()))
    }

    fn pairs(ts: &TraceState) -> Vec<(String, String)> {
        ts.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn numbered(from: usize, to: usize) -> String {
        (from..=to)
            .map(|i| format!("bar{i:02}={i:02}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn parses_members_in_order() {
        let ts = parse_strs(&["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]).unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts.get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ts.get("missing"), None);
        assert_eq!(
            ts.to_header(PROPAGATE_MIN).unwrap(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
    }

    #[test]
    fn joins_multiple_headers() {
        let ts = parse_strs(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap();
        assert_eq!(
            ts.to_header(PROPAGATE_MIN).unwrap(),
            "foo=1,bar=2,rojo=1,congo=2,baz=3"
        );
    }

    #[test]
    fn empty_headers_and_members() {
        let ts = parse_strs(&[""]).unwrap();
        assert!(ts.is_empty());
        assert_eq!(ts.to_header(PROPAGATE_MIN), None);
        assert_eq!(parse_strs(&[]).unwrap(), TraceState::new());
        assert_eq!(parse_strs(&["foo=1", ""]).unwrap().get("foo"), Some("1"));
        assert_eq!(parse_strs(&["", "foo=1"]).unwrap().get("foo"), Some("1"));
        let ts = parse_strs(&[",, ,\t,foo=1,,  ,bar=2,", " , "]).unwrap();
        assert_eq!(ts.to_header(PROPAGATE_MIN).unwrap(), "foo=1,bar=2");
        // Empty members do not count toward the 32.
        let many_empty = format!("{},{}", ",".repeat(100), numbered(1, 32));
        assert_eq!(parse_strs(&[&many_empty]).unwrap().len(), 32);
    }

    #[test]
    fn ows_handling() {
        for v in [
            "foo=1 \t , \t bar=2, \t baz=3",
            "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
        ] {
            let ts = parse_strs(&[v]).unwrap();
            assert_eq!(pairs(&ts).len(), 3);
            assert_eq!(ts.get("foo"), Some("1"));
            assert_eq!(ts.get("bar"), Some("2"));
            assert_eq!(ts.get("baz"), Some("3"));
        }
        for v in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
            assert_eq!(parse_strs(&[v]).unwrap().get("foo"), Some("1"), "{v:?}");
        }
    }

    #[test]
    fn all_allowed_characters() {
        let key: String = ('a'..='z').chain('0'..='9').chain("_-*/".chars()).collect();
        let value: String = (0x20u8..=0x7e)
            .filter(|&b| b != b',' && b != b'=')
            .map(char::from)
            .collect();
        let ts = parse_strs(&[&format!("{key}={value}")]).unwrap();
        assert_eq!(ts.get(&key), Some(value.as_str()));

        let vendor_key = format!("{key}@a-z0-9_-*/@");
        let ts = parse_strs(&[&format!("{vendor_key}={value}")]).unwrap();
        assert_eq!(ts.get(&vendor_key), Some(value.as_str()));
    }

    #[test]
    fn key_length_limits() {
        let ok = |k: String| parse_strs(&["foo=1", &format!("{k}=1")]).is_ok();
        assert!(ok("z".repeat(256)));
        assert!(!ok("z".repeat(257)));
        // Level 1's tenant (241) and system (14) limits are gone; only the 256 total remains.
        assert!(ok(format!("{}@{}", "t".repeat(241), "v".repeat(14))));
        assert!(ok(format!("{}@v", "t".repeat(242))));
        assert!(ok(format!("t@{}", "v".repeat(15))));
        assert!(ok(format!("{}@{}", "t".repeat(200), "v".repeat(55))));
        assert!(!ok(format!("{}@{}", "t".repeat(200), "v".repeat(56))));
        assert!(ok("t@v".to_string()));
    }

    #[test]
    fn invalid_keys() {
        for v in [
            "foo =1",
            "FOO=1",
            "Foo=1",
            "foo.bar=1",
            "@foo=1,bar=2",
            "@=1",
            "_foo=1",
            "-foo=1",
            "*foo=1",
            "/foo=1",
            "foo@Bar=1",
            "=1",
            "foo",
            "foo,bar=2",
            "fo\u{e9}=1",
        ] {
            assert!(parse_strs(&[v]).is_err(), "{v:?} accepted");
        }
        // Level 2: a key may start with a digit, and `@` may appear anywhere after the first character.
        for v in [
            "1foo=1",
            "1t@v=1",
            "foo@=1,bar=2",
            "foo@@bar=1,bar=2",
            "foo@bar@baz=1,bar=2",
            "t@1v=1",
            "t@_v=1",
            "a@=1",
        ] {
            let ts = parse_strs(&[v]).map_err(|e| format!("{v:?}: {e}")).unwrap();
            assert_eq!(ts.to_header(usize::MAX).as_deref(), Some(v));
        }
    }

    #[test]
    fn invalid_values() {
        for v in [
            "foo=bar=baz",
            "foo=",
            "foo=,bar=3",
            "foo=a\tb",
            "foo=a\u{7f}",
            "foo=caf\u{e9}",
            "foo==",
        ] {
            assert!(parse_strs(&[v]).is_err(), "{v:?} accepted");
        }
        assert!(parse_strs(&[&format!("foo={}", "v".repeat(256))]).is_ok());
        assert!(parse_strs(&[&format!("foo={}", "v".repeat(257))]).is_err());
        // Inner spaces and a leading space are allowed by the grammar; a trailing one is OWS.
        assert_eq!(parse_strs(&["foo=a b"]).unwrap().get("foo"), Some("a b"));
        assert_eq!(parse_strs(&["foo= a"]).unwrap().get("foo"), Some(" a"));
        assert!(!is_valid_value("a "));
        assert!(!is_valid_value(""));
        assert!(is_valid_value(" a"));
    }

    #[test]
    fn non_utf8_bytes() {
        let v: &[u8] = b"foo=1,bar=\xff\xfe";
        assert!(TraceState::parse([v].into_iter()).is_err());
        let v: &[u8] = b"\xc3\xa9=1";
        assert!(TraceState::parse([v].into_iter()).is_err());
        let v: &[u8] = b"\x00";
        assert!(TraceState::parse([v].into_iter()).is_err());
    }

    #[test]
    fn duplicate_keys() {
        // Only one entry per key: the left-most (most recent position) is kept, the list survives.
        let kept = |v: &[&str]| parse_strs(v).unwrap().to_header(usize::MAX).unwrap();
        assert_eq!(kept(&["foo=1,foo=1"]), "foo=1");
        assert_eq!(kept(&["foo=1,foo=2"]), "foo=1");
        assert_eq!(kept(&["foo=1", "foo=1"]), "foo=1");
        assert_eq!(kept(&["foo=1", "bar=2,foo=2"]), "foo=1,bar=2");
        assert_eq!(kept(&["t@v=1,t@w=2,u@v=3"]), "t@v=1,t@w=2,u@v=3");
        // A repeat still has to be valid: an invalid one rejects the list like any invalid member.
        assert!(parse_strs(&["foo=1,foo=a=b"]).is_err());
        assert!(parse_strs(&["foo=1,foo="]).is_err());
        // Repeats do not count toward the 32 members.
        let with_repeats = format!("{},bar01=x,bar02=y", numbered(1, 32));
        assert_eq!(parse_strs(&[&with_repeats]).unwrap().len(), 32);
    }

    #[test]
    fn member_count_limit() {
        let ts = parse_strs(&[
            &numbered(1, 10),
            &numbered(11, 20),
            &numbered(21, 30),
            &numbered(31, 32),
        ])
        .unwrap();
        assert_eq!(ts.len(), 32);
        assert_eq!(ts.get("bar01"), Some("01"));

        assert!(parse_strs(&[
            &numbered(1, 10),
            &numbered(11, 20),
            &numbered(21, 30),
            &numbered(31, 33),
        ])
        .is_err());
        assert!(parse_strs(&[&numbered(1, 33)]).is_err());
    }

    #[test]
    fn huge_input_stops_early() {
        let huge: String = (0..1 << 16).map(|i| format!("k{i}=1,")).collect();
        assert!(parse_strs(&[&huge]).is_err());
        // Repeats of one key are dropped one by one: bounded work, one member left.
        let repeats = "a=1,".repeat(1 << 18);
        assert_eq!(parse_strs(&[&repeats]).unwrap().len(), 1);
        let huge_empty = ",".repeat(1 << 20);
        assert!(parse_strs(&[&huge_empty]).unwrap().is_empty());
    }

    #[test]
    fn upsert_moves_left_and_caps() {
        let mut ts = parse_strs(&["a=1,b=2,c=3"]).unwrap();
        assert!(ts.upsert("b", "9"));
        assert_eq!(ts.to_header(PROPAGATE_MIN).unwrap(), "b=9,a=1,c=3");
        assert!(ts.upsert("new", "x"));
        assert_eq!(ts.to_header(PROPAGATE_MIN).unwrap(), "new=x,b=9,a=1,c=3");

        let mut ts = parse_strs(&[&numbered(1, 32)]).unwrap();
        assert!(ts.upsert("dd", "s:1"));
        assert_eq!(ts.len(), 32);
        assert_eq!(ts.iter().next(), Some(("dd", "s:1")));
        assert_eq!(ts.get("bar32"), None);
        assert_eq!(ts.get("bar31"), Some("31"));
        // Updating an existing key of a full list drops nothing else.
        assert!(ts.upsert("bar05", "55"));
        assert_eq!(ts.len(), 32);
        assert_eq!(ts.get("bar31"), Some("31"));
        assert_eq!(ts.iter().next(), Some(("bar05", "55")));
    }

    #[test]
    fn upsert_rejects_invalid() {
        let mut ts = parse_strs(&["a=1"]).unwrap();
        let before = ts.clone();
        assert!(!ts.upsert("A", "1"));
        assert!(!ts.upsert("a", "x,y"));
        assert!(!ts.upsert("a", "x=y"));
        assert!(!ts.upsert("a", ""));
        assert!(!ts.upsert("a", "trailing "));
        assert!(!ts.upsert("", "1"));
        assert!(!ts.upsert(&"k".repeat(257), "1"));
        assert!(!ts.upsert("a", &"v".repeat(257)));
        assert_eq!(ts, before);
    }

    #[test]
    fn validate_helpers() {
        assert_eq!(validate_key("dd"), Ok(()));
        assert_eq!(validate_key("tenant@sys"), Ok(()));
        assert_eq!(validate_key("Dd"), Err("invalid tracestate key"));
        assert!(validate_key("").is_err());
        assert!(validate_key("a@b@c").is_ok());
        assert!(validate_key("@a").is_err());
        assert_eq!(validate_value("s:1;o:rum"), Ok(()));
        assert_eq!(validate_value("a,b"), Err("invalid tracestate value"));
        assert!(is_valid_key("rojo") && !is_valid_key("ro jo"));
    }

    #[test]
    fn remove_len_is_empty() {
        let mut ts = parse_strs(&["a=1,b=2"]).unwrap();
        ts.remove("a");
        ts.remove("missing");
        assert_eq!(ts.len(), 1);
        assert!(!ts.is_empty());
        ts.remove("b");
        assert!(ts.is_empty());
        assert_eq!(ts.to_header(PROPAGATE_MIN), None);
    }

    #[test]
    fn truncation_drops_large_members_first() {
        // A 200-character member on the left, and enough small members to exceed 512.
        let large = format!("big={}", "x".repeat(196));
        assert_eq!(large.len(), 200);
        let small: Vec<String> = (0..30)
            .map(|i| format!("k{i:02}={}", "y".repeat(10)))
            .collect();
        let mut all = vec![large.clone()];
        all.extend(small.iter().cloned());
        let joined = all.join(",");
        assert!(joined.len() > 512);
        let ts = parse_strs(&[&joined]).unwrap();
        let out = ts.to_header(PROPAGATE_MIN).unwrap();
        // Without the large member the small ones (30 * 14 + 29 = 449) fit.
        assert_eq!(out, small.join(","));
        assert!(out.len() <= PROPAGATE_MIN);
    }

    #[test]
    fn truncation_large_right_most_first_then_from_the_right() {
        let l1 = format!("l1={}", "a".repeat(197));
        let l2 = format!("l2={}", "b".repeat(197));
        let l3 = format!("l3={}", "c".repeat(197));
        let ts = parse_strs(&[&format!("{l1},s1=1,{l2},s2=2,{l3}")]).unwrap();
        // Total 3*200 + 2*4 + 4 commas = 612; dropping l3 alone gives 411.
        assert_eq!(
            ts.to_header(PROPAGATE_MIN).unwrap(),
            format!("{l1},s1=1,{l2},s2=2")
        );
        // With a limit of 300 l3 and l2 go (right-most large first) and then it fits.
        assert_eq!(ts.to_header(300).unwrap(), format!("{l1},s1=1,s2=2"));
        // With 100 every large member goes before any small one.
        assert_eq!(ts.to_header(100).unwrap(), "s1=1,s2=2");
        // Then from the right among small members.
        assert_eq!(ts.to_header(6).unwrap(), "s1=1");
        assert_eq!(ts.to_header(3), None);
        assert_eq!(ts.to_header(0), None);
    }

    #[test]
    fn truncation_without_large_members_drops_from_the_right() {
        let members: Vec<String> = (0..32)
            .map(|i| format!("k{i:02}={}", "v".repeat(20)))
            .collect();
        let ts = parse_strs(&[&members.join(",")]).unwrap();
        // Each member is 24 characters: 21 members and 20 commas = 524 > 512, 20 fit (499).
        let out = ts.to_header(PROPAGATE_MIN).unwrap();
        assert_eq!(out, members[..20].join(","));
        assert!(out.len() <= 512);
        // Exactly at the limit is kept.
        let exact = members[..21].join(",").len();
        assert_eq!(ts.to_header(exact).unwrap(), members[..21].join(","));
        assert_eq!(ts.to_header(exact - 1).unwrap(), members[..20].join(","));
    }

    #[test]
    fn exactly_128_is_not_large() {
        let m128 = format!("m={}", "x".repeat(126));
        assert_eq!(m128.len(), 128);
        let ts = parse_strs(&[&format!("{m128},a=1,b=2")]).unwrap();
        // Too long for 132: 128 is not "larger than 128", so drop from the right instead.
        assert_eq!(ts.to_header(132).unwrap(), format!("{m128},a=1"));
    }

    #[test]
    fn round_trip() {
        let src = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,t@v=a b";
        let ts = parse_strs(&[src]).unwrap();
        assert_eq!(ts.to_header(usize::MAX).unwrap(), src);
        let again = parse_strs(&[&ts.to_header(usize::MAX).unwrap()]).unwrap();
        assert_eq!(again, ts);
    }
}
