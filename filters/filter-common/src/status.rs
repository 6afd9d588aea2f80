//! HTTP status sets in configuration: `"503"`, `"500-599"`, or a list of them.

use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange(pub u16, pub u16);

/// One or more status ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<StatusRange>);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| (r.0..=r.1).contains(&status))
    }
}

/// A status such as `"503"`, a range such as `"500-599"`, or a non-empty list of them.
impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Statuses;

        impl<'de> Visitor<'de> for Statuses {
            type Value = StatusSet;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status such as \"503\" or a list of them")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StatusSet, E> {
                range(text).map(|r| StatusSet(vec![r]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut ranges = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    ranges.push(range(&text)?);
                }
                if ranges.is_empty() {
                    return Err(A::Error::custom("must name at least one code or range"));
                }
                Ok(StatusSet(ranges))
            }
        }

        d.deserialize_any(Statuses)
    }
}

fn range<E: serde::de::Error>(text: &str) -> Result<StatusRange, E> {
    parse_range(text).ok_or_else(|| {
        E::custom(format!(
            "bad status {}: expected a code like \"503\" or a range like \"500-599\" within 100-599",
            crate::config::quoted(text)
        ))
    })
}

fn parse_range(text: &str) -> Option<StatusRange> {
    let (lo, hi) = match text.trim().split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let v = text.trim().parse().ok()?;
            (v, v)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some(StatusRange(lo, hi))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_status_of_the_wrong_type_says_what_is_expected() {
        let e = serde_json::from_str::<StatusSet>("true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a status such as \"503\""), "{e}");
    }

    #[test]
    fn codes_ranges_and_lists() {
        use crate::config::from_slice;
        let s: StatusSet = from_slice(br#"["502", "504-599"]"#).unwrap();
        assert!(s.contains(502) && s.contains(599) && !s.contains(503));
        let s: StatusSet = from_slice(br#""500-599""#).unwrap();
        assert!(s.contains(500));
        for bad in [
            r#""600""#,
            r#""599-500""#,
            r#"[]"#,
            r#""5xx""#,
            "503",
            "[503]",
        ] {
            assert!(from_slice::<StatusSet>(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
