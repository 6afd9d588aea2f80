//! The answer a rejected request gets at once: the configured status (gRPC callers: `UNAVAILABLE`),
//! the status header naming the breaker and its state, `retry-after` when the breaker reopens (gRPC
//! callers also `grpc-retry-pushback-ms`, which gRPC clients with a retry policy wait for, gRFC A6),
//! and optionally `x-envoy-overloaded` so Envoy-aware clients back off.
//!
//! The states are `open`, `half-open`, `forced-open`, `full` (`maxConcurrentCalls`) and `pushback`
//! (`maxPushback`). gRPC callers get `UNAVAILABLE` for every one, `full` included: it is the code for
//! a transient condition to retry with backoff (the one gRPC retry policies and Istio's default
//! `retry_on: unavailable` retry, and what Envoy and gRPC map HTTP 503 and 429 to), where
//! `RESOURCE_EXHAUSTED` means a quota the caller used up, which retry policies leave alone.

use crate::config::BreakerConfig;
use filter_common::failure::{
    CIRCUIT_BREAKER_DETAILS, CIRCUIT_BREAKER_FULL_DETAILS, CIRCUIT_BREAKER_PUSHBACK_DETAILS,
};

/// The `state=` of a full key's rejection.
pub const FULL: &str = "full";
/// The `state=` of a rejection while the dependency's pushback holds.
pub const PUSHBACK: &str = "pushback";

const GRPC_UNAVAILABLE: i32 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The gRPC status; -1 for an HTTP caller.
    pub grpc_status: i32,
    /// `response.code_details`: how the fallback and access logs tell the rejection and its reason.
    pub details: &'static str,
}

/// The rejection of breaker `b` in state `label` (`open`, `half-open`, `forced-open`); `retry_at_ns`:
/// when it may admit again.
pub fn rejection(
    status_header: &str,
    b: &BreakerConfig,
    grpc: bool,
    label: &str,
    retry_at_ns: Option<u64>,
    now_ns: u64,
) -> Rejection {
    let mut headers = vec![(
        status_header.to_string(),
        format!("{}; state={label}", b.name),
    )];
    let details = match label {
        FULL => CIRCUIT_BREAKER_FULL_DETAILS,
        PUSHBACK => CIRCUIT_BREAKER_PUSHBACK_DETAILS,
        _ => CIRCUIT_BREAKER_DETAILS,
    };
    if let (true, Some(at)) = (b.retry_after, retry_at_ns) {
        let wait = at.saturating_sub(now_ns);
        // Whole seconds, rounded up and at least 1: a client retrying sooner would be rejected again.
        let secs = wait.div_ceil(1_000_000_000).max(1);
        headers.push(("retry-after".to_string(), secs.to_string()));
        if grpc {
            let ms = wait.div_ceil(1_000_000).clamp(1, i32::MAX as u64);
            headers.push(("grpc-retry-pushback-ms".to_string(), ms.to_string()));
        }
    }
    if b.envoy_overloaded {
        headers.push(("x-envoy-overloaded".to_string(), "true".to_string()));
    }
    let message = format!("circuit breaker '{}' is {label}", b.name);
    if grpc {
        return Rejection {
            status: 200,
            headers,
            body: message,
            grpc_status: GRPC_UNAVAILABLE,
            details,
        };
    }
    headers.push(("content-type".to_string(), "text/plain".to_string()));
    Rejection {
        status: b.reject_status,
        headers,
        body: format!("{message}\n"),
        grpc_status: -1,
        details,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::config::Config;
    use filter_common::config::parse;

    const SEC: u64 = 1_000_000_000;

    fn breaker(json: &str) -> BreakerConfig {
        let c: Config = parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes())).unwrap();
        c.breakers[0].clone()
    }

    #[test]
    fn http_callers_get_the_status_the_header_and_whole_seconds_to_wait() {
        let b = breaker(r#"{"name": "pay", "envoyOverloaded": true}"#);
        let r = rejection(
            "x-circuit-breaker",
            &b,
            false,
            "open",
            Some(10 * SEC + 1),
            8 * SEC,
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.grpc_status, -1);
        assert_eq!(
            r.headers,
            vec![
                (
                    "x-circuit-breaker".to_string(),
                    "pay; state=open".to_string()
                ),
                ("retry-after".to_string(), "3".to_string()),
                ("x-envoy-overloaded".to_string(), "true".to_string()),
                ("content-type".to_string(), "text/plain".to_string()),
            ]
        );
        assert_eq!(r.body, "circuit breaker 'pay' is open\n");
        assert_eq!(r.details, "circuit_breaker_open");
        // Past the deadline still says 1 second, never 0.
        let r = rejection("x-circuit-breaker", &b, false, "open", Some(SEC), 5 * SEC);
        assert_eq!(r.headers[1].1, "1");
    }

    #[test]
    fn full_and_pushback_rejections_name_their_reason() {
        let b = breaker(r#"{"name": "pay"}"#);
        let r = rejection("x-circuit-breaker", &b, false, FULL, Some(9 * SEC), 8 * SEC);
        assert_eq!((r.status, r.details), (503, "circuit_breaker_full"));
        assert_eq!(r.headers[0].1, "pay; state=full");
        assert_eq!(r.headers[1], ("retry-after".to_string(), "1".to_string()));
        let r = rejection(
            "x-circuit-breaker",
            &b,
            true,
            PUSHBACK,
            Some(8 * SEC + 2_500_000),
            0,
        );
        assert_eq!((r.grpc_status, r.details), (14, "circuit_breaker_pushback"));
        assert_eq!(
            r.headers[1..],
            [
                ("retry-after".to_string(), "9".to_string()),
                ("grpc-retry-pushback-ms".to_string(), "8003".to_string()),
            ]
        );
    }

    #[test]
    fn grpc_callers_get_unavailable_and_no_retry_after_when_turned_off() {
        let b = breaker(r#"{"name": "pay", "retryAfter": false}"#);
        let r = rejection("x-cb", &b, true, "half-open", Some(SEC), 0);
        assert_eq!((r.status, r.grpc_status), (200, 14));
        assert_eq!(
            r.headers,
            vec![("x-cb".to_string(), "pay; state=half-open".to_string())]
        );
    }
}
