//! Hex digits as trace headers carry them. Upper case is accepted only where a format allows it.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowest `digits` (at most 32) hex digits of `value`, lower case and zero-padded: what
/// `{:0Nx}` writes, without `core::fmt`, whose padding writes one character at a time (formatting
/// the ids was about a third of trace-context's instructions per request).
pub fn push_lower_hex(out: &mut String, value: u128, digits: usize) {
    let digits = digits.min(32);
    let buf = hex_u128(value);
    // Always ASCII; one validated copy instead of a char push per digit.
    let tail = buf.get(32 - digits..).unwrap_or_default();
    out.push_str(std::str::from_utf8(tail).unwrap_or_default());
}

/// `value`'s lowest `digits` hex digits as a new string (see [`push_lower_hex`]).
pub fn lower_hex(value: u128, digits: usize) -> String {
    let mut out = String::with_capacity(digits);
    push_lower_hex(&mut out, value, digits);
    out
}

/// The 32 lower-case hex digits of `value`, in a fixed buffer. Works on 64-bit halves: a `u128`
/// shift is several instructions (or a call) in Wasm, a `u64` one is one.
pub fn hex_u128(value: u128) -> [u8; 32] {
    let mut out = [b'0'; 32];
    let (high, low) = out.split_at_mut(16);
    high.copy_from_slice(&hex_u64((value >> 64) as u64));
    low.copy_from_slice(&hex_u64(value as u64));
    out
}

/// The 16 lower-case hex digits of `value`, in a fixed buffer: eight digits at a time in one
/// `u64` (each nibble spread to a byte, then turned into its ASCII digit), no loop per digit.
pub fn hex_u64(value: u64) -> [u8; 16] {
    let mut out = [b'0'; 16];
    let (high, low) = out.split_at_mut(8);
    high.copy_from_slice(&hex_u32(value >> 32));
    low.copy_from_slice(&hex_u32(value & 0xffff_ffff));
    out
}

/// The 8 digits of the low 32 bits of `value`.
fn hex_u32(value: u64) -> [u8; 8] {
    // Spread the 8 nibbles to the 8 bytes, nibble i in byte i (from the least significant).
    let x = ((value & 0xffff_0000) << 16) | (value & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // Bytes 10..=15 carry into bit 4 when 6 is added: those become 'a'..='f' ('a' - '9' - 1 = 0x27).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

/// Writes the lowest `out.len()` (at most 16) hex digits of `value` into `out`, last digit last.
pub fn fill_hex_u64(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = DIGITS.get((value & 0xf) as usize).copied().unwrap_or(b'0');
        value >>= 4;
    }
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
    if s.len() != len || len == 0 || len > 16 {
        return None;
    }
    hex_u64_value(s, false)
}

/// Parses 1 to `max_len` (at most 32) lower-case hex digits.
pub fn parse_lower_hex_var(s: &[u8], max_len: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_len || s.len() > 32 {
        return None;
    }
    hex_value(s, false)
}

/// Parses 1 to `max_len` (at most 32) hex digits of either case.
pub fn parse_hex_var(s: &[u8], max_len: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_len || s.len() > 32 {
        return None;
    }
    hex_value(s, true)
}

/// Up to 32 digits, read as two 64-bit halves (see [`hex_u128`] on `u128` arithmetic in Wasm).
fn hex_value(s: &[u8], upper: bool) -> Option<u128> {
    let (high, low) = s.split_at(s.len().saturating_sub(16));
    let low = hex_u64_value(low, upper)?;
    let high = if high.is_empty() {
        0
    } else {
        hex_u64_value(high, upper)?
    };
    Some((u128::from(high) << 64) | u128::from(low))
}

/// Up to 16 digits.
fn hex_u64_value(s: &[u8], upper: bool) -> Option<u64> {
    s.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' if upper => c - b'A' + 10,
            _ => return None,
        };
        Some((v << 4) | u64::from(d))
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
        let v = 0x0af7651916cd43dd8448eb211c80319c_u128;
        assert_eq!(&hex_u128(v)[..], format!("{v:032x}").as_bytes());
        assert_eq!(&hex_u64(0xb7ad6b7169203331)[..], b"b7ad6b7169203331");
        assert_eq!(&hex_u64(7)[..], b"0000000000000007");
        for v in [
            0u64,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0x9a9a_0f0f_a9a9_f0f0,
        ] {
            assert_eq!(&hex_u64(v)[..], format!("{v:016x}").as_bytes());
        }
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..1000 {
            x = x.rotate_left(7).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            assert_eq!(&hex_u64(x)[..], format!("{x:016x}").as_bytes());
        }
        assert_eq!(lower_hex(7, 40).len(), 32);
        // A field of any width (traceparent's two flag digits) holds the value's lowest digits.
        for (width, v, digits) in [
            (2, 0x9e_u64, "9e"),
            (2, 0x1ff, "ff"),
            (16, 0x0123_4567_89ab_cdef, "0123456789abcdef"),
        ] {
            let mut out = vec![0; width];
            fill_hex_u64(&mut out, v);
            assert_eq!(out, digits.as_bytes(), "{v:x}");
        }
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
        // Longer than 16 digits: read as two halves.
        assert_eq!(
            parse_lower_hex_var(b"10000000000000002", 32),
            Some(0x10000000000000002)
        );
        assert_eq!(
            parse_hex_var(b"0AF7651916cd43dd8448EB211C80319C", 32),
            Some(0x0af7651916cd43dd8448eb211c80319c)
        );
        assert_eq!(
            parse_lower_hex_u128(b"0af7651916cd43dd8448eb211c80319g", 32),
            None
        );
        assert_eq!(
            parse_lower_hex_u128(b"g0f7651916cd43dd8448eb211c80319c", 32),
            None
        );
        assert_eq!(
            parse_lower_hex_u64(b"00f067aa0ba902b7", 16),
            Some(0x00f067aa0ba902b7)
        );
        assert_eq!(parse_lower_hex_u64(b"00f067aa0ba902b7", 15), None);
        assert_eq!(parse_lower_hex_var(b"-1", 16), None);
    }
}
