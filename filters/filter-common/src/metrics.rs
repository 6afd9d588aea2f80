//! Metric names built for Istio's `extraStatTags` convention: a tag is written `NAME=.=VALUE;.;` before
//! the metric name, and Envoy's `stats_tags` regex `(NAME=\.=(.*?);\.;)` lifts it into a label, so
//! `format=.=b3;.;trace_context_extracted` renders as `trace_context_extracted{format="b3"}`.

use crate::host::{Host, MetricKind, ProxyHost};

/// Builds a tagged metric name. Tag values are restricted to `[A-Za-z0-9_-]` (others become `_`) so a
/// value can never break the tag syntax or add stat-name segments.
pub fn tagged_name(base: &str, tags: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(base.len() + tags.len() * 24);
    for (key, value) in tags {
        name.push_str(key);
        name.push_str("=.=");
        name.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        }));
        name.push_str(";.;");
    }
    name.push_str(base);
    name
}

/// A counter defined once per VM; a host that refused the definition leaves it inert.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    /// Defines the counter on `host`.
    pub fn define_on(host: &impl Host, name: &str) -> Self {
        Counter(host.define_metric(MetricKind::Counter, name))
    }

    /// Adds `n` on `host`; nothing for 0 (no host call) or a count beyond `i64`.
    pub fn add_on(&self, host: &impl Host, n: u64) {
        if let (Some(id), Ok(delta)) = (self.0, i64::try_from(n)) {
            if delta > 0 {
                host.increment_metric(id, delta);
            }
        }
    }

    /// Defines the counter on the proxy (until each filter's metrics take a `Host`).
    pub fn define(name: &str) -> Self {
        Self::define_on(&ProxyHost, name)
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.add_on(&ProxyHost, n);
    }
}

/// A gauge defined once per VM.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauge(Option<u32>);

impl Gauge {
    /// Defines the gauge on `host`.
    pub fn define_on(host: &impl Host, name: &str) -> Self {
        Gauge(host.define_metric(MetricKind::Gauge, name))
    }

    pub fn set_on(&self, host: &impl Host, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
    }

    pub fn add_on(&self, host: &impl Host, delta: i64) {
        if let Some(id) = self.0 {
            host.increment_metric(id, delta);
        }
    }

    /// Defines the gauge on the proxy (until each filter's metrics take a `Host`).
    pub fn define(name: &str) -> Self {
        Self::define_on(&ProxyHost, name)
    }

    pub fn set(&self, value: u64) {
        self.set_on(&ProxyHost, value);
    }

    pub fn add(&self, delta: i64) {
        self.add_on(&ProxyHost, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, Op};

    #[test]
    fn tags_precede_the_name_in_istio_form() {
        assert_eq!(
            tagged_name("trace_context_extracted", &[("format", "b3")]),
            "format=.=b3;.;trace_context_extracted"
        );
        assert_eq!(
            tagged_name("cb_calls", &[("breaker", "pay.v1|x"), ("outcome", "ok")]),
            "breaker=.=pay_v1_x;.;outcome=.=ok;.;cb_calls"
        );
        assert_eq!(tagged_name("plain", &[]), "plain");
        // `_` and `-` are kept, like letters and digits.
        assert_eq!(tagged_name("m", &[("rule", "a_b-C9")]), "rule=.=a_b-C9;.;m");
    }

    #[test]
    fn counters_and_gauges_go_through_the_host() {
        let host = FakeHost::new();
        let c = Counter::define_on(&host, "c");
        c.add_on(&host, 2);
        c.add_on(&host, 0);
        c.add_on(&host, 1);
        assert_eq!(host.metric("c"), Some(3));
        assert_eq!(host.metric_calls(), 2, "a zero add makes no host call");
        let g = Gauge::define_on(&host, "g");
        g.set_on(&host, 7);
        g.add_on(&host, -2);
        assert_eq!(host.metric("g"), Some(5));
        // A host that refuses the name leaves the metric inert.
        host.fail_next(Op::DefineMetric);
        let refused = Counter::define_on(&host, "refused");
        refused.add_on(&host, 1);
        assert_eq!(host.metric("refused"), None);
    }
}
