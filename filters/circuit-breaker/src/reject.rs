//! The answer a rejected request gets at once: the configured status (gRPC callers: `UNAVAILABLE`),
//! the status header naming the breaker and its state, `retry-after` when the breaker reopens, and
//! optionally `x-envoy-overloaded` so Envoy-aware clients back off.

use crate::config::BreakerConfig;

pub use filter_common::failure::CIRCUIT_BREAKER_DETAILS as DETAILS;

const GRPC_UNAVAILABLE: i32 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The gRPC status; -1 for an HTTP caller.
    pub grpc_status: i32,
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
    if let (true, Some(at)) = (b.retry_after, retry_at_ns) {
        // Whole seconds, rounded up and at least 1: a client retrying sooner would be rejected again.
        let secs = at.saturating_sub(now_ns).div_ceil(1_000_000_000).max(1);
        headers.push(("retry-after".to_string(), secs.to_string()));
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
        };
    }
    headers.push(("content-type".to_string(), "text/plain".to_string()));
    Rejection {
        status: b.reject_status,
        headers,
        body: format!("{message}\n"),
        grpc_status: -1,
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
        // Past the deadline still says 1 second, never 0.
        let r = rejection("x-circuit-breaker", &b, false, "open", Some(SEC), 5 * SEC);
        assert_eq!(r.headers[1].1, "1");
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
