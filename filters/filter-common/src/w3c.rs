//! The W3C Trace Context pieces two filters need: trace-context reads and writes `traceparent`, and the
//! fallback, whose replies skip trace-context, checks the `traceparent` forwarded upstream and adds the
//! same trace response headers. Defined once so the two cannot drift apart.

use crate::config::ConfigError;
use crate::headers::trim_ows;
use crate::hex::parse_lower_hex_u128;
use crate::hex::parse_lower_hex_u64;
use crate::matching::is_header_name;

pub const TRACEPARENT: &str = "traceparent";
/// The W3C Trace Context Level 2 response header: `00-<trace id>-<span id>-<flags>`.
pub const TRACERESPONSE: &str = "traceresponse";
/// The response header given the trace id, unless configured otherwise.
pub const DEFAULT_RESPONSE_HEADER: &str = "x-trace-id";
/// The filter state trace-context leaves the trace id in (and the fallback reads), unless configured
/// otherwise.
pub const DEFAULT_FILTER_STATE_NAME: &str = "trace_id";

/// `VV-<32 hex>-<16 hex>-FF`: the whole of a version-00 header and the prefix every later version keeps.
const V00_LEN: usize = 55;

/// A valid `traceparent`'s fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub flags: u8,
}

impl TraceParent {
    /// Version 00: the only version this side writes.
    pub fn render(&self) -> String {
        // Always ASCII: one validated copy into a string of the exact size.
        std::str::from_utf8(&self.render_bytes())
            .unwrap_or_default()
            .to_string()
    }

    /// `render` into a fixed buffer, for callers that compare before they allocate.
    pub fn render_bytes(&self) -> [u8; V00_LEN] {
        use crate::hex::{fill_hex_u64, hex_u128, hex_u64};
        let mut out = [b'-'; V00_LEN];
        let (version, rest) = out.split_at_mut(2);
        version.copy_from_slice(b"00");
        if let Some(trace) = rest.get_mut(1..33) {
            trace.copy_from_slice(&hex_u128(self.trace_id));
        }
        if let Some(span) = rest.get_mut(34..50) {
            span.copy_from_slice(&hex_u64(self.span_id));
        }
        if let Some(flags) = rest.get_mut(51..53) {
            fill_hex_u64(flags, u64::from(self.flags));
        }
        out
    }
}

/// Parses one `traceparent` value strictly. OWS (space, tab) around the value is ignored; a later
/// version is read by its version-00 prefix, as the spec asks.
pub fn parse_traceparent(value: &[u8]) -> Result<TraceParent, &'static str> {
    let value = trim_ows(value);
    let Some((head, rest)) = value.split_at_checked(V00_LEN) else {
        // Also covers future versions: shorter than 55 means restart.
        return Err("traceparent too short");
    };

    // Version 00's fixed layout `vv-<32>-<16>-ff`: with the total fixed at 55, dashes at 2, 35 and 52
    // and hex digits between them are the only valid form, so the fields are read in place.
    let dashes = [head.get(2), head.get(35), head.get(52)];
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags), true) = (
        head.get(..2),
        head.get(3..35),
        head.get(36..52),
        head.get(53..),
        dashes.iter().all(|d| *d == Some(&b'-')),
    ) else {
        return Err("malformed traceparent");
    };

    let version = parse_lower_hex_u64(version, 2).ok_or("invalid traceparent version")?;
    if version == 0xff {
        return Err("traceparent version ff");
    }
    if version == 0 {
        if !rest.is_empty() {
            return Err("traceparent version 00 with trailing data");
        }
    } else if !rest.is_empty() && rest.first() != Some(&b'-') {
        // A future version may append fields, but only after another dash.
        return Err("malformed traceparent");
    }

    let trace_id = parse_lower_hex_u128(trace_id, 32).ok_or("invalid traceparent trace id")?;
    if trace_id == 0 {
        return Err("all-zero traceparent trace id");
    }
    let span_id = parse_lower_hex_u64(parent_id, 16).ok_or("invalid traceparent parent id")?;
    if span_id == 0 {
        return Err("all-zero traceparent parent id");
    }
    let flags = parse_lower_hex_u64(flags, 2).ok_or("invalid traceparent flags")?;
    Ok(TraceParent {
        trace_id,
        span_id,
        flags: flags as u8,
    })
}

/// `responseHeader`: empty (off) or a header name.
pub fn check_response_header(value: &str, field: &str) -> Result<(), ConfigError> {
    crate::config::check(
        value.is_empty() || is_header_name(value),
        field,
        "must be empty or a header name: lower-case letters, digits, '-' and '_', at most 256",
    )
}

/// `filterStateName`: empty (off) or a name Envoy's access log can print as `%FILTER_STATE(NAME)%`.
pub fn check_filter_state_name(value: &str, field: &str) -> Result<(), ConfigError> {
    crate::config::check(
        value.len() <= crate::limits::MAX_MATCH_VALUE_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
        field,
        "may hold only letters, digits, '_', '.' and '-' (at most 1024)",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_later_version_may_add_fields_only_after_a_dash() {
        let tp = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(parse_traceparent(format!("01-{tp}").as_bytes()).is_ok());
        assert!(parse_traceparent(format!("01-{tp}-what-comes-next").as_bytes()).is_ok());
        assert_eq!(
            parse_traceparent(format!("01-{tp}x").as_bytes()).map(|_| ()),
            Err("malformed traceparent")
        );
        assert_eq!(
            parse_traceparent(format!("00-{tp}-x").as_bytes()).map(|_| ()),
            Err("traceparent version 00 with trailing data")
        );
    }

    #[test]
    fn version_00_round_trips_and_later_versions_read_by_their_prefix() {
        let tp = parse_traceparent(TP.as_bytes()).unwrap();
        assert_eq!(tp.render(), TP);
        assert_eq!(&tp.render_bytes()[..], TP.as_bytes());
        assert_eq!(parse_traceparent(format!(" {TP}\t").as_bytes()), Ok(tp));
        let later = format!("01{}-extra", &TP[2..]);
        assert_eq!(parse_traceparent(later.as_bytes()), Ok(tp));
        for bad in [
            "",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c8031-9cb7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333--01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn response_fields_are_checked_alike() {
        assert!(check_response_header("", "f").is_ok());
        assert!(check_response_header("X-Trace", "f").is_err());
        assert!(check_filter_state_name("wasm.trace_id", "f").is_ok());
        assert!(check_filter_state_name("a b", "f").is_err());
    }
}
