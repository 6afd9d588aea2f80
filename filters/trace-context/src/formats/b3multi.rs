//! B3 multiple headers: `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`
//! (openzipkin/b3-propagation; parsing follows OpenTelemetry's B3 propagator).
//!
//! - TraceId is 16 or 32 lower-case hex (a 16-hex id is the low 64 bits), SpanId and ParentSpanId 16.
//! - `x-b3-sampled` is `1`/`0`, or `true`/`false` (any case) as OpenTelemetry accepts for interop;
//!   absent means "defer".
//! - `x-b3-flags: 1` is debug, which implies sampled and overrides `x-b3-sampled`; other flag values are
//!   ignored, as OpenTelemetry does.
//! - Sampled or flags without both ids (a bare "deny") carry no context to continue: `Invalid`.

use crate::context::TraceContext;
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};
use filter_common::hex::lower_hex;

pub const HEADERS: &[&str] = &[TRACE_ID, SPAN_ID, PARENT_SPAN_ID, SAMPLED, FLAGS];

const TRACE_ID: &str = "x-b3-traceid";
const SPAN_ID: &str = "x-b3-spanid";
const PARENT_SPAN_ID: &str = "x-b3-parentspanid";
const SAMPLED: &str = "x-b3-sampled";
const FLAGS: &str = "x-b3-flags";

pub fn extract(h: &RequestHeaders) -> Extracted {
    crate::formats::extract_multi(h, HEADERS, parse)
}

/// The trimmed value of a header that may occur at most once.
fn single<'a>(h: &'a RequestHeaders, name: &'static str) -> Result<Option<&'a [u8]>, &'static str> {
    crate::formats::single_trimmed(h, name, "x-b3-*: header repeated")
}

fn parse(h: &RequestHeaders) -> Result<TraceContext, &'static str> {
    let trace = single(h, TRACE_ID)?;
    let span = single(h, SPAN_ID)?;
    let parent = single(h, PARENT_SPAN_ID)?;
    let sampled = single(h, SAMPLED)?;
    let flags = single(h, FLAGS)?;

    let sampled = match sampled {
        None => None,
        Some(v) => Some(parse_sampled(v).ok_or("x-b3-sampled: bad value")?),
    };
    let debug = flags == Some(b"1");

    let (trace, span) = match (trace, span) {
        (Some(t), Some(s)) => (t, s),
        (None, None) if parent.is_some() => return Err("x-b3-parentspanid without ids"),
        // A sampling decision alone: honoured by the caller.
        (None, None) => {
            return Ok(crate::formats::partial_ctx(
                0,
                if debug { Some(true) } else { sampled },
                debug,
            ))
        }
        (None, Some(_)) => return Err("x-b3-traceid missing"),
        (Some(_), None) => return Err("x-b3-spanid missing"),
    };
    let trace_id = parse_trace_id(trace).ok_or("x-b3-traceid: bad value")?;
    let span_id = parse_span_id(span).ok_or("x-b3-spanid: bad value")?;
    // The parent is validated but not kept: the next hop's parent is `span_id`.
    if let Some(p) = parent {
        parse_span_id(p).ok_or("x-b3-parentspanid: bad value")?;
    }
    Ok(TraceContext {
        trace_id,
        span_id,
        sampled: if debug { Some(true) } else { sampled },
        debug,
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

use crate::context::{
    parse_span_id_16 as parse_span_id, parse_trace_id_16_or_32 as parse_trace_id,
};

/// Writes trace and span ids, and `x-b3-flags: 1` for debug (without `x-b3-sampled`, which debug implies)
/// or `x-b3-sampled` (removed when the decision is deferred). A 64-bit trace id is written as 16 hex
/// characters so that 64-bit B3 peers read it back unchanged.
///
/// `x-b3-parentspanid` is not in the context, so an incoming one is removed unless the span is the one the
/// request arrived with (then that parent is still the truth and a pass-through keeps it).
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

    if ctx.debug {
        edits.set(FLAGS, "1".to_string());
        remove_if_present(incoming, edits, SAMPLED);
    } else {
        remove_if_present(incoming, edits, FLAGS);
        match ctx.sampled {
            Some(s) => edits.set(SAMPLED, if s { "1" } else { "0" }.to_string()),
            None => remove_if_present(incoming, edits, SAMPLED),
        }
    }

    if incoming.contains(PARENT_SPAN_ID) && !same_span(ctx, incoming) {
        edits.remove(PARENT_SPAN_ID);
    }
}

fn remove_if_present(incoming: &RequestHeaders, edits: &mut HeaderEdits, name: &'static str) {
    if incoming.contains(name) {
        edits.remove(name);
    }
}

/// True when the incoming headers carry exactly this trace and span id.
fn same_span(ctx: &TraceContext, incoming: &RequestHeaders) -> bool {
    let trace = single(incoming, TRACE_ID)
        .ok()
        .flatten()
        .and_then(parse_trace_id);
    let span = single(incoming, SPAN_ID)
        .ok()
        .flatten()
        .and_then(parse_span_id);
    trace == Some(ctx.trace_id) && span == Some(ctx.span_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{debug_ctx as ctx, injected_edits, round_trip};
    use crate::formats::Format;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";
    const TRACE_VAL: u128 = 0x4bf92f3577b34da6a3ce929d0e0e4736;
    const SPAN_VAL: u64 = 0x00f067aa0ba902b7;

    fn ex(pairs: &[(&str, &str)]) -> Extracted {
        extract(&RequestHeaders::from_strs(pairs))
    }

    #[test]
    fn absent() {
        assert_eq!(ex(&[]), Extracted::Absent);
        assert_eq!(ex(&[("b3", "0"), ("traceparent", "x")]), Extracted::Absent);
    }

    // opentelemetry-go-contrib propagators/b3/b3_data_test.go, "multiple:" extraction cases.
    #[test]
    fn otel_valid_vectors() {
        let v = |sampled, debug| Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, sampled, debug));
        let ids = [(TRACE_ID, TRACE), (SPAN_ID, SPAN)];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut p: Vec<(&str, &str)> = ids.to_vec();
            p.extend_from_slice(extra);
            ex(&p)
        };
        assert_eq!(with(&[]), v(None, false));
        assert_eq!(with(&[(SAMPLED, "0")]), v(Some(false), false));
        assert_eq!(with(&[(SAMPLED, "1")]), v(Some(true), false));
        assert_eq!(with(&[(SAMPLED, "true")]), v(Some(true), false));
        assert_eq!(with(&[(SAMPLED, "false")]), v(Some(false), false));
        assert_eq!(with(&[(SAMPLED, "True")]), v(Some(true), false));
        assert_eq!(with(&[(FLAGS, "1")]), v(Some(true), true));
        assert_eq!(with(&[(SAMPLED, "1"), (FLAGS, "2")]), v(Some(true), false));
        assert_eq!(with(&[(SAMPLED, "0"), (FLAGS, "1")]), v(Some(true), true));
        assert_eq!(
            with(&[(SAMPLED, "1"), (PARENT_SPAN_ID, "00f067aa0ba90200")]),
            v(Some(true), false)
        );
        assert_eq!(
            ex(&[(TRACE_ID, "a3ce929d0e0e4736"), (SPAN_ID, SPAN)]),
            Extracted::Valid(ctx(0xa3ce929d0e0e4736, SPAN_VAL, None, false))
        );
    }

    #[test]
    fn otel_invalid_vectors() {
        let cases: &[&[(&str, &str)]] = &[
            &[
                (TRACE_ID, "ab00000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab0000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab0000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "cd0000000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "10"),
            ],
            &[
                (TRACE_ID, "qw000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "qw00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "d"),
            ],
            &[
                (TRACE_ID, "AB000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "CD00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "00000000000000000000000000000000"),
                (SPAN_ID, "cd00000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SPAN_ID, "0000000000000000"),
                (SAMPLED, "1"),
            ],
            &[
                (TRACE_ID, "ab000000000000000000000000000000"),
                (SAMPLED, "1"),
            ],
            &[(SPAN_ID, "cd00000000000000"), (SAMPLED, "1")],
        ];
        for c in cases {
            assert!(matches!(ex(c), Extracted::Invalid(_)), "{c:?}");
        }
    }

    #[test]
    fn more_invalid() {
        let ids =
            |extra: (&'static str, &'static str)| ex(&[(TRACE_ID, TRACE), (SPAN_ID, SPAN), extra]);
        assert_eq!(
            ids((PARENT_SPAN_ID, "0000000000000000")),
            Extracted::Invalid("x-b3-parentspanid: bad value")
        );
        assert_eq!(
            ids((PARENT_SPAN_ID, "EF00000000000000")),
            Extracted::Invalid("x-b3-parentspanid: bad value")
        );
        assert_eq!(
            ids((SAMPLED, "")),
            Extracted::Invalid("x-b3-sampled: bad value")
        );
        assert_eq!(
            ids((SAMPLED, "yes")),
            Extracted::Invalid("x-b3-sampled: bad value")
        );
        assert_eq!(
            ids((TRACE_ID, TRACE)),
            Extracted::Invalid("x-b3-*: header repeated")
        );
        assert_eq!(
            ids((SAMPLED, "1")),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(true), false))
        );
        // A sampling decision alone is honoured, not invalid.
        let only = |sampled, debug| {
            Extracted::Partial(crate::formats::Partial {
                trace_id: None,
                sampled: Some(sampled),
                debug,
            })
        };
        assert_eq!(ex(&[(SAMPLED, "0")]), only(false, false));
        assert_eq!(ex(&[(SAMPLED, "1")]), only(true, false));
        assert_eq!(ex(&[(FLAGS, "1")]), only(true, true));
        assert!(matches!(ex(&[(FLAGS, "0")]), Extracted::Invalid(_)));
        assert_eq!(
            ex(&[(PARENT_SPAN_ID, SPAN)]),
            Extracted::Invalid("x-b3-parentspanid without ids")
        );
        assert_eq!(
            ex(&[(TRACE_ID, ""), (SPAN_ID, SPAN)]),
            Extracted::Invalid("x-b3-traceid: bad value")
        );
        assert_eq!(
            ex(&[(TRACE_ID, "0000000000000000"), (SPAN_ID, SPAN)]),
            Extracted::Invalid("x-b3-traceid: bad value")
        );
        assert_eq!(
            ex(&[
                (TRACE_ID, TRACE),
                (SPAN_ID, SPAN),
                (SAMPLED, "1"),
                (SAMPLED, "1")
            ]),
            Extracted::Invalid("x-b3-*: header repeated")
        );
        let h = RequestHeaders::new(vec![
            (TRACE_ID.into(), TRACE.as_bytes().to_vec()),
            (SPAN_ID.into(), vec![0xff; 16]),
        ]);
        assert_eq!(extract(&h), Extracted::Invalid("x-b3-spanid: bad value"));
    }

    #[test]
    fn trims_ows_and_reads_mixed_case_names() {
        let h = RequestHeaders::from_strs(&[
            ("X-B3-TraceId", &format!(" {TRACE}\t")),
            ("X-B3-SpanId", &format!("{SPAN} ")),
            ("X-B3-Sampled", " 1 "),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Valid(ctx(TRACE_VAL, SPAN_VAL, Some(true), false))
        );
    }

    fn injected(c: &TraceContext, incoming: &RequestHeaders) -> HeaderEdits {
        injected_edits(Format::B3Multi, c, incoming)
    }

    // opentelemetry-go-contrib b3_data_test.go "multiple:" injection cases.
    #[test]
    fn otel_inject_vectors() {
        let none = RequestHeaders::default();
        let e = injected(&ctx(TRACE_VAL, SPAN_VAL, Some(true), false), &none);
        assert_eq!(e.get(TRACE_ID), Some(Some(TRACE)));
        assert_eq!(e.get(SPAN_ID), Some(Some(SPAN)));
        assert_eq!(e.get(SAMPLED), Some(Some("1")));
        assert_eq!(e.get(FLAGS), None);
        assert_eq!(e.get(PARENT_SPAN_ID), None);
        assert_eq!(e.len(), 3);

        let e = injected(&ctx(TRACE_VAL, SPAN_VAL, Some(false), false), &none);
        assert_eq!(e.get(SAMPLED), Some(Some("0")));

        let e = injected(&ctx(TRACE_VAL, SPAN_VAL, None, false), &none);
        assert_eq!(e.get(SAMPLED), None);
        assert_eq!(e.len(), 2);

        for sampled in [None, Some(true)] {
            let e = injected(&ctx(TRACE_VAL, SPAN_VAL, sampled, true), &none);
            assert_eq!(e.get(FLAGS), Some(Some("1")));
            assert_eq!(e.get(SAMPLED), None);
        }
    }

    #[test]
    fn inject_64_bit_trace_id_as_16_hex() {
        let e = injected(
            &ctx(0xa3ce929d0e0e4736, SPAN_VAL, None, false),
            &RequestHeaders::default(),
        );
        assert_eq!(e.get(TRACE_ID), Some(Some("a3ce929d0e0e4736")));
        let e = injected(
            &ctx(1 << 64, SPAN_VAL, None, false),
            &RequestHeaders::default(),
        );
        assert_eq!(
            e.get(TRACE_ID),
            Some(Some("00000000000000010000000000000000"))
        );
    }

    #[test]
    fn inject_removes_stale_headers() {
        let incoming = RequestHeaders::from_strs(&[
            (TRACE_ID, TRACE),
            (SPAN_ID, SPAN),
            (PARENT_SPAN_ID, "00000000000000cd"),
            (SAMPLED, "1"),
            (FLAGS, "1"),
        ]);
        // New span: the incoming parent is no longer the parent; deferred: no sampled; not debug: no flags.
        let e = injected(&ctx(TRACE_VAL, 0x1111, None, false), &incoming);
        assert_eq!(e.get(PARENT_SPAN_ID), Some(None));
        assert_eq!(e.get(SAMPLED), Some(None));
        assert_eq!(e.get(FLAGS), Some(None));
        let out = incoming.apply(&e);
        assert_eq!(
            extract(&out),
            Extracted::Valid(ctx(TRACE_VAL, 0x1111, None, false))
        );
        assert!(!out.contains(PARENT_SPAN_ID));

        // Debug replaces an incoming sampled header.
        let e = injected(&ctx(TRACE_VAL, 0x1111, Some(true), true), &incoming);
        assert_eq!(e.get(SAMPLED), Some(None));
        assert_eq!(e.get(FLAGS), Some(Some("1")));

        // Different trace, same span id: the parent is stale too.
        let e = injected(&ctx(TRACE_VAL ^ 1, SPAN_VAL, Some(true), false), &incoming);
        assert_eq!(e.get(PARENT_SPAN_ID), Some(None));
    }

    #[test]
    fn inject_keeps_parent_when_span_unchanged() {
        let incoming = RequestHeaders::from_strs(&[
            (TRACE_ID, TRACE),
            (SPAN_ID, SPAN),
            (PARENT_SPAN_ID, "00000000000000cd"),
            (SAMPLED, "1"),
        ]);
        let e = injected(&ctx(TRACE_VAL, SPAN_VAL, Some(true), false), &incoming);
        assert_eq!(e.get(PARENT_SPAN_ID), None);
        let out = incoming.apply(&e);
        assert_eq!(
            out.get_single(PARENT_SPAN_ID).unwrap(),
            Some(&b"00000000000000cd"[..])
        );

        // A 64-bit incoming trace id compares by value.
        let incoming = RequestHeaders::from_strs(&[
            (TRACE_ID, "a3ce929d0e0e4736"),
            (SPAN_ID, SPAN),
            (PARENT_SPAN_ID, "00000000000000cd"),
        ]);
        let e = injected(&ctx(0xa3ce929d0e0e4736, SPAN_VAL, None, false), &incoming);
        assert_eq!(e.get(PARENT_SPAN_ID), None);
    }

    #[test]
    fn inject_skips_zero_ids() {
        let e = injected(
            &ctx(0, SPAN_VAL, Some(true), false),
            &RequestHeaders::default(),
        );
        assert!(e.is_empty());
        let e = injected(
            &ctx(TRACE_VAL, 0, Some(true), false),
            &RequestHeaders::default(),
        );
        assert!(e.is_empty());
    }

    #[test]
    fn round_trips() {
        let stale =
            RequestHeaders::from_strs(&[(SAMPLED, "0"), (FLAGS, "1"), (PARENT_SPAN_ID, SPAN)]);
        for incoming in [RequestHeaders::default(), stale] {
            for trace_id in [
                TRACE_VAL,
                0xa3ce929d0e0e4736,
                1,
                u128::MAX,
                1 << 64,
                u128::from(u64::MAX),
            ] {
                for (sampled, debug) in [
                    (None, false),
                    (Some(true), false),
                    (Some(false), false),
                    (Some(true), true),
                ] {
                    let c = ctx(trace_id, SPAN_VAL, sampled, debug);
                    assert_eq!(
                        round_trip(Format::B3Multi, &c, &incoming),
                        Extracted::Valid(c)
                    );
                }
            }
        }
    }
}
