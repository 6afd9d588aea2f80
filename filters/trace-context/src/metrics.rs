//! Trace-context's counters, defined once per VM. Names carry Istio-style tags (see
//! `filter_common::metrics`).

use crate::formats::Format;
use crate::propagation::{Decision, Source};
use filter_common::host::Host;
use filter_common::metrics::{tagged_name, Counter};

pub struct Metrics {
    extracted: Vec<(Format, Counter)>,
    invalid: Vec<(Format, Counter)>,
    conflicts: Vec<(Format, Counter)>,
    started: Counter,
    restored: Counter,
    outbound_without_context: Counter,
    baggage_dropped: Counter,
    /// Inbound requests refused a correlation slot held by a live entry of the same request id with
    /// another trace.
    pub correlation_refused: Counter,
    /// Live correlation entries replaced by another request id hashing to the same slot.
    pub correlation_evicted: Counter,
}

impl Metrics {
    pub fn define(host: &impl Host) -> Self {
        let per_format = |base: &str| -> Vec<(Format, Counter)> {
            Format::ALL
                .iter()
                .map(|f| {
                    (
                        *f,
                        Counter::define_on(host, &tagged_name(base, &[("format", f.name())])),
                    )
                })
                .collect()
        };
        Metrics {
            extracted: per_format("trace_context_extracted"),
            invalid: per_format("trace_context_invalid"),
            conflicts: per_format("trace_context_conflicts"),
            started: Counter::define_on(host, "trace_context_started"),
            restored: Counter::define_on(host, "trace_context_restored"),
            outbound_without_context: Counter::define_on(
                host,
                "trace_context_outbound_without_context",
            ),
            baggage_dropped: Counter::define_on(host, "trace_context_baggage_dropped"),
            correlation_refused: Counter::define_on(host, "trace_context_correlation_refused"),
            correlation_evicted: Counter::define_on(host, "trace_context_correlation_evicted"),
        }
    }

    pub fn record(&self, host: &impl Host, decision: &Decision, outbound: bool) {
        match decision.source {
            Source::Extracted(format) => inc(host, &self.extracted, format),
            Source::Restored => self.restored.add_on(host, 1),
            Source::Started => self.started.add_on(host, 1),
        }
        // An outbound call with no context of its own means the workload did not propagate it.
        if outbound && !matches!(decision.source, Source::Extracted(_)) {
            self.outbound_without_context.add_on(host, 1);
        }
        for f in &decision.invalid {
            inc(host, &self.invalid, *f);
        }
        for f in &decision.conflicting {
            inc(host, &self.conflicts, *f);
        }
        self.baggage_dropped
            .add_on(host, decision.baggage_dropped as u64);
    }
}

fn inc(host: &impl Host, counters: &[(Format, Counter)], format: Format) {
    if let Some((_, c)) = counters.iter().find(|(f, _)| *f == format) {
        c.add_on(host, 1);
    }
}
