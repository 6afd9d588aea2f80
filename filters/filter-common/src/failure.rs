//! Envoy's account of a failed call, read the same way by every filter: which of its own reasons
//! (from the response flags) applies, whether the response came from the upstream at all, and which
//! gRPC codes a configuration may name.

use crate::response_flags::{
    NO_HEALTHY_UPSTREAM, RESET, TIMEOUT, UPSTREAM_CONNECTION_FAILURE, UPSTREAM_OVERFLOW,
};
use serde::Deserializer;

/// Envoy's reasons an upstream call failed, named as the filters' `envoy` fields name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamFailure {
    ConnectionFailure,
    Timeout,
    Reset,
    NoHealthyUpstream,
    Overflow,
}

impl UpstreamFailure {
    pub const ALL: [UpstreamFailure; 5] = [
        UpstreamFailure::ConnectionFailure,
        UpstreamFailure::Timeout,
        UpstreamFailure::Reset,
        UpstreamFailure::NoHealthyUpstream,
        UpstreamFailure::Overflow,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UpstreamFailure::ConnectionFailure => "connectionFailure",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::NoHealthyUpstream => "noHealthyUpstream",
            UpstreamFailure::Overflow => "overflow",
        }
    }

    pub fn from_label(label: &str) -> Option<UpstreamFailure> {
        Self::ALL.into_iter().find(|f| f.label() == label)
    }

    /// Envoy's response flags (`response.flags`) say this happened.
    pub fn in_flags(self, flags: u64) -> bool {
        let bits = match self {
            UpstreamFailure::ConnectionFailure => UPSTREAM_CONNECTION_FAILURE,
            UpstreamFailure::Timeout => TIMEOUT,
            UpstreamFailure::Reset => RESET,
            UpstreamFailure::NoHealthyUpstream => NO_HEALTHY_UPSTREAM,
            UpstreamFailure::Overflow => UPSTREAM_OVERFLOW,
        };
        flags & bits != 0
    }
}

/// Reads a filter's Envoy reason by name: one of [`UpstreamFailure`]'s, or one of the filter's own
/// (`extra`, with the value each stands for). An unknown name lists every known one.
pub fn reason_from_label<T: Copy>(
    label: &str,
    upstream: impl Fn(UpstreamFailure) -> T,
    extra: &[(&str, T)],
) -> Result<T, String> {
    if let Some(f) = UpstreamFailure::from_label(label) {
        return Ok(upstream(f));
    }
    if let Some((_, reason)) = extra.iter().find(|(name, _)| *name == label) {
        return Ok(*reason);
    }
    let known: Vec<&str> = UpstreamFailure::ALL
        .iter()
        .map(|f| f.label())
        .chain(extra.iter().map(|(name, _)| *name))
        .collect();
    Err(format!(
        "unknown Envoy reason {}; known reasons: {}",
        crate::config::quoted(label),
        crate::text::join(&known, ", ")
    ))
}

/// The response came from the upstream: the router marks its answers `via_upstream` in
/// `response.code_details`. Unreadable details count as an upstream answer, so an application's error
/// is never mistaken for Envoy's.
pub fn is_upstream_answer(code_details: Option<&[u8]>) -> bool {
    code_details.is_none_or(|d| d == b"via_upstream")
}

/// `response.code_details` of the circuit breaker's rejections: how the fallback (and an access log)
/// tells them from other local replies. An open (half-open, forced-open) breaker:
pub const CIRCUIT_BREAKER_DETAILS: &str = "circuit_breaker_open";
/// A key at its `maxConcurrentCalls`.
pub const CIRCUIT_BREAKER_FULL_DETAILS: &str = "circuit_breaker_full";
/// A key closed by the dependency's own pushback (`maxPushback`).
pub const CIRCUIT_BREAKER_PUSHBACK_DETAILS: &str = "circuit_breaker_pushback";

/// The response is one of the circuit breaker's rejections, whatever the reason.
pub fn is_circuit_breaker_rejection(code_details: &[u8]) -> bool {
    [
        CIRCUIT_BREAKER_DETAILS,
        CIRCUIT_BREAKER_FULL_DETAILS,
        CIRCUIT_BREAKER_PUSHBACK_DETAILS,
    ]
    .iter()
    .any(|d| d.as_bytes() == code_details)
}

/// The largest gRPC status code (`UNAUTHENTICATED`).
pub const MAX_GRPC_CODE: u32 = 16;

/// A list of gRPC status codes, each between 0 and 16 (`#[serde(deserialize_with = "grpc_codes")]`).
pub fn grpc_codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    let codes: Vec<u32> = crate::config::whole_list(d)?;
    if codes.iter().any(|c| *c > MAX_GRPC_CODE) {
        return Err(serde::de::Error::custom("gRPC codes are between 0 and 16"));
    }
    Ok(codes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::response_flags::{UPSTREAM_PROTOCOL_ERROR, UPSTREAM_REQUEST_TIMEOUT};

    #[test]
    fn every_breaker_rejection_is_recognised_and_nothing_else() {
        for d in [
            "circuit_breaker_open",
            "circuit_breaker_full",
            "circuit_breaker_pushback",
        ] {
            assert!(is_circuit_breaker_rejection(d.as_bytes()), "{d}");
        }
        for d in [
            "via_upstream",
            "circuit_breaker",
            "circuit_breaker_open2",
            "",
        ] {
            assert!(!is_circuit_breaker_rejection(d.as_bytes()), "{d}");
        }
    }

    #[test]
    fn labels_round_trip_and_flags_match() {
        for f in UpstreamFailure::ALL {
            assert_eq!(UpstreamFailure::from_label(f.label()), Some(f));
        }
        assert!(UpstreamFailure::Reset.in_flags(UPSTREAM_PROTOCOL_ERROR));
        assert!(UpstreamFailure::Timeout.in_flags(UPSTREAM_REQUEST_TIMEOUT));
        assert!(!UpstreamFailure::Overflow.in_flags(UPSTREAM_REQUEST_TIMEOUT));
    }

    #[test]
    fn unknown_reasons_list_the_known_ones() {
        assert_eq!(reason_from_label("timeout", |_| 1, &[("x", 2)]), Ok(1));
        assert_eq!(reason_from_label("x", |_| 1, &[("x", 2)]), Ok(2));
        let e = reason_from_label("nope", |_| 1, &[("x", 2)]).unwrap_err();
        assert!(e.contains("connectionFailure, timeout, reset, noHealthyUpstream, overflow, x"));
    }

    #[test]
    fn only_via_upstream_or_unknown_details_are_the_upstream_s() {
        assert!(is_upstream_answer(Some(b"via_upstream")));
        assert!(is_upstream_answer(None));
        assert!(!is_upstream_answer(Some(b"direct_response")));
    }

    #[test]
    fn grpc_codes_stop_at_16() {
        #[derive(Debug, serde::Deserialize)]
        struct Codes(#[serde(deserialize_with = "grpc_codes")] Vec<u32>);
        let codes = |json: &str| crate::config::from_slice::<Codes>(json.as_bytes()).map(|c| c.0);
        assert_eq!(codes("[0, 16.0]").unwrap(), vec![0, 16]);
        assert_eq!(
            codes("[17]").unwrap_err().reason,
            "gRPC codes are between 0 and 16"
        );
        assert_eq!(codes("[1, -1]").unwrap_err().field, "[1]");
    }
}
