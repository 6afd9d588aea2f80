//! Envoy's response flags (`response.flags`, bits of `CoreResponseFlag` in
//! `envoy/stream_info/stream_info.h`): Envoy's own reasons a call failed.

pub const NO_HEALTHY_UPSTREAM: u64 = 1 << 1;
pub const UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2;
pub const UPSTREAM_REMOTE_RESET: u64 = 1 << 4;
pub const UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5;
pub const UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6;
pub const UPSTREAM_OVERFLOW: u64 = 1 << 7;
pub const UPSTREAM_MAX_STREAM_DURATION_REACHED: u64 = 1 << 19;
/// `UPE`: what an HTTP/1.1 upstream that drops the connection mid-response gets.
pub const UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23;

pub const TIMEOUT: u64 = UPSTREAM_REQUEST_TIMEOUT | UPSTREAM_MAX_STREAM_DURATION_REACHED;
/// Every flag that says the upstream (or the way to it) failed.
pub const UPSTREAM_FAILURES: u64 =
    NO_HEALTHY_UPSTREAM | TIMEOUT | RESET | UPSTREAM_CONNECTION_FAILURE | UPSTREAM_OVERFLOW;
pub const RESET: u64 =
    UPSTREAM_REMOTE_RESET | UPSTREAM_CONNECTION_TERMINATION | UPSTREAM_PROTOCOL_ERROR;

/// `DC`, `DownstreamConnectionTermination`: the caller closed its connection.
pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14;
/// `DR`, `DownstreamRemoteReset` (Envoy 1.30 and later): the caller reset its stream.
pub const DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28;
/// Every flag that says the caller gave up.
pub const DOWNSTREAM_CANCEL: u64 = DOWNSTREAM_CONNECTION_TERMINATION | DOWNSTREAM_REMOTE_RESET;

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits of Envoy's `CoreResponseFlag` (`envoy/stream_info/stream_info.h`), as `response.flags`
    /// carries them.
    #[test]
    fn flags_are_envoy_s_bits() {
        assert_eq!(NO_HEALTHY_UPSTREAM, 0x2);
        assert_eq!(UPSTREAM_REQUEST_TIMEOUT, 0x4);
        assert_eq!(UPSTREAM_REMOTE_RESET, 0x10);
        assert_eq!(UPSTREAM_CONNECTION_FAILURE, 0x20);
        assert_eq!(UPSTREAM_CONNECTION_TERMINATION, 0x40);
        assert_eq!(UPSTREAM_OVERFLOW, 0x80);
        assert_eq!(DOWNSTREAM_CONNECTION_TERMINATION, 0x4000);
        assert_eq!(UPSTREAM_MAX_STREAM_DURATION_REACHED, 0x8_0000);
        assert_eq!(UPSTREAM_PROTOCOL_ERROR, 0x80_0000);
        assert_eq!(DOWNSTREAM_REMOTE_RESET, 0x1000_0000);
        assert_eq!(TIMEOUT, 0x8_0004);
        assert_eq!(RESET, 0x80_0050);
        assert_eq!(UPSTREAM_FAILURES, 0x88_00f6);
        assert_eq!(DOWNSTREAM_CANCEL, 0x1000_4000);
    }
}
