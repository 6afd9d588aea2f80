//! Standard base64 (RFC 4648 section 4, alphabet `A-Z a-z 0-9 + /`), as gRPC uses for `-bin` headers.
//!
//! Encoding always pads with `=`. Decoding accepts the value with or without padding (gRPC peers send
//! both), rejects the URL-safe alphabet, white space and misplaced `=`, and ignores non-zero trailing bits
//! as most decoders do.

/// Encodes `input` with padding.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3).saturating_mul(4));
    for chunk in input.chunks(3) {
        let mut bytes = chunk.iter().copied();
        let b0 = bytes.next().unwrap_or(0);
        let b1 = bytes.next();
        let b2 = bytes.next();
        let n =
            (u32::from(b0) << 16) | (u32::from(b1.unwrap_or(0)) << 8) | u32::from(b2.unwrap_or(0));
        out.push(symbol(n >> 18));
        out.push(symbol(n >> 12));
        out.push(if b1.is_some() { symbol(n >> 6) } else { '=' });
        out.push(if b2.is_some() { symbol(n) } else { '=' });
    }
    out
}

/// Decodes `input`; `None` when it is not valid base64.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let len = decoded_len(input)?;
    let mut out = vec![0u8; len];
    decode_prefix(input, &mut out)?;
    Some(out)
}

/// Validates all of `input`, writes the first `out.len()` decoded bytes into `out` and returns the full
/// decoded length (which may exceed `out.len()`). Lets a caller that needs only a known-size prefix decode
/// without allocating.
pub fn decode_prefix(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let data = strip_padding(input)?;
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut n: usize = 0;
    for &c in data {
        // At most 12 bits are pending at any time, so masking keeps every needed bit.
        acc = ((acc << 6) | value(c)?) & 0xfff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if let Some(slot) = out.get_mut(n) {
                *slot = (acc >> bits) as u8;
            }
            n += 1;
        }
    }
    Some(n)
}

/// The decoded length of `input`, or `None` when its length or padding is invalid (the characters are not
/// checked here).
pub fn decoded_len(input: &[u8]) -> Option<usize> {
    let data = strip_padding(input)?;
    let full = (data.len() / 4) * 3;
    Some(match data.len() % 4 {
        0 => full,
        2 => full + 1,
        3 => full + 2,
        _ => return None,
    })
}

/// Returns the data characters without the padding, checking the padding and the length.
fn strip_padding(input: &[u8]) -> Option<&[u8]> {
    let (data, pad) = match input {
        [rest @ .., b'=', b'='] => (rest, 2),
        [rest @ .., b'='] => (rest, 1),
        _ => (input, 0),
    };
    match (data.len() % 4, pad) {
        // One leftover character carries only 6 bits: never a whole byte.
        (1, _) => None,
        // Padding only completes the last group of four: `==` after two characters, `=` after three.
        (_, 0) | (2, 2) | (3, 1) => (data.last() != Some(&b'=')).then_some(data),
        _ => None,
    }
}

fn symbol(v: u32) -> char {
    let v = (v & 0x3f) as u8;
    let c = match v {
        0..=25 => b'A' + v,
        26..=51 => b'a' + (v - 26),
        52..=61 => b'0' + (v - 52),
        62 => b'+',
        _ => b'/',
    };
    char::from(c)
}

fn value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    // RFC 4648 section 10 test vectors.
    const VECTORS: &[(&str, &str)] = &[
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors() {
        for (plain, encoded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), *encoded);
            assert_eq!(decode(encoded.as_bytes()).unwrap(), plain.as_bytes());
            // Without padding too.
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(
                decode(unpadded.as_bytes()).unwrap(),
                plain.as_bytes(),
                "{unpadded}"
            );
            assert_eq!(decoded_len(encoded.as_bytes()), Some(plain.len()));
        }
    }

    #[test]
    fn high_bytes_use_plus_and_slash() {
        assert_eq!(encode(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(decode(b"//79").unwrap(), [0xff, 0xfe, 0xfd]);
        assert_eq!(decode(b"AAECAwQFBg==").unwrap(), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn round_trip_every_length_and_byte() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..data.len() {
            let enc = encode(&data[..len]);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(decode(enc.as_bytes()).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "Z",
            "Zg=",
            "Zg===",
            "Z===",
            "=",
            "==",
            "Zm9v=",
            "Zm=9",
            "Zm-_",
            "Zm9v\n",
            " Zm9v",
            "Zm8=Zm8=",
            "Zm\u{e9}v",
        ] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(decode(&[0xff, 0xfe, b'A', b'A']), None);
    }

    #[test]
    fn lenient_on_trailing_bits() {
        // "Zh==" has non-zero bits after the one byte; accepted like most decoders do.
        assert_eq!(decode(b"Zh==").unwrap(), b"f");
    }

    #[test]
    fn decode_prefix_writes_only_what_fits() {
        let mut buf = [0u8; 2];
        assert_eq!(decode_prefix(b"Zm9vYmFy", &mut buf), Some(6));
        assert_eq!(&buf, b"fo");
        let mut empty: [u8; 0] = [];
        assert_eq!(decode_prefix(b"Zm9vYmFy", &mut empty), Some(6));
        // The whole input is validated even past the prefix.
        assert_eq!(decode_prefix(b"Zm9vYm-y", &mut buf), None);
    }
}
