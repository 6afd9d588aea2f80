//! Sliding windows, split into one stripe per Envoy worker so that recording a call never contends with
//! another worker: each worker writes only its own stripe and reads the others to decide. A stripe
//! carries the generation of the closed period it belongs to; a stripe of an older generation counts as
//! empty, which is how a close starts a fresh window everywhere.

use crate::config::{BreakerConfig, WindowType};
use filter_common::limits::one_decimal;

const VERSION: u8 = 1;
const KIND_TIME: u8 = 1;
const KIND_COUNT: u8 = 2;

/// One time bucket: `epoch` is the bucket number since the Unix epoch, so stale buckets are recognised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub epoch: u64,
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
}

/// One call in a count window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// When it was recorded (ns); 0 marks an empty slot.
    pub at_ns: u64,
    pub failure: bool,
    pub slow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calls {
    Time(Vec<Bucket>),
    Count { entries: Vec<Entry>, next: u32 },
}

/// One worker's part of one breaker key's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripe {
    pub gen: u32,
    pub calls: Calls,
    /// When this worker's failures since its last success happened (the newest `consecutiveFailures`
    /// of them; empty when that rule is off), so runs can be merged across workers exactly.
    pub run: Vec<u64>,
    pub last_success_ns: u64,
}

/// What the window holds across every stripe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub calls: u32,
    pub failures: u32,
    pub slow: u32,
    pub consecutive_failures: u32,
}

/// Why a breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trip {
    FailureRate(f64),
    SlowCallRate(f64),
    ConsecutiveFailures(u32),
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // one_decimal: {:.1} would bring the standard library's float formatting into the module.
            Trip::FailureRate(r) => write!(f, "failure rate {}%", one_decimal(*r)),
            Trip::SlowCallRate(r) => write!(f, "slow-call rate {}%", one_decimal(*r)),
            Trip::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
        }
    }
}

fn bucket_width_ns(cfg: &BreakerConfig) -> u64 {
    let total = cfg.window.duration.as_nanos_u64();
    (total / u64::from(cfg.window.buckets.max(1))).max(1)
}

impl Stripe {
    pub fn new(gen: u32, cfg: &BreakerConfig) -> Stripe {
        let calls = match cfg.window.kind {
            WindowType::Time => Calls::Time(vec![Bucket::default(); cfg.window.buckets as usize]),
            WindowType::Count => Calls::Count {
                entries: vec![Entry::default(); cfg.window.size as usize],
                next: 0,
            },
        };
        Stripe {
            gen,
            calls,
            run: Vec::new(),
            last_success_ns: 0,
        }
    }

    /// True when this stripe has the window shape `cfg` asks for.
    pub fn fits(&self, cfg: &BreakerConfig) -> bool {
        match (&self.calls, cfg.window.kind) {
            (Calls::Time(b), WindowType::Time) => b.len() == cfg.window.buckets as usize,
            (Calls::Count { entries, .. }, WindowType::Count) => {
                entries.len() == cfg.window.size as usize
            }
            _ => false,
        }
    }

    /// Records one finished call (a success or a failure; ignored calls are never recorded).
    pub fn record(&mut self, now_ns: u64, failure: bool, slow: bool, cfg: &BreakerConfig) {
        match &mut self.calls {
            Calls::Time(buckets) => {
                let epoch = now_ns / bucket_width_ns(cfg);
                let len = buckets.len().max(1) as u64;
                if let Some(b) = buckets.get_mut((epoch % len) as usize) {
                    if b.epoch != epoch {
                        *b = Bucket {
                            epoch,
                            ..Bucket::default()
                        };
                    }
                    b.calls = b.calls.saturating_add(1);
                    b.failures = b.failures.saturating_add(u32::from(failure));
                    b.slow = b.slow.saturating_add(u32::from(slow));
                }
            }
            Calls::Count { entries, next } => {
                let len = entries.len().max(1) as u32;
                if let Some(e) = entries.get_mut(*next as usize) {
                    *e = Entry {
                        at_ns: now_ns.max(1),
                        failure,
                        slow,
                    };
                }
                *next = (*next + 1) % len;
            }
        }
        if failure {
            let cap = cfg.consecutive_failures as usize;
            if cap > 0 {
                if self.run.len() >= cap {
                    self.run.remove(0);
                }
                self.run.push(now_ns);
            }
        } else {
            self.run.clear();
            self.last_success_ns = now_ns;
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// About how many bytes `encode` writes (for sizing a buffer).
    pub fn encoded_len_hint(&self) -> usize {
        32 + self.len_hint()
    }

    /// Appends the encoding to `out` (after whatever the caller put in front).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.gen.to_le_bytes());
        out.extend_from_slice(&self.last_success_ns.to_le_bytes());
        out.extend_from_slice(&(self.run.len() as u32).to_le_bytes());
        for at in &self.run {
            out.extend_from_slice(&at.to_le_bytes());
        }
        match &self.calls {
            Calls::Time(buckets) => {
                out.push(KIND_TIME);
                out.extend_from_slice(&(buckets.len() as u32).to_le_bytes());
                for b in buckets {
                    out.extend_from_slice(&b.epoch.to_le_bytes());
                    out.extend_from_slice(&b.calls.to_le_bytes());
                    out.extend_from_slice(&b.failures.to_le_bytes());
                    out.extend_from_slice(&b.slow.to_le_bytes());
                }
            }
            Calls::Count { entries, next } => {
                out.push(KIND_COUNT);
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                out.extend_from_slice(&next.to_le_bytes());
                for e in entries {
                    out.extend_from_slice(&e.at_ns.to_le_bytes());
                    out.push(u8::from(e.failure) | (u8::from(e.slow) << 1));
                }
            }
        }
    }

    fn len_hint(&self) -> usize {
        match &self.calls {
            Calls::Time(b) => b.len() * 20,
            Calls::Count { entries, .. } => entries.len() * 9 + 4,
        }
    }

    /// Decodes a stripe; `None` for anything malformed (another version, a truncated value).
    pub fn decode(bytes: &[u8]) -> Option<Stripe> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let gen = r.u32()?;
        let last_success_ns = r.u64()?;
        let run_len = r.u32()? as usize;
        if run_len > bytes.len() / 8 {
            return None;
        }
        let mut run = Vec::with_capacity(run_len);
        for _ in 0..run_len {
            run.push(r.u64()?);
        }
        let kind = r.u8()?;
        let len = r.u32()? as usize;
        // Each element takes at least 9 bytes: bound the allocation by the input.
        if len > bytes.len() / 9 + 1 {
            return None;
        }
        let calls = match kind {
            KIND_TIME => {
                let mut buckets = Vec::with_capacity(len);
                for _ in 0..len {
                    buckets.push(Bucket {
                        epoch: r.u64()?,
                        calls: r.u32()?,
                        failures: r.u32()?,
                        slow: r.u32()?,
                    });
                }
                Calls::Time(buckets)
            }
            KIND_COUNT => {
                let next = r.u32()?;
                let mut entries = Vec::with_capacity(len);
                for _ in 0..len {
                    let at_ns = r.u64()?;
                    let flags = r.u8()?;
                    entries.push(Entry {
                        at_ns,
                        failure: flags & 1 != 0,
                        slow: flags & 2 != 0,
                    });
                }
                Calls::Count { entries, next }
            }
            _ => return None,
        };
        r.0.is_empty().then_some(Stripe {
            gen,
            calls,
            run,
            last_success_ns,
        })
    }
}

/// Sums the stripes of generation `gen` as of `now_ns`.
pub fn totals(stripes: &[Stripe], gen: u32, now_ns: u64, cfg: &BreakerConfig) -> Totals {
    let current: Vec<&Stripe> = stripes.iter().filter(|s| s.gen == gen).collect();
    let mut t = Totals::default();
    match cfg.window.kind {
        WindowType::Time => {
            let epoch = now_ns / bucket_width_ns(cfg);
            let oldest = epoch.saturating_sub(u64::from(cfg.window.buckets.max(1)) - 1);
            for s in &current {
                if let Calls::Time(buckets) = &s.calls {
                    for b in buckets
                        .iter()
                        .filter(|b| b.epoch >= oldest && b.epoch <= epoch && b.calls > 0)
                    {
                        t.calls = t.calls.saturating_add(b.calls);
                        t.failures = t.failures.saturating_add(b.failures);
                        t.slow = t.slow.saturating_add(b.slow);
                    }
                }
            }
        }
        WindowType::Count => {
            // The last `size` calls across all workers, by time.
            let mut all: Vec<Entry> = current
                .iter()
                .filter_map(|s| match &s.calls {
                    Calls::Count { entries, .. } => Some(entries.iter().filter(|e| e.at_ns != 0)),
                    Calls::Time(_) => None,
                })
                .flatten()
                .copied()
                .collect();
            all.sort_unstable_by_key(|e| std::cmp::Reverse(e.at_ns));
            for e in all.iter().take(cfg.window.size as usize) {
                t.calls += 1;
                t.failures += u32::from(e.failure);
                t.slow += u32::from(e.slow);
            }
        }
    }
    // Failures in a row across workers: the runs that began after the latest success anywhere.
    let latest_success = current.iter().map(|s| s.last_success_ns).max().unwrap_or(0);
    t.consecutive_failures = current
        .iter()
        .flat_map(|s| s.run.iter())
        .filter(|at| **at >= latest_success)
        .count() as u32;
    t
}

/// Resilience4j's rule: no decision below the minimum number of calls; then trip when a rate reaches
/// its threshold. Consecutive failures (when configured) trip regardless of the minimum.
pub fn evaluate(t: &Totals, cfg: &BreakerConfig) -> Option<Trip> {
    if cfg.consecutive_failures > 0 && t.consecutive_failures >= cfg.consecutive_failures {
        return Some(Trip::ConsecutiveFailures(t.consecutive_failures));
    }
    // As in Resilience4j, a count window smaller than minimumCalls decides once it is full.
    let minimum = match cfg.window.kind {
        WindowType::Count => cfg.minimum_calls.min(cfg.window.size),
        WindowType::Time => cfg.minimum_calls,
    };
    if t.calls == 0 || t.calls < minimum {
        return None;
    }
    let failure_rate = f64::from(t.failures) * 100.0 / f64::from(t.calls);
    if failure_rate >= cfg.failure_rate_threshold {
        return Some(Trip::FailureRate(failure_rate));
    }
    if cfg.slow_call_duration.is_some() {
        let slow_rate = f64::from(t.slow) * 100.0 / f64::from(t.calls);
        if slow_rate >= cfg.slow_call_rate_threshold {
            return Some(Trip::SlowCallRate(slow_rate));
        }
    }
    None
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    const SEC: u64 = 1_000_000_000;

    fn cfg(json: &str) -> BreakerConfig {
        let c: crate::config::Config =
            parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes())).unwrap();
        c.breakers[0].clone()
    }

    fn record_all(s: &mut Stripe, now: u64, outcomes: &[bool], c: &BreakerConfig) {
        for f in outcomes {
            s.record(now, *f, false, c);
        }
    }

    #[test]
    fn trips_exactly_at_the_threshold_after_the_minimum_calls() {
        let c = cfg(r#"{"minimumCalls": 10, "failureRateThreshold": 50}"#);
        let mut s = Stripe::new(1, &c);
        let now = 100 * SEC;
        record_all(&mut s, now, &[true; 5], &c);
        record_all(&mut s, now, &[false; 4], &c);
        let t = totals(&[s.clone()], 1, now, &c);
        assert_eq!((t.calls, t.failures), (9, 5));
        assert_eq!(
            evaluate(&t, &c),
            None,
            "below the minimum: no decision even at 55%"
        );
        s.record(now, false, false, &c);
        let t = totals(&[s.clone()], 1, now, &c);
        assert_eq!(
            evaluate(&t, &c),
            Some(Trip::FailureRate(50.0)),
            "10 calls, 50%: trips"
        );

        let mut s = Stripe::new(1, &c);
        record_all(&mut s, now, &[true; 4], &c);
        record_all(&mut s, now, &[false; 6], &c);
        assert_eq!(
            evaluate(&totals(&[s], 1, now, &c), &c),
            None,
            "40% stays closed"
        );
    }

    #[test]
    fn a_count_window_smaller_than_the_minimum_decides_when_full() {
        let c = cfg(r#"{"window": {"type": "count", "size": 10}, "consecutiveFailures": 0}"#);
        let mut s = Stripe::new(1, &c);
        record_all(&mut s, SEC, &[true; 9], &c);
        assert_eq!(evaluate(&totals(&[s.clone()], 1, SEC, &c), &c), None);
        s.record(SEC, true, false, &c);
        assert!(evaluate(&totals(&[s], 1, SEC, &c), &c).is_some());
    }

    #[test]
    fn time_buckets_are_evicted_as_time_passes() {
        let c = cfg(r#"{"minimumCalls": 1, "window": {"duration": "10s", "buckets": 10}}"#);
        let mut s = Stripe::new(1, &c);
        s.record(100 * SEC, true, false, &c);
        s.record(105 * SEC, false, false, &c);
        assert_eq!(totals(&[s.clone()], 1, 109 * SEC, &c).calls, 2);
        assert_eq!(
            totals(&[s.clone()], 1, 110 * SEC, &c).calls,
            1,
            "the 100s bucket left the window"
        );
        assert_eq!(totals(&[s.clone()], 1, 115 * SEC, &c).calls, 0);
        // A bucket slot reused for a new epoch starts from zero.
        s.record(120 * SEC, true, false, &c);
        let t = totals(&[s], 1, 120 * SEC, &c);
        assert_eq!((t.calls, t.failures), (1, 1));
    }

    #[test]
    fn count_window_keeps_the_last_calls_across_stripes() {
        let c = cfg(r#"{"minimumCalls": 4, "window": {"type": "count", "size": 4}}"#);
        let mut a = Stripe::new(1, &c);
        let mut b = Stripe::new(1, &c);
        a.record(1, true, false, &c);
        a.record(2, true, false, &c);
        b.record(3, false, false, &c);
        b.record(4, false, false, &c);
        a.record(5, false, false, &c);
        b.record(6, false, true, &c);
        let t = totals(&[a, b], 1, 10, &c);
        // The calls at 3, 4, 5 and 6: the two failures at 1 and 2 fell out of the window.
        assert_eq!((t.calls, t.failures, t.slow), (4, 0, 1), "{t:?}");
    }

    #[test]
    fn stripes_of_another_generation_are_ignored() {
        let c = cfg(r#"{"minimumCalls": 1}"#);
        let mut old = Stripe::new(1, &c);
        old.record(SEC, true, false, &c);
        let mut new = Stripe::new(2, &c);
        new.record(SEC, false, false, &c);
        let t = totals(&[old, new], 2, SEC, &c);
        assert_eq!((t.calls, t.failures), (1, 0));
    }

    #[test]
    fn slow_calls_trip_by_their_own_rate() {
        let c =
            cfg(r#"{"minimumCalls": 4, "slowCallDuration": "1s", "slowCallRateThreshold": 50}"#);
        let mut s = Stripe::new(1, &c);
        for slow in [true, true, false, false] {
            s.record(SEC, false, slow, &c);
        }
        assert_eq!(
            evaluate(&totals(&[s], 1, SEC, &c), &c),
            Some(Trip::SlowCallRate(50.0))
        );
        // Without slowCallDuration, slow counts never trip.
        let c = cfg(r#"{"minimumCalls": 4}"#);
        let t = Totals {
            calls: 4,
            failures: 0,
            slow: 4,
            consecutive_failures: 0,
        };
        assert_eq!(evaluate(&t, &c), None);
    }

    #[test]
    fn consecutive_failures_count_across_workers_since_the_latest_success() {
        let c = cfg(r#"{"minimumCalls": 100, "consecutiveFailures": 3}"#);
        let mut a = Stripe::new(1, &c);
        let mut b = Stripe::new(1, &c);
        a.record(10, true, false, &c);
        b.record(20, false, false, &c); // a success after a's failure breaks the run
        a.record(30, true, false, &c);
        b.record(40, true, false, &c);
        let t = totals(&[a.clone(), b.clone()], 1, 50, &c);
        assert_eq!(
            t.consecutive_failures, 2,
            "30 and 40 follow the success at 20: {t:?}"
        );
        b.record(50, true, false, &c);
        let t = totals(&[a.clone(), b.clone()], 1, 70, &c);
        assert_eq!(evaluate(&t, &c), Some(Trip::ConsecutiveFailures(3)));
        // A success anywhere ends the run everywhere.
        a.record(80, false, false, &c);
        assert_eq!(totals(&[a, b], 1, 90, &c).consecutive_failures, 0);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        for json in [r#"{}"#, r#"{"window": {"type": "count", "size": 5}}"#] {
            let c = cfg(json);
            let mut s = Stripe::new(7, &c);
            s.record(123 * SEC, true, true, &c);
            s.record(124 * SEC, false, false, &c);
            let bytes = s.encode();
            assert_eq!(Stripe::decode(&bytes), Some(s));
            for cut in 0..bytes.len() {
                assert_eq!(Stripe::decode(&bytes[..cut]), None);
            }
        }
        assert_eq!(
            Stripe::decode(&[
                1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                255, 255, 255, 255
            ]),
            None
        );
    }
}
