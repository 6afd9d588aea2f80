//! The fallback's metrics, with Istio-style tags.

use crate::config::{otherwise, Config, Kind};
use crate::trigger::Reason;
use filter_common::host::Host;
use filter_common::metrics::{tagged_name, Counter, Gauge};
use filter_common::HashMap;
use std::cell::RefCell;

/// Metrics with Istio-style tags. Every served counter a rule can count is defined at configuration
/// (bounded by rules x triggers x kinds): Envoy frees a metric when no VM holds it, so a counter a new
/// VM defined only on first use would lose the old VM's count across a configuration push.
pub struct Metrics {
    served: RefCell<HashMap<(String, &'static str, &'static str), Counter>>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_stores: Counter,
    pub cache_evictions: Counter,
    pub cache_bytes: Gauge,
}

impl Metrics {
    pub fn define(host: &impl Host, config: &Config) -> Self {
        let mut served = HashMap::new();
        for rule in &config.rules {
            for (reason, kind) in served_labels(rule) {
                served.insert(
                    (rule.name.clone(), reason, kind),
                    served_counter(host, &rule.name, reason, kind),
                );
            }
        }
        Metrics {
            served: RefCell::new(served),
            cache_hits: Counter::define_on(host, "fallback_cache_hits"),
            cache_misses: Counter::define_on(host, "fallback_cache_misses"),
            cache_stores: Counter::define_on(host, "fallback_cache_stores"),
            cache_evictions: Counter::define_on(host, "fallback_cache_evictions"),
            cache_bytes: Gauge::define_on(host, "fallback_cache_bytes"),
        }
    }

    pub fn served(&self, host: &impl Host, rule: &str, reason: Reason, kind: &'static str) {
        let mut served = self.served.borrow_mut();
        let counter = served
            .entry((rule.to_string(), reason.label(), kind))
            .or_insert_with(|| served_counter(host, rule, reason.label(), kind));
        counter.add_on(host, 1);
    }
}

fn served_counter(host: &impl Host, rule: &str, trigger: &str, kind: &str) -> Counter {
    Counter::define_on(
        host,
        &tagged_name(
            "fallback_served",
            &[("rule", rule), ("trigger", trigger), ("kind", kind)],
        ),
    )
}

/// The (trigger, kind) pairs a rule can count: each trigger it names, with the kind it answers with,
/// the kind of its `otherwise` (stale and alternate rules), and `trailers` for gRPC status triggers.
fn served_labels(rule: &crate::config::RuleConfig) -> Vec<(&'static str, &'static str)> {
    let t = &rule.triggers;
    let mut triggers: Vec<&'static str> = t.envoy.iter().map(|e| e.label()).collect();
    if t.circuit_breaker {
        triggers.push(Reason::CircuitBreaker.label());
    }
    if t.status.is_some() {
        triggers.push(Reason::Status.label());
    }
    if !t.grpc_status.is_empty() {
        triggers.push(Reason::GrpcStatus.label());
    }
    let mut kinds = vec![rule.response.kind.label()];
    if matches!(rule.response.kind, Kind::Stale | Kind::Alternate) {
        kinds.push(otherwise(&rule.response).kind.label());
    }
    let mut labels: Vec<(&'static str, &'static str)> = triggers
        .iter()
        .flat_map(|t| kinds.iter().map(move |k| (*t, *k)))
        .collect();
    if !t.grpc_status.is_empty() {
        labels.push((Reason::GrpcStatus.label(), "trailers"));
    }
    labels
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    #[test]
    fn every_pair_a_rule_can_count_is_known_at_configuration() {
        let c: Config = parse(Some(
            br#"{"rules": [{"name": "s", "triggers": {"status": "503", "grpcStatus": [14], "circuitBreaker": true}, "response": {"kind": "stale"}}]}"#,
        ))
        .unwrap();
        let labels = served_labels(&c.rules[0]);
        for pair in [
            ("circuitBreaker", "stale"),
            ("circuitBreaker", "problem"),
            ("status", "stale"),
            ("grpcStatus", "problem"),
            ("grpcStatus", "trailers"),
        ] {
            assert!(labels.contains(&pair), "{pair:?} in {labels:?}");
        }
        assert_eq!(labels.len(), 7);
    }
}
