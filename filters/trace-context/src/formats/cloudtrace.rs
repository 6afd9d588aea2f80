//! Google Cloud Trace: `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS`.
//!
//! - TRACE_ID is 32 hex (upper case accepted: the format does not fix the case), SPAN_ID is a decimal
//!   u64. Both must be non-zero. The spec makes the span part optional, but a context without a span
//!   cannot be continued, so a missing span is `Invalid`.
//! - OPTIONS is a decimal number whose bit 0 is TRACE_TRUE (`o=1` sampled, `o=0` not sampled), as
//!   OpenCensus reads it; no `;o=` means "defer".

use std::fmt::Write as _;

use crate::context::{parse_hex_var, TraceContext};
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};

pub const HEADERS: &[&str] = &[X_CLOUD_TRACE_CONTEXT];

const X_CLOUD_TRACE_CONTEXT: &str = "x-cloud-trace-context";

pub fn extract(h: &RequestHeaders) -> Extracted {
    let value = match h.get_single(X_CLOUD_TRACE_CONTEXT) {
        Ok(Some(v)) => v.trim_ascii(),
        Ok(None) => return Extracted::Absent,
        Err(_) => return Extracted::Invalid("x-cloud-trace-context: header repeated"),
    };
    match parse(value) {
        Ok(ctx) => crate::formats::from_parsed(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

fn parse(value: &[u8]) -> Result<TraceContext, &'static str> {
    let mut halves = value.splitn(2, |&c| c == b'/');
    let trace = halves.next().unwrap_or_default();
    // The span part is optional: a trace id alone is continued with a new span id.
    let rest = halves.next().unwrap_or_default();
    let trace_id = Some(trace)
        .filter(|t| t.len() == 32)
        .and_then(|t| parse_hex_var(t, 32))
        .filter(|&v| v != 0)
        .ok_or("x-cloud-trace-context: bad trace id")?;

    let mut parts = rest.splitn(2, |&c| c == b';');
    let span = parts.next().unwrap_or_default().trim_ascii();
    let span_id = if span.is_empty() {
        0
    } else {
        parse_dec_u64(span)
            .filter(|&v| v != 0)
            .ok_or("x-cloud-trace-context: bad span id")?
    };
    let sampled = match parts.next() {
        None => None,
        Some(options) => {
            let o = options
                .trim_ascii()
                .strip_prefix(b"o=")
                .and_then(parse_dec_u64)
                .ok_or("x-cloud-trace-context: bad options")?;
            Some(o & 1 == 1)
        }
    };
    Ok(TraceContext {
        trace_id,
        span_id,
        sampled,
        debug: false,
        random: false,
    })
}

use crate::context::parse_dec_u64;

/// Writes `{32 lower hex}/{decimal span}` followed by `;o=1` (sampled or debug) or `;o=0`; a deferred
/// decision writes no options so the next hop decides, as it would have without the header.
pub fn inject(ctx: &TraceContext, _incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce a header every reader rejects.
        return;
    }
    let mut out = format!("{:032x}/{}", ctx.trace_id, ctx.span_id);
    if let Some(sampled) = if ctx.debug { Some(true) } else { ctx.sampled } {
        // Writing to a String cannot fail.
        let _ = write!(out, ";o={}", u8::from(sampled));
    }
    edits.set(X_CLOUD_TRACE_CONTEXT, out);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{ctx, injected_value, round_trip};
    use crate::formats::Format;

    // GoogleCloudPlatform/opentelemetry-operations-go propagator/propagator_test.go
    const TRACE: &str = "d36a105d7002f0dee73c0dfb9553764a";
    const TRACE_VAL: u128 = 0xd36a105d7002f0dee73c0dfb9553764a;
    const SPAN: &str = "139592093";
    const SPAN_VAL: u64 = 0x0852019d;

    fn ex(value: &str) -> Extracted {
        extract(&RequestHeaders::from_strs(&[(
            "X-Cloud-Trace-Context",
            value,
        )]))
    }

    fn injected(c: &TraceContext) -> Option<String> {
        injected_value(
            Format::CloudTrace,
            c,
            &RequestHeaders::default(),
            X_CLOUD_TRACE_CONTEXT,
        )
    }

    #[test]
    fn absent() {
        assert_eq!(extract(&RequestHeaders::default()), Extracted::Absent);
    }

    #[test]
    fn vectors() {
        assert_eq!(
            ex(&format!("{TRACE}/{SPAN};o=1")),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(true)))
        );
        assert_eq!(
            ex(&format!("{TRACE}/{SPAN};o=0")),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(false)))
        );
        assert_eq!(
            ex(&format!("{TRACE}/{SPAN}")),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, None))
        );
        // Google's documentation example.
        assert_eq!(
            ex("105445aa7843bc8bf206b12000100000/1;o=1"),
            Extracted::Valid(ctx(0x105445aa7843bc8bf206b12000100000, 1, Some(true)))
        );
    }

    #[test]
    fn lenient_forms() {
        let want = Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(true)));
        assert_eq!(
            ex(&format!("{}/{SPAN};o=1", TRACE.to_ascii_uppercase())),
            want
        );
        assert_eq!(ex(&format!(" {TRACE}/{SPAN};o=1\t")), want);
        assert_eq!(ex(&format!("{TRACE}/{SPAN} ; o=1")), want);
        assert_eq!(ex(&format!("{TRACE}/000{SPAN};o=1")), want);
        // Options are a bit field: bit 0 is TRACE_TRUE.
        assert_eq!(ex(&format!("{TRACE}/{SPAN};o=3")), want);
        assert_eq!(
            ex(&format!("{TRACE}/{SPAN};o=2")),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(false)))
        );
        assert_eq!(
            ex(&format!("{TRACE}/18446744073709551615")),
            Extracted::Valid(ctx(TRACE_VAL, u64::MAX, None))
        );
    }

    #[test]
    fn invalid() {
        for v in [
            String::new(),
            format!("{TRACE}/0;o=1"),
            format!("{TRACE}/18446744073709551616"),
            format!("{TRACE}/-1"),
            format!("{TRACE}/+1"),
            format!("{TRACE}/0x12"),
            format!("{TRACE}/12a"),
            format!("{TRACE}/{SPAN};"),
            format!("{TRACE}/{SPAN};o="),
            format!("{TRACE}/{SPAN};o=true"),
            format!("{TRACE}/{SPAN};x=1"),
            format!("{TRACE}/{SPAN};o=1;o=1"),
            format!("{TRACE}/{SPAN}/1"),
            format!("00000000000000000000000000000000/{SPAN}"),
            format!("d36a105d7002f0dee73c0dfb9553764/{SPAN}"),
            format!("d36a105d7002f0dee73c0dfb9553764a0/{SPAN}"),
            format!("e73c0dfb9553764a/{SPAN}"),
            format!("z36a105d7002f0dee73c0dfb9553764a/{SPAN}"),
        ] {
            assert!(matches!(ex(&v), Extracted::Invalid(_)), "{v}");
        }
        // A trace id alone (the span part is optional in the spec) is continued.
        assert!(matches!(
            ex(TRACE),
            Extracted::Partial(crate::formats::Partial {
                trace_id: Some(_),
                sampled: None,
                ..
            })
        ));
        assert!(matches!(
            ex(&format!("{TRACE}/;o=1")),
            Extracted::Partial(crate::formats::Partial {
                trace_id: Some(_),
                sampled: Some(true),
                ..
            })
        ));
        let v = format!("{TRACE}/{SPAN}");
        let h = RequestHeaders::from_strs(&[
            ("x-cloud-trace-context", &v),
            ("x-cloud-trace-context", &v),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("x-cloud-trace-context: header repeated")
        );
        let h = RequestHeaders::new(vec![(
            "x-cloud-trace-context".into(),
            b"\xff/\xfe;o=\x80".to_vec(),
        )]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
    }

    #[test]
    fn inject_values() {
        assert_eq!(
            injected(&ctx(TRACE_VAL, SPAN_VAL, Some(true))).unwrap(),
            format!("{TRACE}/{SPAN};o=1")
        );
        assert_eq!(
            injected(&ctx(TRACE_VAL, SPAN_VAL, Some(false))).unwrap(),
            format!("{TRACE}/{SPAN};o=0")
        );
        assert_eq!(
            injected(&ctx(TRACE_VAL, SPAN_VAL, None)).unwrap(),
            format!("{TRACE}/{SPAN}")
        );
        let mut debug = ctx(TRACE_VAL, SPAN_VAL, None);
        debug.debug = true;
        assert_eq!(injected(&debug).unwrap(), format!("{TRACE}/{SPAN};o=1"));
        // A 64-bit trace id is padded to 32 characters.
        assert_eq!(
            injected(&ctx(0xa3ce929d0e0e4736, u64::MAX, None)).unwrap(),
            "0000000000000000a3ce929d0e0e4736/18446744073709551615"
        );
        assert_eq!(injected(&ctx(0, 1, None)), None);
        assert_eq!(injected(&ctx(1, 0, None)), None);
    }

    #[test]
    fn round_trips() {
        let incoming = RequestHeaders::from_strs(&[(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1",
        )]);
        for trace_id in [
            TRACE_VAL,
            0xa3ce929d0e0e4736,
            1,
            u128::MAX,
            1 << 64,
            u128::from(u64::MAX),
        ] {
            for span_id in [SPAN_VAL, 1, u64::MAX] {
                for sampled in [None, Some(true), Some(false)] {
                    let c = ctx(trace_id, span_id, sampled);
                    assert_eq!(
                        round_trip(Format::CloudTrace, &c, &incoming),
                        Extracted::Valid(c)
                    );
                }
            }
        }
    }
}
