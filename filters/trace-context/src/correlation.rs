//! Request-id correlation: the inbound side of a sidecar remembers each request's context (and its
//! `tracestate`) under its `x-request-id`, and the outbound side restores it for a call from the workload
//! that carried only that id. Entries live in a fixed number of shared-data slots, so memory is `slots`
//! times one entry of at most `MAX_ENTRY_LEN` bytes whatever the traffic.
//!
//! Where a request id lives: one of [`PROBES`] slots from its home slot, chosen by a keyed hash with the
//! sidecar's secret seed (`filter_common::slots`), so ids that share a victim's slots cannot be computed
//! outside the sidecar.
//!
//! Who may write a slot (`look`, `plan`): the first request to claim a request id keeps it until its entry
//! expires. Another request with the same id and the same trace is a retry and refreshes the entry; one
//! with the same id and another trace is refused, so it cannot make the first request's outbound calls
//! join its trace. A request with another id takes a free slot among its probes (never written, expired
//! or unreadable); only when all of them hold live entries does it replace the oldest of them: a bounded
//! table has to forget something, and which entry goes is not the caller's choice. The id is stored in
//! the entry, so an evicted request is simply not restored any more, never restored into someone else's
//! trace.

use crate::context::TraceContext;
use crate::propagation::Restored;
use crate::tracestate::TraceState;

pub use filter_common::keys::CORRELATION_PREFIX as KEY_PREFIX;
use filter_common::slots::{fingerprint, probes, Seed};

/// Slots a request id may live in: its home slot and the next ones. Few, so that a request costs a
/// bounded number of reads; several, so that no single entry is the only candidate for eviction.
pub const PROBES: u32 = 4;

/// Request ids longer than this are not correlated (Envoy's are 36-character UUIDs).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Longest `tracestate` stored with an entry: the 512 characters W3C asks every hop to propagate.
/// A longer one is cut by the spec's rules (whole members, those over 128 characters first, then from
/// the right), so what is restored is what a 512-character hop would have forwarded.
pub const MAX_TRACESTATE_LEN: usize = crate::tracestate::PROPAGATE_MIN;

/// Longest entry: request id, 32 + 16 hex digits, flags (at most 2 digits), expiry (at most 20 digits),
/// tracestate, and the 5 newlines between them.
pub const MAX_ENTRY_LEN: usize = MAX_REQUEST_ID_LEN + 32 + 16 + 2 + 20 + MAX_TRACESTATE_LEN + 5;

/// The shared-data keys of the slots `request_id` may use, home slot first.
pub fn slot_keys(seed: &Seed, request_id: &[u8], slots: u32) -> impl Iterator<Item = String> {
    probes(fingerprint(seed, request_id), slots, PROBES)
        .map(|slot| filter_common::keys::correlation_slot(u64::from(slot)))
}

/// Encodes an entry: `request_id \n trace_id \n span_id \n flags \n expiry [\n tracestate]`, all text, so
/// the value stays readable in a dump and cannot be confused with another slot's entry. The tracestate
/// field is written only when there is one, so an entry without it is exactly the earlier five-field
/// format, which an older module sharing the data during an upgrade still reads.
pub fn encode(
    request_id: &[u8],
    ctx: &TraceContext,
    tracestate: &TraceState,
    expires_at_nanos: u64,
) -> Option<Vec<u8>> {
    if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID_LEN || request_id.contains(&b'\n')
    {
        return None;
    }
    let mut flags = 0u8;
    if let Some(sampled) = ctx.sampled {
        flags |= 8 | u8::from(sampled);
    }
    if ctx.debug {
        flags |= 2;
    }
    if ctx.random {
        flags |= 4;
    }
    let mut out = Vec::with_capacity(request_id.len() + 80);
    out.extend_from_slice(request_id);
    out.extend_from_slice(
        format!(
            "\n{:032x}\n{:016x}\n{flags}\n{expires_at_nanos}",
            ctx.trace_id, ctx.span_id
        )
        .as_bytes(),
    );
    // Rendered members are printable ASCII without newlines, so the field cannot split the entry.
    if let Some(ts) = tracestate.to_header(MAX_TRACESTATE_LEN) {
        out.push(b'\n');
        out.extend_from_slice(ts.as_bytes());
    }
    Some(out)
}

/// An entry's fields, checked.
struct Entry<'a> {
    request_id: &'a [u8],
    context: TraceContext,
    expires_at: u64,
    tracestate: Option<&'a [u8]>,
}

fn parse(entry: &[u8]) -> Option<Entry<'_>> {
    let mut parts = entry.split(|b| *b == b'\n');
    let request_id = parts.next()?;
    let trace_id = u128::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let span_id = u64::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let flags: u8 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let expires_at: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let tracestate = parts.next();
    if request_id.is_empty() || trace_id == 0 || span_id == 0 || parts.next().is_some() {
        return None;
    }
    Some(Entry {
        request_id,
        context: TraceContext {
            trace_id,
            span_id,
            sampled: (flags & 8 != 0).then_some(flags & 1 != 0),
            debug: flags & 2 != 0,
            random: flags & 4 != 0,
        },
        expires_at,
        tracestate,
    })
}

/// The context stored for `request_id`, if the slot holds that request's entry and it has not expired.
/// A stored `tracestate` that does not parse is left out; the context is still restored.
pub fn decode(entry: &[u8], request_id: &[u8], now_nanos: u64) -> Option<Restored> {
    let e = parse(entry)?;
    if e.request_id != request_id || now_nanos >= e.expires_at {
        return None;
    }
    let tracestate = e
        .tracestate
        .and_then(|ts| TraceState::parse(std::iter::once(ts)).ok())
        .unwrap_or_default();
    Some(Restored {
        context: e.context,
        tracestate,
    })
}

/// What one slot tells an inbound request looking for where to store its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Never written (or missing). Slots are never emptied once written, so no later probe of this
    /// request holds its id either: the search ends here, and the slot may be taken.
    Empty,
    /// An expired or unreadable entry: may be taken.
    Free,
    /// A live entry of this request id; `same_trace`: a retry, which refreshes it.
    Mine { same_trace: bool },
    /// A live entry of another request id, expiring at `expires_at`.
    Taken { expires_at: u64 },
}

/// Looks at a slot's value (`None` when the key does not exist) for the request `request_id` carrying
/// `trace_id`.
pub fn look(current: Option<&[u8]>, request_id: &[u8], trace_id: u128, now_nanos: u64) -> Look {
    let Some(current) = current.filter(|c| !c.is_empty()) else {
        return Look::Empty;
    };
    match parse(current) {
        None => Look::Free,
        Some(e) if now_nanos >= e.expires_at => Look::Free,
        Some(e) if e.request_id == request_id => Look::Mine {
            same_trace: e.context.trace_id == trace_id,
        },
        Some(e) => Look::Taken {
            expires_at: e.expires_at,
        },
    }
}

/// What an inbound request does, from the looks at its probes (in order, up to the first `Empty` or
/// `Mine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Write the entry into probe `probe`; `evicts`: over a live entry of another request id.
    Write { probe: usize, evicts: bool },
    /// A live entry holds this request id for another trace: kept (first writer wins).
    Refuse,
}

/// Decides where the entry goes: over its own entry (a retry; a request id lives in one slot only),
/// else into the first empty or free probe, else over the live entry that expires first (the oldest,
/// when every entry had the same TTL).
pub fn plan(looks: &[Look]) -> Plan {
    let write = |probe, evicts| Plan::Write { probe, evicts };
    for (probe, look) in looks.iter().enumerate() {
        match look {
            Look::Mine { same_trace: true } => return write(probe, false),
            Look::Mine { same_trace: false } => return Plan::Refuse,
            _ => {}
        }
    }
    if let Some(probe) = looks
        .iter()
        .position(|l| matches!(l, Look::Empty | Look::Free))
    {
        return write(probe, false);
    }
    let oldest = looks
        .iter()
        .enumerate()
        .filter_map(|(probe, look)| match look {
            Look::Taken { expires_at } => Some((*expires_at, probe)),
            _ => None,
        })
        .min();
    match oldest {
        Some((_, probe)) => write(probe, true),
        // No slot looked at (a table always has one): nothing to write over.
        None => Plan::Refuse,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ctx() -> TraceContext {
        TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: Some(true),
            debug: false,
            random: true,
        }
    }

    fn ts(s: &str) -> TraceState {
        TraceState::parse(std::iter::once(s.as_bytes())).unwrap()
    }

    fn none() -> TraceState {
        TraceState::default()
    }

    #[test]
    fn round_trip_before_expiry() {
        let e = encode(b"req-1", &ctx(), &none(), 1_000).unwrap();
        let r = decode(&e, b"req-1", 999).unwrap();
        assert_eq!(r.context, ctx());
        assert!(r.tracestate.is_empty());
        let mut deferred = ctx();
        deferred.sampled = None;
        let e = encode(b"req-1", &deferred, &none(), 1_000).unwrap();
        assert_eq!(decode(&e, b"req-1", 0).unwrap().context.sampled, None);
        // Every flag round-trips on its own: a decision not to sample, debug, a non-random id.
        for context in [
            TraceContext {
                sampled: Some(false),
                ..ctx()
            },
            TraceContext {
                debug: true,
                random: false,
                ..ctx()
            },
        ] {
            let e = encode(b"req-1", &context, &none(), 1_000).unwrap();
            assert_eq!(decode(&e, b"req-1", 0).unwrap().context, context);
        }
    }

    #[test]
    fn item9_tracestate_round_trips() {
        let state = ts("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,t@v=a b");
        let e = encode(b"req-1", &ctx(), &state, 1_000).unwrap();
        let r = decode(&e, b"req-1", 0).unwrap();
        assert_eq!(r.context, ctx());
        assert_eq!(r.tracestate, state);
    }

    #[test]
    fn item9_long_tracestate_is_cut_by_whole_members_to_512() {
        let large = format!("big={}", "x".repeat(196));
        let small: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "y".repeat(16)))
            .collect();
        let state = ts(&format!("{large},{}", small.join(",")));
        let e = encode(b"req-1", &ctx(), &state, 1_000).unwrap();
        let r = decode(&e, b"req-1", 0).unwrap();
        assert_eq!(r.tracestate.to_header(usize::MAX).unwrap(), small.join(","));

        // The largest entry stays within MAX_ENTRY_LEN.
        let members: Vec<String> = (0..32)
            .map(|i| format!("k{i:02}={}", "v".repeat(200)))
            .collect();
        let rid = [b'r'; MAX_REQUEST_ID_LEN];
        let mut widest = ctx();
        widest.trace_id = u128::MAX;
        widest.span_id = u64::MAX;
        widest.debug = true;
        let e = encode(&rid, &widest, &ts(&members.join(",")), u64::MAX).unwrap();
        assert!(e.len() <= MAX_ENTRY_LEN, "{} > {MAX_ENTRY_LEN}", e.len());
        let fits: Vec<String> = (0..24)
            .map(|i| format!("k{i:02}={}", "v".repeat(16)))
            .collect();
        let e = encode(&rid, &widest, &ts(&fits.join(",")), u64::MAX).unwrap();
        assert!(e.len() <= MAX_ENTRY_LEN, "{} > {MAX_ENTRY_LEN}", e.len());
        // And the bound is tight: every field at its widest (flags 15, a 512-character tracestate)
        // fills it exactly, so shared memory is reserved for no more than an entry can take.
        widest.sampled = Some(true);
        widest.random = true;
        let full = format!("a={},b={}", "x".repeat(253), "y".repeat(254));
        assert_eq!(full.len(), MAX_TRACESTATE_LEN);
        let e = encode(&rid, &widest, &ts(&full), u64::MAX).unwrap();
        assert_eq!(e.len(), MAX_ENTRY_LEN);
    }

    #[test]
    fn item9_old_five_field_entries_still_decode() {
        // Written by the previous module: no tracestate field.
        let old = b"req-1\n4bf92f3577b34da6a3ce929d0e0e4736\n00f067aa0ba902b7\n13\n1000";
        let r = decode(old, b"req-1", 0).unwrap();
        assert_eq!(r.context, ctx());
        assert!(r.tracestate.is_empty());
        // And an entry without tracestate is byte-for-byte the old format.
        assert_eq!(
            encode(b"req-1", &ctx(), &none(), 1000).unwrap(),
            old.to_vec()
        );
        // A damaged tracestate field loses the tracestate, not the context.
        let bad = [&old[..], b"\nNOT VALID"].concat();
        let r = decode(&bad, b"req-1", 0).unwrap();
        assert_eq!(r.context, ctx());
        assert!(r.tracestate.is_empty());
        // More fields than this module knows: ignored safely.
        let future = [&old[..], b"\na=1\nmore"].concat();
        assert!(decode(&future, b"req-1", 0).is_none());
    }

    #[test]
    fn other_request_or_expired_entry_is_not_restored() {
        let e = encode(b"req-1", &ctx(), &none(), 1_000).unwrap();
        assert_eq!(decode(&e, b"req-2", 0), None);
        assert_eq!(decode(&e, b"req-1", 1_000), None);
        assert_eq!(decode(b"garbage", b"garbage", 0), None);
        assert_eq!(decode(b"", b"", 0), None);
        // An all-zero trace or span id is invalid (W3C), whatever else the entry says.
        for zero in [
            &b"req-1\n00000000000000000000000000000000\n00f067aa0ba902b7\n13\n1000"[..],
            b"req-1\n4bf92f3577b34da6a3ce929d0e0e4736\n0000000000000000\n13\n1000",
        ] {
            assert_eq!(decode(zero, b"req-1", 0), None);
        }
    }

    #[test]
    fn truncated_entries_never_restore_a_wrong_context() {
        let state = ts("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let full = encode(b"req-1", &ctx(), &state, 1_000_000).unwrap();
        // The expiry field starts after the fourth newline; cut before it, nothing is usable.
        let expiry_at = full
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(3)
            .unwrap()
            .0
            + 1;
        for cut in 0..full.len() {
            let part = &full[..cut];
            let restored = decode(part, b"req-1", 0);
            if cut <= expiry_at {
                assert_eq!(restored, None, "cut at {cut}");
                assert!(matches!(
                    look(Some(part), b"req-1", 0x1111, 0),
                    Look::Free | Look::Empty
                ));
                continue;
            }
            // Cut inside the expiry (an earlier expiry) or the tracestate (fewer or shorter members,
            // or none when the cut leaves it invalid): the context itself is never damaged.
            if let Some(r) = restored {
                assert_eq!(r.context, ctx(), "cut at {cut}");
            }
        }
        // Cut right after the expiry's newline: an empty tracestate field is not a valid entry's.
        let cut_after_expiry = full.iter().rposition(|b| *b == b'\n').unwrap() + 1;
        assert!(
            decode(&full[..cut_after_expiry], b"req-1", 0).is_none_or(|r| r.tracestate.is_empty())
        );
    }

    #[test]
    fn unusable_request_ids_are_not_stored() {
        assert!(encode(b"", &ctx(), &none(), 1).is_none());
        assert!(encode(&[b'a'; 129], &ctx(), &none(), 1).is_none());
        assert!(encode(b"a\nb", &ctx(), &none(), 1).is_none());
    }

    #[test]
    fn item10_first_writer_wins_until_expiry() {
        let live = encode(b"req-1", &ctx(), &none(), 1_000).unwrap();
        let other_trace = 0x1111_u128;
        // Same id, another trace, while live: refused.
        let mine_other = look(Some(&live), b"req-1", other_trace, 999);
        assert_eq!(mine_other, Look::Mine { same_trace: false });
        assert_eq!(plan(&[mine_other]), Plan::Refuse);
        // Same id, same trace: a retry refreshes.
        let retry = look(Some(&live), b"req-1", ctx().trace_id, 999);
        assert_eq!(retry, Look::Mine { same_trace: true });
        assert_eq!(
            plan(&[Look::Taken { expires_at: 5 }, retry]),
            Plan::Write {
                probe: 1,
                evicts: false
            }
        );
        // Expired: anyone may take the slot.
        assert_eq!(look(Some(&live), b"req-1", other_trace, 1_000), Look::Free);
        assert_eq!(look(Some(&live), b"req-2", other_trace, 1_000), Look::Free);
        // Another id's live entry.
        assert_eq!(
            look(Some(&live), b"req-2", other_trace, 0),
            Look::Taken { expires_at: 1_000 }
        );
        // Missing, emptied or unreadable slots.
        assert_eq!(look(None, b"req-1", other_trace, 0), Look::Empty);
        assert_eq!(look(Some(b""), b"req-1", other_trace, 0), Look::Empty);
        assert_eq!(look(Some(b"junk"), b"req-1", other_trace, 0), Look::Free);
        // The previous module's entries are judged the same way.
        let old = b"req-1\n4bf92f3577b34da6a3ce929d0e0e4736\n00f067aa0ba902b7\n13\n1000";
        assert_eq!(
            look(Some(old), b"req-1", other_trace, 0),
            Look::Mine { same_trace: false }
        );
    }

    /// Issue 16 item 1: a live entry of another request id is replaced only when every probe holds one,
    /// and then the one that expires first, never a chosen one.
    #[test]
    fn issue16_item1_live_entries_of_other_ids_are_kept_while_a_probe_is_free() {
        let taken = |e| Look::Taken { expires_at: e };
        let write = |probe, evicts| Plan::Write { probe, evicts };
        assert_eq!(plan(&[taken(9), Look::Empty]), write(1, false));
        assert_eq!(
            plan(&[taken(9), taken(3), Look::Free, taken(1)]),
            write(2, false)
        );
        // Full: the oldest goes (the first of equals).
        assert_eq!(
            plan(&[taken(9), taken(3), taken(5), taken(3)]),
            write(1, true)
        );
        assert_eq!(plan(&[taken(9)]), write(0, true));
        // Its own entry wins over a free slot found earlier (one slot per id), and so does a refusal.
        assert_eq!(
            plan(&[Look::Free, Look::Mine { same_trace: false }]),
            Plan::Refuse
        );
        assert_eq!(
            plan(&[Look::Free, Look::Mine { same_trace: true }]),
            write(1, false)
        );
        assert_eq!(plan(&[]), Plan::Refuse);
    }

    #[test]
    fn slots_are_keyed_distinct_and_within_bounds() {
        let seed = Seed([1, 2]);
        for i in 0..1000u32 {
            let keys: Vec<String> = slot_keys(&seed, i.to_string().as_bytes(), 16).collect();
            assert_eq!(keys.len(), PROBES as usize);
            let mut slots: Vec<u32> = keys
                .iter()
                .map(|k| k.strip_prefix(KEY_PREFIX).unwrap().parse().unwrap())
                .collect();
            assert!(slots.iter().all(|n| *n < 16));
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), PROBES as usize);
        }
        assert_eq!(slot_keys(&seed, b"x", 1).count(), 1);
        // Another seed, other slots: which ids collide is not known outside the sidecar.
        let home = |seed: &Seed, id: &str| slot_keys(seed, id.as_bytes(), 4096).next().unwrap();
        let moved = (0..100)
            .filter(|i| {
                let id = format!("req-{i}");
                home(&seed, &id) != home(&Seed([3, 4]), &id)
            })
            .count();
        assert!(moved > 90, "{moved}");
    }
}
