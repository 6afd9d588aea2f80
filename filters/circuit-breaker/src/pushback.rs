//! `maxPushback`: server-driven backoff. A dependency that answers 503 or 429 with `Retry-After`
//! (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or a gRPC response with
//! `grpc-retry-pushback-ms` (gRFC A6), asks its callers to stay away for a while. With `maxPushback`
//! on, the breaker key is closed to new calls for `min(asked, maxPushback)`, sidecar-wide: the time
//! is one shared-data value per key (`<state key>/b`, the deadline in nanoseconds), which every worker
//! reads before it admits a call.

use filter_common::host::SharedWrite;
use filter_common::shared::SharedData;
use std::time::{Duration, UNIX_EPOCH};

/// CAS attempts to move the deadline (off the request path: on a response that asked for backoff).
const WRITE_ATTEMPTS: u32 = 16;

/// How long a response asks callers to wait, if it asks: `Retry-After` on a 503 or 429 (the statuses
/// RFC 9110 and RFC 6585 give it that meaning for), or gRPC pushback. A negative or unparsable
/// `grpc-retry-pushback-ms` means "do not retry" (gRFC A6), which names no time: no pushback.
pub fn asked(
    status: Option<u16>,
    retry_after: Option<&[u8]>,
    grpc_pushback_ms: Option<&[u8]>,
    now: Duration,
) -> Option<Duration> {
    if let Some(ms) = grpc_pushback_ms.and_then(parse_grpc_pushback) {
        return Some(ms);
    }
    match status {
        Some(503 | 429) => retry_after.and_then(|v| parse_retry_after(v, now)),
        _ => None,
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date (IMF-fixdate and the two obsolete forms, which
/// `httpdate` reads) as a delay from `now` (Unix time). A date in the past asks for nothing.
pub fn parse_retry_after(value: &[u8], now: Duration) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a long time": the cap applies.
        return Some(Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    let at = at.duration_since(UNIX_EPOCH).ok()?;
    at.checked_sub(now).filter(|d| !d.is_zero())
}

/// `grpc-retry-pushback-ms`: a non-negative 32-bit integer of milliseconds.
pub fn parse_grpc_pushback(value: &[u8]) -> Option<Duration> {
    let ms: i32 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// The key's deadline from `asked`, capped by `max`.
pub fn deadline_ns(asked: Duration, max: Duration, now_ns: u64) -> u64 {
    let wait = u64::try_from(asked.min(max).as_nanos()).unwrap_or(u64::MAX);
    now_ns.saturating_add(wait)
}

/// While the deadline holds: when it ends, if after `now_ns`. A deadline further away than `max`
/// means the clock stepped back: treated as over, as the breaker's own open deadline is.
pub fn active_until(until_ns: u64, max: Duration, now_ns: u64) -> Option<u64> {
    let max_ns = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    (until_ns > now_ns && until_ns - now_ns <= max_ns).then_some(until_ns)
}

/// The pushback key of the breaker key whose state record is `state_key`: `<state key>/b`.
pub fn key(state_key: &str) -> String {
    let mut key = String::with_capacity(state_key.len() + 2);
    key.push_str(state_key);
    key.push_str("/b");
    key
}

/// The stored deadline (0 when none or unreadable).
pub fn read(store: &impl SharedData, key: &str) -> u64 {
    match store.get(key) {
        Ok(Some((bytes, _))) => decode(&bytes),
        _ => 0,
    }
}

fn decode(bytes: &[u8]) -> u64 {
    bytes
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_le_bytes(*b))
}

/// Moves the key's deadline to `until_ns` unless a later one holds. Returns whether it wrote. A
/// key not there yet is created by the write itself (the host ignores the token on a missing key): two
/// workers creating it at once keep one of two deadlines asked for at the same moment.
pub fn extend(
    store: &impl SharedData,
    key: &str,
    until_ns: u64,
    max: Duration,
    now_ns: u64,
) -> bool {
    for _ in 0..WRITE_ATTEMPTS {
        let (current, cas) = match store.get(key) {
            Ok(Some((bytes, cas))) => (decode(&bytes), cas),
            Ok(None) => (0, 0),
            Err(_) => return false,
        };
        // A later deadline stands (unless the clock stepped back: one beyond `max` from now).
        if active_until(current, max, now_ns).is_some_and(|c| c >= until_ns) {
            return false;
        }
        match store.set(key, &until_ns.to_le_bytes(), cas) {
            SharedWrite::Written => return true,
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(_) => return false,
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use filter_common::shared::{Fault, MemoryStore};

    /// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
    const NOW: Duration = Duration::from_secs(784_111_777);
    const SEC: u64 = 1_000_000_000;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after(b"120", NOW),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(b" 0 ", NOW), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999", NOW),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:50:07 GMT", NOW),
            Some(Duration::from_secs(30))
        );
        // The obsolete RFC 850 and asctime forms, which recipients must accept.
        assert_eq!(
            parse_retry_after(b"Sunday, 06-Nov-94 08:49:47 GMT", NOW),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after(b"Sun Nov  6 08:49:57 1994", NOW),
            Some(Duration::from_secs(20))
        );
        for bad in [
            &b""[..],
            b"-5",
            b"1.5",
            b"soon",
            b"Sun, 06 Nov 1994 08:49:00 GMT",
            b"\xff",
        ] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_pushback_is_non_negative_milliseconds() {
        assert_eq!(
            parse_grpc_pushback(b"250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_pushback(b"-1"), None, "do not retry: no time");
        assert_eq!(parse_grpc_pushback(b"4294967296"), None, "not 32-bit");
        assert_eq!(parse_grpc_pushback(b"x"), None);
    }

    #[test]
    fn only_503_and_429_speak_with_retry_after_and_grpc_pushback_speaks_for_itself() {
        let ra = Some(&b"7"[..]);
        assert_eq!(
            asked(Some(503), ra, None, NOW),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            asked(Some(429), ra, None, NOW),
            Some(Duration::from_secs(7))
        );
        assert_eq!(asked(Some(500), ra, None, NOW), None);
        assert_eq!(asked(Some(301), ra, None, NOW), None);
        assert_eq!(asked(Some(503), None, None, NOW), None);
        assert_eq!(
            asked(Some(200), None, Some(b"1500"), NOW),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn the_wait_is_capped_and_a_stepped_clock_ends_it() {
        let max = Duration::from_secs(10);
        assert_eq!(deadline_ns(Duration::from_secs(3), max, 5), 5 + 3 * SEC);
        assert_eq!(deadline_ns(Duration::from_secs(3600), max, 5), 5 + 10 * SEC);
        assert_eq!(active_until(20 * SEC, max, 15 * SEC), Some(20 * SEC));
        assert_eq!(active_until(20 * SEC, max, 20 * SEC), None);
        assert_eq!(
            active_until(100 * SEC, max, 15 * SEC),
            None,
            "clock stepped back"
        );
    }

    #[test]
    fn the_latest_deadline_wins_sidecar_wide() {
        let store = MemoryStore::new();
        let k = key("circuit-breaker/cb/b/0");
        let max = Duration::from_secs(10);
        assert_eq!(k, "circuit-breaker/cb/b/0/b");
        assert_eq!(read(&store, &k), 0);
        assert!(extend(&store, &k, 10 * SEC, max, SEC));
        assert!(
            !extend(&store, &k, 5 * SEC, max, SEC),
            "an earlier one does not shorten it"
        );
        assert_eq!(read(&store, &k), 10 * SEC);
        store.inject(&k, Fault::CasMismatch);
        assert!(
            extend(&store, &k, 11 * SEC, max, SEC),
            "a lost race is retried"
        );
        assert_eq!(read(&store, &k), 11 * SEC);
        // A deadline left from a clock far ahead does not block a real one.
        assert!(extend(&store, &k, 2 * SEC, max, SEC / 2));
        store.inject(&k, Fault::ReadError);
        assert!(!extend(&store, &k, 5 * SEC, max, SEC));
        assert_eq!(read(&store, &k), 2 * SEC);
    }
}
