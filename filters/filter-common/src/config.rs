//! Filter configuration is JSON (what Istio's `pluginConfig` becomes). Errors name the field, so one log
//! line tells an operator what to fix.

use crate::json::{self, Value, Whole};

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

/// Semantic checks the reading cannot express (ranges, cross-field rules).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Parses the plugin configuration. Absent or blank configuration gives the defaults, because Istio sends
/// none when `pluginConfig` is empty.
pub fn parse<T>(raw: Option<&[u8]>) -> Result<T, ConfigError>
where
    T: FromJson + Default + Validate,
{
    let bytes = match raw {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok(T::default()),
    };
    let value: T = from_slice(bytes)?;
    value.validate()?;
    Ok(value)
}

/// Reads one JSON document as `T`, within the documented limits (a document larger than
/// `limits::MAX_CONFIG_BYTES`, or a string in it longer than `limits::MAX_STRING_LEN`, is refused by
/// field), without `parse`'s defaults and checks: for a part of a configuration in tests and fuzzing.
pub fn from_slice<T: FromJson>(bytes: &[u8]) -> Result<T, ConfigError> {
    use crate::limits::{human, MAX_CONFIG_BYTES, MAX_STRING_LEN};
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
    let doc = json::parse(bytes, MAX_STRING_LEN)?;
    T::from_json(&doc, &Path::ROOT)
}

/// Where a value sits in the document: `breakers[0].window`, `(root)` for the document itself. A chain
/// of borrowed segments, turned into text only for an error.
#[derive(Clone, Copy)]
pub struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    pub const ROOT: Path<'static> = Path {
        parent: None,
        segment: Segment::Root,
    };

    /// The path of member `key` of the object here.
    pub fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }

    /// The path of item `index` of the list here.
    pub fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// The error `reason` for the value here.
    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.to_string(), reason)
    }

    /// The error for a value of the wrong kind, such as "expected a string, got a number".
    pub fn expected(&self, what: &str, got: &Value) -> ConfigError {
        self.error(format!("expected {what}, got {}", got.kind()))
    }

    fn write_segments(&self, f: &mut std::fmt::Formatter<'_>) -> Result<bool, std::fmt::Error> {
        let written = match self.parent {
            Some(parent) => parent.write_segments(f)?,
            None => false,
        };
        match self.segment {
            Segment::Root => Ok(written),
            Segment::Key(k) if written => write!(f, ".{k}").map(|_| true),
            Segment::Key(k) => f.write_str(k).map(|_| true),
            Segment::Index(i) => write!(f, "[{i}]").map(|_| true),
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.write_segments(f)? {
            f.write_str("(root)")?;
        }
        Ok(())
    }
}

/// A configuration type read from a JSON value; errors name the value's path.
pub trait FromJson: Sized {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError>;
}

/// Reads `v` as `T` (for the arms of an object's `match`: `"size" => w.size = read(v, at)?`).
pub fn read<T: FromJson>(v: &Value, at: &Path<'_>) -> Result<T, ConfigError> {
    T::from_json(v, at)
}

/// The members of an object, in document order (keys are unique: the parser refuses duplicates).
pub fn object<'v>(v: &'v Value, at: &Path<'_>) -> Result<&'v [(String, Value)], ConfigError> {
    match v {
        Value::Object(members) => Ok(members),
        other => Err(at.expected("an object", other)),
    }
}

/// The items of a list.
pub fn list<'v>(v: &'v Value, at: &Path<'_>) -> Result<&'v [Value], ConfigError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(at.expected("a list", other)),
    }
}

/// A string value.
pub fn string<'v>(v: &'v Value, at: &Path<'_>) -> Result<&'v str, ConfigError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(at.expected("a string", other)),
    }
}

/// Reads the members of the object `$v` (at path `$at`), one `match` arm per field: in each arm
/// `$value` is the member's value and `$at` its path. A member no arm names is refused as an unknown
/// field at its path, and a value that is not an object as "expected an object".
///
/// ```ignore
/// members!(v, at, |value| {
///     "size" => w.size = read(value, at)?,
///     "maxSharedMemory" => w.max_shared_memory = byte_size(value, at)?,
/// });
/// ```
#[macro_export]
macro_rules! members {
    ($v:expr, $at:ident, |$value:ident| { $($field:pat => $read:expr),+ $(,)? }) => {
        for (key, $value) in $crate::config::object($v, $at)? {
            let $at = &$at.key(key);
            match key.as_str() {
                $($field => $read,)+
                _ => return Err($crate::config::unknown($at)),
            }
        }
    };
}

/// The error for a member no field of the object has (`at` is the member's path).
pub fn unknown(at: &Path<'_>) -> ConfigError {
    at.error("unknown field")
}

/// The error for a required member that is absent (`at` is the object's path).
pub fn missing(at: &Path<'_>, name: &str) -> ConfigError {
    at.error(format!("missing field `{name}`"))
}

/// One of a fixed set of names, each standing for a value.
pub fn one_of<T: Copy>(v: &Value, at: &Path<'_>, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    let name = string(v, at)?;
    if let Some((_, value)) = choices.iter().find(|(n, _)| *n == name) {
        return Ok(*value);
    }
    let known: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    Err(at.error(format!(
        "expected one of {}, got {}",
        crate::text::join(&known, ", "),
        quoted(name)
    )))
}

/// A non-negative whole number. Istio turns `pluginConfig` into a protobuf Struct whose numbers are
/// doubles, so `5` may arrive as `5.0`: any exact whole number is accepted however written.
pub fn whole(v: &Value, at: &Path<'_>) -> Result<u64, ConfigError> {
    let Value::Number(n) = v else {
        return Err(at.expected("a non-negative whole number", v));
    };
    match n.whole() {
        Whole::Exact(x) => Ok(x),
        Whole::TooLarge => Err(at.error(format!("{} is too large", n.as_str()))),
        Whole::Not => Err(at.error(format!(
            "expected a non-negative whole number, got {}",
            n.as_str()
        ))),
    }
}

impl FromJson for u64 {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        whole(v, at)
    }
}

/// A whole number (see [`whole`]) that fits `T`.
fn whole_as<T: TryFrom<u64>>(v: &Value, at: &Path<'_>) -> Result<T, ConfigError> {
    let x = whole(v, at)?;
    T::try_from(x).map_err(|_| at.error(format!("{x} is too large")))
}

impl FromJson for u32 {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        whole_as(v, at)
    }
}

impl FromJson for usize {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        whole_as(v, at)
    }
}

impl FromJson for f64 {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Number(n) => Ok(n.to_f64()),
            other => Err(at.expected("a number", other)),
        }
    }
}

impl FromJson for bool {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Bool(b) => Ok(*b),
            other => Err(at.expected("true or false", other)),
        }
    }
}

impl FromJson for String {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        string(v, at).map(str::to_string)
    }
}

/// `null` is the same as absent.
impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Null => Ok(None),
            other => T::from_json(other, at).map(Some),
        }
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        T::from_json(v, at).map(Box::new)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        list(v, at)?
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_json(item, &at.index(i)))
            .collect()
    }
}

impl<T: FromJson> FromJson for std::collections::BTreeMap<String, T> {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        // Inserted one by one: collecting would bring a second sort routine into the module.
        let mut map = std::collections::BTreeMap::new();
        for (k, item) in object(v, at)? {
            map.insert(k.clone(), T::from_json(item, &at.key(k))?);
        }
        Ok(map)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Sample {
        max_items: u32,
        inner: Inner,
    }

    #[derive(Debug, Default, PartialEq)]
    struct Inner {
        name: String,
    }

    impl FromJson for Sample {
        fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
            let mut s = Sample::default();
            members!(v, at, |value| {
                "maxItems" => s.max_items = read(value, at)?,
                "inner" => s.inner = read(value, at)?,
            });
            Ok(s)
        }
    }

    impl FromJson for Inner {
        fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
            let mut s = Inner::default();
            members!(v, at, |value| {
                "name" => s.name = read(value, at)?,
            });
            Ok(s)
        }
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
        assert_eq!(e.reason, "expected a non-negative whole number, got 5.5");
        let e = parse::<Sample>(Some(br#"{"maxItems": -1}"#)).unwrap_err();
        assert_eq!(e.reason, "expected a non-negative whole number, got -1");
        let e = parse::<Sample>(Some(br#"{"maxItems": 5000000000}"#)).unwrap_err();
        assert_eq!(e.reason, "5000000000 is too large");
        let e = parse::<Sample>(Some(br#"{"maxItems": "5"}"#)).unwrap_err();
        assert_eq!(
            e.reason,
            "expected a non-negative whole number, got a string"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Sample>(Some(br#"{"inner": {"nmae": "x"}}"#)).unwrap_err();
        assert_eq!(e.field, "inner.nmae");
        assert!(e.reason.contains("unknown field"), "{}", e.reason);
        assert!(!e.reason.contains("line"), "{}", e.reason);
        let e = parse::<Sample>(Some(br#"{"inner": {"name": 3}}"#)).unwrap_err();
        assert_eq!(e.field, "inner.name");
        assert_eq!(e.reason, "expected a string, got a number");
        let e = parse::<Sample>(Some(br#"{"inner": [{}]}"#)).unwrap_err();
        assert_eq!(e.field, "inner");
        let e = parse::<Sample>(Some(br#"{"inner": {}, "inner": {}}"#)).unwrap_err();
        assert_eq!(e.field, "inner");
        let e = parse::<Sample>(Some(b"[]")).unwrap_err();
        assert_eq!(e.field, "(root)");
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
