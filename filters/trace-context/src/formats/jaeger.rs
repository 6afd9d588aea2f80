//! Jaeger: `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` (parsing follows
//! OpenTelemetry's Jaeger propagator).
//!
//! - Ids are hex of variable length (shorter values are left-padded with zeros): trace id up to 32
//!   characters, span id up to 16; either case, as Jaeger clients parse them; zero is invalid.
//! - The parent span id is deprecated and ignored, whatever it holds.
//! - Flags are hex: 0x01 sampled, 0x02 debug (only honoured together with sampled, as OpenTelemetry does).
//!   Jaeger has no "defer" state, so flags without 0x01 mean "not sampled".
//! - Some clients URL-encode the value; `%3A` is accepted as a separator, as OpenTelemetry does.
//!
//! Baggage (`uberctx-*`) is handled elsewhere and is not among `HEADERS`.

use crate::context::{parse_hex_var, TraceContext};
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};
use filter_common::hex::push_lower_hex;

pub const HEADERS: &[&str] = &[UBER_TRACE_ID];

const UBER_TRACE_ID: &str = "uber-trace-id";

const FLAG_SAMPLED: u128 = 0x01;
const FLAG_DEBUG: u128 = 0x02;

pub fn extract(h: &RequestHeaders) -> Extracted {
    let value = match h.get_single(UBER_TRACE_ID) {
        Ok(Some(v)) => v.trim_ascii(),
        Ok(None) => return Extracted::Absent,
        Err(_) => return Extracted::Invalid("uber-trace-id: header repeated"),
    };
    match parse(value) {
        Ok(ctx) => Extracted::Valid(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

fn parse(value: &[u8]) -> Result<TraceContext, &'static str> {
    const MALFORMED: &str = "uber-trace-id: not four fields";
    let (trace, rest) = split_field(value).ok_or(MALFORMED)?;
    let (span, rest) = split_field(rest).ok_or(MALFORMED)?;
    let (_parent, flags) = split_field(rest).ok_or(MALFORMED)?;
    if split_field(flags).is_some() {
        return Err(MALFORMED);
    }
    let trace_id = parse_hex_var(trace, 32)
        .filter(|&v| v != 0)
        .ok_or("uber-trace-id: bad trace id")?;
    let span_id = parse_hex_var(span, 16)
        .filter(|&v| v != 0)
        .map(|v| v as u64) // at most 16 hex digits: fits
        .ok_or("uber-trace-id: bad span id")?;
    let flags = parse_hex_var(flags, 32).ok_or("uber-trace-id: bad flags")?;
    let sampled = flags & FLAG_SAMPLED != 0;
    Ok(TraceContext {
        trace_id,
        span_id,
        sampled: Some(sampled),
        debug: sampled && flags & FLAG_DEBUG != 0,
        random: false,
    })
}

/// Splits at the first separator (`:` or its URL encoding `%3A`/`%3a`): `(field, rest)`, or `None` when
/// there is no separator.
fn split_field(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut i = 0usize;
    while let Some(&c) = v.get(i) {
        let sep_len = if c == b':' {
            1
        } else if c == b'%'
            && v.get(i + 1..i + 3)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"3a"))
        {
            3
        } else {
            0
        };
        if sep_len > 0 {
            let (field, rest) = v.split_at_checked(i)?;
            return Some((field, rest.get(sep_len..)?));
        }
        i += 1;
    }
    None
}

/// Writes `{trace}:{span}:0:{flags}` with flags `1` (sampled), `3` (debug) or `0` (not sampled, and also
/// for a deferred decision, which Jaeger cannot express). A 64-bit trace id is written as 16 hex
/// characters so that 64-bit Jaeger clients read it back unchanged.
pub fn inject(ctx: &TraceContext, _incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce a header every reader rejects.
        return;
    }
    let flags = if ctx.debug {
        '3'
    } else if ctx.sampled == Some(true) {
        '1'
    } else {
        '0'
    };
    let mut value = String::with_capacity(54);
    if ctx.is_64_bit() {
        push_lower_hex(&mut value, u128::from(ctx.trace_id_low()), 16);
    } else {
        push_lower_hex(&mut value, ctx.trace_id, 32);
    }
    value.push(':');
    push_lower_hex(&mut value, u128::from(ctx.span_id), 16);
    value.push_str(":0:");
    value.push(flags);
    edits.set(UBER_TRACE_ID, value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{debug_ctx as ctx, injected_value, round_trip};
    use crate::formats::Format;

    // opentelemetry-go-contrib propagators/jaeger/jaeger_data_test.go
    const TRACE15: &str = "3ce929d0e0e4736";
    const TRACE16: &str = "a3ce929d0e0e4736";
    const TRACE32: &str = "a1ce929d0e0e4736a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const TRACE15_VAL: u128 = 0x3ce929d0e0e4736;
    const TRACE16_VAL: u128 = 0xa3ce929d0e0e4736;
    const TRACE32_VAL: u128 = 0xa1ce929d0e0e4736a3ce929d0e0e4736;
    const SPAN_VAL: u64 = 0x00f067aa0ba902b7;

    fn ex(value: &str) -> Extracted {
        extract(&RequestHeaders::from_strs(&[("uber-trace-id", value)]))
    }

    fn injected(c: &TraceContext) -> String {
        injected_value(Format::Jaeger, c, &RequestHeaders::default(), UBER_TRACE_ID).unwrap()
    }

    #[test]
    fn absent() {
        assert_eq!(extract(&RequestHeaders::default()), Extracted::Absent);
        assert_eq!(
            extract(&RequestHeaders::from_strs(&[(
                "uber-trace-idnot",
                &format!("{TRACE32}:{SPAN}:0:1")
            )])),
            Extracted::Absent
        );
    }

    #[test]
    fn otel_valid_vectors() {
        let cases: &[(String, u128, Option<bool>, bool)] = &[
            (
                format!("{TRACE32}:{SPAN}:0:0"),
                TRACE32_VAL,
                Some(false),
                false,
            ),
            (
                format!("{TRACE32}:{SPAN}:0:1"),
                TRACE32_VAL,
                Some(true),
                false,
            ),
            (
                format!("{TRACE32}:{SPAN}:0:3"),
                TRACE32_VAL,
                Some(true),
                true,
            ),
            // Debug without sampled: not sampled, not debug.
            (
                format!("{TRACE32}:{SPAN}:0:2"),
                TRACE32_VAL,
                Some(false),
                false,
            ),
            (
                format!("{TRACE32}:{SPAN}:0:00001"),
                TRACE32_VAL,
                Some(true),
                false,
            ),
            (
                format!("{TRACE32}:{SPAN}:0:ff"),
                TRACE32_VAL,
                Some(true),
                true,
            ),
            (
                format!("{TRACE15}:{SPAN}:0:1"),
                TRACE15_VAL,
                Some(true),
                false,
            ),
            (
                format!("{TRACE16}:{SPAN}:0:1"),
                TRACE16_VAL,
                Some(true),
                false,
            ),
            (
                format!("{TRACE32}:{SPAN}:whatever:1"),
                TRACE32_VAL,
                Some(true),
                false,
            ),
        ];
        for (value, trace_id, sampled, debug) in cases {
            assert_eq!(
                ex(value),
                Extracted::Valid(ctx(*trace_id, SPAN_VAL, *sampled, *debug)),
                "{value}"
            );
        }
    }

    #[test]
    fn otel_invalid_vectors() {
        for value in [
            format!("{TRACE32}0000:{SPAN}:0:1"),
            format!("{TRACE32}:{SPAN}0000:0:1"),
            format!("zcd00v0000000000a3ce929d0e0e4736:{SPAN}:0:1"),
            format!("{TRACE32}:00f0wiredba902b7:0:1"),
            format!("{TRACE32}:{SPAN}:0:wired"),
            format!("{TRACE32}-{SPAN}-0-1"),
            String::new(),
        ] {
            assert!(matches!(ex(&value), Extracted::Invalid(_)), "{value}");
        }
    }

    #[test]
    fn more_invalid() {
        for value in [
            format!("{TRACE32}:{SPAN}:0"),
            format!("{TRACE32}:{SPAN}:0:1:1"),
            format!(":{SPAN}:0:1"),
            format!("{TRACE32}::0:1"),
            format!("{TRACE32}:{SPAN}:0:"),
            format!("0:{SPAN}:0:1"),
            format!("00000000000000000000000000000000:{SPAN}:0:1"),
            format!("{TRACE32}:0:0:1"),
            format!("{TRACE32}:{SPAN}:0:-1"),
            format!("{TRACE32}:{SPAN}:0:0x1"),
            format!("{TRACE32}%3{SPAN}%3A0%3A1"),
            format!("{TRACE32}%2A{SPAN}%2A0%2A1"),
            format!("{TRACE32} :{SPAN}:0:1"),
        ] {
            assert!(matches!(ex(&value), Extracted::Invalid(_)), "{value}");
        }
        let h = RequestHeaders::from_strs(&[
            ("uber-trace-id", "1:1:0:1"),
            ("uber-trace-id", "1:1:0:1"),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("uber-trace-id: header repeated")
        );
        let h = RequestHeaders::new(vec![(
            "uber-trace-id".into(),
            vec![b'1', b':', 0xff, b':', b'0', b':', b'1'],
        )]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
    }

    #[test]
    fn variable_length_and_case() {
        assert_eq!(
            ex("1:2:0:1"),
            Extracted::Valid(ctx(1, 2, Some(true), false))
        );
        assert_eq!(
            ex("A1CE929D0E0E4736A3CE929D0E0E4736:00F067AA0BA902B7:0:1"),
            Extracted::Valid(ctx(TRACE32_VAL, SPAN_VAL, Some(true), false))
        );
        assert_eq!(
            ex(" ffffffffffffffffffffffffffffffff:ffffffffffffffff:0:1 "),
            Extracted::Valid(ctx(u128::MAX, u64::MAX, Some(true), false))
        );
    }

    #[test]
    fn url_encoded_separators() {
        let want = Extracted::Valid(ctx(TRACE32_VAL, SPAN_VAL, Some(true), false));
        assert_eq!(ex(&format!("{TRACE32}%3A{SPAN}%3A0%3A1")), want);
        assert_eq!(ex(&format!("{TRACE32}%3a{SPAN}%3a0%3a1")), want);
        assert_eq!(ex(&format!("{TRACE32}%3A{SPAN}:0%3a1")), want);
        // A trailing `%` or `%3` is not a separator and is not hex.
        assert!(matches!(
            ex(&format!("{TRACE32}:{SPAN}:0:1%")),
            Extracted::Invalid(_)
        ));
        assert!(matches!(
            ex(&format!("{TRACE32}:{SPAN}:0:1%3")),
            Extracted::Invalid(_)
        ));
    }

    #[test]
    fn otel_inject_vectors() {
        assert_eq!(
            injected(&ctx(TRACE32_VAL, SPAN_VAL, Some(true), false)),
            format!("{TRACE32}:{SPAN}:0:1")
        );
        assert_eq!(
            injected(&ctx(TRACE32_VAL, SPAN_VAL, Some(true), true)),
            format!("{TRACE32}:{SPAN}:0:3")
        );
        assert_eq!(
            injected(&ctx(TRACE32_VAL, SPAN_VAL, Some(false), false)),
            format!("{TRACE32}:{SPAN}:0:0")
        );
        assert_eq!(
            injected(&ctx(TRACE32_VAL, SPAN_VAL, None, false)),
            format!("{TRACE32}:{SPAN}:0:0")
        );
        assert_eq!(
            injected(&ctx(TRACE32_VAL, SPAN_VAL, None, true)),
            format!("{TRACE32}:{SPAN}:0:3")
        );
    }

    #[test]
    fn inject_64_bit_trace_id_as_16_hex() {
        assert_eq!(
            injected(&ctx(TRACE16_VAL, SPAN_VAL, Some(true), false)),
            format!("{TRACE16}:{SPAN}:0:1")
        );
        assert_eq!(
            injected(&ctx(TRACE15_VAL, 1, Some(true), false)),
            "03ce929d0e0e4736:0000000000000001:0:1"
        );
        assert_eq!(
            injected(&ctx(1 << 64, 1, Some(false), false)),
            "00000000000000010000000000000000:0000000000000001:0:0"
        );
    }

    #[test]
    fn inject_skips_zero_ids() {
        let mut edits = HeaderEdits::default();
        inject(
            &ctx(0, 1, None, false),
            &RequestHeaders::default(),
            &mut edits,
        );
        inject(
            &ctx(1, 0, None, false),
            &RequestHeaders::default(),
            &mut edits,
        );
        assert!(edits.is_empty());
    }

    #[test]
    fn round_trips() {
        let incoming = RequestHeaders::from_strs(&[("uber-trace-id", "1:2:0:0")]);
        for trace_id in [
            TRACE32_VAL,
            TRACE16_VAL,
            TRACE15_VAL,
            1,
            u128::MAX,
            1 << 64,
            u128::from(u64::MAX),
        ] {
            for span_id in [SPAN_VAL, 1, u64::MAX] {
                // Jaeger has no "defer": None is not in the list.
                for (sampled, debug) in [
                    (Some(true), false),
                    (Some(false), false),
                    (Some(true), true),
                ] {
                    let c = ctx(trace_id, span_id, sampled, debug);
                    assert_eq!(
                        round_trip(Format::Jaeger, &c, &incoming),
                        Extracted::Valid(c)
                    );
                }
            }
        }
        // A deferred decision comes back as "not sampled".
        let mut edits = HeaderEdits::default();
        inject(&ctx(TRACE16_VAL, 1, None, false), &incoming, &mut edits);
        assert_eq!(
            extract(&incoming.apply(&edits)),
            Extracted::Valid(ctx(TRACE16_VAL, 1, Some(false), false))
        );
    }
}
