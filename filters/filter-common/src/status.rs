//! HTTP status sets in configuration: `"503"`, `"500-599"`, or a list of them.

use serde::{Deserialize, Deserializer};

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

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let texts = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if texts.is_empty() {
            return Err(serde::de::Error::custom(
                "must name at least one code or range",
            ));
        }
        texts
            .iter()
            .map(|t| {
                parse_range(t).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "bad status {t:?}: expected a code like \"503\" or a range like \"500-599\" within 100-599"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(StatusSet)
    }
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
    fn codes_ranges_and_lists() {
        let s: StatusSet = serde_json::from_str(r#"["502", "504-599"]"#).unwrap();
        assert!(s.contains(502) && s.contains(599) && !s.contains(503));
        let s: StatusSet = serde_json::from_str(r#""500-599""#).unwrap();
        assert!(s.contains(500));
        for bad in [r#""600""#, r#""599-500""#, r#"[]"#, r#""5xx""#, "503"] {
            assert!(serde_json::from_str::<StatusSet>(bad).is_err(), "{bad}");
        }
    }
}
