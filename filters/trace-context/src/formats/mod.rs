//! One module per trace header format. Each module exposes the same three items:
//! - `HEADERS`: every header name the format owns (lower case), so a stale copy can be removed;
//! - `extract(&RequestHeaders) -> Extracted`: read the context, validating strictly;
//! - `inject(&TraceContext, &RequestHeaders, &mut HeaderEdits)`: write the context (the incoming headers
//!   are given so fields the context does not model, such as X-Ray `Lineage` or Datadog `origin`, can be
//!   kept).

use crate::context::TraceContext;
use crate::headers::{HeaderEdits, RequestHeaders};

pub mod b3;
pub mod b3multi;
pub mod base64;
pub mod cloudtrace;
pub mod datadog;
pub mod datadog_w3c;
pub mod grpcbin;
pub mod jaeger;
pub mod ottrace;
pub mod w3c;
pub mod xray;

/// What a format found in the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    /// None of the format's headers is present.
    Absent,
    /// The format's headers are present but unusable; the reason is for debug logs.
    Invalid(&'static str),
    Valid(TraceContext),
    /// Usable but incomplete: a sampling decision without ids (`b3: 0`), or a trace id without a span id
    /// (an AWS load balancer's `Root=` alone). The trace id, if any, can be continued with a new span id.
    Partial(Partial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub trace_id: Option<u128>,
    pub sampled: Option<bool>,
    pub debug: bool,
}

/// Parsers report a missing id as 0 (an id that is present and zero is invalid and rejected earlier):
/// both ids make a context, a trace id alone or a sampling decision alone is partial.
pub(crate) fn from_parsed(ctx: TraceContext) -> Extracted {
    match (ctx.trace_id, ctx.span_id) {
        (0, _) if ctx.sampled.is_none() && !ctx.debug => {
            Extracted::Invalid("neither ids nor a sampling decision")
        }
        (0, _) => Extracted::Partial(Partial {
            trace_id: None,
            sampled: ctx.sampled,
            debug: ctx.debug,
        }),
        (trace, 0) => Extracted::Partial(Partial {
            trace_id: Some(trace),
            sampled: ctx.sampled,
            debug: ctx.debug,
        }),
        _ => Extracted::Valid(ctx),
    }
}

/// `extract` for formats spread over several headers: absent when none is present, else `parse`.
pub(crate) fn extract_multi(
    h: &RequestHeaders,
    names: &[&str],
    parse: fn(&RequestHeaders) -> Result<TraceContext, &'static str>,
) -> Extracted {
    if !names.iter().any(|name| h.contains(name)) {
        return Extracted::Absent;
    }
    match parse(h) {
        Ok(ctx) => from_parsed(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

/// The trimmed value of a header that may occur at most once; `repeated` is the error otherwise.
pub(crate) fn single_trimmed<'a>(
    h: &'a RequestHeaders,
    name: &str,
    repeated: &'static str,
) -> Result<Option<&'a [u8]>, &'static str> {
    h.get_single(name)
        .map(|v| v.map(<[u8]>::trim_ascii))
        .map_err(|_| repeated)
}

/// A context that carries only a sampling decision (and possibly a trace id); ids are 0 when missing.
pub(crate) fn partial_ctx(trace_id: u128, sampled: Option<bool>, debug: bool) -> TraceContext {
    TraceContext {
        trace_id,
        span_id: 0,
        sampled,
        debug,
        random: false,
    }
}

/// The trace header formats, named as OpenTelemetry's `OTEL_PROPAGATORS` names them where it has a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Format {
    TraceContext,
    B3,
    B3Multi,
    Jaeger,
    OtTrace,
    Datadog,
    XRay,
    CloudTrace,
    GrpcTraceBin,
}

/// A format in configuration is its name; an unknown one is refused with the known ones listed.
impl TryFrom<String> for Format {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Format::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            format!(
                "unknown format {}; known formats: {}",
                filter_common::config::quoted(&name),
                filter_common::text::join(&known, ", ")
            )
        })
    }
}

impl Format {
    /// Every format, in the default extraction precedence (W3C first, then the most specific).
    pub const ALL: [Format; 9] = [
        Format::TraceContext,
        Format::B3,
        Format::B3Multi,
        Format::Jaeger,
        Format::OtTrace,
        Format::Datadog,
        Format::XRay,
        Format::CloudTrace,
        Format::GrpcTraceBin,
    ];

    /// The name used in configuration and metric tags.
    pub fn name(self) -> &'static str {
        match self {
            Format::TraceContext => "tracecontext",
            Format::B3 => "b3",
            Format::B3Multi => "b3multi",
            Format::Jaeger => "jaeger",
            Format::OtTrace => "ottrace",
            Format::Datadog => "datadog",
            Format::XRay => "xray",
            Format::CloudTrace => "cloudtrace",
            Format::GrpcTraceBin => "grpc-trace-bin",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.iter().copied().find(|f| f.name() == name)
    }

    pub fn headers(self) -> &'static [&'static str] {
        match self {
            Format::TraceContext => w3c::HEADERS,
            Format::B3 => b3::HEADERS,
            Format::B3Multi => b3multi::HEADERS,
            Format::Jaeger => jaeger::HEADERS,
            Format::OtTrace => ottrace::HEADERS,
            Format::Datadog => datadog::HEADERS,
            Format::XRay => xray::HEADERS,
            Format::CloudTrace => cloudtrace::HEADERS,
            Format::GrpcTraceBin => grpcbin::HEADERS,
        }
    }

    /// The format a header name belongs to, so one pass over the request finds which formats are present.
    pub fn owning(header: &str) -> Option<Format> {
        Format::owning_name(header.as_bytes())
    }

    /// [`Format::owning`] over the name's bytes, so the pass needs no UTF-8 validation.
    pub fn owning_name(header: &[u8]) -> Option<Format> {
        Some(match header {
            b"traceparent" | b"tracestate" => Format::TraceContext,
            b"b3" => Format::B3,
            b"uber-trace-id" => Format::Jaeger,
            b"x-amzn-trace-id" => Format::XRay,
            b"x-cloud-trace-context" => Format::CloudTrace,
            b"grpc-trace-bin" => Format::GrpcTraceBin,
            h if h.starts_with(b"x-b3-") => Format::B3Multi,
            h if h.starts_with(b"ot-tracer-") => Format::OtTrace,
            h if h.starts_with(b"x-datadog-") => Format::Datadog,
            _ => return None,
        })
    }

    /// The format's position in [`Format::ALL`] (its declaration order).
    pub fn index(self) -> usize {
        self as usize
    }

    /// False when the format cannot express `ctx` (Datadog needs a non-zero low half): its stale headers
    /// are then removed instead of left describing another trace.
    pub fn can_carry(self, ctx: &TraceContext) -> bool {
        match self {
            Format::Datadog => ctx.trace_id_low() != 0,
            _ => true,
        }
    }

    /// True when the format can carry only the low 64 bits of a trace id in its main field.
    pub fn is_64_bit_only(self) -> bool {
        matches!(self, Format::Datadog)
    }

    pub fn extract(self, h: &RequestHeaders) -> Extracted {
        match self {
            Format::TraceContext => w3c::extract(h),
            Format::B3 => b3::extract(h),
            Format::B3Multi => b3multi::extract(h),
            Format::Jaeger => jaeger::extract(h),
            Format::OtTrace => ottrace::extract(h),
            Format::Datadog => datadog::extract(h),
            Format::XRay => xray::extract(h),
            Format::CloudTrace => cloudtrace::extract(h),
            Format::GrpcTraceBin => grpcbin::extract(h),
        }
    }

    pub fn inject(self, ctx: &TraceContext, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
        match self {
            Format::TraceContext => w3c::inject(ctx, incoming, edits),
            Format::B3 => b3::inject(ctx, incoming, edits),
            Format::B3Multi => b3multi::inject(ctx, incoming, edits),
            Format::Jaeger => jaeger::inject(ctx, incoming, edits),
            Format::OtTrace => ottrace::inject(ctx, incoming, edits),
            Format::Datadog => datadog::inject(ctx, incoming, edits),
            Format::XRay => xray::inject(ctx, incoming, edits),
            Format::CloudTrace => cloudtrace::inject(ctx, incoming, edits),
            Format::GrpcTraceBin => grpcbin::inject(ctx, incoming, edits),
        }
    }

    /// Removes every header of this format that is present in `incoming`.
    pub fn remove(self, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
        for name in self.headers() {
            if incoming.contains(name) {
                edits.remove(name);
            }
        }
    }
}

/// Helpers the format modules' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::Format;
    use crate::context::TraceContext;
    use crate::headers::{HeaderEdits, RequestHeaders};

    /// A context that is neither debug nor random.
    pub fn ctx(trace_id: u128, span_id: u64, sampled: Option<bool>) -> TraceContext {
        debug_ctx(trace_id, span_id, sampled, false)
    }

    /// A context that is not random, with the debug flag as given.
    pub fn debug_ctx(
        trace_id: u128,
        span_id: u64,
        sampled: Option<bool>,
        debug: bool,
    ) -> TraceContext {
        TraceContext {
            trace_id,
            span_id,
            sampled,
            debug,
            random: false,
        }
    }

    /// The edits `format` asks for to carry `c` over `incoming`.
    pub fn injected_edits(
        format: Format,
        c: &TraceContext,
        incoming: &RequestHeaders,
    ) -> HeaderEdits {
        let mut edits = HeaderEdits::default();
        format.inject(c, incoming, &mut edits);
        edits
    }

    /// What `format` reads back from the headers it wrote for `c` over `incoming`.
    pub fn round_trip(
        format: Format,
        c: &TraceContext,
        incoming: &RequestHeaders,
    ) -> super::Extracted {
        format.extract(&incoming.apply(&injected_edits(format, c, incoming)))
    }

    /// The value `format` sets on `header` for `c` over `incoming`; `None` when it sets none.
    pub fn injected_value(
        format: Format,
        c: &TraceContext,
        incoming: &RequestHeaders,
        header: &str,
    ) -> Option<String> {
        injected_edits(format, c, incoming)
            .get(header)
            .flatten()
            .map(str::to_string)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod conversion_tests {
    use super::*;

    /// `owning` must know every header a format reads, or a present format would be skipped.
    #[test]
    fn every_owned_header_maps_back_to_its_format() {
        for format in Format::ALL {
            for header in format.headers() {
                assert_eq!(Format::owning(header), Some(format), "{header}");
            }
        }
        assert_eq!(Format::owning("x-request-id"), None);
        assert_eq!(Format::owning("baggage"), None);
        for (i, format) in Format::ALL.iter().enumerate() {
            assert_eq!(format.index(), i);
        }
    }

    fn read_back(format: Format, ctx: &TraceContext) -> TraceContext {
        let none = RequestHeaders::default();
        let edits = test_support::injected_edits(format, ctx, &none);
        match format.extract(&none.apply(&edits)) {
            Extracted::Valid(read) => read,
            other => panic!(
                "{} did not read back its own output: {other:?}",
                format.name()
            ),
        }
    }

    /// What survives a trip through `format`: the ids always; the decision as the format can say it.
    fn comparable(mut ctx: TraceContext) -> (u128, u64, bool) {
        ctx.random = false;
        (
            ctx.trace_id,
            ctx.span_id,
            ctx.sampled == Some(true) || ctx.debug,
        )
    }

    /// Every format to every other, both ways: the trace id, span id and a sampled decision survive, for
    /// 128-bit ids and for 64-bit ids.
    #[test]
    fn every_conversion_keeps_the_trace() {
        let contexts = [
            TraceContext {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                span_id: 0x00f067aa0ba902b7,
                sampled: Some(true),
                debug: false,
                random: true,
            },
            TraceContext {
                trace_id: 0x0000_0000_0000_0000_a3ce_929d_0e0e_4736,
                span_id: 0x53995c3f42cd8ad8,
                sampled: Some(false),
                debug: false,
                random: false,
            },
        ];
        for ctx in &contexts {
            for from in Format::ALL {
                let via_from = read_back(from, ctx);
                for to in Format::ALL {
                    let via_to = read_back(to, &via_from);
                    let back = read_back(from, &via_to);
                    assert_eq!(
                        comparable(via_to.clone()),
                        comparable(ctx.clone()),
                        "{} -> {}",
                        from.name(),
                        to.name()
                    );
                    assert_eq!(
                        comparable(back),
                        comparable(ctx.clone()),
                        "{} -> {} -> {}",
                        from.name(),
                        to.name(),
                        from.name()
                    );
                }
            }
        }
    }
}
