//! RFC 9110 §5 field syntax for header names and values that come from configuration and are written
//! into responses. A value with CR or LF would end the header line early and start a header the operator
//! never wrote (an HTTP/1.1 client sees it; an HTTP/2 client gets a protocol error instead of the
//! response), so such configurations are refused at load, naming the field.
//!
//! Hand-written: the `http` crate's `HeaderName`/`HeaderValue` would add its tables and error types to
//! every module for two loops over bytes.

use crate::config::{quoted, ConfigError};
use crate::limits::MAX_HEADER_NAME_LEN;

/// `tchar` (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `token` (RFC 9110 §5.6.2): one or more `tchar`.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// What [`check_name`] requires, for configuration errors.
pub const NAME_RULE: &str = "must be a lower-case token (RFC 9110 §5.1: letters, digits and \
     !#$%&'*+-.^_`|~) of at most 256 characters";

/// Why `value` is no valid field value for a configured header, or `None` when it is one (RFC 9110
/// §5.5: visible characters, spaces and tabs inside, none at either end; bytes of non-ASCII
/// characters are `obs-text`, which Envoy passes).
pub fn value_problem(value: &[u8]) -> Option<&'static str> {
    let mut problem = None;
    for &b in value {
        if matches!(b, b'\r' | b'\n' | b'\0') {
            return Some("must not contain CR, LF or NUL: they would split the response");
        }
        if b != b'\t' && (b < 0x20 || b == 0x7f) {
            problem = Some("must not contain control characters other than a horizontal tab");
        }
    }
    let ows = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if problem.is_none() && (ows(value.first()) || ows(value.last())) {
        problem = Some("must not start or end with a space or tab");
    }
    problem
}

/// A configured header name: a lower-case token (HTTP/2 and HTTP/3 forbid upper case in names; `:`
/// never appears, so no pseudo-header), at most [`MAX_HEADER_NAME_LEN`] long. `field` names the map
/// it is a key of; the reason quotes the name, escaped, so the log line stays one line.
pub fn check_name(name: &str, field: impl Into<String>) -> Result<(), ConfigError> {
    let ok = is_token(name.as_bytes())
        && name.len() <= MAX_HEADER_NAME_LEN
        && !name.bytes().any(|b| b.is_ascii_uppercase());
    if ok {
        return Ok(());
    }
    Err(ConfigError::new(
        field,
        format!("header name {} {NAME_RULE}", quoted(name)),
    ))
}

/// A configured header value ([`value_problem`]); `field` names the value itself.
pub fn check_value(value: &str, field: impl Into<String>) -> Result<(), ConfigError> {
    match value_problem(value.as_bytes()) {
        None => Ok(()),
        Some(reason) => Err(ConfigError::new(field, reason)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_tokens() {
        for good in ["x-a", "content-type", "x.b~c!#$%&'*+^_`|", "a", "x1"] {
            assert!(check_name(good, "h").is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_HEADER_NAME_LEN + 1);
        for bad in [
            "",
            "X-A",
            "x a",
            ":status",
            "x:a",
            "x\r\nset-cookie",
            "x\0",
            "x\"",
            "x(a)",
            "x/a",
            "é",
            &long,
        ] {
            let e = check_name(bad, "rules[0].response.headers").unwrap_err();
            assert_eq!(e.field, "rules[0].response.headers");
            assert!(
                !e.to_string().contains(['\r', '\n', '\0']),
                "one line, control characters escaped: {e}"
            );
        }
        assert!(check_name(&"a".repeat(MAX_HEADER_NAME_LEN), "h").is_ok());
    }

    #[test]
    fn every_name_the_older_rule_accepted_is_a_token() {
        // The breaker's `statusHeader` and trace-context's `responseHeader` are checked with
        // `matching::is_header_name`: stricter than a token, so they cannot split a response either.
        for b in 0..=255u8 {
            let name = [b'x', b];
            if let Ok(s) = std::str::from_utf8(&name) {
                if crate::matching::is_header_name(s) {
                    assert!(check_name(s, "h").is_ok(), "{s}");
                }
            }
        }
    }

    #[test]
    fn values_without_line_breaks_controls_or_outer_whitespace() {
        for good in [
            "",
            "b",
            "text/html; charset=utf-8",
            "a\tb",
            "a b",
            "\"quoted\"",
            "café",
            "~!@#$%^&*()",
        ] {
            assert_eq!(value_problem(good.as_bytes()), None, "{good:?}");
        }
        let split = value_problem(b"b\r\nset-cookie: session=attacker").unwrap();
        assert!(split.contains("split the response"), "{split}");
        for bad in [
            "a\rb", "a\nb", "a\0b", "\r", "a\x01", "a\x1bb", "a\x7fb", " a", "a ", "\ta", "a\t",
        ] {
            assert!(value_problem(bad.as_bytes()).is_some(), "{bad:?}");
        }
        let e = check_value("a\nb", "rules[0].response.headers.x-a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: field `rules[0].response.headers.x-a`: must not contain CR, \
             LF or NUL: they would split the response"
        );
    }
}
