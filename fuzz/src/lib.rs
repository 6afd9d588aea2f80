//! Helpers the fuzz targets share: turning fuzz bytes into the inputs the filters see.

/// Header pairs from text lines `name: value` (the corpus stays readable): the name is everything up to
/// the first `:` (lossily UTF-8, as `wire::decode_map` reads names), the value the raw bytes after it
/// without one leading space. A line without `:` is a name with an empty value.
pub fn header_pairs(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    data.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = match line.iter().position(|b| *b == b':') {
                Some(i) => (
                    line.get(..i).unwrap_or(b""),
                    line.get(i + 1..).unwrap_or(b""),
                ),
                None => (line, &b""[..]),
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            (String::from_utf8_lossy(name).into_owned(), value.to_vec())
        })
        .collect()
}

/// The input split into lines (each a header value as repeated headers arrive).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
}

/// Clock readings the decisions are tried at: the epoch, now-ish, and the far ends where arithmetic
/// overflows.
pub const NOWS_NS: [u64; 4] = [0, 1_764_000_000_000_000_000, u64::MAX / 2, u64::MAX];
