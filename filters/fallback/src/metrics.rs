//! The fallback's metrics, with Istio-style tags.

use crate::trigger::Reason;
use filter_common::metrics::{tagged_name, Counter, Gauge};
use std::cell::RefCell;
use std::collections::HashMap;

/// Metrics with Istio-style tags. Served counters are defined on first use (bounded by rules x triggers x
/// kinds).
pub struct Metrics {
    served: RefCell<HashMap<(String, &'static str, &'static str), Counter>>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_stores: Counter,
    pub cache_evictions: Counter,
    pub cache_bytes: Gauge,
}

impl Metrics {
    pub fn define() -> Self {
        Metrics {
            served: RefCell::new(HashMap::new()),
            cache_hits: Counter::define("fallback_cache_hits"),
            cache_misses: Counter::define("fallback_cache_misses"),
            cache_stores: Counter::define("fallback_cache_stores"),
            cache_evictions: Counter::define("fallback_cache_evictions"),
            cache_bytes: Gauge::define("fallback_cache_bytes"),
        }
    }

    pub fn served(&self, rule: &str, reason: Reason, kind: &'static str) {
        let mut served = self.served.borrow_mut();
        let counter = served
            .entry((rule.to_string(), reason.label(), kind))
            .or_insert_with(|| {
                Counter::define(&tagged_name(
                    "fallback_served",
                    &[("rule", rule), ("trigger", reason.label()), ("kind", kind)],
                ))
            });
        counter.inc();
    }
}
