//! Filter configuration is JSON (what Istio's `pluginConfig` becomes). Errors name the field, so one log
//! line tells an operator what to fix.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A configuration that could not be used: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path such as `baggage.maxMembers` or `breakers[0].window`; `(root)` for the document.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.reason
        )
    }
}

/// `Ok` when `ok`, else the error for `field`.
pub fn check(ok: bool, field: impl Into<String>, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, reason))
    }
}

/// Names of configured items (breakers, rules): `[A-Za-z0-9_-]`, 1 to 64 characters (they become metric
/// tags and header values), and unique. `field` is the list's name, such as `rules`.
pub fn check_names<'a>(
    names: impl Iterator<Item = &'a str>,
    field: &str,
) -> Result<(), ConfigError> {
    let mut seen: Vec<&str> = Vec::new();
    for (i, name) in names.enumerate() {
        check(
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'),
            format!("{field}[{i}].name"),
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        )?;
        check(
            !seen.contains(&name),
            format!("{field}[{i}].name"),
            "is used by an earlier entry",
        )?;
        seen.push(name);
    }
    Ok(())
}

/// Semantic checks that serde cannot express (ranges, cross-field rules).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Parses the plugin configuration. Absent or blank configuration gives the defaults, because Istio sends
/// none when `pluginConfig` is empty.
pub fn parse<T>(raw: Option<&[u8]>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Default + Validate,
{
    let bytes = match raw {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok(T::default()),
    };
    check_sizes(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "(root)".to_string()
        } else {
            path
        };
        ConfigError::new(field, strip_location(&e.inner().to_string()))
    })?;
    de.end()
        .map_err(|e| ConfigError::new("(root)", strip_location(&e.to_string())))?;
    value.validate()?;
    Ok(value)
}

/// Refuses a document or a string in it larger than the documented limits, naming the string's field,
/// before anything is built from it.
fn check_sizes(bytes: &[u8]) -> Result<(), ConfigError> {
    use crate::limits::{find_long_string, human, MAX_CONFIG_BYTES, MAX_STRING_LEN};
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            "(root)",
            format!(
                "the configuration is {}; at most {} is allowed",
                human(bytes.len() as u64),
                human(MAX_CONFIG_BYTES as u64)
            ),
        ));
    }
    if bytes.len() <= MAX_STRING_LEN {
        return Ok(());
    }
    // Only a document longer than the string limit can hold a string over it.
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(doc) => match find_long_string(&doc, MAX_STRING_LEN) {
            Some((path, len)) => Err(ConfigError::new(
                path.trim_start_matches('.'),
                format!("is {len} bytes long; at most {MAX_STRING_LEN} are allowed"),
            )),
            None => Ok(()),
        },
        // The typed parse that follows reports the syntax error with its field.
        Err(_) => Ok(()),
    }
}

/// serde_json appends " at line L column C"; the field path already says where.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

/// Istio turns `pluginConfig` into a protobuf Struct whose numbers are doubles, so `5` may arrive as
/// `5.0`. These accept an integer or a float with no fraction.
pub fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = lenient_u64(d)?;
    u32::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is too large")))
}

pub fn lenient_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = lenient_u64(d)?;
    usize::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is too large")))
}

pub fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(u64),
        Float(f64),
    }
    match Num::deserialize(d) {
        Ok(Num::Int(v)) => Ok(v),
        Ok(Num::Float(f)) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(f as u64),
        Ok(Num::Float(f)) => Err(serde::de::Error::custom(format!(
            "expected a non-negative whole number, got {f}"
        ))),
        Err(_) => Err(serde::de::Error::custom(
            "expected a non-negative whole number",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    struct Sample {
        #[serde(deserialize_with = "lenient_u32")]
        max_items: u32,
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    struct Inner {
        name: String,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.max_items > 100 {
                return Err(ConfigError::new("maxItems", "must be at most 100"));
            }
            Ok(())
        }
    }

    #[test]
    fn absent_or_blank_config_gives_defaults() {
        assert_eq!(parse::<Sample>(None).unwrap(), Sample::default());
        assert_eq!(parse::<Sample>(Some(b"  \n")).unwrap(), Sample::default());
    }

    #[test]
    fn numbers_from_istio_structs_are_accepted() {
        assert_eq!(
            parse::<Sample>(Some(br#"{"maxItems": 5.0}"#))
                .unwrap()
                .max_items,
            5
        );
        let e = parse::<Sample>(Some(br#"{"maxItems": 5.5}"#)).unwrap_err();
        assert_eq!(e.field, "maxItems");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Sample>(Some(br#"{"inner": {"nmae": "x"}}"#)).unwrap_err();
        assert_eq!(e.field, "inner.nmae");
        assert!(e.reason.contains("unknown field"), "{}", e.reason);
        assert!(!e.reason.contains("line"), "{}", e.reason);
        let e = parse::<Sample>(Some(br#"{"inner": {"name": 3}}"#)).unwrap_err();
        assert_eq!(e.field, "inner.name");
        let e = parse::<Sample>(Some(br#"{"maxItems": 500}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: field `maxItems`: must be at most 100"
        );
        let e = parse::<Sample>(Some(b"{")).unwrap_err();
        assert_eq!(e.field, "(root)");
        let e = parse::<Sample>(Some(b"{} x")).unwrap_err();
        assert_eq!(e.field, "(root)");
    }

    #[test]
    fn oversized_documents_and_strings_are_refused_by_field() {
        let long = "x".repeat(crate::limits::MAX_STRING_LEN + 1);
        let doc = format!(r#"{{"inner": {{"name": "{long}"}}}}"#);
        let e = parse::<Sample>(Some(doc.as_bytes())).unwrap_err();
        assert_eq!(e.field, "inner.name");
        assert!(e.reason.contains("at most 65536"), "{}", e.reason);
        let ok = "x".repeat(crate::limits::MAX_STRING_LEN);
        let doc = format!(r#"{{"inner": {{"name": "{ok}"}}}}"#);
        assert_eq!(
            parse::<Sample>(Some(doc.as_bytes())).unwrap().inner.name,
            ok
        );
        let huge = format!(
            r#"{{"inner": {{"name": "{}"}}}}"#,
            "x".repeat(crate::limits::MAX_CONFIG_BYTES)
        );
        let e = parse::<Sample>(Some(huge.as_bytes())).unwrap_err();
        assert_eq!(e.field, "(root)");
    }
}
