//! The overload checks of a call the breaker admitted, over shared data: the dependency's pushback
//! (`maxPushback`, see `pushback`) and the key's concurrency limit (`maxConcurrentCalls`, see
//! `permits`). A breaker with neither (the default) makes no host call here. The permits this VM holds
//! are in a `Ledger` the caller keeps for the VM and passes in.

use crate::config::BreakerConfig;
use crate::metrics::BreakerMetrics;
use crate::permits::{self, Acquire, Ledger};
use crate::reject;
use filter_common::host::Host;
use filter_common::shared::SharedData;
use std::time::Duration;

/// A permit a call holds until its stream ends; given back exactly once (`release` takes it).
#[derive(Debug)]
pub struct Permit {
    key: String,
    breaker: usize,
}

/// Why an admitted call may not go on: the rejection's `state=` label and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub label: &'static str,
    pub retry_at_ns: u64,
}

/// How long a full key's rejection asks callers to wait: permits come back as calls finish, so the
/// shortest `Retry-After` there is.
const FULL_RETRY_NS: u64 = 1_000_000_000;

/// Whether the breaker uses any overload check (else nothing here runs for it).
pub fn enabled(b: &BreakerConfig) -> bool {
    b.max_concurrent_calls.is_some() || !b.max_pushback.0.is_zero()
}

/// Checks a call admitted by the breaker: the key's pushback first (a read), then takes a permit (a
/// read and a compare-and-swap write). `Ok(None)`: no limit to count against.
#[allow(clippy::too_many_arguments)]
pub fn admit(
    host: &impl Host,
    ledger: &mut Ledger,
    b: &BreakerConfig,
    breaker: usize,
    state_key: &str,
    owner: u64,
    now_ns: u64,
    metrics: &BreakerMetrics,
) -> Result<Option<Permit>, Refusal> {
    if !b.max_pushback.0.is_zero() {
        let until = crate::pushback::read(host, &crate::pushback::key(state_key));
        if let Some(until) = crate::pushback::active_until(until, b.max_pushback.0, now_ns) {
            return Err(Refusal {
                label: reject::PUSHBACK,
                retry_at_ns: until,
            });
        }
    }
    let Some(limit) = b.max_concurrent_calls else {
        return Ok(None);
    };
    let key = permits::key(state_key);
    let taken = permits::acquire(host, ledger, &key, owner, limit, now_ns / 1_000_000_000);
    match taken {
        Acquire::Granted { expired } => {
            metrics.in_flight.add_on(host, 1 - expired_delta(expired));
            Ok(Some(Permit { key, breaker }))
        }
        Acquire::Full => Err(Refusal {
            label: reject::FULL,
            retry_at_ns: now_ns.saturating_add(FULL_RETRY_NS),
        }),
    }
}

fn expired_delta(expired: u64) -> i64 {
    i64::try_from(expired).unwrap_or(i64::MAX)
}

/// Gives a permit back (called from whichever of `on_log` and the stream's drop runs first).
pub fn release(
    host: &impl Host,
    ledger: &mut Ledger,
    permit: Permit,
    owner: u64,
    now_ns: u64,
    metrics: &[BreakerMetrics],
) {
    let expired = permits::release(host, ledger, &permit.key, owner, now_ns / 1_000_000_000);
    if let Some(m) = metrics.get(permit.breaker) {
        m.in_flight.add_on(host, -1 - expired_delta(expired));
    }
}

/// From the timer: renews this VM's entry in every key it holds permits in (so they keep counting)
/// and repairs any write that was lost. `on_expired(key, n)`: the write dropped `n` permits of
/// stopped VMs from `key`.
pub fn renew(
    store: &impl SharedData,
    ledger: &mut Ledger,
    owner: u64,
    now_ns: u64,
    mut on_expired: impl FnMut(&str, u64),
) {
    for key in ledger.keys() {
        let expired = permits::publish(store, ledger, &key, owner, now_ns / 1_000_000_000);
        if expired > 0 {
            on_expired(&key, expired);
        }
    }
}

/// Takes permits of stopped VMs off the gauge of the breaker whose permit key `key` is.
pub fn forget_expired(
    host: &impl Host,
    keys: &crate::store::Keys,
    breakers: &[BreakerConfig],
    metrics: &[BreakerMetrics],
    key: &str,
    expired: u64,
) {
    // `<prefix><breaker>/<slot>/p`: the breaker's state keys share `<prefix><breaker>/`.
    let found = breakers.iter().zip(metrics).find(|(b, _)| {
        let slot0 = keys.state(&b.name, 0);
        key.starts_with(slot0.trim_end_matches('0'))
    });
    if let Some((_, m)) = found {
        m.in_flight.add_on(host, -expired_delta(expired));
    }
}

/// A response asked for backoff (`asked`): the key closes for `min(asked, maxPushback)`, for every
/// worker. Returns whether this moved the key's deadline.
pub fn note_pushback(
    store: &impl SharedData,
    b: &BreakerConfig,
    state_key: &str,
    asked: Duration,
    now_ns: u64,
) -> bool {
    let until = crate::pushback::deadline_ns(asked, b.max_pushback.0, now_ns);
    until > now_ns
        && crate::pushback::extend(
            store,
            &crate::pushback::key(state_key),
            until,
            b.max_pushback.0,
            now_ns,
        )
}

/// Worst-case shared memory the overload checks add to one key of `b`, whose state key is
/// `state_key_len` bytes long.
pub fn key_bytes(b: &BreakerConfig, state_key_len: usize) -> u64 {
    use filter_common::limits::shared_entry_bytes;
    let mut bytes = 0;
    if b.max_concurrent_calls.is_some() {
        bytes += shared_entry_bytes(state_key_len + 2, permits::MAX_VALUE_BYTES);
    }
    if !b.max_pushback.0.is_zero() {
        bytes += shared_entry_bytes(state_key_len + 2, 8);
    }
    bytes
}
