//! W3C Trace Context `traceparent` (<https://www.w3.org/TR/trace-context/>).
//!
//! This module reads and writes `traceparent` only. `tracestate` is listed in `HEADERS` so a stale copy
//! is removed with the format, but parsing and rendering it is `crate::tracestate`'s job: the spec ties
//! it to `traceparent` (drop it when `traceparent` is invalid, keep it byte-identical when `traceparent`
//! is passed through), and that decision belongs to the caller.

use crate::context::TraceContext;
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};

pub const HEADERS: &[&str] = &["traceparent", "tracestate"];

use filter_common::w3c::TRACEPARENT;

const FLAG_SAMPLED: u8 = 0x01;
/// Level 2: the trace id's low 56 bits are random.
const FLAG_RANDOM: u8 = 0x02;

/// Reads `traceparent`. `tracestate` alone is `Absent`: without a parent it carries nothing usable.
pub fn extract(h: &RequestHeaders) -> Extracted {
    match h.get_single(TRACEPARENT) {
        // The spec treats two headers as invalid rather than picking one.
        Err(_) => Extracted::Invalid("duplicate traceparent"),
        Ok(None) => Extracted::Absent,
        Ok(Some(value)) => match parse_traceparent(value) {
            Ok(ctx) => Extracted::Valid(ctx),
            Err(reason) => Extracted::Invalid(reason),
        },
    }
}

/// Writes `traceparent` as version 00. `tracestate` is left alone (see the module docs). A request
/// that already carries exactly this value gets no edit (the caller drops no-op edits anyway): the
/// value is compared in a fixed buffer, so the usual request in step allocates nothing here.
pub fn inject(ctx: &TraceContext, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    let value = traceparent(ctx).render_bytes();
    if incoming.get_single(TRACEPARENT) == Ok(Some(&value[..])) {
        return;
    }
    let value = std::str::from_utf8(&value).unwrap_or_default();
    edits.set(TRACEPARENT, value.to_string());
}

/// Renders `00-<trace>-<parent>-<flags>`. Only the sampled and random bits are defined for version 00,
/// so every other bit is sent as 0. "Defer" (`sampled: None`) has no W3C encoding and becomes 0; a debug
/// context is always sampled (B3 and Jaeger define debug as implying sampled).
pub fn format_traceparent(ctx: &TraceContext) -> String {
    traceparent(ctx).render()
}

/// [`format_traceparent`] in a fixed buffer, for host calls (`traceresponse`) that need no string.
pub fn traceparent_bytes(ctx: &TraceContext) -> [u8; 55] {
    traceparent(ctx).render_bytes()
}

fn traceparent(ctx: &TraceContext) -> filter_common::w3c::TraceParent {
    let mut flags = 0u8;
    if ctx.sampled == Some(true) || ctx.debug {
        flags |= FLAG_SAMPLED;
    }
    if ctx.random {
        flags |= FLAG_RANDOM;
    }
    filter_common::w3c::TraceParent {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        flags,
    }
}

/// Parses one `traceparent` value strictly (see [`filter_common::w3c::parse_traceparent`]).
pub fn parse_traceparent(value: &[u8]) -> Result<TraceContext, &'static str> {
    let tp = filter_common::w3c::parse_traceparent(value)?;
    Ok(TraceContext {
        trace_id: tp.trace_id,
        span_id: tp.span_id,
        sampled: Some(tp.flags & FLAG_SAMPLED != 0),
        debug: false,
        random: tp.flags & FLAG_RANDOM != 0,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const TRACE: &str = "12345678901234567890123456789012";
    const PARENT: &str = "1234567890123456";

    fn tp(version: &str, trace: &str, parent: &str, flags: &str) -> String {
        format!("{version}-{trace}-{parent}-{flags}")
    }

    fn ok(v: &str) -> TraceContext {
        parse_traceparent(v.as_bytes()).unwrap_or_else(|e| panic!("{v:?} rejected: {e}"))
    }

    fn bad(v: &[u8]) {
        assert!(
            parse_traceparent(v).is_err(),
            "{:?} accepted",
            String::from_utf8_lossy(v)
        );
    }

    #[test]
    fn inject_leaves_a_traceparent_in_step_alone() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = ok(tp);
        let edits = |incoming: &[(&str, &str)]| {
            let mut e = HeaderEdits::default();
            inject(&c, &RequestHeaders::from_strs(incoming), &mut e);
            e.get(TRACEPARENT).map(|v| v.map(str::to_string))
        };
        assert_eq!(edits(&[("traceparent", tp)]), None);
        let set = Some(Some(tp.to_string()));
        assert_eq!(
            &traceparent_bytes(&c)[..],
            format_traceparent(&c).as_bytes()
        );
        assert_eq!(&c.trace_id_hex_bytes()[..], c.trace_id_hex().as_bytes());
        assert_eq!(edits(&[]), set);
        // Same context, other bytes (OWS, a duplicate): rewritten.
        assert_eq!(edits(&[("traceparent", &format!(" {tp}"))]), set);
        assert_eq!(edits(&[("traceparent", tp), ("traceparent", tp)]), set);
    }

    #[test]
    fn headers_list() {
        assert_eq!(HEADERS, &["traceparent", "tracestate"]);
    }

    #[test]
    fn parses_spec_example() {
        let ctx = ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(ctx.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id, 0x00f067aa0ba902b7);
        assert_eq!(ctx.sampled, Some(true));
        assert!(!ctx.debug);
        assert!(!ctx.random);
    }

    #[test]
    fn flags() {
        let cases = [
            ("00", Some(false), false),
            ("01", Some(true), false),
            ("02", Some(false), true),
            ("03", Some(true), true),
            // Undefined bits are ignored, not an error.
            ("08", Some(false), false),
            ("09", Some(true), false),
            ("fe", Some(false), true),
            ("ff", Some(true), true),
        ];
        for (flags, sampled, random) in cases {
            let ctx = ok(&tp("00", TRACE, PARENT, flags));
            assert_eq!(ctx.sampled, sampled, "flags {flags}");
            assert_eq!(ctx.random, random, "flags {flags}");
            assert!(!ctx.debug);
        }
    }

    #[test]
    fn ows_is_trimmed() {
        let base = tp("00", TRACE, PARENT, "01");
        for v in [
            format!(" {base}"),
            format!("\t{base}"),
            format!("{base} "),
            format!("{base}\t"),
            format!("\t {base} \t"),
        ] {
            assert_eq!(ok(&v).trace_id, 0x12345678901234567890123456789012);
        }
        // OWS is only allowed around the value, not inside it or as other whitespace.
        bad(format!("00- {TRACE}-{PARENT}-01").as_bytes());
        bad(format!("00-{TRACE} -{PARENT}-01").as_bytes());
        bad(format!("\n{base}").as_bytes());
        bad(format!("{base}\r").as_bytes());
    }

    #[test]
    fn test_suite_invalid_vectors() {
        let cases: Vec<String> = vec![
            // version 0x00 with extra trailing characters
            format!("00-{TRACE}-{PARENT}-01."),
            format!("00-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
            // version 0xff
            format!("ff-{TRACE}-{PARENT}-01"),
            // version illegal characters, too long, too short
            format!(".0-{TRACE}-{PARENT}-01"),
            format!("0.-{TRACE}-{PARENT}-01"),
            format!("000-{TRACE}-{PARENT}-01"),
            format!("0000-{TRACE}-{PARENT}-01"),
            format!("0-{TRACE}-{PARENT}-01"),
            // trace id: all zero, illegal characters, too long, too short
            format!("00-00000000000000000000000000000000-{PARENT}-01"),
            format!("00-.2345678901234567890123456789012-{PARENT}-01"),
            format!("00-1234567890123456789012345678901.-{PARENT}-01"),
            format!("00-123456789012345678901234567890123-{PARENT}-01"),
            format!("00-1234567890123456789012345678901-{PARENT}-01"),
            // parent id: all zero, illegal characters, too long, too short
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-.234567890123456-01"),
            format!("00-{TRACE}-123456789012345.-01"),
            format!("00-{TRACE}-12345678901234567-01"),
            format!("00-{TRACE}-123456789012345-01"),
            // flags: illegal characters, too long, too short
            format!("00-{TRACE}-{PARENT}-.0"),
            format!("00-{TRACE}-{PARENT}-0."),
            format!("00-{TRACE}-{PARENT}-001"),
            format!("00-{TRACE}-{PARENT}-1"),
            // future version with a non-dash after the flags
            format!("cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like"),
        ];
        for v in cases {
            bad(v.as_bytes());
        }
    }

    #[test]
    fn upper_case_hex_is_invalid() {
        bad(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01");
        bad(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01");
        bad(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A");
        bad(b"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        bad(b"CC-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn wrong_separators_and_garbage() {
        bad(b"");
        bad(b" \t ");
        bad(b"-");
        bad(&[b'-'; 55]);
        bad(&[b'0'; 55]);
        bad(format!("00_{TRACE}_{PARENT}_01").as_bytes());
        bad(format!("00-{TRACE}{PARENT}-01--").as_bytes());
        bad(format!("00--{TRACE}-{PARENT}-1").as_bytes());
        bad(format!("00-{TRACE}-{PARENT}-+1").as_bytes());
        bad(format!("00-{TRACE}-{PARENT}- 1").as_bytes());
        // Signs and prefixes that a lax integer parser would take.
        bad(format!("00-+2345678901234567890123456789012-{PARENT}-01").as_bytes());
        bad(format!("00-0x345678901234567890123456789012-{PARENT}-01").as_bytes());
        // A comma-joined pair of values (as a proxy might fold duplicates) is invalid, not the first one.
        let v = tp("00", TRACE, PARENT, "01");
        bad(format!("{v},{v}").as_bytes());
        bad(format!("{v}, {v}").as_bytes());
    }

    #[test]
    fn non_utf8_and_huge_values() {
        let mut v = tp("00", TRACE, PARENT, "01").into_bytes();
        v[10] = 0xff;
        bad(&v);
        bad(&[0xff; 55]);
        bad(&[0x80; 200]);
        let mut v = tp("00", TRACE, PARENT, "01").into_bytes();
        v.extend(std::iter::repeat_n(b'x', 1 << 20));
        bad(&v);
        // A future version may carry a long tail; only the first 55 characters matter.
        let mut v = tp("cc", TRACE, PARENT, "01").into_bytes();
        v.push(b'-');
        v.extend(std::iter::repeat_n(0xffu8, 1 << 20));
        assert_eq!(parse_traceparent(&v).unwrap().span_id, 0x1234567890123456);
    }

    #[test]
    fn future_versions() {
        for v in [
            tp("cc", TRACE, PARENT, "01"),
            format!("cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like"),
            format!("01-{TRACE}-{PARENT}-01-"),
            format!("fe-{TRACE}-{PARENT}-01-x-y-z"),
        ] {
            let ctx = ok(&v);
            assert_eq!(ctx.trace_id, 0x12345678901234567890123456789012);
            assert_eq!(ctx.span_id, 0x1234567890123456);
            assert_eq!(ctx.sampled, Some(true));
        }
        let ctx = ok(&format!("01-{TRACE}-{PARENT}-02-extra"));
        assert_eq!(ctx.sampled, Some(false));
        assert!(ctx.random);
        // Shorter than 55: restart, even for a future version.
        bad(format!("cc-{TRACE}-{PARENT}-1").as_bytes());
        bad(format!("cc-{TRACE}-{PARENT}").as_bytes());
        // Future versions still need valid, non-zero ids.
        bad(format!("cc-00000000000000000000000000000000-{PARENT}-01-x").as_bytes());
        bad(format!("cc-{TRACE}-0000000000000000-01-x").as_bytes());
        bad(format!("cc-{TRACE}-{PARENT}-0g-x").as_bytes());
    }

    #[test]
    fn extract_cases() {
        let valid = tp("00", TRACE, PARENT, "01");
        let h = RequestHeaders::from_strs(&[]);
        assert_eq!(extract(&h), Extracted::Absent);

        let h = RequestHeaders::from_strs(&[("tracestate", "foo=1")]);
        assert_eq!(extract(&h), Extracted::Absent);

        let h = RequestHeaders::from_strs(&[("traceparent", &valid), ("tracestate", "foo=1")]);
        let Extracted::Valid(ctx) = extract(&h) else {
            panic!("expected valid")
        };
        assert_eq!(ctx.trace_id, 0x12345678901234567890123456789012);

        // Header names arrive lower-cased by RequestHeaders::new.
        let h = RequestHeaders::from_strs(&[("TrAcEpArEnT", &valid)]);
        assert!(matches!(extract(&h), Extracted::Valid(_)));

        // Wrong names are not ours.
        let h = RequestHeaders::from_strs(&[("trace-parent", &valid), ("trace.parent", &valid)]);
        assert_eq!(extract(&h), Extracted::Absent);

        let h = RequestHeaders::from_strs(&[
            (
                "traceparent",
                "00-12345678901234567890123456789011-1234567890123456-01",
            ),
            ("traceparent", &valid),
        ]);
        assert_eq!(extract(&h), Extracted::Invalid("duplicate traceparent"));
        // Even two identical copies are a duplicate.
        let h = RequestHeaders::from_strs(&[("traceparent", &valid), ("traceparent", &valid)]);
        assert_eq!(extract(&h), Extracted::Invalid("duplicate traceparent"));

        let h = RequestHeaders::from_strs(&[("traceparent", &tp("ff", TRACE, PARENT, "01"))]);
        assert_eq!(extract(&h), Extracted::Invalid("traceparent version ff"));

        let h = RequestHeaders::from_strs(&[("traceparent", "")]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));

        let h = RequestHeaders::new(vec![("traceparent".into(), vec![0xc3, 0x28, 0xff])]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
    }

    fn ctx(sampled: Option<bool>, random: bool, debug: bool) -> TraceContext {
        TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled,
            debug,
            random,
        }
    }

    #[test]
    fn format_flags() {
        let base = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-";
        let cases = [
            (ctx(None, false, false), "00"),
            (ctx(Some(false), false, false), "00"),
            (ctx(Some(true), false, false), "01"),
            (ctx(None, true, false), "02"),
            (ctx(Some(false), true, false), "02"),
            (ctx(Some(true), true, false), "03"),
            (ctx(None, false, true), "01"),
            (ctx(Some(true), true, true), "03"),
        ];
        for (c, flags) in cases {
            assert_eq!(format_traceparent(&c), format!("{base}{flags}"), "{c:?}");
        }
    }

    #[test]
    fn format_pads_small_ids() {
        let c = TraceContext {
            trace_id: 1,
            span_id: 2,
            sampled: Some(true),
            debug: false,
            random: false,
        };
        assert_eq!(
            format_traceparent(&c),
            "00-00000000000000000000000000000001-0000000000000002-01"
        );
        assert_eq!(parse_traceparent(format_traceparent(&c).as_bytes()), Ok(c));
    }

    #[test]
    fn round_trip() {
        for (s, r) in [
            (Some(true), true),
            (Some(false), false),
            (Some(true), false),
        ] {
            let c = ctx(s, r, false);
            assert_eq!(parse_traceparent(format_traceparent(&c).as_bytes()), Ok(c));
        }
        // Future version in, version 00 out.
        let c = ok(&format!("cc-{TRACE}-{PARENT}-03-more"));
        assert_eq!(format_traceparent(&c), tp("00", TRACE, PARENT, "03"));
    }

    #[test]
    fn inject_writes_only_traceparent() {
        let incoming = RequestHeaders::from_strs(&[
            (
                "traceparent",
                "00-00000000000000000000000000000001-0000000000000001-00",
            ),
            ("tracestate", "foo=1"),
        ]);
        let mut edits = HeaderEdits::default();
        inject(&ctx(Some(true), true, false), &incoming, &mut edits);
        assert_eq!(edits.len(), 1);
        assert_eq!(
            edits.iter().next(),
            Some(&crate::headers::HeaderEdit::Set(
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03".into()
            ))
        );
        assert_eq!(edits.get("tracestate"), None);
    }
}
