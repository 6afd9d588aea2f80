//! Request-id correlation: the inbound side of a sidecar remembers each request's context under its
//! `x-request-id`, and the outbound side restores it for a call from the workload that carried only that
//! id. Entries live in a fixed number of shared-data slots (a slot is overwritten by the next request that
//! hashes to it), so memory is `slots` times one small entry whatever the traffic.

use crate::context::TraceContext;

/// Prefix of the slot keys; Istio gives every WasmPlugin one shared-data namespace, so keys say whose
/// they are.
pub const KEY_PREFIX: &str = "trace-context/correlation/";

/// Request ids longer than this are not correlated (Envoy's are 36-character UUIDs).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The shared-data key of the slot for `request_id`.
pub fn slot_key(request_id: &[u8], slots: u32) -> String {
    let slot = fnv1a(request_id) % u64::from(slots.max(1));
    format!("{KEY_PREFIX}{slot}")
}

/// Encodes an entry: `request_id \n trace_id \n span_id \n flags \n expiry`, all text, so the value stays
/// readable in a dump and cannot be confused with another slot's entry.
pub fn encode(request_id: &[u8], ctx: &TraceContext, expires_at_nanos: u64) -> Option<Vec<u8>> {
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
    Some(out)
}

/// The context stored for `request_id`, if the slot holds that request's entry and it has not expired.
pub fn decode(entry: &[u8], request_id: &[u8], now_nanos: u64) -> Option<TraceContext> {
    let mut parts = entry.split(|b| *b == b'\n');
    if parts.next()? != request_id {
        return None;
    }
    let trace_id = u128::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let span_id = u64::from_str_radix(std::str::from_utf8(parts.next()?).ok()?, 16).ok()?;
    let flags: u8 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let expiry: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    if now_nanos >= expiry || trace_id == 0 || span_id == 0 || parts.next().is_some() {
        return None;
    }
    Some(TraceContext {
        trace_id,
        span_id,
        sampled: (flags & 8 != 0).then_some(flags & 1 != 0),
        debug: flags & 2 != 0,
        random: flags & 4 != 0,
    })
}

/// FNV-1a: cheap, stable across VMs and restarts, good enough to spread UUIDs over slots.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    #[test]
    fn round_trip_before_expiry() {
        let e = encode(b"req-1", &ctx(), 1_000).unwrap();
        assert_eq!(decode(&e, b"req-1", 999), Some(ctx()));
        let mut deferred = ctx();
        deferred.sampled = None;
        let e = encode(b"req-1", &deferred, 1_000).unwrap();
        assert_eq!(decode(&e, b"req-1", 0).unwrap().sampled, None);
    }

    #[test]
    fn other_request_or_expired_entry_is_not_restored() {
        let e = encode(b"req-1", &ctx(), 1_000).unwrap();
        assert_eq!(decode(&e, b"req-2", 0), None);
        assert_eq!(decode(&e, b"req-1", 1_000), None);
        assert_eq!(decode(b"garbage", b"garbage", 0), None);
        assert_eq!(decode(b"", b"", 0), None);
    }

    #[test]
    fn unusable_request_ids_are_not_stored() {
        assert!(encode(b"", &ctx(), 1).is_none());
        assert!(encode(&[b'a'; 129], &ctx(), 1).is_none());
        assert!(encode(b"a\nb", &ctx(), 1).is_none());
    }

    #[test]
    fn slots_stay_within_bounds() {
        for i in 0..1000u32 {
            let key = slot_key(i.to_string().as_bytes(), 16);
            let n: u32 = key.strip_prefix(KEY_PREFIX).unwrap().parse().unwrap();
            assert!(n < 16);
        }
    }
}
