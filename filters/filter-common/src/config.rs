//! Filter configuration is JSON (what Istio's `pluginConfig` becomes), read with serde: each filter's
//! types derive `Deserialize`, and what serde cannot express (ranges, names, cross-field rules) is one
//! `Validate` step after. Errors name the field (serde_path_to_error), so one log line tells an operator
//! what to fix. The `deserialize_with` helpers here are the ones every filter shares: whole numbers as
//! Istio delivers them, and maps that refuse a duplicated key.

use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

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

/// `text` in double quotes for a log line, with quotes, backslashes and control characters escaped: what
/// `{:?}` gives for ordinary text, without the Unicode tables `{:?}` brings into a module (about 10 KB).
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    crate::text::push_escaped(&mut out, text, |out, c| {
        let escape = c.is_control();
        if escape {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
        escape
    });
    out.push('"');
    out
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

/// Semantic checks the reading cannot express (ranges, names, cross-field rules).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// The largest configuration document.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Parses and validates the plugin configuration. Absent or blank configuration gives the defaults,
/// because Istio sends none when `pluginConfig` is empty.
pub fn parse<T>(raw: Option<&[u8]>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Default + Validate,
{
    let bytes = match raw {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok(T::default()),
    };
    let value: T = from_slice(bytes)?;
    value.validate()?;
    Ok(value)
}

/// Reads one JSON document as `T`, without `parse`'s defaults and checks (for a part of a configuration
/// in tests and fuzzing). A document over [`MAX_CONFIG_BYTES`] is refused unread; serde_json refuses
/// nesting deeper than 128, numbers out of range and lone surrogates, and the derived types refuse
/// unknown and duplicated fields.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            ROOT,
            format!(
                "the configuration is {}; at most {} is allowed",
                crate::text::human(bytes.len() as u64),
                crate::text::human(MAX_CONFIG_BYTES as u64)
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path();
        // `?` marks a place serde_path_to_error cannot name, such as the root object read through
        // `from_object_only!`.
        let unnamed =
            |s: &serde_path_to_error::Segment| matches!(s, serde_path_to_error::Segment::Unknown);
        let field = match path.to_string() {
            // An unknown field named "" at the top is the document's error too.
            named if path.iter().any(|s| !unnamed(s)) && !named.is_empty() => named,
            _ => ROOT.to_string(),
        };
        ConfigError::new(one_line(&field), reason(e.inner()))
    })?;
    de.end().map_err(|e| ConfigError::new(ROOT, reason(&e)))?;
    Ok(value)
}

/// The longest message (field or reason) a deserialisation error keeps.
const MAX_MESSAGE_CHARS: usize = 1024;

/// The field of an error about the document as a whole.
pub const ROOT: &str = "(root)";

/// serde_json's message. A value of the wrong kind is placed by its field, so its line and column are
/// dropped; a syntax error keeps them, as they say where the document breaks.
fn reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.is_data() {
        let position = format!(" at line {} column {}", e.line(), e.column());
        if let Some(message) = text.strip_suffix(&position) {
            return one_line(message);
        }
    }
    one_line(&text)
}

/// `text` with control characters escaped and cut after [`MAX_MESSAGE_CHARS`]: serde's messages quote
/// the value as written, and a value with a line break must not split the log line, nor a 1 MiB one
/// fill it.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS + 8));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A non-negative whole number that fits `T` (`#[serde(deserialize_with = "whole")]`). Istio turns
/// `pluginConfig` into a protobuf Struct whose numbers are doubles, so `5` may arrive as `5.0`: an
/// integral float is accepted, `5.5` is not.
pub fn whole<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    Whole::<T>::deserialize(d).map(|w| w.0)
}

/// [`whole`] for a field that is `None` when absent (with `#[serde(default)]`).
pub fn whole_some<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    whole(d).map(Some)
}

/// A list of [`whole`] numbers.
pub fn whole_list<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Whole<T>>::deserialize(d).map(|items| items.into_iter().map(|w| w.0).collect())
}

/// [`whole_list`] for a field that is `None` when absent (with `#[serde(default)]`).
pub fn whole_list_some<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    whole_list(d).map(Some)
}

/// A whole number as [`whole`] reads it, for lists and other helpers.
pub struct Whole<T>(pub T);

impl<'de, T: TryFrom<u64>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WholeVisitor(PhantomData))
    }
}

/// Reads [`Whole`]; `byte_size` uses it for its numbers.
pub struct WholeVisitor<T>(pub PhantomData<T>);

impl<T: TryFrom<u64>> Visitor<'_> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative whole number")
    }

    fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<Self::Value, E> {
        T::try_from(x)
            .map(Whole)
            .map_err(|_| E::custom(format!("{x} is too large")))
    }

    fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<Self::Value, E> {
        match u64::try_from(x) {
            Ok(x) => self.visit_u64(x),
            Err(_) => Err(E::custom(format!(
                "expected a non-negative whole number, got {x}"
            ))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Self::Value, E> {
        // 2^64 is exact as a double; below it an integral double converts to u64 exactly.
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        if x.fract() != 0.0 || x < 0.0 {
            Err(E::custom(format!(
                "expected a non-negative whole number, got {x}"
            )))
        } else if x >= TWO_POW_64 {
            Err(E::custom(format!("{x} is too large")))
        } else {
            self.visit_u64(x as u64)
        }
    }
}

/// Implements `Deserialize` for structs derived with `#[serde(remote = "Self")]`, reading each from a
/// JSON object only: serde's derive also takes a struct's fields from a list in declaration order
/// (`"window": ["time", "10s"]`), which no one writes on purpose and which would hide a mistake.
#[macro_export]
macro_rules! from_object_only {
    ($($t:ty),+ $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Object;
                impl<'de> ::serde::de::Visitor<'de> for Object {
                    type Value = $t;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(self, map: A) -> Result<$t, A::Error> {
                        <$t>::deserialize(::serde::de::value::MapAccessDeserializer::new(map))
                    }
                }
                d.deserialize_map(Object)
            }
        }
    )+};
}

/// Implements `Deserialize` for unit-variant enums derived with `#[serde(remote = "Self")]`, reading each
/// from a name only: serde's derive also takes `{"dryRun": null}` for `"dryRun"`.
#[macro_export]
macro_rules! from_name_only {
    ($($t:ty),+ $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Name;
                impl<'de> ::serde::de::Visitor<'de> for Name {
                    type Value = $t;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str("a name")
                    }
                    fn visit_str<E: ::serde::de::Error>(self, name: &str) -> Result<$t, E> {
                        <$t>::deserialize(::serde::de::value::StrDeserializer::<E>::new(name))
                    }
                }
                d.deserialize_str(Name)
            }
        }
    )+};
}

/// A JSON object as a map (`#[serde(deserialize_with = "unique_map")]`) that refuses a key given twice:
/// serde_json would keep the last one silently, and a pasted block overriding an earlier one is a
/// mistake to report, as the derived structs report a duplicated field.
pub fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct UniqueMap<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!("duplicate key {}", quoted(&key))));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    d.deserialize_map(UniqueMap(PhantomData))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(
        remote = "Self",
        default,
        rename_all = "camelCase",
        deny_unknown_fields
    )]
    struct Sample {
        #[serde(deserialize_with = "whole")]
        max_items: u32,
        inner: Inner,
        #[serde(deserialize_with = "unique_map")]
        labels: BTreeMap<String, String>,
        ratio: f64,
        kind: Kind,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(remote = "Self", default, deny_unknown_fields)]
    struct Inner {
        name: String,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(remote = "Self", rename_all = "camelCase")]
    enum Kind {
        #[default]
        Plain,
        DryRun,
    }

    crate::from_object_only!(Sample, Inner);
    crate::from_name_only!(Kind);

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            check(self.max_items <= 100, "maxItems", "must be at most 100")
        }
    }

    fn err(json: &str) -> ConfigError {
        parse::<Sample>(Some(json.as_bytes())).unwrap_err()
    }

    #[test]
    fn whole_numbers_and_objects_as_istio_sends_them() {
        let mut de = serde_json::Deserializer::from_str("5.0");
        assert_eq!(whole_some::<_, u32>(&mut de).unwrap(), Some(5));
        let mut de = serde_json::Deserializer::from_str("[1, 2.0]");
        assert_eq!(
            whole_list_some::<_, u32>(&mut de).unwrap(),
            Some(vec![1, 2])
        );
        let mut de = serde_json::Deserializer::from_str("[1]");
        let e = unique_map::<_, u32>(&mut de).unwrap_err().to_string();
        assert!(e.contains("expected an object"), "{e}");
    }

    #[test]
    fn names_are_short_tokens_and_unique() {
        let names = |list: &[&str]| check_names(list.iter().copied(), "rules");
        assert!(names(&["a", "payments-v2", "A_b-9", &"x".repeat(64)]).is_ok());
        assert!(names(&[]).is_ok());
        for (bad, at) in [
            (vec!["ok", ""], "rules[1].name"),
            (vec![&"x".repeat(65)[..]], "rules[0].name"),
            (vec!["a b"], "rules[0].name"),
            (vec!["a.b"], "rules[0].name"),
            (vec!["é"], "rules[0].name"),
            (vec!["a", "b", "a"], "rules[2].name"),
        ] {
            assert_eq!(names(&bad).unwrap_err().field, at, "{bad:?}");
        }
    }

    #[test]
    fn quoting_matches_debug_for_ordinary_text() {
        for text in [
            "",
            "5xx",
            "a \"b\" \\ c",
            "tab\there\nline",
            "bell\u{7}",
            "é😀",
        ] {
            assert_eq!(quoted(text), format!("{text:?}"));
        }
    }

    #[test]
    fn absent_or_blank_config_gives_defaults() {
        assert_eq!(parse::<Sample>(None).unwrap(), Sample::default());
        assert_eq!(parse::<Sample>(Some(b"")).unwrap(), Sample::default());
        assert_eq!(parse::<Sample>(Some(b"  \n")).unwrap(), Sample::default());
        assert_eq!(parse::<Sample>(Some(b"{}")).unwrap(), Sample::default());
    }

    #[test]
    fn numbers_from_istio_structs_are_accepted() {
        let max_items = |json: &str| parse::<Sample>(Some(json.as_bytes())).map(|s| s.max_items);
        assert_eq!(max_items(r#"{"maxItems": 5.0}"#).unwrap(), 5);
        assert_eq!(max_items(r#"{"maxItems": 0.5e1}"#).unwrap(), 5);
        assert_eq!(max_items(r#"{"maxItems": -0.0}"#).unwrap(), 0);
        let e = err(r#"{"maxItems": 5.5}"#);
        assert_eq!(e.field, "maxItems");
        assert_eq!(e.reason, "expected a non-negative whole number, got 5.5");
        let e = err(r#"{"maxItems": -1}"#);
        assert_eq!(e.reason, "expected a non-negative whole number, got -1");
        assert_eq!(
            err(r#"{"maxItems": 5000000000}"#).reason,
            "5000000000 is too large"
        );
        assert_eq!(
            err(r#"{"maxItems": 5e9}"#).reason,
            "5000000000 is too large"
        );
        let e = err(r#"{"maxItems": 18446744073709551616}"#);
        assert!(e.reason.ends_with("is too large"), "{}", e.reason);
        let e = err(r#"{"maxItems": "5"}"#);
        assert_eq!(e.field, "maxItems");
        assert!(
            e.reason.contains("expected a non-negative whole number"),
            "{}",
            e.reason
        );
        assert_eq!(err(r#"{"maxItems": 1e400}"#).field, "maxItems");
        assert_eq!(err(r#"{"ratio": 1e400}"#).field, "ratio");
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(r#"{"inner": {"nmae": "x"}}"#);
        assert!(e.field.starts_with("inner"), "{}", e.field);
        assert!(e.reason.contains("unknown field `nmae`"), "{}", e.reason);
        assert!(!e.reason.contains("line"), "{}", e.reason);
        let e = err(r#"{"inner": {"name": 3}}"#);
        assert_eq!(e.field, "inner.name");
        assert!(e.reason.contains("expected a string"), "{}", e.reason);
        // Only objects and names: serde's derive alone would read a list or a one-member object.
        let e = err(r#"{"inner": ["x"]}"#);
        assert_eq!(e.field, "inner");
        assert!(e.reason.contains("expected an object"), "{}", e.reason);
        assert_eq!(err(r#"{"kind": {"dryRun": null}}"#).field, "kind");
        let ok = parse::<Sample>(Some(br#"{"kind": "dryRun"}"#)).unwrap();
        assert_eq!(ok.kind, Kind::DryRun);
        let e = err(r#"{"kind": "dry"}"#);
        assert!(e.reason.contains("unknown variant `dry`"), "{}", e.reason);
        let e = err(r#"{"inner": {}, "inner": {}}"#);
        assert!(e.reason.contains("duplicate field `inner`"), "{}", e.reason);
        assert_eq!(err("[]").field, "(root)");
        // Found by fuzz/config_circuit_breaker: a member named "" must still name a field.
        let e = err(r#"{"": 1}"#);
        assert_eq!(e.field, "(root)");
        assert!(e.reason.contains("unknown field ``"), "{e}");
        assert_eq!(
            err(r#"{"maxItems": 500}"#).to_string(),
            "invalid configuration: field `maxItems`: must be at most 100"
        );
        assert_eq!(err("{").field, "(root)");
        let e = err("{} x");
        assert_eq!(e.field, "(root)");
        assert!(e.reason.contains("trailing characters"), "{}", e.reason);
    }

    #[test]
    fn a_map_refuses_a_duplicated_key() {
        let ok = parse::<Sample>(Some(br#"{"labels": {"a": "1", "b": "2"}}"#)).unwrap();
        assert_eq!(ok.labels.len(), 2);
        let e = err(r#"{"labels": {"a": "1", "a": "2"}}"#);
        assert_eq!(e.field, "labels");
        assert_eq!(e.reason, "duplicate key \"a\"");
    }

    #[test]
    fn hostile_documents_are_refused_with_one_line() {
        let deep = format!(
            "{{\"inner\": {}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(err(&deep).field, "inner");
        let deep_any = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(err(&deep_any).field, "(root)");
        for lone in [r#"\ud800"#, r#"\udc00"#, r#"\ud800\u0041"#] {
            let e = err(&format!(r#"{{"inner": {{"name": "{lone}"}}}}"#));
            assert_eq!(e.field, "inner.name", "{lone}: {e}");
        }
        let e = parse::<Sample>(Some(b"{\"inner\": {\"name\": \"\xff\"}}")).unwrap_err();
        assert_eq!(e.field, "inner.name", "{e}");
        let huge = format!(
            r#"{{"inner": {{"name": "{}"}}}}"#,
            "x".repeat(MAX_CONFIG_BYTES)
        );
        let e = err(&huge);
        assert_eq!(e.field, "(root)");
        assert!(e.reason.contains("at most 1.0 MiB"), "{}", e.reason);
        // Exactly MAX_CONFIG_BYTES is read.
        let mut at_limit = br#"{"a": 1}"#.to_vec();
        at_limit.resize(MAX_CONFIG_BYTES, b' ');
        assert!(from_slice::<serde_json::Value>(&at_limit).is_ok());
        at_limit.push(b' ');
        assert!(from_slice::<serde_json::Value>(&at_limit).is_err());
        assert!(!e.to_string().contains('\n'));
        let long = "k".repeat(100_000);
        let e = err(&format!(r#"{{"kind": "{long}"}}"#));
        assert_eq!(e.field, "kind");
        assert!(
            e.reason.len() < 1100 && e.reason.ends_with("..."),
            "{}",
            e.reason.len()
        );
        let e = err("{\"a\\nb\": 1}");
        assert!(e.reason.contains("unknown field `a\\u{a}b`"), "{e}");
        assert_eq!(e.field, "a\\u{a}b");
    }
}
