//! Datadog headers (parsing follows DataDog/dd-trace-cpp `extraction_util.cpp`):
//!
//! - `x-datadog-trace-id`: the low 64 bits of the trace id, decimal; `x-datadog-parent-id`: the span id,
//!   decimal; both non-zero.
//! - `x-datadog-sampling-priority`: an integer; > 0 keeps (1 auto, 2 user), <= 0 drops (0 auto, -1 user);
//!   absent means "defer". Priority 2 is not B3-style debug, so `debug` stays false.
//! - `x-datadog-tags`: `key=value,...`; `_dd.p.tid` holds the high 64 bits of the trace id as 16 lower-case
//!   hex. A malformed or repeated `_dd.p.tid`, or an undecodable tag list, is ignored (the id stays
//!   64-bit), as dd-trace-cpp does.
//! - `x-datadog-origin` is not part of the context; it is listed so the format owns it, and left untouched
//!   on inject when it arrived.
//!
//! Without any `x-datadog-*` header, the priority, origin and propagated tags are taken from the `dd`
//! member of a `tracestate` that belongs to the context (`datadog_w3c`), so a Datadog context that
//! arrived as W3C only keeps its decisions; and `w3c_member` gives the `dd` member for W3C headers
//! written from Datadog ones.

use std::fmt::Write as _;

use crate::context::{parse_lower_hex_u64, TraceContext};
use crate::formats::datadog_w3c::{self, DdMember, TID_TAG};
use crate::formats::{w3c, Extracted};
use crate::headers::{HeaderEdits, RequestHeaders};
use crate::tracestate::TraceState;

pub const HEADERS: &[&str] = &[TRACE_ID, PARENT_ID, SAMPLING_PRIORITY, ORIGIN, TAGS];

const TRACE_ID: &str = "x-datadog-trace-id";
const PARENT_ID: &str = "x-datadog-parent-id";
const SAMPLING_PRIORITY: &str = "x-datadog-sampling-priority";
const ORIGIN: &str = "x-datadog-origin";
const TAGS: &str = "x-datadog-tags";

const TID_KEY: &[u8] = TID_TAG.as_bytes();
const TRACESTATE: &str = "tracestate";

pub fn extract(h: &RequestHeaders) -> Extracted {
    crate::formats::extract_multi(h, HEADERS, parse)
}

/// The trimmed value of a header that may occur at most once.
fn single<'a>(h: &'a RequestHeaders, name: &'static str) -> Result<Option<&'a [u8]>, &'static str> {
    crate::formats::single_trimmed(h, name, "x-datadog-*: header repeated")
}

fn parse(h: &RequestHeaders) -> Result<TraceContext, &'static str> {
    let trace = single(h, TRACE_ID)?;
    let parent = single(h, PARENT_ID)?;
    let priority = single(h, SAMPLING_PRIORITY)?;
    single(h, ORIGIN)?;
    let tags = single(h, TAGS)?;

    let sampled = match priority {
        None => None,
        Some(p) => Some(parse_priority(p).ok_or("x-datadog-sampling-priority: bad value")? > 0),
    };
    // A missing id is reported as 0: a priority alone, or a trace id without a parent (Synthetics), is
    // partial and still honoured.
    let low = match trace {
        None if parent.is_some() => return Err("x-datadog-trace-id missing"),
        None => return Ok(crate::formats::partial_ctx(0, sampled, false)),
        Some(t) => parse_dec_u64(t)
            .filter(|&v| v != 0)
            .ok_or("x-datadog-trace-id: bad value")?,
    };
    let span_id = match parent {
        None => 0,
        Some(p) => parse_dec_u64(p)
            .filter(|&v| v != 0)
            .ok_or("x-datadog-parent-id: bad value")?,
    };
    let high = tags.and_then(trace_id_high).unwrap_or(0);
    Ok(TraceContext {
        trace_id: (u128::from(high) << 64) | u128::from(low),
        span_id,
        sampled,
        debug: false,
        random: false,
    })
}

use crate::context::parse_dec_u64;

/// A decimal integer with an optional leading `-`.
fn parse_priority(s: &[u8]) -> Option<i64> {
    datadog_w3c::parse_priority(std::str::from_utf8(s).ok()?)
}

/// `_dd.p.tid` from a tag list; `None` when absent, malformed, repeated, or the list does not decode.
fn trace_id_high(tags: &[u8]) -> Option<u64> {
    let mut found = None;
    for entry in tags.split(|&c| c == b',') {
        let entry = entry.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        // dd-trace-cpp drops the whole list when one entry has no `=`.
        let eq = entry.iter().position(|&c| c == b'=')?;
        let (key, value) = entry.split_at_checked(eq)?;
        if key == TID_KEY {
            if found.is_some() {
                return None;
            }
            found = Some(parse_lower_hex_u64(value.get(1..)?, 16)?);
        }
    }
    found
}

/// Writes the low 64 bits and the span id in decimal, the sampling priority (removed when deferred) and
/// `_dd.p.tid` in `x-datadog-tags` when the high half of the trace id is non-zero, so a 128-bit id survives
/// the trip. Other incoming tags are kept; an incoming `x-datadog-origin` is not touched.
///
/// An incoming priority that agrees with the decision is kept (so 2 "user keep" or -1 "user reject" is not
/// downgraded to 1 or 0); otherwise debug writes 2 (a forced keep), sampled 1, not sampled 0. Without
/// Datadog headers, the priority, origin and tags come from the `dd` member of this trace's `tracestate`
/// by Datadog's rules (`datadog_w3c`).
pub fn inject(ctx: &TraceContext, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id_low() == 0 || ctx.span_id == 0 {
        // Datadog cannot carry a zero low half or span id: every reader would reject the headers.
        return;
    }
    edits.set(TRACE_ID, ctx.trace_id_low().to_string());
    edits.set(PARENT_ID, ctx.span_id.to_string());

    let sampled = if ctx.debug { Some(true) } else { ctx.sampled };
    let from_w3c = if HEADERS.iter().any(|name| incoming.contains(name)) {
        None
    } else {
        w3c_dd_member(ctx, incoming)
    };
    let (priority, tags, origin) = match from_w3c {
        None => (
            sampled.map(|keep| priority_for(incoming_priority(incoming), keep, ctx.debug)),
            rebuild_tags(incoming, ctx.trace_id_high()),
            None,
        ),
        Some(mut dd) => {
            let priority = sampled.map(|keep| match dd.priority_for(keep) {
                (p, _) if ctx.debug && p < 2 => 2,
                (p, _) => p,
            });
            let origin = dd.origin.take();
            let tags = dd.into_tags(sampled.unwrap_or(false));
            let tags = tags.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            (priority, render_tags(tags, ctx.trace_id_high()), origin)
        }
    };
    match priority {
        Some(p) => edits.set(SAMPLING_PRIORITY, p.to_string()),
        None => remove_if_present(incoming, edits, SAMPLING_PRIORITY),
    }
    if let Some(origin) = origin {
        edits.set(ORIGIN, origin);
    }
    if tags.is_empty() {
        remove_if_present(incoming, edits, TAGS);
    } else {
        edits.set(TAGS, tags);
    }
}

/// The incoming `x-datadog-sampling-priority`, if it is one.
fn incoming_priority(incoming: &RequestHeaders) -> Option<i64> {
    single(incoming, SAMPLING_PRIORITY)
        .ok()
        .flatten()
        .and_then(parse_priority)
}

/// The priority written for a decision: `incoming` when it agrees, else 2 (debug), 1 or 0.
fn priority_for(incoming: Option<i64>, keep: bool, debug: bool) -> i64 {
    match incoming {
        Some(p) if (p > 0) == keep && (!debug || p >= 2) => p,
        _ if debug => 2,
        _ => i64::from(keep),
    }
}

/// The `dd` member of the incoming `tracestate`, when the incoming `traceparent` is this context's
/// trace (a `tracestate` belongs to its `traceparent`) and the list is valid.
fn w3c_dd_member(ctx: &TraceContext, incoming: &RequestHeaders) -> Option<DdMember> {
    let traceparent = incoming
        .get_single(filter_common::w3c::TRACEPARENT)
        .ok()??;
    if w3c::parse_traceparent(traceparent).ok()?.trace_id != ctx.trace_id {
        return None;
    }
    let state = TraceState::parse(incoming.get_all(TRACESTATE)).ok()?;
    state.get(datadog_w3c::KEY).map(DdMember::parse)
}

/// The `dd` member W3C headers written for `ctx` carry, when the incoming Datadog headers describe
/// `ctx`'s trace: the priority as `inject` writes it, the origin, the Datadog parent (`p`) and the
/// propagated tags. `None` when no Datadog header describes this trace, or there is nothing to say.
pub fn w3c_member(ctx: &TraceContext, incoming: &RequestHeaders) -> Option<String> {
    let (trace_id, parent) = match extract(incoming) {
        Extracted::Valid(d) => (d.trace_id, Some(d.span_id)),
        Extracted::Partial(p) => (p.trace_id?, None),
        Extracted::Absent | Extracted::Invalid(_) => return None,
    };
    let same = trace_id == ctx.trace_id
        || (trace_id >> 64 == 0 && trace_id == u128::from(ctx.trace_id_low()));
    if !same {
        return None;
    }
    let sampled = if ctx.debug { Some(true) } else { ctx.sampled };
    let origin = single(incoming, ORIGIN)
        .ok()
        .flatten()
        .filter(|o| !o.is_empty())
        .and_then(|o| std::str::from_utf8(o).ok())
        .map(str::to_string);
    let tags = rebuild_tags(incoming, 0);
    DdMember {
        priority: sampled.map(|keep| priority_for(incoming_priority(incoming), keep, ctx.debug)),
        origin,
        last_parent: parent,
        tags: tags
            .split(',')
            .filter_map(|t| t.split_once('='))
            .filter(|(k, _)| k.starts_with("_dd.p."))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
    .render()
}

fn remove_if_present(incoming: &RequestHeaders, edits: &mut HeaderEdits, name: &'static str) {
    if incoming.contains(name) {
        edits.remove(name);
    }
}

/// The incoming tags without `_dd.p.tid`, then `_dd.p.tid` for `high` unless it is zero. Entries that do
/// not fit the Datadog grammar (`key=value`, printable ASCII, no space or `=` in the key) are dropped
/// rather than passed on.
fn rebuild_tags(incoming: &RequestHeaders, high: u64) -> String {
    let mut kept = Vec::new();
    if let Ok(Some(value)) = incoming.get_single(TAGS) {
        for entry in value.split(|&c| c == b',') {
            let Ok(text) = std::str::from_utf8(entry.trim_ascii()) else {
                continue;
            };
            if let Some(pair) = text.split_once('=') {
                kept.push(pair);
            }
        }
    }
    render_tags(kept.into_iter(), high)
}

/// `key=value,...` of the valid `tags` other than `_dd.p.tid`, then `_dd.p.tid` for `high` unless zero.
fn render_tags<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>, high: u64) -> String {
    let mut out = String::new();
    for (key, value) in tags {
        let printable = |s: &str| s.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b',');
        if key.is_empty()
            || key.contains(' ')
            || key == TID_TAG
            || !printable(key)
            || !printable(value)
        {
            continue;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    if high != 0 {
        if !out.is_empty() {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "_dd.p.tid={high:016x}");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{ctx, injected_edits};
    use crate::formats::Format;

    fn ex(pairs: &[(&str, &str)]) -> Extracted {
        extract(&RequestHeaders::from_strs(pairs))
    }

    fn injected(c: &TraceContext, incoming: &RequestHeaders) -> HeaderEdits {
        injected_edits(Format::Datadog, c, incoming)
    }

    #[test]
    fn absent() {
        assert_eq!(ex(&[]), Extracted::Absent);
        assert_eq!(ex(&[("x-datadog-other", "1")]), Extracted::Absent);
    }

    #[test]
    fn basic() {
        assert_eq!(
            ex(&[(TRACE_ID, "123"), (PARENT_ID, "456")]),
            Extracted::Valid(ctx(123, 456, None))
        );
        assert_eq!(
            ex(&[
                (TRACE_ID, "18446744073709551615"),
                (PARENT_ID, "18446744073709551615")
            ]),
            Extracted::Valid(ctx(u128::from(u64::MAX), u64::MAX, None))
        );
        assert_eq!(
            ex(&[
                (TRACE_ID, " 0123 "),
                (PARENT_ID, "\t456"),
                (ORIGIN, "synthetics")
            ]),
            Extracted::Valid(ctx(123, 456, None))
        );
    }

    #[test]
    fn sampling_priority() {
        for (p, want) in [
            ("-1", false),
            ("0", false),
            ("1", true),
            ("2", true),
            ("-0", false),
            ("10", true),
        ] {
            assert_eq!(
                ex(&[(TRACE_ID, "1"), (PARENT_ID, "2"), (SAMPLING_PRIORITY, p)]),
                Extracted::Valid(ctx(1, 2, Some(want))),
                "{p}"
            );
        }
        for p in ["", "x", "+1", "1.0", "--1", "9223372036854775808", "- 1"] {
            assert_eq!(
                ex(&[(TRACE_ID, "1"), (PARENT_ID, "2"), (SAMPLING_PRIORITY, p)]),
                Extracted::Invalid("x-datadog-sampling-priority: bad value"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn invalid() {
        assert_eq!(
            ex(&[(PARENT_ID, "2")]),
            Extracted::Invalid("x-datadog-trace-id missing")
        );
        assert!(matches!(ex(&[(ORIGIN, "rum")]), Extracted::Invalid(_)));
        // A priority alone, or a trace id without a parent (Synthetics), is partial and honoured.
        assert_eq!(
            ex(&[(SAMPLING_PRIORITY, "-1")]),
            Extracted::Partial(crate::formats::Partial {
                trace_id: None,
                sampled: Some(false),
                debug: false
            })
        );
        assert_eq!(
            ex(&[(TRACE_ID, "5"), (SAMPLING_PRIORITY, "1")]),
            Extracted::Partial(crate::formats::Partial {
                trace_id: Some(5),
                sampled: Some(true),
                debug: false
            })
        );
        assert!(matches!(ex(&[(TRACE_ID, "1")]), Extracted::Partial(_)));
        for bad in [
            "0",
            "",
            "0x12",
            "-1",
            "+1",
            "1e3",
            "18446744073709551616",
            "99999999999999999999999",
            "1 2",
        ] {
            assert_eq!(
                ex(&[(TRACE_ID, bad), (PARENT_ID, "2")]),
                Extracted::Invalid("x-datadog-trace-id: bad value"),
                "{bad:?}"
            );
            assert_eq!(
                ex(&[(TRACE_ID, "1"), (PARENT_ID, bad)]),
                Extracted::Invalid("x-datadog-parent-id: bad value"),
                "{bad:?}"
            );
        }
        for name in HEADERS {
            let mut pairs = vec![(TRACE_ID, "1"), (PARENT_ID, "2")];
            pairs.push((name, "1"));
            pairs.push((name, "1"));
            assert_eq!(
                ex(&pairs),
                Extracted::Invalid("x-datadog-*: header repeated"),
                "{name}"
            );
        }
        let h = RequestHeaders::new(vec![
            (TRACE_ID.into(), vec![b'1', 0xff]),
            (PARENT_ID.into(), b"2".to_vec()),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("x-datadog-trace-id: bad value")
        );
    }

    #[test]
    fn tid_combines_with_low_bits() {
        // traceparent 00-640cfd8d00000000abcdefab12345678-... as Datadog sends it.
        let low = 0xabcdefab12345678u64.to_string();
        let want = Extracted::Valid(ctx(0x640cfd8d00000000abcdefab12345678, 2, Some(true)));
        for tags in [
            "_dd.p.tid=640cfd8d00000000",
            "_dd.p.dm=-0,_dd.p.tid=640cfd8d00000000",
            "_dd.p.tid=640cfd8d00000000,_dd.p.dm=-4",
            " _dd.p.dm=-0 , _dd.p.tid=640cfd8d00000000 ",
            "_dd.p.dm=-0,,_dd.p.tid=640cfd8d00000000,",
        ] {
            assert_eq!(
                ex(&[
                    (TRACE_ID, &low),
                    (PARENT_ID, "2"),
                    (SAMPLING_PRIORITY, "1"),
                    (TAGS, tags)
                ]),
                want,
                "{tags}"
            );
        }
    }

    #[test]
    fn malformed_tid_is_ignored() {
        for tags in [
            "_dd.p.tid=640CFD8D00000000",
            "_dd.p.tid=640cfd8d0000000",
            "_dd.p.tid=640cfd8d000000000",
            "_dd.p.tid=xyzcfd8d00000000",
            "_dd.p.tid=",
            "_dd.p.tid",
            "_dd.p.tid=640cfd8d00000000,_dd.p.tid=640cfd8d00000001",
            "_dd.p.tid=640cfd8d00000000,garbage",
            "_dd.p.tid=640cfd8d00000000 x",
            "_dd.p.tidx=640cfd8d00000000",
            "",
        ] {
            assert_eq!(
                ex(&[(TRACE_ID, "5"), (PARENT_ID, "2"), (TAGS, tags)]),
                Extracted::Valid(ctx(5, 2, None)),
                "{tags:?}"
            );
        }
        let h = RequestHeaders::new(vec![
            (TRACE_ID.into(), b"5".to_vec()),
            (PARENT_ID.into(), b"2".to_vec()),
            (TAGS.into(), vec![0xff, b'=', 0xfe]),
        ]);
        assert_eq!(extract(&h), Extracted::Valid(ctx(5, 2, None)));
    }

    #[test]
    fn inject_64_bit() {
        let e = injected(&ctx(123, 456, Some(true)), &RequestHeaders::default());
        assert_eq!(e.get(TRACE_ID), Some(Some("123")));
        assert_eq!(e.get(PARENT_ID), Some(Some("456")));
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("1")));
        assert_eq!(e.get(TAGS), None);
        assert_eq!(e.get(ORIGIN), None);
        assert_eq!(e.len(), 3);
        let e = injected(&ctx(123, 456, Some(false)), &RequestHeaders::default());
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("0")));
        let e = injected(&ctx(123, 456, None), &RequestHeaders::default());
        assert_eq!(e.get(SAMPLING_PRIORITY), None);
        assert_eq!(e.len(), 2);
        let mut debug = ctx(123, 456, None);
        debug.debug = true;
        let e = injected(&debug, &RequestHeaders::default());
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("2")));
    }

    #[test]
    fn inject_128_bit_adds_tid() {
        let c = ctx(0x640cfd8d00000000abcdefab12345678, 2, Some(true));
        let e = injected(&c, &RequestHeaders::default());
        assert_eq!(e.get(TRACE_ID), Some(Some("12379814468735227512")));
        assert_eq!(e.get(TAGS), Some(Some("_dd.p.tid=640cfd8d00000000")));
    }

    #[test]
    fn inject_keeps_other_tags_and_replaces_tid() {
        let incoming = RequestHeaders::from_strs(&[
            (TRACE_ID, "1"),
            (PARENT_ID, "2"),
            (ORIGIN, "synthetics"),
            (
                TAGS,
                "_dd.p.dm=-4, _dd.p.tid=1111111111111111 ,_dd.p.usr=abc,bad entry,=x,k y=z,,x=1=2",
            ),
        ]);
        let e = injected(
            &ctx(0x640cfd8d00000000abcdefab12345678, 2, Some(true)),
            &incoming,
        );
        assert_eq!(
            e.get(TAGS),
            Some(Some(
                "_dd.p.dm=-4,_dd.p.usr=abc,x=1=2,_dd.p.tid=640cfd8d00000000"
            ))
        );
        assert_eq!(e.get(ORIGIN), None);

        // A 64-bit id drops the stale tid and keeps the rest.
        let e = injected(&ctx(7, 2, Some(true)), &incoming);
        assert_eq!(e.get(TAGS), Some(Some("_dd.p.dm=-4,_dd.p.usr=abc,x=1=2")));

        // Nothing left: the header goes.
        let incoming = RequestHeaders::from_strs(&[(TAGS, "_dd.p.tid=1111111111111111")]);
        let e = injected(&ctx(7, 2, Some(true)), &incoming);
        assert_eq!(e.get(TAGS), Some(None));

        // Non-UTF-8 entries are dropped, the rest kept.
        let incoming = RequestHeaders::new(vec![(TAGS.into(), b"a=\xff,_dd.p.dm=-0".to_vec())]);
        let e = injected(&ctx(7, 2, Some(true)), &incoming);
        assert_eq!(e.get(TAGS), Some(Some("_dd.p.dm=-0")));

        // Datadog's tag grammar is printable ASCII: an entry with a control or non-ASCII byte in its
        // key or value is dropped, the rest kept.
        let incoming = RequestHeaders::from_strs(&[(
            TAGS,
            "k\tx=1,_dd.p.dm=-0,k=v\u{7f},_dd.p.usr=caf\u{e9},k2=ok ok",
        )]);
        let e = injected(&ctx(7, 2, Some(true)), &incoming);
        assert_eq!(e.get(TAGS), Some(Some("_dd.p.dm=-0,k2=ok ok")));

        // A repeated tags header is not merged: only the tid is written.
        let incoming = RequestHeaders::from_strs(&[(TAGS, "a=1"), (TAGS, "b=2")]);
        let e = injected(&ctx(1 << 64 | 7, 2, Some(true)), &incoming);
        assert_eq!(e.get(TAGS), Some(Some("_dd.p.tid=0000000000000001")));
    }

    #[test]
    fn inject_keeps_agreeing_priority() {
        let with = |p: &str| {
            RequestHeaders::from_strs(&[(TRACE_ID, "1"), (PARENT_ID, "2"), (SAMPLING_PRIORITY, p)])
        };
        let prio = |c: &TraceContext, p: &str| {
            injected(c, &with(p))
                .get(SAMPLING_PRIORITY)
                .unwrap()
                .map(str::to_string)
        };
        let mut debug = ctx(1, 2, Some(true));
        debug.debug = true;
        assert_eq!(prio(&ctx(1, 2, Some(true)), "2"), Some("2".into()));
        assert_eq!(prio(&ctx(1, 2, Some(true)), " 1 "), Some("1".into()));
        assert_eq!(prio(&ctx(1, 2, Some(true)), "-1"), Some("1".into()));
        assert_eq!(prio(&ctx(1, 2, Some(false)), "-1"), Some("-1".into()));
        assert_eq!(prio(&ctx(1, 2, Some(false)), "2"), Some("0".into()));
        assert_eq!(prio(&ctx(1, 2, Some(false)), "junk"), Some("0".into()));
        // 0 is AUTO_REJECT: it agrees with a drop and is overruled by a keep.
        assert_eq!(prio(&ctx(1, 2, Some(false)), "0"), Some("0".into()));
        assert_eq!(prio(&ctx(1, 2, Some(true)), "0"), Some("1".into()));
        assert_eq!(prio(&debug, "0"), Some("2".into()));
        assert_eq!(prio(&debug, "1"), Some("2".into()));
        assert_eq!(prio(&debug, "2"), Some("2".into()));
        assert_eq!(prio(&ctx(1, 2, None), "2"), None);
    }

    const TP: &str = "00-6a0b1c2d00000000e3ce929d0e0e4736-f067aa0ba902b7e1-01";
    const TRACE: u128 = 0x6a0b1c2d00000000e3ce929d0e0e4736;
    const SPAN: u64 = 0xf067aa0ba902b7e1;

    /// Issue 16 item 3: W3C in, Datadog written: the `dd` member's decisions, by Datadog's rules.
    #[test]
    fn issue16_item3_inject_reads_the_dd_member_of_this_trace() {
        let w3c = |tp: &str, ts: &str| {
            RequestHeaders::from_strs(&[("traceparent", tp), ("tracestate", ts)])
        };
        let e = injected(
            &ctx(TRACE, SPAN, Some(true)),
            &w3c(TP, "congo=x,dd=s:2;o:synthetics;t.dm:-4"),
        );
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("2")));
        assert_eq!(e.get(ORIGIN), Some(Some("synthetics")));
        assert_eq!(
            e.get(TAGS),
            Some(Some("_dd.p.dm=-4,_dd.p.tid=6a0b1c2d00000000"))
        );
        // User reject with an unsampled traceparent.
        let e = injected(&ctx(TRACE, SPAN, Some(false)), &w3c(TP, "dd=s:-1"));
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("-1")));
        assert_eq!(e.get(ORIGIN), None);
        // Overruled by the decision forwarded: 1 and dm -0.
        let e = injected(&ctx(TRACE, SPAN, Some(true)), &w3c(TP, "dd=s:-1;t.dm:-3"));
        assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("1")));
        assert_eq!(
            e.get(TAGS),
            Some(Some("_dd.p.dm=-0,_dd.p.tid=6a0b1c2d00000000"))
        );
        // A debug context (B3's `d`) is a user keep: priority 2 even when the member said 1, and 2
        // stays 2.
        for member in ["dd=s:1", "dd=s:2"] {
            let debug = crate::formats::test_support::debug_ctx(TRACE, SPAN, Some(true), true);
            let e = injected(&debug, &w3c(TP, member));
            assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("2")), "{member}");
        }
        // Another trace's tracestate, an invalid list, or Datadog headers present: not read.
        let other = "00-11111111111111111111111111111111-f067aa0ba902b7e1-01";
        for incoming in [
            w3c(other, "dd=s:2;o:rum"),
            w3c(TP, "dd=s:2;o:rum,Bad=x"),
            RequestHeaders::from_strs(&[
                ("traceparent", TP),
                ("tracestate", "dd=s:2;o:rum"),
                (SAMPLING_PRIORITY, "1"),
            ]),
        ] {
            let e = injected(&ctx(TRACE, SPAN, Some(true)), &incoming);
            assert_eq!(e.get(SAMPLING_PRIORITY), Some(Some("1")), "{incoming:?}");
            assert_eq!(e.get(ORIGIN), None, "{incoming:?}");
        }
    }

    /// Issue 16 item 3: Datadog in, W3C written: the `dd` member for the Datadog headers of this trace.
    #[test]
    fn issue16_item3_w3c_member_from_datadog_headers() {
        let dd = RequestHeaders::from_strs(&[
            (TRACE_ID, &(TRACE as u64).to_string()),
            (PARENT_ID, &SPAN.to_string()),
            (SAMPLING_PRIORITY, "2"),
            (ORIGIN, "synthetics"),
            (TAGS, "_dd.p.dm=-4,_dd.p.tid=6a0b1c2d00000000,other=1"),
        ]);
        assert_eq!(
            w3c_member(&ctx(TRACE, SPAN, Some(true)), &dd).as_deref(),
            Some("s:2;o:synthetics;p:f067aa0ba902b7e1;t.dm:-4")
        );
        // The 64-bit low half of the same trace is the same trace; `p` stays the Datadog parent when
        // the context has a new span id.
        assert_eq!(
            w3c_member(&ctx(TRACE, 7, Some(true)), &dd).as_deref(),
            Some("s:2;o:synthetics;p:f067aa0ba902b7e1;t.dm:-4")
        );
        // A decision that disagrees with the header's priority is the one written.
        assert_eq!(
            w3c_member(&ctx(TRACE, SPAN, Some(false)), &dd).as_deref(),
            Some("s:0;o:synthetics;p:f067aa0ba902b7e1;t.dm:-4")
        );
        assert_eq!(w3c_member(&ctx(TRACE + 1, SPAN, Some(true)), &dd), None);
        // Without `_dd.p.tid` Datadog carries only the low half: still this trace.
        let low_only = RequestHeaders::from_strs(&[
            (TRACE_ID, &(TRACE as u64).to_string()),
            (PARENT_ID, &SPAN.to_string()),
            (SAMPLING_PRIORITY, "2"),
        ]);
        assert_eq!(
            w3c_member(&ctx(TRACE, 7, Some(true)), &low_only).as_deref(),
            Some("s:2;p:f067aa0ba902b7e1")
        );
        assert_eq!(
            w3c_member(&ctx(TRACE ^ 1, 7, Some(true)), &low_only),
            None,
            "another low half"
        );
        assert_eq!(
            w3c_member(&ctx(TRACE, SPAN, Some(true)), &RequestHeaders::default()),
            None
        );
    }

    #[test]
    fn inject_skips_zero_ids() {
        assert!(injected(&ctx(1 << 64, 2, None), &RequestHeaders::default()).is_empty());
        assert!(injected(&ctx(1, 0, None), &RequestHeaders::default()).is_empty());
    }

    #[test]
    fn round_trips() {
        let stale = RequestHeaders::from_strs(&[
            (TRACE_ID, "9"),
            (PARENT_ID, "9"),
            (SAMPLING_PRIORITY, "2"),
            (ORIGIN, "rum"),
            (TAGS, "_dd.p.tid=1111111111111111,_dd.p.dm=-0"),
        ]);
        for incoming in [RequestHeaders::default(), stale] {
            for trace_id in [
                0x640cfd8d00000000abcdefab12345678,
                0xa3ce929d0e0e4736,
                1,
                u128::MAX,
                1 << 64 | 1,
                u128::from(u64::MAX),
            ] {
                for span_id in [1, 0x00f067aa0ba902b7, u64::MAX] {
                    for sampled in [None, Some(true), Some(false)] {
                        let c = ctx(trace_id, span_id, sampled);
                        let out = incoming.apply(&injected(&c, &incoming));
                        assert_eq!(extract(&out), Extracted::Valid(c));
                        assert_eq!(
                            out.get_single(ORIGIN).unwrap(),
                            incoming.get_single(ORIGIN).unwrap()
                        );
                    }
                }
            }
        }
    }
}
