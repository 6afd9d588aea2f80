//! The breaker state in Envoy's shared data, seen by every worker VM: one CAS-updated record per breaker
//! key, and one window stripe per key and worker. Only the VM that claimed a stripe writes it, so
//! recording a call never contends with another worker.

use crate::config::BreakerConfig;
use crate::state::Record;
use crate::window::Stripe;
use filter_common::host::{self, SharedWrite};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Stripes are reused beyond this many VMs (reloads); readers never read more.
pub const MAX_STRIPES: u32 = 64;
/// CAS retries on the request path; past them the request is answered from the last record read.
pub const ADMIT_ATTEMPTS: u32 = 8;
/// CAS retries for results (off the request path): a lost probe result would strand a half-open breaker.
pub const RESULT_ATTEMPTS: u32 = 64;

thread_local! {
    /// This VM's stripe, claimed on its first recorded call: Envoy's canary and main-thread VMs, which
    /// configure but never serve, never claim one, and configuration pushes do not claim again.
    static STRIPE: Cell<Option<u32>> = const { Cell::new(None) };
    /// This VM's stripes by shared-data key: the authoritative copy (shared data holds the mirror the
    /// other workers read). Per VM, not per configuration, so a configuration push keeps the window.
    static LOCAL: RefCell<HashMap<String, Stripe>> = RefCell::new(HashMap::new());
}

/// Key names, prefixed by the plugin's root id: Istio gives every WasmPlugin one shared-data namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(root_id: &str) -> Keys {
        Keys {
            prefix: format!("circuit-breaker/{root_id}/"),
        }
    }

    pub fn state(&self, b: &BreakerConfig, slot: u32) -> String {
        format!("{}{}/{slot}", self.prefix, b.name)
    }

    fn stripe(&self, b: &BreakerConfig, slot: u32, stripe: u32) -> String {
        format!("{}{}/{slot}/w/{stripe}", self.prefix, b.name)
    }

    fn stripes_counter(&self) -> String {
        format!("{}stripes", self.prefix)
    }
}

/// Creates every breaker key's record before traffic, so that every later write is a real
/// compare-and-swap (the host skips the CAS check for a key that does not exist yet). The first VM to
/// configure (Envoy's canary, on the main thread) does it before any worker serves a request.
pub fn create_records(keys: &Keys, breakers: &[BreakerConfig]) {
    for b in breakers {
        for slot in 0..b.max_keys {
            let key = keys.state(b, slot);
            if let Ok(None) = host::shared_data(&key) {
                if let SharedWrite::Failed(e) =
                    host::set_shared_data(&key, &Record::default().encode(), 0)
                {
                    log::warn!("circuit-breaker: could not create {key}: {e}");
                    return;
                }
            }
        }
    }
}

/// The record and its CAS token; a missing or unreadable value reads as a new closed breaker.
/// `None` when shared data itself failed.
pub fn read_record(key: &str) -> Option<(Record, u32)> {
    match host::shared_data(key) {
        Ok(Some((bytes, cas))) => Some((Record::decode(&bytes).unwrap_or_default(), cas)),
        Ok(None) => Some((Record::default(), 0)),
        Err(_) => None,
    }
}

/// Outcome of a CAS write loop.
pub enum Cas<T> {
    /// `change` returned this value and its record (if any) was written: (value, before, after).
    Written(T, Record, Option<Record>),
    /// Every attempt lost the race; the value computed from the last record read.
    Exhausted(T),
    /// Shared data failed.
    Failed,
}

/// Reads the record, lets `change` compute (value, record to write), and writes with CAS, retrying.
pub fn update<T>(
    key: &str,
    attempts: u32,
    mut change: impl FnMut(&Record) -> (T, Option<Record>),
) -> Cas<T> {
    let mut last = None;
    for _ in 0..attempts {
        let Some((record, cas)) = read_record(key) else {
            return Cas::Failed;
        };
        let (value, next) = change(&record);
        let Some(next) = next else {
            return Cas::Written(value, record, None);
        };
        match host::set_shared_data(key, &next.encode(), cas) {
            SharedWrite::Written => return Cas::Written(value, record, Some(next)),
            SharedWrite::CasMismatch => last = Some(value),
            SharedWrite::Failed(e) => {
                log::warn!("circuit-breaker: could not write {key}: {e}");
                return Cas::Failed;
            }
        }
    }
    match last {
        Some(value) => Cas::Exhausted(value),
        None => Cas::Failed,
    }
}

/// Records a finished call of generation `gen` in this worker's stripe, publishes it, and returns every
/// stripe of the key (this worker's last).
pub fn record_and_collect(
    keys: &Keys,
    b: &BreakerConfig,
    slot: u32,
    gen: u32,
    now: u64,
    failure: bool,
    slow: bool,
) -> Vec<Stripe> {
    let mine = STRIPE.with(|s| {
        let id = s.get().unwrap_or_else(|| claim_stripe(keys));
        s.set(Some(id));
        id
    });
    let own_key = keys.stripe(b, slot, mine);
    let Some(own) = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let stripe = local
            .entry(own_key.clone())
            .or_insert_with(|| Stripe::new(gen, b));
        if !stripe.fits(b) || newer(gen, stripe.gen) {
            // A new closed period (or a new window shape after a configuration push) starts empty.
            *stripe = Stripe::new(gen, b);
        } else if newer(stripe.gen, gen) {
            // A late call from an older closed period: counted in the metrics only.
            return None;
        }
        stripe.record(now, failure, slow, b);
        Some(stripe.encode())
    }) else {
        return Vec::new();
    };
    // Only this worker writes its stripe: no CAS needed, no contention with other workers.
    let _ = host::set_shared_data(&own_key, &own, 0);
    let count = stripe_count(keys);
    let mut all = Vec::with_capacity(count as usize);
    for i in (0..count).filter(|i| *i != mine) {
        if let Ok(Some((bytes, _))) = host::shared_data(&keys.stripe(b, slot, i)) {
            all.extend(Stripe::decode(&bytes));
        }
    }
    all.extend(Stripe::decode(&own));
    all
}

/// True when generation `a` comes after `b` (generations wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// How many stripes exist. Read on every evaluation: a cached count would miss a worker that claimed
/// its stripe since, and with it that worker's calls.
fn stripe_count(keys: &Keys) -> u32 {
    host::shared_data(&keys.stripes_counter())
        .ok()
        .flatten()
        .map_or(1, |(v, _)| read_u32(&v).clamp(1, MAX_STRIPES))
}

/// Claims a stripe number with a CAS increment of a shared counter.
fn claim_stripe(keys: &Keys) -> u32 {
    let key = keys.stripes_counter();
    for _ in 0..RESULT_ATTEMPTS {
        let (current, cas) = match host::shared_data(&key) {
            Ok(Some((v, cas))) => (read_u32(&v), cas),
            Ok(None) => (0, 0),
            Err(_) => break,
        };
        if host::set_shared_data(&key, &current.wrapping_add(1).to_le_bytes(), cas)
            == SharedWrite::Written
        {
            return current % MAX_STRIPES;
        }
    }
    log::warn!("circuit-breaker: could not claim a window stripe; this worker shares stripe 0");
    0
}

fn read_u32(v: &[u8]) -> u32 {
    v.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b))
}
