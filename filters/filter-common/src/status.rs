//! HTTP status sets in configuration: `"503"`, `"500-599"`, or a list of them.

use crate::config::{list, ConfigError, FromJson, Path};
use crate::json::Value;

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

impl FromJson for StatusSet {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let one = std::slice::from_ref(v);
        let items = match v {
            Value::String(_) => one,
            Value::Array(_) => list(v, at)?,
            other => return Err(at.expected("a status such as \"503\" or a list of them", other)),
        };
        if items.is_empty() {
            return Err(at.error("must name at least one code or range"));
        }
        items
            .iter()
            .map(|item| {
                let text = match item {
                    Value::String(t) => t,
                    other => {
                        return Err(at.expected("a status such as \"503\" or a list of them", other))
                    }
                };
                parse_range(text).ok_or_else(|| {
                    at.error(format!(
                        "bad status {}: expected a code like \"503\" or a range like \"500-599\" within 100-599",
                        crate::config::quoted(text)
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
