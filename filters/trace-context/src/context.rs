//! The one trace context a request carries, whatever format it arrived in.

/// A trace context in its format-neutral form. Every reader produces one and every writer consumes one,
/// so a conversion between two formats is always a read followed by a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 128-bit trace id; never zero. A 64-bit id read from a 64-bit format has its high half zero.
    pub trace_id: u128,
    /// The span id of the caller (the parent of whatever the next hop creates); never zero.
    pub span_id: u64,
    /// The caller's sampling decision; `None` means "defer to the next hop" (B3 without a decision).
    pub sampled: Option<bool>,
    /// Debug / forced tracing (B3 `d`, Jaeger flag 0x02, Cloud Trace `o=1` is mapped to sampled only).
    pub debug: bool,
    /// W3C Level 2 "random" flag: the low 56 bits of the trace id are random.
    pub random: bool,
}

impl TraceContext {
    /// True when the trace id fits in 64 bits, i.e. it came from (or can be written to) a 64-bit peer
    /// without loss.
    pub fn is_64_bit(&self) -> bool {
        self.trace_id >> 64 == 0
    }

    /// The low 64 bits of the trace id (what a 64-bit format carries).
    pub fn trace_id_low(&self) -> u64 {
        self.trace_id as u64
    }

    /// The high 64 bits of the trace id.
    pub fn trace_id_high(&self) -> u64 {
        (self.trace_id >> 64) as u64
    }

    /// The trace id as 32 lower-case hex characters.
    pub fn trace_id_hex(&self) -> String {
        filter_common::hex::lower_hex(self.trace_id, 32)
    }

    /// The trace id's 32 lower-case hex digits in a fixed buffer: what a host call needs, without
    /// allocating a string per response header.
    pub fn trace_id_hex_bytes(&self) -> [u8; 32] {
        filter_common::hex::hex_u128(self.trace_id)
    }

    /// The span id as 16 lower-case hex characters.
    pub fn span_id_hex(&self) -> String {
        filter_common::hex::lower_hex(u128::from(self.span_id), 16)
    }
}

pub use filter_common::hex::{
    parse_hex_var, parse_lower_hex_u128, parse_lower_hex_u64, parse_lower_hex_var,
};

/// A 16- or 32-digit lower-case hex trace id, not zero (B3).
pub fn parse_trace_id_16_or_32(s: &[u8]) -> Option<u128> {
    match s.len() {
        16 | 32 => parse_lower_hex_u128(s, s.len()).filter(|&v| v != 0),
        _ => None,
    }
}

/// A 16-digit lower-case hex span id, not zero (B3).
pub fn parse_span_id_16(s: &[u8]) -> Option<u64> {
    parse_lower_hex_u64(s, 16).filter(|&v| v != 0)
}

/// Decimal digits only (no sign, no white space), checked against overflow (Datadog, Cloud Trace).
pub fn parse_dec_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = c.checked_sub(b'0').filter(|d| *d <= 9)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}
