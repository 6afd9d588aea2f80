//! Datadog's `dd` member of W3C `tracestate`: how Datadog's tracers carry what `x-datadog-*` headers
//! carry beyond the ids when they propagate W3C only (ddtrace's `tracecontext` style, or an OpenTelemetry
//! hop forwarding `tracestate`). The rules are Datadog's own (dd-trace-py `_TraceContext`, dd-trace-rs
//! `tracecontext.rs`):
//!
//! - the value is `key:value` items separated by `;`: `s` the sampling priority, `o` the origin, `p` the
//!   last Datadog parent span id (16 hex), `t.NAME` the propagated tag `_dd.p.NAME`;
//! - `=` cannot appear in a `tracestate` value, so origin and tag values write it as `~` (and read `~` as
//!   `=`); other characters a value cannot hold (`,`, `;`, `~`, controls, non-ASCII) are written `_`;
//! - on reading, `s` stands only when it agrees with the `traceparent` sampled flag (> 0 with the flag,
//!   <= 0 without); otherwise, or when it is missing, the flag decides: priority 1 with the decision maker
//!   `_dd.p.dm=-0` (default mechanism), or 0 with no decision maker.
//!
//! `_dd.p.tid` is neither read from nor written to the member: the `traceparent` carries the whole trace id.

use filter_common::hex::push_lower_hex;
use filter_common::text::push_decimal;

/// The tag carrying the high 64 bits of a 128-bit trace id (Datadog writes it, both encodings share it).
pub const TID_TAG: &str = "_dd.p.tid";

pub const KEY: &str = "dd";

/// The longest `tracestate` value (W3C): the member is cut, whole items only, to fit.
const MAX_VALUE_LEN: usize = 256;
const TAG_PREFIX: &str = "_dd.p.";
const MEMBER_TAG_PREFIX: &str = "t.";
/// `_dd.p.dm`: the sampling decision maker.
pub const DECISION_MAKER_TAG: &str = "_dd.p.dm";
/// The decision maker Datadog's tracers record when the `traceparent` flag overrules `s`.
const DEFAULT_MECHANISM: &str = "-0";

/// What a `dd` member says, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DdMember {
    /// `s`.
    pub priority: Option<i64>,
    /// `o`, with `~` read as `=`.
    pub origin: Option<String>,
    /// `p`: the last Datadog span of the trace.
    pub last_parent: Option<u64>,
    /// `t.NAME:VALUE` as `(_dd.p.NAME, VALUE)`, in order, values with `~` read as `=`; never `_dd.p.tid`.
    pub tags: Vec<(String, String)>,
}

impl DdMember {
    /// Reads a member value. Items that do not parse (no `:`, a bad `s` or `p`, a tag name
    /// `x-datadog-tags` cannot carry) are skipped, as dd-trace-rs does, so one bad item does not cost the
    /// others.
    pub fn parse(value: &str) -> DdMember {
        let mut member = DdMember::default();
        for item in value.split(';') {
            let Some((key, val)) = item.split_once(':') else {
                continue;
            };
            match key {
                "s" => member.priority = parse_priority(val).or(member.priority),
                "o" if !val.is_empty() => member.origin = Some(decode(val)),
                "p" => {
                    member.last_parent = filter_common::hex::parse_lower_hex_u64(val.as_bytes(), 16)
                        .filter(|&v| v != 0)
                }
                _ => {
                    let Some(name) = key.strip_prefix(MEMBER_TAG_PREFIX) else {
                        continue;
                    };
                    let mut tag = String::with_capacity(TAG_PREFIX.len() + name.len());
                    tag.push_str(TAG_PREFIX);
                    tag.push_str(name);
                    if name.is_empty()
                        || val.is_empty()
                        || tag == TID_TAG
                        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
                        || member.tags.iter().any(|(k, _)| *k == tag)
                    {
                        continue;
                    }
                    member.tags.push((tag, decode(val)));
                }
            }
        }
        member
    }

    /// The sampling priority for a context whose `traceparent` says `sampled`, by Datadog's rules (see
    /// the module docs), and whether `s` was overruled (the decision maker is then the default one).
    pub fn priority_for(&self, sampled: bool) -> (i64, bool) {
        match self.priority {
            Some(s) if (s > 0) == sampled => (s, false),
            _ => (i64::from(sampled), true),
        }
    }

    /// The propagated tags for a context whose `traceparent` says `sampled`: the member's, with the
    /// decision maker set to the default (sampled) or removed (not sampled) when `s` is overruled.
    pub fn into_tags(self, sampled: bool) -> Vec<(String, String)> {
        let overruled = self.priority_for(sampled).1;
        let mut tags = self.tags;
        if overruled {
            tags.retain(|(k, _)| k != DECISION_MAKER_TAG);
            if sampled {
                tags.insert(
                    0,
                    (
                        DECISION_MAKER_TAG.to_string(),
                        DEFAULT_MECHANISM.to_string(),
                    ),
                );
            }
        }
        tags
    }

    /// Renders the member value: `s`, `o`, `p`, then the tags (`_dd.p.*` only, never `_dd.p.tid`), each
    /// encoded by Datadog's rules. Items that would take the value past 256 characters are left out, tags
    /// first, as Datadog's tracers do. `None` when there is nothing to say.
    ///
    /// Built by hand rather than with `format!`: core's formatting machinery for these few items cost
    /// about 3 KB of module.
    pub fn render(&self) -> Option<String> {
        let mut out = String::new();
        let mut item = String::new();
        if let Some(s) = self.priority {
            item.push_str("s:");
            if s < 0 {
                item.push('-');
            }
            push_decimal(&mut item, s.unsigned_abs());
            push_item(&mut out, &item);
        }
        if let Some(origin) = &self.origin {
            item.clear();
            item.push_str("o:");
            encode(&mut item, origin, is_value_char);
            push_item(&mut out, &item);
        }
        if let Some(p) = self.last_parent {
            item.clear();
            item.push_str("p:");
            push_lower_hex(&mut item, u128::from(p), 16);
            push_item(&mut out, &item);
        }
        for (key, value) in &self.tags {
            let Some(name) = key.strip_prefix(TAG_PREFIX) else {
                continue;
            };
            if key == TID_TAG || name.is_empty() {
                continue;
            }
            item.clear();
            item.push_str(MEMBER_TAG_PREFIX);
            encode(&mut item, name, is_key_char);
            item.push(':');
            encode(&mut item, value, is_value_char);
            push_item(&mut out, &item);
        }
        // A `tracestate` value may not end in a space.
        if out.ends_with(' ') {
            out.pop();
            out.push('_');
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Appends `item` (`;`-separated) unless the value would pass 256 characters.
fn push_item(out: &mut String, item: &str) {
    let extra = item.len() + usize::from(!out.is_empty());
    if out.len() + extra <= MAX_VALUE_LEN {
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(item);
    }
}

/// A decimal integer with an optional leading `-` (how Datadog writes priorities).
pub fn parse_priority(s: &str) -> Option<i64> {
    let s = s.as_bytes();
    match s.strip_prefix(b"-") {
        Some(digits) => i64::try_from(crate::context::parse_dec_u64(digits)?)
            .ok()
            .map(|v| -v),
        None => i64::try_from(crate::context::parse_dec_u64(s)?).ok(),
    }
}

/// `~` read as `=`.
fn decode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b == b'~' { '=' } else { char::from(b) })
        .collect()
}

/// A tag name character: printable ASCII other than space, `,` and `=` (dd-trace-rs).
fn is_key_char(b: u8) -> bool {
    matches!(b, b'!'..=b'+' | b'-'..=b'<' | b'>'..=b'~')
}

/// An origin or tag value character: printable ASCII other than `,`, `;` and `~` (`=` is written `~`).
fn is_value_char(b: u8) -> bool {
    matches!(b, b' '..=b'+' | b'-'..=b':' | b'<'..=b'}')
}

/// Appends `text` with every character `allowed` refuses as one `_`, and an allowed `=` as `~`.
fn encode(out: &mut String, text: &str, allowed: fn(u8) -> bool) {
    for b in text.bytes() {
        match b {
            // A multi-byte character becomes one `_`: its continuation bytes add nothing.
            0x80..=0xbf => {}
            b'=' if allowed(b) => out.push('~'),
            b if allowed(b) => out.push(char::from(b)),
            _ => out.push('_'),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn issue16_item3_reads_the_issue_example() {
        let m = DdMember::parse("s:2;o:synthetics;t.dm:-4");
        assert_eq!(m.priority, Some(2));
        assert_eq!(m.origin.as_deref(), Some("synthetics"));
        assert_eq!(m.last_parent, None);
        assert_eq!(m.tags, tags(&[("_dd.p.dm", "-4")]));
        assert_eq!(m.priority_for(true), (2, false));
        assert_eq!(m.clone().into_tags(true), tags(&[("_dd.p.dm", "-4")]));
    }

    /// dd-trace-py `_get_sampling_priority` and dd-trace-rs `define_sampling_priority`.
    #[test]
    fn s_stands_only_when_it_agrees_with_the_sampled_flag() {
        let with = |s: &str| DdMember::parse(&format!("s:{s};t.dm:-3"));
        // Agreeing: kept, and so is the decision maker.
        assert_eq!(with("2").priority_for(true), (2, false));
        assert_eq!(with("1").priority_for(true), (1, false));
        assert_eq!(with("-1").priority_for(false), (-1, false));
        assert_eq!(with("0").priority_for(false), (0, false));
        assert_eq!(with("2").into_tags(true), tags(&[("_dd.p.dm", "-3")]));
        // Overruled by the flag: 1 with dm -0, or 0 without dm.
        assert_eq!(with("-1").priority_for(true), (1, true));
        assert_eq!(with("0").priority_for(true), (1, true));
        assert_eq!(with("2").priority_for(false), (0, true));
        assert_eq!(with("-1").into_tags(true), tags(&[("_dd.p.dm", "-0")]));
        assert_eq!(with("2").into_tags(false), tags(&[]));
        // Missing: the flag decides, dm added when sampled.
        let none = DdMember::parse("o:rum;t.usr.id:x");
        assert_eq!(none.priority_for(true), (1, true));
        assert_eq!(
            none.clone().into_tags(true),
            tags(&[("_dd.p.dm", "-0"), ("_dd.p.usr.id", "x")])
        );
        assert_eq!(none.priority_for(false), (0, true));
        assert_eq!(
            none.clone().into_tags(false),
            tags(&[("_dd.p.usr.id", "x")])
        );
    }

    #[test]
    fn tilde_is_equals_and_bad_items_are_skipped() {
        let m = DdMember::parse(
            "s:x;o:a~b;p:00f067aa0ba902b7;t.usr.id:baz64~~;t.tid:1111111111111111;junk;t.:v;t.k:;t.dm:-4;t.dm:-5",
        );
        assert_eq!(m.priority, None);
        assert_eq!(m.origin.as_deref(), Some("a=b"));
        assert_eq!(m.last_parent, Some(0x00f067aa0ba902b7));
        assert_eq!(
            m.tags,
            tags(&[("_dd.p.usr.id", "baz64=="), ("_dd.p.dm", "-4")])
        );
        // A value with `:` keeps everything after the first one.
        assert_eq!(
            DdMember::parse("t.url:http://x").tags,
            tags(&[("_dd.p.url", "http://x")])
        );
        assert_eq!(DdMember::parse("p:0000000000000000").last_parent, None);
        assert_eq!(DdMember::parse("p:F067AA0BA902B7E1").last_parent, None);
        assert_eq!(DdMember::parse(""), DdMember::default());
        // An empty origin is no origin (Datadog never sends `x-datadog-origin` empty).
        assert_eq!(DdMember::parse("s:1;o:").origin, None);
        // A tag name with a space (allowed in a tracestate value) is not a Datadog tag key.
        assert_eq!(
            DdMember::parse("s:1;t.a b:1;t.dm:-4").tags,
            tags(&[("_dd.p.dm", "-4")])
        );
    }

    #[test]
    fn renders_in_datadogs_order_and_encoding() {
        let m = DdMember {
            priority: Some(2),
            origin: Some("synthetics".into()),
            last_parent: Some(0xf067aa0ba902b7e1),
            tags: tags(&[
                ("_dd.p.dm", "-4"),
                ("_dd.p.tid", "6a0b1c2d00000000"),
                ("_dd.p.usr.id", "baz64=="),
                ("other", "x"),
            ]),
        };
        assert_eq!(
            m.render().unwrap(),
            "s:2;o:synthetics;p:f067aa0ba902b7e1;t.dm:-4;t.usr.id:baz64~~"
        );
        let odd = DdMember {
            priority: Some(-1),
            origin: Some("a=b;c,d~é".into()),
            last_parent: None,
            tags: tags(&[("_dd.p.a b=c", "x y ")]),
        };
        assert_eq!(odd.render().unwrap(), "s:-1;o:a~b_c_d__;t.a_b_c:x y_");
        assert_eq!(DdMember::default().render(), None);
        // Round trip through the reader.
        assert_eq!(DdMember::parse(&m.render().unwrap()).tags, {
            let mut t = m.tags.clone();
            t.retain(|(k, _)| k.starts_with(TAG_PREFIX) && k != TID_TAG);
            t
        });
        // Never past 256 characters: tags that do not fit are left out, whole.
        let many = DdMember {
            priority: Some(1),
            tags: (0..40)
                .map(|i| (format!("_dd.p.k{i:02}"), "v".repeat(10)))
                .collect(),
            ..DdMember::default()
        };
        let v = many.render().unwrap();
        assert!(v.len() <= MAX_VALUE_LEN, "{}", v.len());
        assert!(v.split(';').all(|item| item == "s:1" || item.len() == 16));
        assert!(crate::tracestate::is_valid_value(&v));
        // The separators count: 256 exactly is kept, one more leaves the last tag out.
        for (b_len, expected_len) in [(121, 256), (122, 130)] {
            let two = DdMember {
                priority: Some(1),
                tags: tags(&[
                    ("_dd.p.a", &"v".repeat(122)),
                    ("_dd.p.b", &"w".repeat(b_len)),
                ]),
                ..DdMember::default()
            };
            let v = two.render().unwrap();
            assert_eq!(v.len(), expected_len, "{v}");
            assert!(v.starts_with("s:1;t.a:vvv"), "{v}");
        }
    }

    #[test]
    fn priorities() {
        assert_eq!(parse_priority("2"), Some(2));
        assert_eq!(parse_priority("-1"), Some(-1));
        assert_eq!(parse_priority("-0"), Some(0));
        for bad in ["", "+1", "1.0", "--1", "x", "9223372036854775808"] {
            assert_eq!(parse_priority(bad), None, "{bad}");
        }
    }
}
