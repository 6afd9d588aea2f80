//! Per-breaker metrics with Istio-style tags (bounded: breaker names come from configuration), defined
//! on and counted through the host the caller passes.

use filter_common::host::Host;
use filter_common::metrics::{tagged_name, Counter, Gauge};
use std::cell::Cell;

pub struct BreakerMetrics {
    pub success: Counter,
    pub failure: Counter,
    pub slow: Counter,
    pub rejected: Counter,
    /// Rejected: the key was at its `maxConcurrentCalls`.
    pub full: Counter,
    /// Rejected: the dependency's pushback (`maxPushback`) held.
    pub pushback: Counter,
    pub would_reject: Counter,
    pub ignored: Counter,
    pub cancelled: Counter,
    pub probe: Counter,
    pub keys_overflow: Counter,
    /// Whether this VM has logged that keys overflow.
    pub warned_overflow: Cell<bool>,
    pub to_open: Counter,
    pub to_half_open: Counter,
    pub to_closed: Counter,
    pub open_keys: Gauge,
    /// Calls holding a permit (`maxConcurrentCalls`), every key and worker together.
    pub in_flight: Gauge,
}

impl BreakerMetrics {
    pub fn define(host: &impl Host, breaker: &str) -> Self {
        let counter =
            |base: &str, tags: &[(&str, &str)]| Counter::define_on(host, &tagged_name(base, tags));
        let calls = |outcome: &str| {
            counter(
                "circuit_breaker_calls",
                &[("breaker", breaker), ("outcome", outcome)],
            )
        };
        let transitions = |state: &str| {
            counter(
                "circuit_breaker_transitions",
                &[("breaker", breaker), ("state", state)],
            )
        };
        let gauge =
            |base: &str| Gauge::define_on(host, &tagged_name(base, &[("breaker", breaker)]));
        BreakerMetrics {
            success: calls("success"),
            failure: calls("failure"),
            slow: calls("slow"),
            rejected: calls("rejected"),
            full: calls("full"),
            pushback: calls("pushback"),
            would_reject: calls("would_reject"),
            ignored: calls("ignored"),
            cancelled: calls("cancelled"),
            probe: calls("probe"),
            keys_overflow: counter("circuit_breaker_keys_overflow", &[("breaker", breaker)]),
            warned_overflow: Cell::new(false),
            to_open: transitions("open"),
            to_half_open: transitions("half_open"),
            to_closed: transitions("closed"),
            open_keys: gauge("circuit_breaker_open"),
            in_flight: gauge("circuit_breaker_in_flight"),
        }
    }
}
