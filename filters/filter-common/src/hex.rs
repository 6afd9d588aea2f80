//! Hex digits as trace headers carry them. Upper case is accepted only where a format allows it.

/// Appends the lowest `digits` (at most 32) hex digits of `value`, lower case and zero-padded: what
/// `{:0Nx}` writes, without `core::fmt`, whose padding writes one character at a time (formatting
/// the ids was about a third of trace-context's instructions per request).
pub fn push_lower_hex(out: &mut String, value: u128, digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = digits.min(32);
    let mut buf = [b'0'; 32];
    for (i, slot) in buf.iter_mut().take(digits).enumerate() {
        let nibble = ((value >> ((digits - 1 - i) * 4)) & 0xf) as usize;
        *slot = DIGITS.get(nibble).copied().unwrap_or(b'0');
    }
    // Always ASCII; one validated copy instead of a char push per digit.
    out.push_str(std::str::from_utf8(buf.get(..digits).unwrap_or_default()).unwrap_or_default());
}

/// `value`'s lowest `digits` hex digits as a new string (see [`push_lower_hex`]).
pub fn lower_hex(value: u128, digits: usize) -> String {
    let mut out = String::with_capacity(digits);
    push_lower_hex(&mut out, value, digits);
    out
}

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

/// Parses 1..=max_len lower-case hex digits: formats whose writers drop leading zeros (OpenTelemetry's
/// `ot-trace` propagator writes `hex(id)`) but, like W3C, not upper case.
pub fn parse_lower_hex_var(s: &[u8], max_len: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_len || s.len() > 32 {
        return None;
    }
    hex_value(s, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_digits_are_the_most_an_id_has() {
        assert_eq!(parse_hex_var(&[b'F'; 32], 40), Some(u128::MAX));
        assert_eq!(parse_hex_var(&[b'F'; 33], 40), None);
        assert_eq!(parse_lower_hex_var(&[b'f'; 32], 40), Some(u128::MAX));
    }

    #[test]
    fn lower_hex_is_what_fmt_writes() {
        for v in [
            0u128,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0af7651916cd43dd8448eb211c80319c,
        ] {
            assert_eq!(lower_hex(v, 32), format!("{v:032x}"));
            assert_eq!(
                lower_hex(v & 0xffff_ffff_ffff_ffff, 16),
                format!("{:016x}", v & 0xffff_ffff_ffff_ffff)
            );
            assert_eq!(lower_hex(v & 0xff, 2), format!("{:02x}", v & 0xff));
        }
        // Digits beyond the width are dropped, as the callers pass values that fit.
        assert_eq!(lower_hex(0x1ff, 2), "ff");
        assert_eq!(lower_hex(7, 40).len(), 32);
    }

    #[test]
    fn fixed_length_lower_hex() {
        assert_eq!(parse_lower_hex_u128(b"0af7", 4), Some(0x0af7));
        assert_eq!(parse_lower_hex_u128(b"", 0), None, "no digits is no id");
        assert_eq!(parse_lower_hex_u128(b"0af7", 3), None);
        assert_eq!(parse_lower_hex_u128(b"0AF7", 4), None);
        assert_eq!(parse_lower_hex_u128(&[b'0'; 33], 33), None);
        assert_eq!(parse_lower_hex_u64(&[b'f'; 16], 16), Some(u64::MAX));
        assert_eq!(parse_lower_hex_u64(&[b'0'; 17], 17), None);
    }

    #[test]
    fn variable_length_hex_of_either_case() {
        assert_eq!(parse_hex_var(b"ABCDEF", 16), Some(0xabcdef));
        assert_eq!(parse_hex_var(b"aBc09F", 16), Some(0xabc09f));
        assert_eq!(parse_hex_var(b"1", 16), Some(1));
        assert_eq!(parse_hex_var(&[b'F'; 16], 16), Some(u128::from(u64::MAX)));
        assert_eq!(parse_hex_var(&[b'1'; 17], 16), None);
        assert_eq!(parse_hex_var(&[b'1'; 33], 40), None);
        assert_eq!(parse_hex_var(b"", 16), None);
        assert_eq!(parse_hex_var(b"G1", 16), None);
    }

    #[test]
    fn variable_length_lower_hex() {
        assert_eq!(parse_lower_hex_var(b"7", 16), Some(7));
        assert_eq!(
            parse_lower_hex_var(b"f067aa0ba902b7", 16),
            Some(0xf067aa0ba902b7)
        );
        assert_eq!(parse_lower_hex_var(&[b'f'; 32], 32), Some(u128::MAX));
        assert_eq!(parse_lower_hex_var(b"", 16), None);
        assert_eq!(parse_lower_hex_var(&[b'1'; 17], 16), None);
        assert_eq!(parse_lower_hex_var(&[b'1'; 33], 40), None);
        assert_eq!(parse_lower_hex_var(b"F067", 16), None);
        assert_eq!(parse_lower_hex_var(b"-1", 16), None);
    }
}
