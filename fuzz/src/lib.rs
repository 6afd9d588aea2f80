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

/// What a response says, from the 24-byte header the `outcome` and `trigger` targets share: HTTP status
/// (2 bytes LE), gRPC status (4), Envoy's response flags (8), flag bits (1: 1 status present, 2 gRPC
/// status present, 4 a breaker rejection, 16 `code_details` present) and `response.code_details` (9).
/// The rest of the input follows it.
pub struct Response<'a> {
    pub status: u16,
    pub grpc_status: u32,
    pub response_flags: u64,
    pub bits: u8,
    pub from_upstream: bool,
    pub rest: &'a [u8],
}

pub fn response(data: &[u8]) -> Option<Response<'_>> {
    let (status, rest) = data.split_first_chunk::<2>()?;
    let (grpc, rest) = rest.split_first_chunk::<4>()?;
    let (flags, rest) = rest.split_first_chunk::<8>()?;
    let (&bits, rest) = rest.split_first()?;
    let (details, rest) = rest.split_first_chunk::<9>()?;
    let details = (bits & 16 != 0).then_some(&details[..]);
    Some(Response {
        status: u16::from_le_bytes(*status),
        grpc_status: u32::from_le_bytes(*grpc),
        response_flags: u64::from_le_bytes(*flags),
        bits,
        from_upstream: filter_common::failure::is_upstream_answer(details),
        rest,
    })
}

/// What every refused configuration must give: one log line naming a field (or `(root)`; a member's
/// own name may hold any character, a dot included), with a reason, and nothing that would break the
/// line.
pub fn check_config_error(e: &filter_common::config::ConfigError) {
    assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
    let line = e.to_string();
    assert!(line.starts_with("invalid configuration: field `"), "{line}");
    assert!(!line.chars().any(char::is_control), "{line:?}");
}
