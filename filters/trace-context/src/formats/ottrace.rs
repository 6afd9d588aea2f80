//! OpenTracing (Lightstep) headers: `ot-tracer-traceid` (1 to 32 lower-case hex digits),
//! `ot-tracer-spanid` (1 to 16), `ot-tracer-sampled` (`true`/`false`/`1`/`0`, any case, as OpenTelemetry
//! accepts; absent means "defer"). Parsing follows OpenTelemetry's OT propagators: the Python one writes
//! ids as `hex(id)`, without leading zeros (one span id in 16 starts with a zero digit), and reads
//! `[0-9a-f]{1,32}` / `{1,16}`, so shorter ids are left-padded here too; all-zero ids stay invalid. Ids
//! are written zero-padded (16 or 32 digits), which every OT reader accepts.
//!
//! `ot-baggage-*` is handled elsewhere and is not among `HEADERS`.

use crate::context::{parse_lower_hex_var, TraceContext};
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};
use filter_common::hex::lower_hex;

pub const HEADERS: &[&str] = &[TRACE_ID, SPAN_ID, SAMPLED];

const TRACE_ID: &str = "ot-tracer-traceid";
const SPAN_ID: &str = "ot-tracer-spanid";
const SAMPLED: &str = "ot-tracer-sampled";

pub fn extract(h: &RequestHeaders) -> Extracted {
    crate::formats::extract_multi(h, HEADERS, parse)
}

/// The trimmed value of a header that may occur at most once.
fn single<'a>(h: &'a RequestHeaders, name: &'static str) -> Result<Option<&'a [u8]>, &'static str> {
    crate::formats::single_trimmed(h, name, "ot-tracer-*: header repeated")
}

fn parse(h: &RequestHeaders) -> Result<TraceContext, &'static str> {
    let trace = single(h, TRACE_ID)?;
    let span = single(h, SPAN_ID)?;
    let sampled = match single(h, SAMPLED)? {
        None => None,
        Some(v) => Some(parse_sampled(v).ok_or("ot-tracer-sampled: bad value")?),
    };
    let trace = trace.ok_or("ot-tracer-traceid missing")?;
    let span = span.ok_or("ot-tracer-spanid missing")?;
    let trace_id = parse_lower_hex_var(trace, 32)
        .filter(|&v| v != 0)
        .ok_or("ot-tracer-traceid: bad value")?;
    let span_id = parse_lower_hex_var(span, 16)
        .filter(|&v| v != 0)
        .map(|v| v as u64) // at most 16 hex digits: fits
        .ok_or("ot-tracer-spanid: bad value")?;
    Ok(TraceContext {
        trace_id,
        span_id,
        sampled,
        debug: false,
        random: false,
    })
}

fn parse_sampled(v: &[u8]) -> Option<bool> {
    if v == b"1" || v.eq_ignore_ascii_case(b"true") {
        Some(true)
    } else if v == b"0" || v.eq_ignore_ascii_case(b"false") {
        Some(false)
    } else {
        None
    }
}

/// Writes the ids and `ot-tracer-sampled: true|false` (debug counts as sampled; the header is removed when
/// the decision is deferred). A 64-bit trace id is written as 16 hex characters, which is what 64-bit
/// OpenTracing tracers expect; a 128-bit one keeps all 32 so it is not truncated.
pub fn inject(ctx: &TraceContext, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce headers every reader rejects.
        return;
    }
    let trace = if ctx.is_64_bit() {
        lower_hex(u128::from(ctx.trace_id_low()), 16)
    } else {
        lower_hex(ctx.trace_id, 32)
    };
    edits.set(TRACE_ID, trace);
    edits.set(SPAN_ID, lower_hex(u128::from(ctx.span_id), 16));
    let sampled = if ctx.debug { Some(true) } else { ctx.sampled };
    match sampled {
        Some(s) => edits.set(SAMPLED, if s { "true" } else { "false" }.to_string()),
        None => {
            if incoming.contains(SAMPLED) {
                edits.remove(SAMPLED);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{ctx, injected_edits, round_trip};
    use crate::formats::Format;

    // opentelemetry-go-contrib propagators/ot/ot_data_test.go
    const TRACE16: &str = "a3ce929d0e0e4736";
    const TRACE32: &str = "a1ce929d0e0e4736a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const TRACE16_VAL: u128 = 0xa3ce929d0e0e4736;
    const TRACE32_VAL: u128 = 0xa1ce929d0e0e4736a3ce929d0e0e4736;
    const SPAN_VAL: u64 = 0x00f067aa0ba902b7;

    fn ex(pairs: &[(&str, &str)]) -> Extracted {
        extract(&RequestHeaders::from_strs(pairs))
    }

    #[test]
    fn absent() {
        assert_eq!(ex(&[]), Extracted::Absent);
        // Baggage alone is not this format's business.
        assert_eq!(ex(&[("ot-baggage-test", "value123")]), Extracted::Absent);
    }

    #[test]
    fn otel_valid_vectors() {
        assert_eq!(
            ex(&[(TRACE_ID, TRACE32), (SPAN_ID, SPAN), (SAMPLED, "0")]),
            Extracted::Valid(ctx(TRACE32_VAL, SPAN_VAL, Some(false)))
        );
        assert_eq!(
            ex(&[
                (TRACE_ID, TRACE32),
                (SPAN_ID, SPAN),
                (SAMPLED, "1"),
                ("ot-baggage-test", "value123")
            ]),
            Extracted::Valid(ctx(TRACE32_VAL, SPAN_VAL, Some(true)))
        );
        assert_eq!(
            ex(&[(TRACE_ID, TRACE16), (SPAN_ID, SPAN), (SAMPLED, "1")]),
            Extracted::Valid(ctx(TRACE16_VAL, SPAN_VAL, Some(true)))
        );
        // Baggage OpenTelemetry rejects does not affect the span context.
        assert_eq!(
            ex(&[
                (TRACE_ID, TRACE32),
                (SPAN_ID, SPAN),
                (SAMPLED, "1"),
                ("ot-baggage-test", "\u{f8}tel")
            ]),
            Extracted::Valid(ctx(TRACE32_VAL, SPAN_VAL, Some(true)))
        );
    }

    #[test]
    fn sampled_values() {
        for (v, want) in [
            ("true", Some(true)),
            ("True", Some(true)),
            ("1", Some(true)),
            ("false", Some(false)),
            ("FALSE", Some(false)),
            ("0", Some(false)),
        ] {
            assert_eq!(
                ex(&[(TRACE_ID, TRACE16), (SPAN_ID, SPAN), (SAMPLED, v)]),
                Extracted::Valid(ctx(TRACE16_VAL, SPAN_VAL, want))
            );
        }
        assert_eq!(
            ex(&[(TRACE_ID, TRACE16), (SPAN_ID, SPAN)]),
            Extracted::Valid(ctx(TRACE16_VAL, SPAN_VAL, None))
        );
    }

    #[test]
    fn otel_invalid_vectors() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                (TRACE_ID, "a1ce929d0e0e4736a3ce929d0e0e47360000"),
                (SPAN_ID, SPAN),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, TRACE32),
                (SPAN_ID, "00f067aa0ba902b70000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "zcd00v0000000000a3ce929d0e0e4736"),
                (SPAN_ID, SPAN),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, TRACE32),
                (SPAN_ID, "00f0wiredba902b7"),
                (SAMPLED, "1"),
            ],
            &[(TRACE_ID, TRACE32), (SPAN_ID, SPAN), (SAMPLED, "wired")],
            &[(TRACE_ID, "")],
        ];
        for c in cases {
            assert!(matches!(ex(c), Extracted::Invalid(_)), "{c:?}");
        }
    }

    /// Issue 16 item 2: ids without leading zeros, as OpenTelemetry's Python propagator writes them
    /// (`hex(id)`), are the same ids.
    #[test]
    fn issue16_item2_ids_without_zero_padding() {
        for (trace, span, trace_val, span_val) in [
            (TRACE16, "f067aa0ba902b7", TRACE16_VAL, SPAN_VAL),
            ("3ce929d0e0e4736", "7", 0x3ce929d0e0e4736, 7),
            ("1", "1", 1, 1),
            // 19 digits: a 128-bit id without its leading zeros (OpenTelemetry Go requires 16 or 32;
            // Python and Java pad).
            ("1234567890abcd01234", SPAN, 0x1234567890abcd01234, SPAN_VAL),
            (TRACE32, SPAN, TRACE32_VAL, SPAN_VAL),
        ] {
            assert_eq!(
                ex(&[(TRACE_ID, trace), (SPAN_ID, span), (SAMPLED, "true")]),
                Extracted::Valid(ctx(trace_val, span_val, Some(true))),
                "{trace} {span}"
            );
        }
        // Written back zero-padded: 16 digits for a 64-bit trace id, 32 otherwise.
        let e = injected(
            &ctx(0x3ce929d0e0e4736, 7, Some(true)),
            &RequestHeaders::default(),
        );
        assert_eq!(e.get(TRACE_ID), Some(Some("03ce929d0e0e4736")));
        assert_eq!(e.get(SPAN_ID), Some(Some("0000000000000007")));
        let e = injected(
            &ctx(0x1234567890abcd01234, 7, None),
            &RequestHeaders::default(),
        );
        assert_eq!(
            e.get(TRACE_ID),
            Some(Some("00000000000001234567890abcd01234"))
        );
        // All-zero ids stay invalid at any length; too many digits, upper case and signs too.
        for (trace, span) in [
            ("0", SPAN),
            ("000", SPAN),
            (TRACE16, "0"),
            (TRACE16, "00000"),
            (TRACE16, "10000000000000000"),
            ("100000000000000000000000000000000", SPAN),
            ("A3CE929D0E0E4736", SPAN),
            (TRACE16, "F067AA0BA902B7"),
            ("+1", SPAN),
            (TRACE16, ""),
        ] {
            assert!(
                matches!(
                    ex(&[(TRACE_ID, trace), (SPAN_ID, span)]),
                    Extracted::Invalid(_)
                ),
                "{trace} {span}"
            );
        }
    }

    #[test]
    fn more_invalid() {
        assert_eq!(
            ex(&[(SAMPLED, "1")]),
            Extracted::Invalid("ot-tracer-traceid missing")
        );
        assert_eq!(
            ex(&[(TRACE_ID, TRACE16)]),
            Extracted::Invalid("ot-tracer-spanid missing")
        );
        assert_eq!(
            ex(&[(TRACE_ID, "0000000000000000"), (SPAN_ID, SPAN)]),
            Extracted::Invalid("ot-tracer-traceid: bad value")
        );
        assert_eq!(
            ex(&[(TRACE_ID, TRACE16), (SPAN_ID, "0000000000000000")]),
            Extracted::Invalid("ot-tracer-spanid: bad value")
        );
        assert_eq!(
            ex(&[(TRACE_ID, "A3CE929D0E0E4736"), (SPAN_ID, SPAN)]),
            Extracted::Invalid("ot-tracer-traceid: bad value")
        );
        assert_eq!(
            ex(&[(TRACE_ID, TRACE16), (SPAN_ID, SPAN), (SPAN_ID, SPAN)]),
            Extracted::Invalid("ot-tracer-*: header repeated")
        );
        let h = RequestHeaders::new(vec![
            (TRACE_ID.into(), TRACE16.as_bytes().to_vec()),
            (SPAN_ID.into(), SPAN.as_bytes().to_vec()),
            (SAMPLED.into(), vec![0xff]),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("ot-tracer-sampled: bad value")
        );
    }

    #[test]
    fn trims_ows() {
        assert_eq!(
            ex(&[
                (TRACE_ID, " a3ce929d0e0e4736 "),
                (SPAN_ID, "\t00f067aa0ba902b7"),
                (SAMPLED, "true ")
            ]),
            Extracted::Valid(ctx(TRACE16_VAL, SPAN_VAL, Some(true)))
        );
    }

    fn injected(c: &TraceContext, incoming: &RequestHeaders) -> HeaderEdits {
        injected_edits(Format::OtTrace, c, incoming)
    }

    #[test]
    fn inject_values() {
        let none = RequestHeaders::default();
        let e = injected(&ctx(TRACE16_VAL, SPAN_VAL, Some(true)), &none);
        assert_eq!(e.get(TRACE_ID), Some(Some(TRACE16)));
        assert_eq!(e.get(SPAN_ID), Some(Some(SPAN)));
        assert_eq!(e.get(SAMPLED), Some(Some("true")));
        let e = injected(&ctx(TRACE32_VAL, SPAN_VAL, Some(false)), &none);
        assert_eq!(e.get(TRACE_ID), Some(Some(TRACE32)));
        assert_eq!(e.get(SAMPLED), Some(Some("false")));
        let mut debug = ctx(TRACE32_VAL, SPAN_VAL, None);
        debug.debug = true;
        assert_eq!(injected(&debug, &none).get(SAMPLED), Some(Some("true")));
        // Deferred: no sampled header, and a stale one is removed.
        let e = injected(&ctx(TRACE32_VAL, SPAN_VAL, None), &none);
        assert_eq!(e.get(SAMPLED), None);
        let incoming = RequestHeaders::from_strs(&[(SAMPLED, "true")]);
        let e = injected(&ctx(TRACE32_VAL, SPAN_VAL, None), &incoming);
        assert_eq!(e.get(SAMPLED), Some(None));
        // Zero ids write nothing.
        assert!(injected(&ctx(0, SPAN_VAL, None), &none).is_empty());
        assert!(injected(&ctx(1, 0, None), &none).is_empty());
    }

    #[test]
    fn round_trips() {
        let stale =
            RequestHeaders::from_strs(&[(TRACE_ID, TRACE32), (SPAN_ID, SPAN), (SAMPLED, "1")]);
        for incoming in [RequestHeaders::default(), stale] {
            for trace_id in [
                TRACE32_VAL,
                TRACE16_VAL,
                1,
                u128::MAX,
                1 << 64,
                u128::from(u64::MAX),
            ] {
                for sampled in [None, Some(true), Some(false)] {
                    let c = ctx(trace_id, SPAN_VAL, sampled);
                    assert_eq!(
                        round_trip(Format::OtTrace, &c, &incoming),
                        Extracted::Valid(c)
                    );
                }
            }
        }
    }
}
