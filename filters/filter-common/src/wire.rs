//! The proxy-wasm ABI's encodings of header maps and property paths, written without any indexing that
//! could panic on a malformed buffer from the host.

use std::ops::Range;

/// Where each name and value of an encoded header map lies in `buf`: `u32 count`, then `count` pairs of
/// `(u32 name_len, u32 value_len)`, then each name and value followed by a NUL byte. `None` if the
/// buffer is malformed. Lets a reader borrow from the one buffer the host returned instead of copying
/// every header.
pub fn decode_spans(buf: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    let (count, mut sizes) = read_u32(buf)?;
    let count = usize::try_from(count).ok()?;
    // The sizes table ends where the names and values begin; one pass reads both, one allocation.
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    if at > buf.len() {
        return None;
    }
    let mut spans = Vec::with_capacity(count);
    for _ in 0..count {
        let (name_len, r) = read_u32(sizes)?;
        let (value_len, r) = read_u32(r)?;
        sizes = r;
        let name = at..at.checked_add(usize::try_from(name_len).ok()?)?;
        let value_start = name.end.checked_add(1)?;
        let value = value_start..value_start.checked_add(usize::try_from(value_len).ok()?)?;
        let next = value.end.checked_add(1)?;
        // Both terminators must be NUL and inside the buffer.
        if buf.get(name.end) != Some(&0) || buf.get(value.end) != Some(&0) {
            return None;
        }
        spans.push((name, value));
        at = next;
    }
    Some(spans)
}

/// Decodes a header map into owned pairs (see `decode_spans`). Names that are not UTF-8 (never produced
/// by Envoy) are decoded lossily so a request is never rejected for them.
pub fn decode_map(buf: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    decode_spans(buf)?
        .into_iter()
        .map(|(n, v)| {
            Some((
                String::from_utf8_lossy(buf.get(n)?).into_owned(),
                buf.get(v)?.to_vec(),
            ))
        })
        .collect()
}

/// Encodes a header map in the layout `decode_map` reads.
pub fn encode_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (n, v) in pairs {
        out.extend_from_slice(&len_u32(n.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(v.len()).to_le_bytes());
    }
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// A property path is its parts joined by NUL bytes.
pub fn encode_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

fn read_u32(buf: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

fn len_u32(len: usize) -> u32 {
    // Header maps are far below 4 GiB; saturate rather than wrap if one ever is not.
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip_keeps_duplicates_and_binary_values() {
        let pairs: Vec<(&str, &[u8])> =
            vec![("a", b"1"), ("a", b"2"), ("bin", &[0xff, 0x00, 0x80])];
        let decoded = decode_map(&encode_map(&pairs)).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], ("a".to_string(), b"2".to_vec()));
        assert_eq!(decoded[2].1, vec![0xff, 0x00, 0x80]);
    }

    #[test]
    fn malformed_maps_are_rejected_not_panicking() {
        assert!(decode_map(&[]).is_none());
        assert!(decode_map(&[1, 0, 0]).is_none());
        // Claims a pair but has no sizes.
        assert!(decode_map(&[1, 0, 0, 0]).is_none());
        // Sizes larger than the buffer.
        let mut buf = vec![1, 0, 0, 0];
        buf.extend_from_slice(&100u32.to_le_bytes());
        buf.extend_from_slice(&1u32.to_le_bytes());
        assert!(decode_map(&buf).is_none());
        // A huge count must not allocate a huge vector first.
        assert!(decode_map(&u32::MAX.to_le_bytes()).is_none());
        // Missing NUL terminator.
        let mut good = encode_map(&[("k", b"v")]);
        good.pop();
        assert!(decode_map(&good).is_none());
        assert_eq!(decode_map(&encode_map(&[])).unwrap().len(), 0);
    }

    #[test]
    fn property_paths_are_nul_joined() {
        assert_eq!(
            encode_path(&["xds", "route_name"]),
            b"xds\0route_name".to_vec()
        );
        assert_eq!(encode_path(&["a"]), b"a".to_vec());
        assert!(encode_path(&[]).is_empty());
    }
}
