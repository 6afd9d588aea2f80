//! B3 single header: `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`
//! (openzipkin/b3-propagation; parsing follows OpenTelemetry's B3 propagator).
//!
//! - TraceId is 16 or 32 lower-case hex (a 16-hex id is the low 64 bits), SpanId and ParentSpanId 16.
//! - SamplingState is `1`, `0` or `d` (debug, which implies sampled); absent means "defer".
//! - `{TraceId}-{SpanId}-{ParentSpanId}` (a parent without a sampling state) is malformed, as in OpenTelemetry.
//! - `b3: 0` alone is a valid B3 value ("do not sample", no ids). It carries no context to continue, so
//!   it is reported as `Invalid("b3: deny only")`; the caller may honour it as a "do not sample" request
//!   when it starts a new trace. `b3: 1` / `b3: d` alone are reported the same way.
//!
//! When both the single and the multi headers are present the single one wins; that precedence is the
//! caller's, this module reads only `b3`.

use crate::context::TraceContext;
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};
use filter_common::hex::push_lower_hex;

pub const HEADERS: &[&str] = &[B3];

const B3: &str = "b3";

pub fn extract(h: &RequestHeaders) -> Extracted {
    let value = match h.get_single(B3) {
        Ok(Some(v)) => v.trim_ascii(),
        Ok(None) => return Extracted::Absent,
        Err(_) => return Extracted::Invalid("b3: header repeated"),
    };
    match parse(value) {
        Ok(ctx) => crate::formats::from_parsed(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

fn parse(value: &[u8]) -> Result<TraceContext, &'static str> {
    let mut parts = value.split(|&c| c == b'-');
    let (Some(trace), Some(span)) = (parts.next(), parts.next()) else {
        // A sampling decision alone is a valid B3 header; the caller honours it.
        return match value {
            b"0" => Ok(crate::formats::partial_ctx(0, Some(false), false)),
            b"1" => Ok(crate::formats::partial_ctx(0, Some(true), false)),
            b"d" => Ok(crate::formats::partial_ctx(0, Some(true), true)),
            b"" => Err("b3: empty"),
            _ => Err("b3: malformed"),
        };
    };
    let trace_id = parse_trace_id(trace).ok_or("b3: bad trace id")?;
    let span_id = parse_span_id(span).ok_or("b3: bad span id")?;
    let (sampled, debug) = match parts.next() {
        None => (None, false),
        Some(b"1") => (Some(true), false),
        Some(b"0") => (Some(false), false),
        Some(b"d") => (Some(true), true),
        Some(_) => return Err("b3: bad sampling state"),
    };
    // The parent is validated but not kept: the next hop's parent is `span_id`.
    if let Some(parent) = parts.next() {
        parse_span_id(parent).ok_or("b3: bad parent span id")?;
    }
    if parts.next().is_some() {
        return Err("b3: too many fields");
    }
    Ok(TraceContext {
        trace_id,
        span_id,
        sampled,
        debug,
        random: false,
    })
}

use crate::context::{
    parse_span_id_16 as parse_span_id, parse_trace_id_16_or_32 as parse_trace_id,
};

/// Writes `{trace}-{span}[-{1|0|d}]`. The parent is never sent (OpenTelemetry does the same): the
/// context has no parent of the span it carries. A 64-bit trace id is written as 16 hex characters so
/// that 64-bit B3 peers read it back unchanged.
pub fn inject(ctx: &TraceContext, _incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce a header every reader rejects.
        return;
    }
    let state = if ctx.debug {
        "-d"
    } else {
        match ctx.sampled {
            Some(true) => "-1",
            Some(false) => "-0",
            None => "",
        }
    };
    let mut value = String::with_capacity(52);
    if ctx.is_64_bit() {
        push_lower_hex(&mut value, u128::from(ctx.trace_id_low()), 16);
    } else {
        push_lower_hex(&mut value, ctx.trace_id, 32);
    }
    value.push('-');
    push_lower_hex(&mut value, u128::from(ctx.span_id), 16);
    value.push_str(state);
    edits.set(B3, value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{debug_ctx as ctx, injected_value, round_trip};
    use crate::formats::Format;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const TRACE_ID: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const SPAN_ID: u64 = 0x00f067aa0ba902b7;

    fn ex(value: &str) -> Extracted {
        extract(&RequestHeaders::from_strs(&[("b3", value)]))
    }

    fn injected(c: &TraceContext) -> String {
        injected_value(Format::B3, c, &RequestHeaders::default(), "b3").unwrap()
    }

    #[test]
    fn absent() {
        assert_eq!(extract(&RequestHeaders::default()), Extracted::Absent);
        let h = RequestHeaders::from_strs(&[("x-b3-traceid", TRACE), ("x-b3-spanid", SPAN)]);
        assert_eq!(extract(&h), Extracted::Absent);
    }

    // opentelemetry-go-contrib propagators/b3/b3_data_test.go, "single:" extraction cases.
    #[test]
    fn otel_valid_vectors() {
        let cases: &[(String, Option<bool>, bool, u128)] = &[
            (format!("{TRACE}-{SPAN}"), None, false, TRACE_ID),
            (format!("{TRACE}-{SPAN}-0"), Some(false), false, TRACE_ID),
            (format!("{TRACE}-{SPAN}-1"), Some(true), false, TRACE_ID),
            (format!("{TRACE}-{SPAN}-d"), Some(true), true, TRACE_ID),
            (
                format!("{TRACE}-{SPAN}-1-00000000000000cd"),
                Some(true),
                false,
                TRACE_ID,
            ),
            (
                format!("a3ce929d0e0e4736-{SPAN}"),
                None,
                false,
                0xa3ce929d0e0e4736,
            ),
        ];
        for (value, sampled, debug, trace_id) in cases {
            assert_eq!(
                ex(value),
                Extracted::Valid(ctx(*trace_id, SPAN_ID, *sampled, *debug)),
                "{value}"
            );
        }
    }

    #[test]
    fn otel_invalid_vectors() {
        for value in [
            "ab00000000000000000000000000000000-cd00000000000000-1",
            "ab000000000000000000000000000000-cd0000000000000000-1",
            "00-ab000000000000000000000000000000-cd00000000000000-01",
            "ab000000000000000000000000000000-cd00000000000000-1-cd0000000000000000",
            "qw000000000000000000000000000000-cd00000000000000-1",
            "ab000000000000000000000000000000-qw00000000000000-1",
            "ab000000000000000000000000000000-cd00000000000000-q",
            "ab000000000000000000000000000000-cd00000000000000-1-qw00000000000000",
            "AB000000000000000000000000000000-cd00000000000000-1",
            "ab000000000000000000000000000000-CD00000000000000-1",
            "ab000000000000000000000000000000-cd00000000000000-1-EF00000000000000",
            "00000000000000000000000000000000-0000000000000000-1",
            "ab000000000000000000000000000000-cd00000000000000-true",
            // Trailing separator (OpenTelemetry's "invalid single" fallback case).
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-",
        ] {
            assert!(matches!(ex(value), Extracted::Invalid(_)), "{value}");
        }
    }

    #[test]
    fn more_invalid() {
        for value in [
            "",
            "-",
            "0-",
            TRACE,
            "a3ce929d0e0e4736",
            // Parent without a sampling state.
            &format!("{TRACE}-{SPAN}-00000000000000cd"),
            &format!("{TRACE}-{SPAN}-1-00000000000000cd-1"),
            &format!("{TRACE}-{SPAN}-1-0000000000000000"),
            &format!("{TRACE}-0000000000000000-1"),
            &format!("00000000000000000000000000000000-{SPAN}-1"),
            &format!("0000000000000000-{SPAN}-1"),
            &format!("{TRACE}-{SPAN}-D"),
            &format!("{TRACE}-{SPAN}--1"),
            &format!("{TRACE}:{SPAN}"),
            &format!("4bf92f3577b34da6a3ce929d0e0e473-{SPAN}"),
            &format!("+bf92f3577b34da6a3ce929d0e0e4736-{SPAN}"),
        ] {
            assert!(matches!(ex(value), Extracted::Invalid(_)), "{value:?}");
        }
        // The reason tells an empty header from a malformed one.
        assert_eq!(ex(""), Extracted::Invalid("b3: empty"));
        assert_eq!(ex("2"), Extracted::Invalid("b3: malformed"));
    }

    #[test]
    fn sampling_state_only() {
        let only = |sampled, debug| {
            Extracted::Partial(crate::formats::Partial {
                trace_id: None,
                sampled: Some(sampled),
                debug,
            })
        };
        assert_eq!(ex("0"), only(false, false));
        assert_eq!(ex(" 0 "), only(false, false));
        assert_eq!(ex("1"), only(true, false));
        assert_eq!(ex("d"), only(true, true));
    }

    #[test]
    fn trims_ows() {
        let v = format!(" \t{TRACE}-{SPAN}-1\t ");
        assert_eq!(
            ex(&v),
            Extracted::Valid(ctx(TRACE_ID, SPAN_ID, Some(true), false))
        );
    }

    #[test]
    fn repeated_header_is_invalid() {
        let v = format!("{TRACE}-{SPAN}-1");
        let h = RequestHeaders::from_strs(&[("b3", &v), ("b3", &v)]);
        assert_eq!(extract(&h), Extracted::Invalid("b3: header repeated"));
    }

    #[test]
    fn non_utf8_is_invalid() {
        let h = RequestHeaders::new(vec![("b3".into(), vec![0xff, b'-', 0xfe, 0x80])]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
        let mut v = format!("{TRACE}-{SPAN}-").into_bytes();
        v.push(0xc3);
        let h = RequestHeaders::new(vec![("b3".into(), v)]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
    }

    // opentelemetry-go-contrib b3_data_test.go "single:" injection cases.
    #[test]
    fn otel_inject_vectors() {
        assert_eq!(
            injected(&ctx(TRACE_ID, SPAN_ID, Some(true), false)),
            format!("{TRACE}-{SPAN}-1")
        );
        assert_eq!(
            injected(&ctx(TRACE_ID, SPAN_ID, Some(false), false)),
            format!("{TRACE}-{SPAN}-0")
        );
        assert_eq!(
            injected(&ctx(TRACE_ID, SPAN_ID, None, false)),
            format!("{TRACE}-{SPAN}")
        );
        assert_eq!(
            injected(&ctx(TRACE_ID, SPAN_ID, None, true)),
            format!("{TRACE}-{SPAN}-d")
        );
        assert_eq!(
            injected(&ctx(TRACE_ID, SPAN_ID, Some(true), true)),
            format!("{TRACE}-{SPAN}-d")
        );
    }

    #[test]
    fn inject_64_bit_trace_id_as_16_hex() {
        assert_eq!(
            injected(&ctx(0xa3ce929d0e0e4736, SPAN_ID, Some(true), false)),
            format!("a3ce929d0e0e4736-{SPAN}-1")
        );
        // The high half is non-zero: all 32 characters, even if the low half is zero.
        assert_eq!(
            injected(&ctx(1 << 64, 1, None, false)),
            "00000000000000010000000000000000-0000000000000001"
        );
        assert_eq!(
            injected(&ctx(1, 1, None, false)),
            "0000000000000001-0000000000000001"
        );
    }

    #[test]
    fn inject_replaces_incoming_and_skips_zero_ids() {
        let incoming = RequestHeaders::from_strs(&[("b3", "0")]);
        let mut edits = HeaderEdits::default();
        inject(
            &ctx(TRACE_ID, SPAN_ID, Some(false), false),
            &incoming,
            &mut edits,
        );
        let out = incoming.apply(&edits);
        assert_eq!(
            out.get_single("b3").unwrap().unwrap(),
            format!("{TRACE}-{SPAN}-0").as_bytes()
        );

        let mut edits = HeaderEdits::default();
        inject(&ctx(0, SPAN_ID, Some(true), false), &incoming, &mut edits);
        inject(&ctx(TRACE_ID, 0, Some(true), false), &incoming, &mut edits);
        assert!(edits.is_empty());
    }

    #[test]
    fn round_trips() {
        for trace_id in [
            TRACE_ID,
            0xa3ce929d0e0e4736,
            1,
            u128::MAX,
            1 << 64,
            u128::from(u64::MAX),
        ] {
            for span_id in [SPAN_ID, 1, u64::MAX] {
                for (sampled, debug) in [
                    (None, false),
                    (Some(true), false),
                    (Some(false), false),
                    (Some(true), true),
                ] {
                    let c = ctx(trace_id, span_id, sampled, debug);
                    let incoming = RequestHeaders::default();
                    assert_eq!(round_trip(Format::B3, &c, &incoming), Extracted::Valid(c));
                }
            }
        }
    }
}
