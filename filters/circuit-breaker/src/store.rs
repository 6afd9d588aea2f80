//! The breaker state in Envoy's shared data, seen by every worker VM: one CAS-updated record per breaker
//! key, and one window stripe per key and worker. Only the VM that leased a stripe number writes its
//! stripes, so recording a call never contends with another worker.

use crate::config::BreakerConfig;
use crate::leases::Table;
use crate::slots::Seed;
use crate::state::Record;
use crate::window::Stripe;
use filter_common::host::{self, SharedWrite};
use filter_common::ids::IdGenerator;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// CAS retries on the request path; past them the request is answered from the last record read.
pub const ADMIT_ATTEMPTS: u32 = 8;
/// CAS retries for results (off the request path): a lost probe result would strand a half-open breaker.
pub const RESULT_ATTEMPTS: u32 = 64;

thread_local! {
    /// This VM's stripe number in each lease table (one per plugin root id sharing the VM), leased on
    /// its first recorded call: Envoy's canary and main-thread VMs, which configure but never serve,
    /// never lease one, and configuration pushes keep it.
    static STRIPES: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
    /// This VM's lease owner id (random, never 0); 0 until first needed.
    static OWNER: Cell<u64> = const { Cell::new(0) };
    /// Whether this VM has logged that no stripe number was free.
    static WARNED_FULL: Cell<bool> = const { Cell::new(false) };
    /// This VM's stripes by breaker state key (root id included): the authoritative copy (shared data holds the mirror the
    /// other workers read). Per VM, not per configuration, so a configuration push keeps the window,
    /// and so does a change of stripe number.
    static LOCAL: RefCell<HashMap<String, Stripe>> = RefCell::new(HashMap::new());
}

pub use filter_common::keys::BreakerKeys as Keys;

/// The sidecar's fingerprint seed: the one in shared data, or a new random one stored there by the
/// first VM to configure (Envoy's canary, before any worker serves), so every worker fingerprints keys
/// alike, across configuration pushes too. `None` when shared data fails.
pub fn key_seed(keys: &Keys) -> Option<Seed> {
    let key = keys.seed();
    if let Ok(Some((bytes, _))) = host::shared_data(&key) {
        if let Some(seed) = Seed::decode(&bytes) {
            return Some(seed);
        }
    }
    let mut ids = IdGenerator::from_entropy(host::now_nanos());
    let fresh = Seed([ids.next_u64(), ids.next_u64()]);
    if let SharedWrite::Failed(e) = host::set_shared_data(&key, &fresh.encode(), 0) {
        log::warn!("circuit-breaker: could not create {key}: {e}");
    }
    // Read back: whichever VM wrote last, every VM uses the stored seed.
    match host::shared_data(&key) {
        Ok(Some((bytes, _))) => Seed::decode(&bytes),
        _ => None,
    }
}

/// Creates every breaker key's record before traffic, so that every later write is a real
/// compare-and-swap (the host skips the CAS check for a key that does not exist yet). The first VM to
/// configure (Envoy's canary, on the main thread) does it before any worker serves a request.
pub fn create_records(keys: &Keys, breakers: &[BreakerConfig]) {
    let leases = keys.leases();
    if let Err(e) = host::create_shared_key(leases, &Table::default().encode()) {
        log::warn!("circuit-breaker: could not create {leases}: {e}");
    }
    let empty = Record::default().encode();
    for b in breakers {
        for slot in 0..b.max_keys {
            let key = keys.state(&b.name, slot);
            if let Err(e) = host::create_shared_key(&key, &empty) {
                log::warn!("circuit-breaker: could not create {key}: {e}");
                return;
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
/// live worker's stripe of the key (this worker's last). `state_key` is `keys.state(b, slot)`.
pub fn record_and_collect(
    keys: &Keys,
    state_key: &str,
    b: &BreakerConfig,
    gen: u32,
    now: u64,
    failure: bool,
    slow: bool,
) -> Vec<Stripe> {
    let now_s = now / 1_000_000_000;
    let owner = owner_id();
    let mut table = read_leases(keys);
    let mine = lease(keys, owner, now_s, &mut table, true);
    let Some(own) = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        // Looked up before inserting: the key is only copied for a breaker key's first call.
        if !local.contains_key(state_key) {
            local.insert(state_key.to_string(), Stripe::new(gen, b));
        }
        let stripe = local.get_mut(state_key)?;
        if !stripe.fits(b) || newer(gen, stripe.gen) {
            // A new closed period (or a new window shape after a configuration push) starts empty.
            *stripe = Stripe::new(gen, b);
        } else if newer(stripe.gen, gen) {
            // A late call from an older closed period: counted in the metrics only.
            return None;
        }
        stripe.record(now, failure, slow, b);
        Some(stripe.clone())
    }) else {
        return Vec::new();
    };
    if let Some(i) = mine {
        // Only this worker writes its stripe: no CAS needed, no contention with other workers. The
        // owner id in front tells readers whether the value is the current lease holder's.
        let mut value = Vec::with_capacity(8 + own.encoded_len_hint());
        value.extend_from_slice(&owner.to_le_bytes());
        own.encode_into(&mut value);
        let _ = host::set_shared_data(&Keys::stripe(state_key, i), &value, 0);
    }
    let mut all = Vec::new();
    if let Some((table, _)) = &table {
        for (i, holder) in table.live(now_s).filter(|(i, _)| Some(*i) != mine) {
            if let Ok(Some((bytes, _))) = host::shared_data(&Keys::stripe(state_key, i)) {
                if let Some((written_by, stripe)) = bytes.split_first_chunk::<8>() {
                    if u64::from_le_bytes(*written_by) == holder {
                        all.extend(Stripe::decode(stripe));
                    }
                }
            }
        }
    }
    all.push(own);
    all
}

/// True when generation `a` comes after `b` (generations wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The lease table and its CAS token; `None` when shared data failed or the table is missing (it is
/// created at configuration; writing it here would need CAS 0, which overwrites unconditionally).
fn read_leases(keys: &Keys) -> Option<(Table, u32)> {
    match host::shared_data(keys.leases()) {
        Ok(Some((bytes, cas))) => Some((Table::decode(&bytes), cas)),
        Ok(None) | Err(_) => None,
    }
}

/// Renews this VM's lease in `keys`' table when due, from the root context's timer: a VM that records
/// no calls for a while keeps its lease (and its calls stay counted); only a stopped VM's lease ends.
pub fn renew_lease(keys: &Keys) {
    let held = STRIPES.with(|s| s.borrow().contains_key(keys.leases()));
    if held {
        let now_s = host::now_nanos() / 1_000_000_000;
        lease(keys, owner_id(), now_s, &mut read_leases(keys), false);
    }
}

/// This VM's stripe number in `keys`' table: the one it holds (renewed when due) or, when `claim`, a
/// newly leased one. `None` when none can be had (shared data failed, every number is live): this
/// call then counts only in this worker's own decisions.
fn lease(
    keys: &Keys,
    owner: u64,
    now_s: u64,
    table: &mut Option<(Table, u32)>,
    claim: bool,
) -> Option<usize> {
    let table_key = keys.leases();
    let held = STRIPES.with(|s| s.borrow().get(table_key).copied());
    for _ in 0..RESULT_ATTEMPTS {
        let (current, cas) = table.as_ref()?;
        if let Some(i) = held.filter(|i| !current.due(*i, owner, now_s)) {
            return Some(i);
        }
        let cas = *cas;
        let mut next_table = current.clone();
        let next = match held {
            Some(i) if next_table.renew(i, owner, now_s) => i,
            // Not renewed in time and taken by another VM, or never leased: lease a number.
            _ if !claim => return None,
            _ => match next_table.claim(owner, now_s) {
                Some(i) => i,
                None => {
                    if !WARNED_FULL.with(|w| w.replace(true)) {
                        log::warn!(
                            "circuit-breaker: all {} window stripes are leased by live workers; this worker's calls count only in its own decisions",
                            crate::leases::MAX_STRIPES
                        );
                    }
                    return None;
                }
            },
        };
        match host::set_shared_data(table_key, &next_table.encode(), cas) {
            SharedWrite::Written => {
                *table = Some((next_table, cas));
                STRIPES.with(|s| s.borrow_mut().insert(table_key.to_string(), next));
                return Some(next);
            }
            SharedWrite::CasMismatch => *table = read_leases(keys),
            SharedWrite::Failed(_) => break,
        }
    }
    // Lost every race: keep the number held while its lease lasts.
    held.filter(|i| {
        table
            .as_ref()
            .is_some_and(|(t, _)| t.holds(*i, owner, now_s))
    })
}

/// This VM's random lease owner id.
fn owner_id() -> u64 {
    OWNER.with(|o| {
        if o.get() == 0 {
            o.set(IdGenerator::from_entropy(host::now_nanos()).next_u64() | 1);
        }
        o.get()
    })
}
