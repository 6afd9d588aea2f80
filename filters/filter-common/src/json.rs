//! A strict JSON (RFC 8259) reader for configuration documents: a value tree, built by a small parser
//! instead of serde (which cost each module about a third of its size). Hostile input is bounded: nesting
//! deeper than [`MAX_DEPTH`] and strings longer than the caller's limit are refused, and so are duplicate
//! object keys (which serde_json would silently resolve to the last one). Errors name the path where the
//! parser stopped, as every configuration error does.

use crate::config::ConfigError;

/// The deepest nesting of arrays and objects accepted: the filters' configurations use fewer than ten
/// levels; the limit keeps the recursive parser (and the tree's drop) far from the stack's end.
pub const MAX_DEPTH: usize = 64;

/// A JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// What the value is, for error messages ("expected a string, got a number").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

/// A number as written (already checked against the grammar), read exactly on demand: configuration
/// numbers are counts and sizes, so no precision is lost to a float on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

/// A number read as a non-negative whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whole {
    Exact(u64),
    /// Whole and non-negative, but above `u64::MAX`.
    TooLarge,
    /// Negative or with a fraction.
    Not,
}

impl Number {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The exact value when it is a non-negative whole number however written: `5`, `5.0` and `0.5e1`
    /// alike (Istio's Structs turn every number into a double, so `5` may arrive as `5.0`).
    pub fn whole(&self) -> Whole {
        let (negative, mantissa, exponent) = self.parts();
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = int.bytes().chain(frac.bytes());
        // The decimal point sits after `point` of the significant digits.
        let mut point = int.len() as i64 + exponent;
        let mut significant: Vec<u8> = Vec::new();
        for d in digits {
            if significant.is_empty() && d == b'0' {
                point -= 1;
            } else {
                significant.push(d - b'0');
            }
        }
        while significant.last() == Some(&0) {
            significant.pop();
        }
        if significant.is_empty() {
            return Whole::Exact(0);
        }
        let len = significant.len() as i64;
        if negative || point < len {
            return Whole::Not;
        }
        if point > 20 {
            return Whole::TooLarge;
        }
        let mut value: u64 = 0;
        for i in 0..point {
            let d = significant.get(i as usize).copied().unwrap_or(0);
            match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
            {
                Some(v) => value = v,
                None => return Whole::TooLarge,
            }
        }
        Whole::Exact(value)
    }

    /// The value as a float: correctly rounded for up to 19 significant digits and a decimal exponent
    /// within ±22 (every value a configuration holds: percentages, ratios, multipliers); beyond that
    /// within a few units in the last place. Hand-written, so the modules do not carry the standard
    /// library's float parser.
    pub fn to_f64(&self) -> f64 {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let (negative, mantissa, exponent) = self.parts();
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut m: u64 = 0;
        let mut taken = 0;
        let mut exp = exponent;
        for (i, d) in int.bytes().chain(frac.bytes()).enumerate() {
            let in_fraction = i >= int.len();
            if taken < 19 {
                if m != 0 || d != b'0' {
                    taken += 1;
                }
                m = m * 10 + u64::from(d - b'0');
                if in_fraction {
                    exp -= 1;
                }
            } else if !in_fraction {
                // Digits beyond 19 are dropped: those of the whole part still count as powers of ten.
                exp += 1;
            }
        }
        let value = if m == 0 {
            0.0
        } else if m < 1 << 53 && (-22..=22).contains(&exp) {
            // Both operands exact, so one rounding: the correctly rounded result.
            let p = POW10
                .get(exp.unsigned_abs() as usize)
                .copied()
                .unwrap_or(1.0);
            if exp < 0 {
                m as f64 / p
            } else {
                m as f64 * p
            }
        } else {
            let e = exp.clamp(-400, 400) as i32;
            if e < 0 {
                m as f64 / 10f64.powi(-e)
            } else {
                m as f64 * 10f64.powi(e)
            }
        };
        if negative {
            -value
        } else {
            value
        }
    }

    /// (negative, digits with an optional fraction, exponent) — the exponent saturated far beyond any
    /// value that could matter.
    fn parts(&self) -> (bool, &str, i64) {
        let text = self.0.as_str();
        let (negative, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => (-1, d),
                    None => (1, e.strip_prefix('+').unwrap_or(e)),
                };
                let magnitude = digits.bytes().fold(0i64, |acc, d| {
                    (acc * 10 + i64::from(d - b'0')).min(1_000_000_000)
                });
                (m, sign * magnitude)
            }
            None => (rest, 0),
        };
        (negative, mantissa, exponent)
    }
}

/// Parses one JSON document (RFC 8259: no comments, no trailing commas, no byte-order mark, only space,
/// tab, line feed and carriage return as whitespace). A string or object key longer than `max_string`
/// bytes is refused, naming its path.
pub fn parse(bytes: &[u8], max_string: usize) -> Result<Value, ConfigError> {
    let mut p = Parser {
        bytes,
        pos: 0,
        path: Vec::new(),
        depth: 0,
        max_string,
    };
    let value = p.value()?;
    p.skip_whitespace();
    if p.pos < bytes.len() {
        return Err(p.error("unexpected characters after the document"));
    }
    Ok(value)
}

enum Segment {
    Key(String),
    Index(usize),
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Where the parser is, for errors.
    path: Vec<Segment>,
    depth: usize,
    max_string: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> ConfigError {
        let mut field = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(k) => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(k);
                }
                Segment::Index(i) => {
                    field.push('[');
                    field.push_str(&i.to_string());
                    field.push(']');
                }
            }
        }
        if field.is_empty() {
            field.push_str("(root)");
        }
        ConfigError::new(field, reason)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// An error for the byte at the current position (or the end).
    fn unexpected(&self, wanted: &str) -> ConfigError {
        match self.peek() {
            None => self.error(format!("the document ends where {wanted} was expected")),
            Some(b) if b.is_ascii_graphic() => self.error(format!(
                "expected {wanted}, found '{}' at byte {}",
                char::from(b),
                self.pos
            )),
            Some(b) => self.error(format!(
                "expected {wanted}, found byte 0x{b:02x} at byte {}",
                self.pos
            )),
        }
    }

    fn value(&mut self) -> Result<Value, ConfigError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => {
                let s = self.string()?;
                if s.len() > self.max_string {
                    return Err(self.error(format!(
                        "is {} bytes long; at most {} are allowed",
                        s.len(),
                        self.max_string
                    )));
                }
                Ok(Value::String(s))
            }
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.unexpected("a value")),
        }
    }

    fn nested(
        &mut self,
        parse: fn(&mut Self) -> Result<Value, ConfigError>,
    ) -> Result<Value, ConfigError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("nests deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, ConfigError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unexpected("a value"))
        }
    }

    fn object(&mut self) -> Result<Value, ConfigError> {
        self.pos += 1; // '{'
        let mut members: Vec<(String, Value)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(if self.peek() == Some(b'}') {
                    self.error("a trailing comma is not allowed")
                } else {
                    self.unexpected("a field name in double quotes")
                });
            }
            let key = self.string()?;
            if key.len() > self.max_string {
                let mut shown = key.len().min(32);
                while !key.is_char_boundary(shown) {
                    shown -= 1;
                }
                self.path
                    .push(Segment::Key(format!("{}…", key.get(..shown).unwrap_or(""))));
                let e = self.error(format!(
                    "this field name is {} bytes long; at most {} are allowed",
                    key.len(),
                    self.max_string
                ));
                return Err(e);
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.unexpected("':'"));
            }
            self.pos += 1;
            self.path.push(Segment::Key(key));
            let value = self.value()?;
            let Some(Segment::Key(key)) = self.path.pop() else {
                return Err(self.error("internal error: path out of step"));
            };
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
        if let Some(key) = duplicate_key(&members) {
            self.path.push(Segment::Key(key.to_string()));
            let e = self.error("this field appears twice");
            return Err(e);
        }
        Ok(Value::Object(members))
    }

    fn array(&mut self) -> Result<Value, ConfigError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b']') {
                return Err(self.error("a trailing comma is not allowed"));
            }
            self.path.push(Segment::Index(items.len()));
            let item = self.value()?;
            self.path.pop();
            items.push(item);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, ConfigError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("a number must not have leading zeros"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit after '.'"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            self.digits();
        }
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        // Only ASCII digits, signs, '.' and 'e' were consumed.
        let text = String::from_utf8_lossy(text).into_owned();
        Ok(Value::Number(Number(text)))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, ConfigError> {
        self.pos += 1; // '"'
        let mut out: Vec<u8> = Vec::new();
        loop {
            let run_start = self.pos;
            while matches!(self.peek(), Some(b) if b != b'"' && b != b'\\' && b >= 0x20) {
                self.pos += 1;
            }
            out.extend_from_slice(self.bytes.get(run_start..self.pos).unwrap_or_default());
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = self.escape()?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                }
                None => return Err(self.error("the document ends inside a string")),
                Some(b) => {
                    return Err(self.error(format!(
                        "control character 0x{b:02x} must be escaped in a string (byte {})",
                        self.pos
                    )))
                }
            }
        }
        // Escapes only ever add whole UTF-8 sequences, so checking everything at once is exact.
        String::from_utf8(out).map_err(|_| self.error("a string is not valid UTF-8"))
    }

    /// The character of an escape, after the backslash.
    fn escape(&mut self) -> Result<char, ConfigError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4()?;
                return match first {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("a lone UTF-16 surrogate in a \\u escape"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error("a lone UTF-16 surrogate in a \\u escape"));
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).ok_or_else(|| self.error("an invalid \\u escape"))
                    }
                    0xDC00..=0xDFFF => Err(self.error("a lone UTF-16 surrogate in a \\u escape")),
                    _ => char::from_u32(first).ok_or_else(|| self.error("an invalid \\u escape")),
                };
            }
            _ => return Err(self.unexpected("an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, ConfigError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.unexpected("four hex digits after \\u")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }
}

/// A key that appears twice in an object, if any (the least such key): sorted, so a hostile object with
/// many keys costs n log n, not n². A heapsort of our own: core's sort adds about 3 KB to a module.
fn duplicate_key(members: &[(String, Value)]) -> Option<&str> {
    if members.len() < 2 {
        return None;
    }
    let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    heapsort(&mut keys);
    keys.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    })
}

/// Sorts `v` in place, ascending, in n log n steps whatever the input.
fn heapsort(v: &mut [&str]) {
    // Moves v[root] down the max-heap held in v[..end].
    fn sift_down(v: &mut [&str], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v.get(child) < v.get(child + 1) {
                child += 1;
            }
            if v.get(root) >= v.get(child) {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    for root in (0..v.len() / 2).rev() {
        sift_down(v, root, v.len());
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        parse(text.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &[u8]) -> ConfigError {
        match parse(text, 1 << 20) {
            Ok(v) => panic!("{:?} was accepted as {v:?}", String::from_utf8_lossy(text)),
            Err(e) => e,
        }
    }

    fn s(text: &str) -> String {
        match ok(text) {
            Value::String(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn n(text: &str) -> Number {
        match ok(text) {
            Value::Number(n) => n,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_of_every_kind() {
        assert_eq!(ok("null"), Value::Null);
        assert_eq!(ok(" true "), Value::Bool(true));
        assert_eq!(ok("\t\r\nfalse\n"), Value::Bool(false));
        assert_eq!(ok("[]"), Value::Array(vec![]));
        assert_eq!(ok("{}"), Value::Object(vec![]));
        assert_eq!(
            ok(r#"{"b": [1, "x", null], "a": {}}"#),
            Value::Object(vec![
                (
                    "b".into(),
                    Value::Array(vec![
                        Value::Number(Number("1".into())),
                        Value::String("x".into()),
                        Value::Null
                    ])
                ),
                ("a".into(), Value::Object(vec![])),
            ]),
            "members keep document order"
        );
    }

    #[test]
    fn string_escapes_and_unicode() {
        assert_eq!(s(r#""a\"b\\c\/d""#), "a\"b\\c/d");
        assert_eq!(s(r#""\b\f\n\r\t""#), "\u{8}\u{c}\n\r\t");
        assert_eq!(s(r#""\u0041\u00e9\u20AC""#), "Aé€");
        assert_eq!(s(r#""\ud83d\ude00""#), "😀", "a surrogate pair");
        assert_eq!(s("\"é😀\""), "é😀", "raw UTF-8");
        assert_eq!(s(r#""\u0000""#), "\0");
        for bad in [
            r#""\ud83d""#,
            r#""\ud83dx""#,
            r#""\ud83d\u0041""#,
            r#""\ude00""#,
            r#""\x""#,
            r#""\u12g4""#,
            r#""\u12""#,
            "\"a\nb\"",
            "\"tab\there\"",
            "\"open",
            "'single'",
        ] {
            err(bad.as_bytes());
        }
        err(b"\"\xff\"");
        err(b"\"\xc3\"");
        err(b"\"\xed\xa0\x80\"");
    }

    #[test]
    fn number_grammar() {
        for good in [
            "0", "-0", "1", "-12", "1.5", "0.25", "1e3", "1E+3", "2.5e-3", "-0.0e0",
        ] {
            ok(good);
        }
        for bad in [
            "01",
            "-01",
            "00",
            "+1",
            "1.",
            ".5",
            "1e",
            "1e+",
            "-",
            "--1",
            "0x10",
            "1.e3",
            "NaN",
            "Infinity",
            "-Infinity",
            "1_000",
        ] {
            err(bad.as_bytes());
        }
    }

    #[test]
    fn whole_numbers_are_exact() {
        assert_eq!(n("5").whole(), Whole::Exact(5));
        assert_eq!(n("5.0").whole(), Whole::Exact(5));
        assert_eq!(n("0.5e1").whole(), Whole::Exact(5));
        assert_eq!(n("1e3").whole(), Whole::Exact(1000));
        assert_eq!(n("-0").whole(), Whole::Exact(0));
        assert_eq!(n("0e999999999999999999999").whole(), Whole::Exact(0));
        assert_eq!(
            n("18446744073709551615").whole(),
            Whole::Exact(u64::MAX),
            "the largest u64, which a double could not hold"
        );
        assert_eq!(
            n("9007199254740993").whole(),
            Whole::Exact(9_007_199_254_740_993)
        );
        assert_eq!(n("18446744073709551616").whole(), Whole::TooLarge);
        assert_eq!(n("1e20").whole(), Whole::TooLarge);
        assert_eq!(n("1e999999999999999999").whole(), Whole::TooLarge);
        assert_eq!(n("5.5").whole(), Whole::Not);
        assert_eq!(n("-1").whole(), Whole::Not);
        assert_eq!(n("1e-1").whole(), Whole::Not);
        assert_eq!(n("1.000000000000000000001").whole(), Whole::Not);
    }

    #[test]
    fn floats_are_read_as_written() {
        assert_eq!(n("0.1").to_f64(), 0.1);
        assert_eq!(n("0.25").to_f64(), 0.25);
        assert_eq!(n("50").to_f64(), 50.0);
        assert_eq!(n("-1.5").to_f64(), -1.5);
        assert_eq!(n("2.5e-3").to_f64(), 0.0025);
        assert_eq!(n("1e22").to_f64(), 1e22);
        assert_eq!(n("0.000").to_f64(), 0.0);
        assert_eq!(
            n("123456789012345678901234567890").to_f64(),
            1.2345678901234568e29
        );
        assert!((n("1.00000000000000000000001").to_f64() - 1.0).abs() < 1e-15);
        assert_eq!(n("1e400").to_f64(), f64::INFINITY);
        assert_eq!(n("1e-400").to_f64(), 0.0);
    }

    #[test]
    fn structure_errors() {
        for bad in [
            "",
            "   ",
            "[1,]",
            r#"{"a": 1,}"#,
            "[1 2]",
            r#"{"a" 1}"#,
            r#"{a: 1}"#,
            r#"{"a": 1 "b": 2}"#,
            "[",
            "{",
            r#"{"a":"#,
            "// comment\n{}",
            "{} /* comment */",
            "{} x",
            "[] []",
            "tru",
            "nul",
            "\u{feff}{}",
            "\u{a0}{}",
        ] {
            err(bad.as_bytes());
        }
    }

    #[test]
    fn errors_name_where_the_parser_stopped() {
        assert_eq!(err(b"{").field, "(root)");
        assert_eq!(err(b"{} x").field, "(root)");
        let e = err(br#"{"rules": [{"name": "a"}, {"name": }]}"#);
        assert_eq!(e.field, "rules[1].name");
        let e = err(br#"{"a": {"b": 1, "b": 2}}"#);
        assert_eq!(e.field, "a.b");
        assert!(e.reason.contains("twice"), "{}", e.reason);
        let e = err(br#"{"a": [1,]}"#);
        assert!(e.reason.contains("trailing comma"), "{}", e.reason);
    }

    #[test]
    fn heapsort_sorts() {
        let mut seed = 7u64;
        for n in 0..40 {
            let owned: Vec<String> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!("k{}", (seed >> 33) % 13)
                })
                .collect();
            let mut v: Vec<&str> = owned.iter().map(String::as_str).collect();
            let mut expected = v.clone();
            expected.sort();
            heapsort(&mut v);
            assert_eq!(v, expected);
        }
    }

    #[test]
    fn the_least_duplicate_key_is_named() {
        assert_eq!(err(br#"{"b": 1, "a": 2, "b": 3, "a": 4}"#).field, "a");
    }

    #[test]
    fn duplicate_keys_are_found_in_large_objects() {
        let mut doc = String::from("{");
        for i in 0..5000 {
            doc.push_str(&format!("\"k{i}\": {i}, "));
        }
        doc.push_str("\"k4321\": 0}");
        assert_eq!(err(doc.as_bytes()).field, "k4321");
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        ok(&deep(MAX_DEPTH));
        let e = err(deep(MAX_DEPTH + 1).as_bytes());
        assert!(e.reason.contains("deeper"), "{}", e.reason);
        // Far deeper than any stack could recurse: refused, not a crash.
        err(deep(1_000_000).as_bytes());
        let objects = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        err(objects.as_bytes());
    }

    #[test]
    fn long_strings_are_refused_by_path() {
        let long = "x".repeat(11);
        let e = parse(format!(r#"{{"a": [1, "{long}"]}}"#).as_bytes(), 10).unwrap_err();
        assert_eq!(e.field, "a[1]");
        assert!(e.reason.contains("11 bytes"), "{}", e.reason);
        assert!(parse(br#"{"a": "xxxxxxxxxx"}"#, 10).is_ok());
        let e = parse(format!(r#"{{"{long}": 1}}"#).as_bytes(), 10).unwrap_err();
        assert_eq!(e.field, "xxxxxxxxxxx…");
    }
}
