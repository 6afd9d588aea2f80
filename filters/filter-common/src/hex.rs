//! Hex digits as trace headers carry them. Upper case is accepted only where a format allows it.

/// Parses exactly `len` lower-case hex digits. Upper case is rejected: W3C requires lower case and the
/// other formats' reference implementations produce it.
pub fn parse_lower_hex_u128(s: &[u8], len: usize) -> Option<u128> {
    if s.len() != len || len == 0 || len > 32 {
        return None;
    }
    hex_value(s, false)
}

/// Parses exactly `len` (at most 16) lower-case hex digits into a u64.
pub fn parse_lower_hex_u64(s: &[u8], len: usize) -> Option<u64> {
    if len > 16 {
        return None;
    }
    parse_lower_hex_u128(s, len).map(|v| v as u64)
}

/// Parses 1..=max_len hex digits of either case (formats such as Jaeger allow variable length).
pub fn parse_hex_var(s: &[u8], max_len: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_len || s.len() > 32 {
        return None;
    }
    hex_value(s, true)
}

/// The value of at most 32 hex digits; upper case only when `upper` allows it.
fn hex_value(s: &[u8], upper: bool) -> Option<u128> {
    s.iter().try_fold(0u128, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' if upper => c - b'A' + 10,
            _ => return None,
        };
        Some((v << 4) | u128::from(d))
    })
}
