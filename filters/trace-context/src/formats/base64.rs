//! Standard base64 (RFC 4648 section 4, alphabet `A-Z a-z 0-9 + /`), as gRPC uses for `-bin` headers,
//! through the `base64` crate.
//!
//! Encoding always pads with `=`. Decoding accepts the value with or without padding (gRPC peers send
//! both, and a short padding such as `Zg=`), rejects the URL-safe alphabet, white space and misplaced
//! `=`, and ignores non-zero trailing bits as most decoders do.

use ::base64::alphabet::STANDARD;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ::base64::{DecodeSliceError, Engine};

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Encodes `input` with padding.
pub fn encode(input: &[u8]) -> String {
    ENGINE.encode(input)
}

/// Decodes `input`; `None` when it is not valid base64.
pub fn decode(input: &[u8]) -> Option<Vec<u8>> {
    ENGINE.decode(input).ok()
}

/// Validates all of `input`, writes the first `out.len()` decoded bytes into `out` and returns the full
/// decoded length (which may exceed `out.len()`). A value that decodes to at most 64 bytes (a real
/// `grpc-trace-bin` is 29) is decoded on the stack, without allocating.
pub fn decode_prefix(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut stack = [0u8; 64];
    let heap;
    let decoded = match ENGINE.decode_slice(input, &mut stack) {
        Ok(n) => stack.get(..n)?,
        Err(DecodeSliceError::OutputSliceTooSmall) => {
            heap = ENGINE.decode(input).ok()?;
            heap.as_slice()
        }
        Err(DecodeSliceError::DecodeError(_)) => return None,
    };
    let n = decoded.len().min(out.len());
    out.get_mut(..n)?.copy_from_slice(decoded.get(..n)?);
    Some(decoded.len())
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
        // The crate's padding-indifferent mode also takes a short padding: harmless for a trace header.
        assert_eq!(decode(b"Zg=").unwrap(), b"f");
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
