//! The per-request decision, in plain Rust: read every format, pick the winning context (or restore or
//! start one), and compute the header edits that make every format on the forwarded request tell the
//! same trace.

use crate::baggage::{Baggage, BaggageLimits};
use crate::config::Config;
use crate::context::TraceContext;
use crate::formats::{datadog, datadog_w3c, Extracted, Format, Partial};
use crate::headers::{HeaderEdit, HeaderEdits, RequestHeaders};
use crate::tracestate::TraceState;
use filter_common::ids::IdGenerator;

const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";
const JAEGER_BAGGAGE_PREFIX: &str = "uberctx-";
const OT_BAGGAGE_PREFIX: &str = "ot-baggage-";

/// Where the forwarded context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from the request in this format (the first valid one in precedence order).
    Extracted(Format),
    /// No valid context arrived; restored from the inbound request with the same `x-request-id`.
    Restored,
    /// No valid context arrived; this filter started a trace.
    Started,
}

/// A context restored by `x-request-id`, with the `tracestate` that went with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub context: TraceContext,
    pub tracestate: TraceState,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The context forwarded (after any new span id).
    pub context: TraceContext,
    pub source: Source,
    /// Header edits for the forwarded request, without no-op edits.
    pub edits: HeaderEdits,
    /// Formats whose headers were present but invalid (repaired or removed).
    pub invalid: Vec<Format>,
    /// Formats that carried a valid context of another trace (repaired or removed).
    pub conflicting: Vec<Format>,
    /// Baggage members dropped by limits, filters or parsing.
    pub baggage_dropped: usize,
    /// The forwarded `traceparent` is this context's, so the forwarded `tracestate` belongs to it too.
    pub writes_w3c: bool,
}

/// The per-VM part of the decision: configuration plus derived values computed once.
#[derive(Debug, Clone)]
pub struct Propagator {
    config: Config,
    baggage_limits: BaggageLimits,
}

impl Propagator {
    pub fn new(config: Config) -> Self {
        let baggage_limits = config.baggage.limits();
        Propagator {
            config,
            baggage_limits,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Decides the context and edits for one request. `restore` is asked for a context only when no
    /// valid one arrived; `egress` says the request leaves the workload (an outbound listener);
    /// `now_secs` is the wall clock, used only when `needs_clock`.
    pub fn decide(
        &self,
        headers: &RequestHeaders,
        ids: &mut IdGenerator,
        egress: bool,
        now_secs: u64,
        restore: impl FnOnce() -> Option<Restored>,
    ) -> Decision {
        let seen = Seen::scan(headers);
        let found = self.extract_all(headers, &seen);
        let winner = self
            .config
            .extract
            .iter()
            .find_map(|f| match found_for(&found, *f) {
                Some(Extracted::Valid(ctx)) => Some((*f, ctx.clone())),
                _ => None,
            });
        let partials: Vec<(Format, Partial)> = self
            .config
            .extract
            .iter()
            .filter_map(|f| match found_for(&found, *f) {
                Some(Extracted::Partial(p)) => Some((*f, *p)),
                _ => None,
            })
            .collect();

        let mut restored_state = None;
        let (mut context, source) = match winner {
            Some((format, ctx)) => (ctx, Source::Extracted(format)),
            // A trace id without a span id (an AWS load balancer's Root) is continued with a new span.
            None => match partials
                .iter()
                .find_map(|(f, p)| p.trace_id.map(|t| (*f, t, *p)))
            {
                Some((format, trace_id, p)) => (
                    TraceContext {
                        trace_id,
                        span_id: ids.span_id(),
                        sampled: p.sampled,
                        debug: p.debug,
                        random: false,
                    },
                    Source::Extracted(format),
                ),
                None => match restore() {
                    Some(r) => {
                        restored_state = Some(r.tracestate);
                        (r.context, Source::Restored)
                    }
                    None => (self.start(ids, now_secs), Source::Started),
                },
            },
        };
        if context.sampled.is_none() {
            // A decision that arrived on its own (`b3: 0`) is honoured; otherwise we decide first.
            match partials
                .iter()
                .find_map(|(_, p)| p.sampled.map(|s| (s, p.debug)))
            {
                Some((sampled, debug)) => {
                    context.sampled = Some(sampled);
                    context.debug |= debug;
                }
                None => context.sampled = Some(ids.chance(self.config.sampling_ratio)),
            }
        }

        let mut invalid = Vec::new();
        let mut conflicting = Vec::new();
        for (format, result) in Format::ALL.iter().zip(&found) {
            let Some(result) = result else { continue };
            let other_trace = match result {
                Extracted::Invalid(_) => {
                    invalid.push(*format);
                    continue;
                }
                Extracted::Valid(ctx) => Some(ctx.trace_id),
                Extracted::Partial(p) => p.trace_id,
                Extracted::Absent => None,
            };
            if other_trace.is_some_and(|t| !same_trace(*format, t, context.trace_id)) {
                conflicting.push(*format);
            }
        }

        let incoming_span = context.span_id;
        if self.config.participate {
            context.span_id = ids.span_id();
        }

        let mut edits = HeaderEdits::default();
        let mut writes_w3c = false;
        for format in Format::ALL {
            let present = found_for(&found, format).is_some();
            let wanted = self.config.inject.contains(&format)
                || (present && self.config.keep_received_formats);
            if wanted && format.can_carry(&context) {
                format.inject(&context, headers, &mut edits);
                writes_w3c |= format == Format::TraceContext;
            } else if present {
                format.remove(headers, &mut edits);
            }
        }
        if writes_w3c {
            let w3c_in_step = matches!(
                found_for(&found, Format::TraceContext),
                Some(Extracted::Valid(ctx)) if ctx.trace_id == context.trace_id
            );
            self.write_tracestate(
                headers,
                &context,
                w3c_in_step,
                incoming_span,
                restored_state,
                &mut edits,
            );
        }

        let baggage_dropped = if self.config.baggage.enabled {
            self.write_baggage(headers, egress, &seen, &mut edits)
        } else {
            0
        };

        Decision {
            context,
            source,
            edits: without_no_ops(edits, headers),
            invalid,
            conflicting,
            baggage_dropped,
            writes_w3c,
        }
    }

    /// The `tracestate` the forwarded request carries for `decision.context` (for correlation): the
    /// rewritten value, or the received one when it went on unchanged; empty when the forwarded
    /// `tracestate` is not this context's or is not valid.
    pub fn forwarded_tracestate(
        &self,
        decision: &Decision,
        headers: &RequestHeaders,
    ) -> TraceState {
        if !decision.writes_w3c {
            return TraceState::default();
        }
        match decision.edits.get(TRACESTATE) {
            Some(Some(value)) => TraceState::parse(std::iter::once(value.as_bytes())),
            Some(None) => return TraceState::default(),
            None => TraceState::parse(headers.get_all(TRACESTATE)),
        }
        .unwrap_or_default()
    }

    /// Reads every format whose headers are present (absent ones are left `None`), so a request pays
    /// for the formats it carries, not for all nine.
    fn extract_all(&self, headers: &RequestHeaders, seen: &Seen) -> Found {
        let mut found = Found::default();
        for ((format, slot), present) in Format::ALL.iter().zip(&mut found).zip(seen.formats) {
            if present {
                *slot = match format.extract(headers) {
                    Extracted::Absent => None,
                    other => Some(other),
                };
            }
        }
        found
    }

    /// A fresh context for a response whose request this filter never saw (a local reply sent before
    /// the request reached it).
    pub fn start_for_response(&self, ids: &mut IdGenerator, now_secs: u64) -> TraceContext {
        let mut ctx = self.start(ids, now_secs);
        ctx.sampled = Some(ids.chance(self.config.sampling_ratio));
        ctx
    }

    /// True when `decide` needs the wall clock: X-Ray trace ids begin with the epoch seconds.
    pub fn needs_clock(&self) -> bool {
        self.config.inject.contains(&Format::XRay)
    }

    fn start(&self, ids: &mut IdGenerator, now_secs: u64) -> TraceContext {
        let mut trace_id = ids.trace_id();
        if self.needs_clock() && self.config.new_trace_id_bits == 128 {
            // X-Ray rejects trace ids whose first 32 bits are not a recent Unix time.
            trace_id = (u128::from(now_secs as u32) << 96) | (trace_id & ((1u128 << 96) - 1));
        }
        if self.config.new_trace_id_bits == 64 {
            trace_id &= u128::from(u64::MAX);
            if trace_id == 0 {
                trace_id = u128::from(ids.span_id());
            }
        }
        TraceContext {
            trace_id,
            span_id: ids.span_id(),
            sampled: None,
            debug: false,
            random: true,
        }
    }

    /// Keeps `tracestate` byte-for-byte when `traceparent` goes on unchanged (the spec forbids changing
    /// one without the other); otherwise rebuilds it: kept when it belongs to this trace, the restored one
    /// for a restored context, dropped when it belonged to another trace or to an invalid `traceparent`,
    /// with Datadog's `dd` member when Datadog headers carried this trace, and our own member first when
    /// configured.
    fn write_tracestate(
        &self,
        headers: &RequestHeaders,
        context: &TraceContext,
        w3c_in_step: bool,
        incoming_span: u64,
        restored: Option<TraceState>,
        edits: &mut HeaderEdits,
    ) {
        let own_member = match (&self.config.tracestate_key, self.config.participate) {
            (Some(key), true) => Some((key.as_str(), context.span_id_hex())),
            _ => None,
        };
        let raw_len: usize = headers.get_all(TRACESTATE).map(<[u8]>::len).sum();
        let traceparent_unchanged = w3c_in_step && context.span_id == incoming_span;
        if traceparent_unchanged
            && own_member.is_none()
            && raw_len <= self.config.tracestate_max_length
        {
            return;
        }
        let mut state = if w3c_in_step {
            TraceState::parse(headers.get_all(TRACESTATE)).unwrap_or_default()
        } else {
            restored.unwrap_or_default()
        };
        // A context that arrived in Datadog headers keeps their decisions in Datadog's `dd` member.
        if !w3c_in_step && self.config.extract.contains(&Format::Datadog) {
            if let Some(dd) = datadog::w3c_member(context, headers) {
                state.upsert(datadog_w3c::KEY, &dd);
            }
        }
        if let Some((key, value)) = own_member {
            state.upsert(key, &value);
        }
        match state.to_header(self.config.tracestate_max_length) {
            Some(value) => edits.set(TRACESTATE, value),
            None => edits.remove(TRACESTATE),
        }
    }

    /// Applies the baggage limits and translations; returns how many members were dropped.
    fn write_baggage(
        &self,
        headers: &RequestHeaders,
        egress: bool,
        seen: &Seen,
        edits: &mut HeaderEdits,
    ) -> usize {
        let cfg = &self.config.baggage;
        if egress && cfg.strip_on_egress {
            for (name, _) in headers.iter() {
                if name == BAGGAGE
                    || name.starts_with(JAEGER_BAGGAGE_PREFIX)
                    || name.starts_with(OT_BAGGAGE_PREFIX)
                {
                    edits.remove(name);
                }
            }
            return 0;
        }
        let has_w3c = seen.baggage;
        let (mut baggage, mut dropped) = if has_w3c {
            Baggage::parse(headers.get_all(BAGGAGE))
        } else {
            (Baggage::default(), 0)
        };
        let mut translated = false;
        for (enabled, prefix, present) in [
            (cfg.from_jaeger, JAEGER_BAGGAGE_PREFIX, seen.jaeger_baggage),
            (cfg.from_ot_trace, OT_BAGGAGE_PREFIX, seen.ot_baggage),
        ] {
            // Most requests carry neither prefix: no pass over the headers for them.
            if !present {
                continue;
            }
            if enabled {
                baggage.merge(Baggage::from_prefixed(headers, prefix));
                translated = true;
            }
            // The allow and deny lists hold for the prefixed forms too, translated or not.
            for (name, _) in headers.iter() {
                if name
                    .strip_prefix(prefix)
                    .is_some_and(|key| !self.baggage_limits.permits(key))
                {
                    edits.remove(name);
                    dropped += 1;
                }
            }
        }
        if !has_w3c && !translated {
            return dropped;
        }
        let before = baggage.len();
        dropped += baggage.apply(&self.baggage_limits);
        let changed = translated
            || dropped > 0
            || baggage.len() != before
            || headers.get_all(BAGGAGE).nth(1).is_some();
        if changed {
            match baggage.to_header() {
                Some(value) => edits.set(BAGGAGE, value),
                None => edits.remove(BAGGAGE),
            }
        }
        dropped
    }
}

/// A 64-bit-only format (Datadog without `_dd.p.tid`) carries the low half of a 128-bit trace id: the
/// same trace, not a conflict.
fn same_trace(format: Format, found: u128, winner: u128) -> bool {
    found == winner
        || (format.is_64_bit_only() && found >> 64 == 0 && found == winner & u128::from(u64::MAX))
}

/// What each format read, by its position in `Format::ALL`; `None` when absent.
type Found = [Option<Extracted>; Format::ALL.len()];

fn found_for(found: &Found, format: Format) -> Option<&Extracted> {
    found.get(format.index()).and_then(Option::as_ref)
}

/// What one pass over the request's header names saw, so later steps look only for what is there.
#[derive(Default)]
struct Seen {
    /// By position in `Format::ALL`: one of the format's headers is present.
    formats: [bool; Format::ALL.len()],
    baggage: bool,
    jaeger_baggage: bool,
    ot_baggage: bool,
}

impl Seen {
    fn scan(headers: &RequestHeaders) -> Seen {
        let mut seen = Seen::default();
        // Names compared as bytes: no UTF-8 validation of every name.
        for (name, _) in headers.raw() {
            if let Some(format) = Format::owning_name(name) {
                if let Some(slot) = seen.formats.get_mut(format.index()) {
                    *slot = true;
                }
            } else if name == BAGGAGE.as_bytes() {
                seen.baggage = true;
            } else if name.starts_with(JAEGER_BAGGAGE_PREFIX.as_bytes()) {
                // `RequestHeaders::iter`, which the baggage steps use, skips a name that is not UTF-8.
                seen.jaeger_baggage |= std::str::from_utf8(name).is_ok();
            } else if name.starts_with(OT_BAGGAGE_PREFIX.as_bytes()) {
                seen.ot_baggage |= std::str::from_utf8(name).is_ok();
            }
        }
        seen
    }
}

/// Drops edits that would not change the request, so a request already in step costs no host calls.
fn without_no_ops(edits: HeaderEdits, headers: &RequestHeaders) -> HeaderEdits {
    let mut out = HeaderEdits::default();
    for edit in edits.iter() {
        match edit {
            HeaderEdit::Set(name, value) => {
                if headers.get_single(name) != Ok(Some(value.as_bytes())) {
                    out.set(name, value.clone());
                }
            }
            HeaderEdit::Remove(name) => {
                if headers.contains(name) {
                    out.remove(name);
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;

    fn propagator(json: &str) -> Propagator {
        Propagator::new(parse::<Config>(Some(json.as_bytes())).unwrap())
    }

    fn decide(p: &Propagator, headers: &[(&str, &str)]) -> Decision {
        let mut ids = IdGenerator::from_seed(42);
        p.decide(
            &RequestHeaders::from_strs(headers),
            &mut ids,
            false,
            0,
            || None,
        )
    }

    fn set_value<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        d.edits.get(name).flatten()
    }

    #[test]
    fn a_request_in_step_costs_no_edits() {
        let d = decide(
            &propagator("{}"),
            &[("traceparent", TP), ("tracestate", "a=1")],
        );
        assert_eq!(d.source, Source::Extracted(Format::TraceContext));
        assert!(d.edits.is_empty(), "{:?}", d.edits);
        assert_eq!(d.context.trace_id, TRACE);
    }

    #[test]
    fn no_context_starts_a_sampled_random_trace() {
        let d = decide(&propagator("{}"), &[]);
        assert_eq!(d.source, Source::Started);
        assert!(d.context.random);
        assert_eq!(d.context.sampled, Some(true));
        let tp = set_value(&d, "traceparent").unwrap();
        assert_eq!(
            tp,
            format!(
                "00-{}-{}-03",
                d.context.trace_id_hex(),
                d.context.span_id_hex()
            )
        );
    }

    #[test]
    fn sampling_ratio_zero_starts_unsampled_traces() {
        let d = decide(&propagator(r#"{"samplingRatio": 0}"#), &[]);
        assert_eq!(d.context.sampled, Some(false));
        assert!(set_value(&d, "traceparent").unwrap().ends_with("-02"));
    }

    #[test]
    fn incoming_sampling_decision_is_honoured() {
        let p = propagator(r#"{"samplingRatio": 0}"#);
        let d = decide(&p, &[("traceparent", TP)]);
        assert_eq!(d.context.sampled, Some(true));
        let d = decide(
            &propagator("{}"),
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")],
        );
        assert_eq!(d.context.sampled, Some(false));
        assert!(set_value(&d, "traceparent").unwrap().ends_with("-00"));
    }

    #[test]
    fn b3_caller_gets_the_same_trace_in_w3c_and_keeps_b3() {
        let d = decide(
            &propagator("{}"),
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
        );
        assert_eq!(d.source, Source::Extracted(Format::B3));
        assert_eq!(
            set_value(&d, "traceparent"),
            Some("00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01")
        );
        // b3 is already in step: no edit.
        assert_eq!(d.edits.get("b3"), None);
        assert_eq!(d.edits.len(), 1, "{:?}", d.edits);
    }

    #[test]
    fn conflicting_formats_are_repaired_to_the_winner() {
        let d = decide(
            &propagator("{}"),
            &[
                ("traceparent", TP),
                ("tracestate", "a=1"),
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ],
        );
        assert_eq!(d.source, Source::Extracted(Format::TraceContext));
        assert_eq!(d.conflicting, vec![Format::B3Multi]);
        assert_eq!(
            set_value(&d, "x-b3-traceid"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(set_value(&d, "x-b3-spanid"), Some("00f067aa0ba902b7"));
        assert_eq!(d.edits.get("traceparent"), None);
        assert_eq!(d.edits.get("tracestate"), None);
    }

    #[test]
    fn precedence_is_configurable() {
        let headers = [
            ("traceparent", TP),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("tracestate", "vendor=x"),
        ];
        let d = decide(
            &propagator(r#"{"extract": ["b3", "tracecontext"]}"#),
            &headers,
        );
        assert_eq!(d.source, Source::Extracted(Format::B3));
        assert_eq!(d.conflicting, vec![Format::TraceContext]);
        assert!(set_value(&d, "traceparent")
            .unwrap()
            .contains("80f198ee56343ba864fe8b2a57d3eff7"));
        // The tracestate belonged to the losing trace.
        assert_eq!(d.edits.get("tracestate"), Some(None));
    }

    #[test]
    fn received_formats_can_be_removed_instead_of_kept() {
        let d = decide(
            &propagator(r#"{"keepReceivedFormats": false}"#),
            &[(
                "uber-trace-id",
                "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
            )],
        );
        assert_eq!(d.source, Source::Extracted(Format::Jaeger));
        assert_eq!(d.edits.get("uber-trace-id"), Some(None));
        assert!(set_value(&d, "traceparent").is_some());
    }

    #[test]
    fn invalid_traceparent_starts_a_new_trace_and_drops_tracestate() {
        let d = decide(
            &propagator("{}"),
            &[
                (
                    "traceparent",
                    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "a=1"),
            ],
        );
        assert_eq!(d.source, Source::Started);
        assert_eq!(d.invalid, vec![Format::TraceContext]);
        assert_ne!(d.context.trace_id, TRACE);
        assert_eq!(d.edits.get("tracestate"), Some(None));
    }

    #[test]
    fn duplicated_traceparent_is_rejected() {
        let d = decide(
            &propagator("{}"),
            &[("traceparent", TP), ("traceparent", TP)],
        );
        assert_eq!(d.source, Source::Started);
        assert_eq!(d.invalid, vec![Format::TraceContext]);
    }

    #[test]
    fn participating_mints_a_span_and_updates_tracestate() {
        let p = propagator(r#"{"participate": true, "tracestateKey": "mesh"}"#);
        let d = decide(&p, &[("traceparent", TP), ("tracestate", "a=1,mesh=old")]);
        assert_ne!(d.context.span_id, 0x00f067aa0ba902b7);
        assert_eq!(d.context.trace_id, TRACE);
        let ts = set_value(&d, "tracestate").unwrap();
        assert_eq!(ts, format!("mesh={},a=1", d.context.span_id_hex()));
    }

    #[test]
    fn item8_level2_keys_and_repeated_keys_keep_the_tracestate() {
        let p = propagator(r#"{"participate": true, "tracestateKey": "mesh"}"#);
        for (sent, kept) in [
            ("foo@=1,bar=2", "foo@=1,bar=2"),
            ("foo=1,foo=1", "foo=1"),
            ("a=1,b=2,a=3", "a=1,b=2"),
        ] {
            let d = decide(&p, &[("traceparent", TP), ("tracestate", sent)]);
            let ts = set_value(&d, "tracestate").unwrap();
            assert_eq!(ts, format!("mesh={},{kept}", d.context.span_id_hex()));
        }
        // Forwarding without changing traceparent keeps tracestate byte-for-byte, repeats included.
        let d = decide(
            &propagator("{}"),
            &[("traceparent", TP), ("tracestate", "foo=1,foo=1")],
        );
        assert_eq!(d.edits.get("tracestate"), None);
    }

    #[test]
    fn restored_context_is_used_when_none_arrived() {
        let p = propagator("{}");
        let restored = TraceContext {
            trace_id: TRACE,
            span_id: 7,
            sampled: Some(true),
            debug: false,
            random: false,
        };
        let mut ids = IdGenerator::from_seed(1);
        let d = p.decide(
            &RequestHeaders::from_strs(&[("x-request-id", "r1")]),
            &mut ids,
            true,
            0,
            || {
                Some(Restored {
                    context: restored.clone(),
                    tracestate: TraceState::default(),
                })
            },
        );
        assert_eq!(d.source, Source::Restored);
        assert_eq!(
            set_value(&d, "traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000007-01")
        );
        // A valid incoming context is never replaced by a restored one.
        let d = p.decide(
            &RequestHeaders::from_strs(&[("traceparent", TP)]),
            &mut ids,
            true,
            0,
            || {
                Some(Restored {
                    context: restored.clone(),
                    tracestate: TraceState::default(),
                })
            },
        );
        assert_eq!(d.source, Source::Extracted(Format::TraceContext));
    }

    #[test]
    fn item9_restored_context_brings_its_tracestate() {
        let restored = Restored {
            context: TraceContext {
                trace_id: TRACE,
                span_id: 7,
                sampled: Some(true),
                debug: false,
                random: false,
            },
            tracestate: TraceState::parse(std::iter::once(&b"congo=t61,rojo=1"[..])).unwrap(),
        };
        let mut ids = IdGenerator::from_seed(1);
        let headers = RequestHeaders::from_strs(&[("x-request-id", "r1"), ("tracestate", "x=1")]);
        let d = propagator("{}").decide(&headers, &mut ids, true, 0, || Some(restored.clone()));
        assert_eq!(set_value(&d, "tracestate"), Some("congo=t61,rojo=1"));
        // Participating puts our member first, as for any other context.
        let p = propagator(r#"{"participate": true, "tracestateKey": "mesh"}"#);
        let d = p.decide(&headers, &mut ids, true, 0, || Some(restored.clone()));
        assert_eq!(
            set_value(&d, "tracestate").unwrap(),
            format!("mesh={},congo=t61,rojo=1", d.context.span_id_hex())
        );
        // Nothing stored: a stray tracestate on the outbound request is still removed.
        let mut empty = restored.clone();
        empty.tracestate = TraceState::default();
        let d = propagator("{}").decide(&headers, &mut ids, true, 0, || Some(empty.clone()));
        assert_eq!(d.edits.get("tracestate"), Some(None));
    }

    #[test]
    fn forwarded_tracestate_is_what_the_upstream_gets_for_this_context() {
        let p = propagator("{}");
        let ts = |headers: &[(&str, &str)]| {
            let h = RequestHeaders::from_strs(headers);
            let d = p.decide(&h, &mut IdGenerator::from_seed(1), false, 0, || None);
            p.forwarded_tracestate(&d, &h).to_header(usize::MAX)
        };
        // Unchanged: the received list (repeats dropped for storage).
        assert_eq!(
            ts(&[("traceparent", TP), ("tracestate", "a=1,a=2,b=3")]).as_deref(),
            Some("a=1,b=3")
        );
        // Another trace won: its tracestate is removed and nothing is stored.
        assert_eq!(
            ts(&[
                ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
                ("tracestate", "a=1")
            ]),
            None
        );
        // Not valid: forwarded as received but not stored.
        assert_eq!(ts(&[("traceparent", TP), ("tracestate", "A=1")]), None);
        // No W3C written (b3 only, nothing W3C received): a stray tracestate is not this context's.
        let p = propagator(r#"{"inject": ["b3"]}"#);
        let h = RequestHeaders::from_strs(&[("tracestate", "a=1")]);
        let d = p.decide(&h, &mut IdGenerator::from_seed(1), false, 0, || None);
        assert!(p.forwarded_tracestate(&d, &h).is_empty());
    }

    #[test]
    fn new_trace_ids_can_be_64_bit() {
        let d = decide(
            &propagator(r#"{"newTraceIdBits": 64, "inject": ["b3multi"]}"#),
            &[],
        );
        assert!(d.context.is_64_bit());
        assert_eq!(set_value(&d, "x-b3-traceid").unwrap().len(), 16);
        // The random draw's low half, not some other id (`decide` seeds its generator with 42).
        let drawn = IdGenerator::from_seed(42).trace_id() & u128::from(u64::MAX);
        assert_ne!(drawn, 0);
        assert_eq!(d.context.trace_id, drawn);
    }

    #[test]
    fn baggage_limits_hold() {
        let many: Vec<String> = (0..70).map(|i| format!("k{i}=v{i}")).collect();
        let joined = many.join(",");
        let d = decide(&propagator("{}"), &[("baggage", &joined)]);
        assert_eq!(d.baggage_dropped, 6);
        assert_eq!(set_value(&d, "baggage").unwrap().split(',').count(), 64);
        let d = decide(
            &propagator(r#"{"baggage": {"denyKeys": ["secret"]}}"#),
            &[("baggage", "a=1,secret=2")],
        );
        assert_eq!(set_value(&d, "baggage"), Some("a=1"));
        let d = decide(&propagator("{}"), &[("baggage", "a=1,b=2")]);
        assert_eq!(d.edits.get("baggage"), None);
    }

    #[test]
    fn jaeger_baggage_is_translated() {
        let d = decide(&propagator("{}"), &[("uberctx-tenant", "acme")]);
        assert_eq!(set_value(&d, "baggage"), Some("tenant=acme"));
    }

    #[test]
    fn a_prefixed_name_that_is_not_utf8_is_left_alone() {
        // Envoy never sends such a name; the one pass over names must not see what later steps skip.
        let mut raw = filter_common::wire::encode_map(&[
            ("traceparent", TP.as_bytes()),
            ("ot-baggage-a", b"1"),
            ("uberctx-b", b"2"),
        ]);
        for name in [&b"ot-baggage-a"[..], b"uberctx-b"] {
            let at = raw.windows(name.len()).position(|w| w == name).unwrap();
            raw[at + name.len() - 1] = 0xff;
        }
        let headers = RequestHeaders::from_encoded(raw);
        let d =
            propagator("{}").decide(&headers, &mut IdGenerator::from_seed(1), false, 0, || None);
        assert!(d.edits.is_empty(), "{:?}", d.edits);
        assert_eq!(d.source, Source::Extracted(Format::TraceContext));
    }

    #[test]
    fn baggage_is_stripped_on_egress_when_asked() {
        let p = propagator(r#"{"baggage": {"stripOnEgress": true}}"#);
        let mut ids = IdGenerator::from_seed(1);
        let h = RequestHeaders::from_strs(&[("baggage", "a=1"), ("uberctx-x", "y")]);
        let d = p.decide(&h, &mut ids, true, 0, || None);
        assert_eq!(d.edits.get("baggage"), Some(None));
        assert_eq!(d.edits.get("uberctx-x"), Some(None));
        let d = p.decide(&h, &mut ids, false, 0, || None);
        assert_ne!(d.edits.get("baggage"), Some(None));
    }

    #[test]
    fn a_sampling_decision_alone_is_honoured_not_invalid() {
        let d = decide(&propagator("{}"), &[("b3", "0")]);
        assert_eq!(d.source, Source::Started);
        assert!(d.invalid.is_empty(), "{:?}", d.invalid);
        assert_eq!(d.context.sampled, Some(false));
        assert!(set_value(&d, "traceparent").unwrap().ends_with("-02"));
        let b3 = set_value(&d, "b3").unwrap();
        assert!(b3.ends_with("-0"), "{b3}");
        let d = decide(&propagator("{}"), &[("x-datadog-sampling-priority", "-1")]);
        assert_eq!(d.context.sampled, Some(false));
        // B3's debug flag alone (`b3: d`) is a decision too: sampled, and debug for the new trace.
        let d = decide(&propagator(r#"{"inject": ["b3"]}"#), &[("b3", "d")]);
        assert_eq!(d.source, Source::Started);
        assert_eq!(d.context.sampled, Some(true));
        assert!(d.context.debug);
        let b3 = set_value(&d, "b3").unwrap();
        assert!(b3.ends_with("-d"), "{b3}");
    }

    #[test]
    fn a_load_balancer_root_alone_is_continued() {
        let d = decide(
            &propagator("{}"),
            &[(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            )],
        );
        assert_eq!(d.source, Source::Extracted(Format::XRay));
        assert_eq!(d.context.trace_id, 0x5759e988bd862e3fe1be46a994272793);
        assert_ne!(d.context.span_id, 0);
        assert_eq!(d.context.sampled, Some(true));
        let xray = set_value(&d, "x-amzn-trace-id").unwrap();
        assert!(
            xray.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent="),
            "{xray}"
        );
    }

    #[test]
    fn datadog_headers_that_cannot_carry_the_trace_are_removed() {
        let d = decide(
            &propagator("{}"),
            &[
                (
                    "traceparent",
                    "00-4bf92f3577b34da60000000000000000-00f067aa0ba902b7-01",
                ),
                ("x-datadog-trace-id", "123"),
                ("x-datadog-parent-id", "456"),
            ],
        );
        assert_eq!(d.edits.get("x-datadog-trace-id"), Some(None));
        assert_eq!(d.edits.get("x-datadog-parent-id"), Some(None));
    }

    #[test]
    fn only_a_64_bit_only_format_may_carry_the_low_half() {
        let full: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
        let low = full & u128::from(u64::MAX);
        assert!(same_trace(Format::Datadog, low, full));
        assert!(same_trace(Format::Datadog, full, full));
        assert!(!same_trace(Format::Datadog, low ^ 1, full));
        // A 128-bit id whose high half is set is compared whole, whatever the format.
        assert!(!same_trace(Format::Datadog, full ^ (1 << 100), full));
        // In a 128-bit format an id of only a low half is another trace.
        for format in [Format::TraceContext, Format::B3, Format::B3Multi] {
            assert!(!same_trace(format, low, full), "{format:?}");
            assert!(same_trace(format, full, full), "{format:?}");
        }
    }

    #[test]
    fn datadog_low_half_of_the_same_trace_is_not_a_conflict() {
        // 0xa3ce929d0e0e4736 = 11803532876627986230, the low half of TRACE.
        let d = decide(
            &propagator("{}"),
            &[
                ("traceparent", TP),
                ("x-datadog-trace-id", "11803532876627986230"),
                ("x-datadog-parent-id", "67667974448284343"),
            ],
        );
        assert!(d.conflicting.is_empty(), "{:?}", d.conflicting);
        // The tid tag is added so Datadog reads the full id back.
        assert!(set_value(&d, "x-datadog-tags")
            .unwrap()
            .contains("_dd.p.tid=4bf92f3577b34da6"));
    }

    #[test]
    fn denied_baggage_keys_never_leave_in_prefixed_headers() {
        let p = propagator(r#"{"baggage": {"denyKeys": ["secret"]}}"#);
        let d = decide(
            &p,
            &[
                ("uberctx-secret", "hunter2"),
                ("ot-baggage-secret", "x"),
                ("uberctx-user", "1"),
            ],
        );
        assert_eq!(d.edits.get("uberctx-secret"), Some(None));
        assert_eq!(d.edits.get("ot-baggage-secret"), Some(None));
        assert_eq!(d.edits.get("uberctx-user"), None);
        assert_eq!(set_value(&d, "baggage"), Some("user=1"));

        // Untranslated, a denied prefixed header is still removed, and counted once.
        let p = propagator(r#"{"baggage": {"denyKeys": ["secret"], "fromJaeger": false}}"#);
        let d = decide(&p, &[("uberctx-secret", "hunter2"), ("uberctx-user", "1")]);
        assert_eq!(d.edits.get("uberctx-secret"), Some(None));
        assert_eq!(d.edits.get("baggage"), None);
        assert_eq!(d.baggage_dropped, 1);
    }

    #[test]
    fn xray_trace_ids_begin_with_the_epoch_seconds() {
        let p = propagator(r#"{"inject": ["tracecontext", "xray"]}"#);
        let mut ids = IdGenerator::from_seed(3);
        let d = p.decide(
            &RequestHeaders::default(),
            &mut ids,
            false,
            0x5759_e988,
            || None,
        );
        assert_eq!(d.context.trace_id >> 96, 0x5759_e988);
        // The other 96 bits stay the random draw's.
        let low_96 = (1u128 << 96) - 1;
        assert_eq!(
            d.context.trace_id & low_96,
            IdGenerator::from_seed(3).trace_id() & low_96
        );
        assert!(set_value(&d, "x-amzn-trace-id")
            .unwrap()
            .starts_with("Root=1-5759e988-"));
    }

    #[test]
    fn without_xray_a_new_trace_id_is_all_random() {
        // Only X-Ray needs the epoch in the trace id; W3C asks for random bits in a new one
        // (Level 2 `random` flag), so the clock must not leak into it otherwise.
        let now = 0x5759_e988;
        for inject in [r#"["tracecontext"]"#, r#"["tracecontext", "b3"]"#] {
            let p = propagator(&format!(r#"{{"inject": {inject}}}"#));
            let d = p.decide(
                &RequestHeaders::default(),
                &mut IdGenerator::from_seed(3),
                false,
                now,
                || None,
            );
            assert_eq!(d.source, Source::Started);
            assert!(d.context.random);
            assert_ne!(d.context.trace_id >> 96, u128::from(now), "{inject}");
        }
    }

    #[test]
    fn datadog_headers_reach_tracestate_only_when_datadog_is_extracted() {
        // B3 carries the trace; Datadog headers describe the same trace's low half.
        let headers = [
            ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"),
            ("x-datadog-trace-id", "11803532876627986230"),
            ("x-datadog-parent-id", "42"),
            ("x-datadog-sampling-priority", "2"),
        ];
        let d = decide(&propagator("{}"), &headers);
        assert_eq!(d.source, Source::Extracted(Format::B3));
        assert_eq!(d.context.trace_id, TRACE);
        let state = set_value(&d, "tracestate").unwrap();
        assert!(state.starts_with("dd="), "{state}");

        // Not extracting Datadog means not reading its headers at all, into tracestate neither.
        let d = decide(
            &propagator(r#"{"extract": ["b3"], "inject": ["tracecontext"]}"#),
            &headers,
        );
        assert_eq!(d.source, Source::Extracted(Format::B3));
        assert_eq!(d.context.trace_id, TRACE);
        assert_eq!(d.edits.get("tracestate"), None, "{:?}", d.edits);
        assert!(set_value(&d, "traceparent").is_some());
    }

    #[test]
    fn baggage_is_rewritten_only_when_something_was_dropped() {
        // An invalid member is dropped whole (W3C Baggage), so the header is rewritten without it.
        let d = decide(&propagator("{}"), &[("baggage", "a=1,b c=2")]);
        assert_eq!(d.baggage_dropped, 1);
        assert_eq!(set_value(&d, "baggage"), Some("a=1"));
        // A valid header with optional whitespace goes on byte for byte.
        let d = decide(&propagator("{}"), &[("baggage", "a=1 , b=2")]);
        assert_eq!(d.baggage_dropped, 0);
        assert_eq!(d.edits.get("baggage"), None, "{:?}", d.edits);
    }
}
