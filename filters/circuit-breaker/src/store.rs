//! The breaker state in Envoy's shared data, seen by every worker VM: one CAS-updated record per breaker
//! key, and one window stripe per key and worker. Only the VM that leased a stripe number writes its
//! stripes, so recording a call never contends with another worker.

use crate::config::BreakerConfig;
use crate::created::{self, Created, Creation};
use crate::leases::Table;
use crate::permits;
use crate::state::{Cas, Record};
use crate::window::Stripe;
use filter_common::host::SharedWrite;
use filter_common::ids::IdGenerator;
use filter_common::shared::{create_key, SharedData};
use filter_common::slots::Seed;
use filter_common::HashMap;

/// CAS retries on the request path; past them the request is answered from the last record read.
pub const ADMIT_ATTEMPTS: u32 = 8;
/// CAS retries for results (off the request path): a lost probe result would strand a half-open breaker.
pub const RESULT_ATTEMPTS: u32 = 64;

/// This VM's side of the windows, kept for as long as the VM runs (across configurations), passed in
/// by the caller.
#[derive(Debug, Default)]
pub struct Stripes {
    /// This VM's stripe number in each lease table (one per plugin root id sharing the VM), leased on
    /// its first recorded call: Envoy's canary and main-thread VMs, which configure but never serve,
    /// never lease one, and configuration pushes keep it. With it, when this VM last wrote its lease
    /// (seconds): until the lease is due for renewal nobody else can hold the number, so a call that
    /// only publishes its stripe need not read the table.
    leases: HashMap<String, (usize, u64)>,
    /// Whether this VM has logged that no stripe number was free.
    warned_full: bool,
    /// This VM's stripes by breaker state key (root id included): the authoritative copy (shared data
    /// holds the mirror the other workers read). Per VM, not per configuration, so a configuration
    /// push keeps the window, and so does a change of stripe number.
    local: HashMap<String, Stripe>,
    /// The published stripe's key and value, built in buffers kept between calls: a healthy call
    /// allocates nothing for them once the buffers have grown.
    key_buf: String,
    value_buf: Vec<u8>,
}

pub use filter_common::keys::BreakerKeys as Keys;

/// The sidecar's fingerprint seed: the one in shared data, or a new random one stored there by the
/// first VM to configure (Envoy's canary, before any worker serves), so every worker fingerprints keys
/// alike, across configuration pushes too. `None` when shared data fails. `now` seeds the new one when
/// the host has no entropy.
pub fn key_seed(store: &impl SharedData, keys: &Keys, now: u64) -> Option<Seed> {
    let fresh = Seed::random(&mut IdGenerator::from_entropy(now));
    filter_common::slots::shared_seed(store, &keys.seed(), fresh)
}

/// Creates, before traffic, what every later write needs to exist so that it is a real
/// compare-and-swap (the host skips the CAS check for a key that does not exist yet): the lease table
/// and each breaker's bitmap of created slots. The slots' records themselves are created when a key
/// first needs one ([`update_slot`]), so loading costs the same whatever `maxKeys` is. The first VM to
/// configure (Envoy's canary, on the main thread) does it before any worker serves a request.
pub fn create_tables(store: &impl SharedData, keys: &Keys, breakers: &[BreakerConfig]) {
    let leases = keys.leases();
    if let Err(e) = create_key(store, leases, &Table::default().encode()) {
        log::warn!("could not create {leases}: {e}");
    }
    let empty = Created::default().encode();
    for b in breakers {
        let key = keys.created(&b.name);
        if let Err(e) = create_key(store, &key, &empty) {
            log::warn!("could not create {key}: {e}");
            return;
        }
    }
}

/// The record and its CAS token; an unreadable value reads as a new closed breaker. `Ok(None)` when
/// the record does not exist, `Err` when shared data itself failed.
fn read_record(store: &impl SharedData, key: &str) -> Result<Option<(Record, u32)>, ()> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => Ok(Some((Record::decode(&bytes).unwrap_or_default(), cas))),
        Ok(None) => Ok(None),
        Err(_) => Err(()),
    }
}

/// [`update`] on the record of `breaker`'s key slot `slot`. With `create`, a record no key has needed
/// yet is created first (see `created`), and `Cas::Missing` then says another worker is creating it
/// (or its creator stopped before writing it): the slot is not usable now.
/// `key` is the slot's record key (`keys.state(b, slot)`), built by the caller, who keeps it for the
/// rest of the call.
#[allow(clippy::too_many_arguments)]
pub fn update_slot<T>(
    store: &impl SharedData,
    keys: &Keys,
    key: &str,
    b: &BreakerConfig,
    slot: u32,
    attempts: u32,
    create: bool,
    mut change: impl FnMut(&Record) -> (T, Option<Record>),
) -> Cas<T> {
    match update(store, key, attempts, &mut change) {
        Cas::Missing if create => {}
        done => return done,
    }
    let initial = Record::default().encode();
    // A limited breaker's key has a permit table, made with the record so that every write to it is
    // a real compare-and-swap (see `permits::read`).
    let companions: Vec<(String, Vec<u8>)> = b
        .max_concurrent_calls
        .map(|_| (permits::key(key), permits::Table::default().encode()))
        .into_iter()
        .collect();
    match created::create(
        store,
        &keys.created(&b.name),
        (key, &initial),
        &companions,
        slot,
        attempts,
    ) {
        Creation::Failed => Cas::Failed,
        // Written by this worker, or by another since the record was found missing: read it again.
        Creation::Created | Creation::ClaimedElsewhere => update(store, key, attempts, change),
    }
}

/// Reads the record, lets `change` compute (value, record to write), and writes with CAS, retrying. A
/// record that does not exist is `Cas::Missing` ([`update_slot`] creates it).
pub fn update<T>(
    store: &impl SharedData,
    key: &str,
    attempts: u32,
    mut change: impl FnMut(&Record) -> (T, Option<Record>),
) -> Cas<T> {
    let mut last = None;
    for _ in 0..attempts {
        let (record, cas) = match read_record(store, key) {
            Ok(Some(found)) => found,
            Ok(None) => return Cas::Missing,
            Err(()) => return Cas::Failed,
        };
        let (value, next) = change(&record);
        let Some(next) = next else {
            return Cas::Written(value, record, None);
        };
        match store.set(key, &next.encode(), cas) {
            SharedWrite::Written => return Cas::Written(value, record, Some(next)),
            SharedWrite::CasMismatch => last = Some(value),
            SharedWrite::Failed(e) => {
                log::warn!("could not write {key}: {e}");
                return Cas::Failed;
            }
        }
    }
    match last {
        Some(value) => Cas::Exhausted(value),
        None => Cas::Failed,
    }
}

/// A finished call as a window records it.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// The closed period it was admitted in.
    pub gen: u32,
    pub now: u64,
    pub failure: bool,
    pub slow: bool,
}

/// Logs, once per VM, that no stripe number was free.
fn warn_all_stripes_leased(warned: &mut bool) {
    if !std::mem::replace(warned, true) {
        log::warn!(
            "all {} window stripes are leased by live workers; this worker's calls count only in its own decisions",
            crate::leases::MAX_STRIPES
        );
    }
}

/// Records a finished call of generation `gen` in this worker's stripe and publishes it. With
/// `collect`, returns every live worker's stripe of the key (this worker's last) for a decision;
/// without, nothing, and a call made while this VM's lease is fresh costs one write.
/// `state_key` is `keys.state(b, slot)`; `mine` is this VM's side of the windows, `owner` its id.
#[allow(clippy::too_many_arguments)]
pub fn record_and_collect(
    store: &impl SharedData,
    mine: &mut Stripes,
    owner: u64,
    keys: &Keys,
    state_key: &str,
    b: &BreakerConfig,
    call: Finished,
    collect: bool,
) -> Vec<Stripe> {
    let Finished {
        gen,
        now,
        failure,
        slow,
    } = call;
    let now_s = now / 1_000_000_000;
    let fresh = if collect {
        None
    } else {
        fresh_lease(mine, keys, now_s)
    };
    let (table, number) = match fresh {
        Some(i) => (None, Some(i)),
        None => {
            let mut table = read_leases(store, keys);
            let number = lease(store, mine, keys, owner, now_s, &mut table, true);
            (table, number)
        }
    };
    let local = &mut mine.local;
    // Looked up before inserting: the key is only copied for a breaker key's first call.
    if !local.contains_key(state_key) {
        local.insert(state_key.to_string(), Stripe::new(gen, b));
    }
    let Some(stripe) = local.get_mut(state_key) else {
        return Vec::new();
    };
    if !stripe.fits(b) || newer(gen, stripe.gen) {
        // A new closed period (or a new window shape after a configuration push) starts empty.
        *stripe = Stripe::new(gen, b);
    } else if newer(stripe.gen, gen) {
        // A late call from an older closed period: counted in the metrics only.
        return Vec::new();
    }
    stripe.record(now, failure, slow, b);
    // The value this worker publishes, encoded in place; the stripe itself is copied out only for a
    // decision. The owner id in front tells readers whether the value is the current lease holder's.
    let own = collect.then(|| stripe.clone());
    if let Some(i) = number {
        let value = &mut mine.value_buf;
        value.clear();
        value.extend_from_slice(&owner.to_le_bytes());
        stripe.encode_into(value);
        Keys::stripe_into(&mut mine.key_buf, state_key, i);
        // Only this worker writes its stripe: no CAS needed, no contention with other workers.
        let _ = store.set(&mine.key_buf, value, 0);
    }
    let Some(own) = own else {
        return Vec::new();
    };
    let mut all = Vec::new();
    if let Some((table, _)) = &table {
        for (i, holder) in table.live(now_s).filter(|(i, _)| Some(*i) != number) {
            if let Ok(Some((bytes, _))) = store.get(&Keys::stripe(state_key, i)) {
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

/// This VM's stripe number in `keys`' table while the lease it last wrote is not due for renewal (the
/// table's own rule, `leases::renewal_due`): until then no other VM can hold the number.
fn fresh_lease(mine: &Stripes, keys: &Keys, now_s: u64) -> Option<usize> {
    let (stripe, written_s) = mine.leases.get(keys.leases()).copied()?;
    (!crate::leases::renewal_due(written_s, now_s)).then_some(stripe)
}

/// True when generation `a` comes after `b` (generations wrap).
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The lease table and its CAS token; `None` when shared data failed or the table is missing (it is
/// created at configuration; writing it here would need CAS 0, which overwrites unconditionally).
fn read_leases(store: &impl SharedData, keys: &Keys) -> Option<(Table, u32)> {
    match store.get(keys.leases()) {
        Ok(Some((bytes, cas))) => Some((Table::decode(&bytes), cas)),
        Ok(None) | Err(_) => None,
    }
}

/// Renews this VM's lease in `keys`' table when due, from the root context's timer: a VM that records
/// no calls for a while keeps its lease (and its calls stay counted); only a stopped VM's lease ends.
pub fn renew_lease(store: &impl SharedData, mine: &mut Stripes, owner: u64, keys: &Keys, now: u64) {
    if mine.leases.contains_key(keys.leases()) {
        let now_s = now / 1_000_000_000;
        let mut table = read_leases(store, keys);
        lease(store, mine, keys, owner, now_s, &mut table, false);
    }
}

/// This VM's stripe number in `keys`' table: the one it holds (renewed when due) or, when `claim`, a
/// newly leased one. `None` when none can be had (shared data failed, every number is live): this
/// call then counts only in this worker's own decisions.
fn lease(
    store: &impl SharedData,
    mine: &mut Stripes,
    keys: &Keys,
    owner: u64,
    now_s: u64,
    table: &mut Option<(Table, u32)>,
    claim: bool,
) -> Option<usize> {
    let table_key = keys.leases();
    let held = mine.leases.get(table_key).map(|(i, _)| *i);
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
                    warn_all_stripes_leased(&mut mine.warned_full);
                    return None;
                }
            },
        };
        match store.set(table_key, &next_table.encode(), cas) {
            SharedWrite::Written => {
                *table = Some((next_table, cas));
                mine.leases.insert(table_key.to_string(), (next, now_s));
                return Some(next);
            }
            SharedWrite::CasMismatch => *table = read_leases(store, keys),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::state::{self, Decision, ProbeOutcome, State};
    use filter_common::config::parse;
    use filter_common::shared::{Fault, MemoryStore};
    use std::cell::Cell;

    const SEC: u64 = 1_000_000_000;
    const KEY: &str = "circuit-breaker/cb/b/0";

    fn breaker(json: &str) -> BreakerConfig {
        let c: Config = parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes())).unwrap();
        c.breakers[0].clone()
    }

    fn record(store: &MemoryStore) -> Record {
        Record::decode(&store.value(KEY).unwrap()).unwrap()
    }

    /// Writes `rec` as a new value of the key.
    fn put(store: &MemoryStore, rec: &Record) {
        assert_eq!(store.set(KEY, &rec.encode(), 0), SharedWrite::Written);
    }

    fn admit(store: &MemoryStore, b: &BreakerConfig, now: u64) -> Cas<Decision> {
        update(store, KEY, ADMIT_ATTEMPTS, |rec| {
            let step = state::on_request(rec, now, b, 0.0);
            (step.decision, step.write)
        })
    }

    #[test]
    fn loading_creates_no_record_and_keeps_live_state() {
        let store = MemoryStore::new();
        let keys = Keys::new("cb");
        let b = breaker(r#"{"name": "b", "maxKeys": 1000}"#);
        create_tables(&store, &keys, std::slice::from_ref(&b));
        assert_eq!(
            store.len(),
            2,
            "the lease table and the bitmap of created slots, whatever maxKeys"
        );
        // The first key to need slot 0 creates its record.
        assert!(matches!(
            update_slot(
                &store,
                &keys,
                &keys.state("b", 0),
                &b,
                0,
                ADMIT_ATTEMPTS,
                true,
                |rec| { ((), state::on_trip(rec, rec.gen, 0, &b, 0.0)) }
            ),
            Cas::Written((), _, Some(_))
        ));
        let open = record(&store);
        assert_eq!(open.state, State::Open);
        create_tables(&store, &keys, std::slice::from_ref(&b));
        update_slot(
            &store,
            &keys,
            &keys.state("b", 0),
            &b,
            0,
            ADMIT_ATTEMPTS,
            true,
            |_| ((), None),
        );
        assert_eq!(
            record(&store),
            open,
            "a second VM does not reset live state"
        );
        assert_eq!(store.len(), 3);
    }

    /// A limited breaker's slot gets its permit table with its record, from the creator alone, so
    /// the first permit is already a compare-and-swap on an existing key.
    #[test]
    fn a_limited_breaker_s_slot_is_created_with_its_permit_table() {
        let store = MemoryStore::new();
        let keys = Keys::new("cb");
        let b = breaker(r#"{"name": "b", "maxKeys": 1000, "maxConcurrentCalls": 2}"#);
        create_tables(&store, &keys, std::slice::from_ref(&b));
        assert_eq!(store.len(), 2, "nothing per slot at load");
        update_slot(
            &store,
            &keys,
            &keys.state("b", 7),
            &b,
            7,
            ADMIT_ATTEMPTS,
            true,
            |_| ((), None),
        );
        let table = crate::permits::key(&keys.state("b", 7));
        assert_eq!(
            store.value(&table),
            Some(crate::permits::Table::default().encode())
        );
        assert_eq!(store.len(), 4, "the record and its permit table");
        let unlimited = breaker(r#"{"name": "b"}"#);
        update_slot(
            &store,
            &keys,
            &keys.state("b", 8),
            &unlimited,
            8,
            ADMIT_ATTEMPTS,
            true,
            |_| ((), None),
        );
        assert_eq!(store.len(), 5, "no permit table without a limit");
    }

    #[test]
    fn update_retries_lost_races_and_reports_what_it_could_not_do() {
        let store = MemoryStore::new();
        let b = breaker(r#"{"name": "b", "openDuration": "1s", "openJitter": 0}"#);
        put(
            &store,
            &state::on_trip(&Record::default(), 1, 0, &b, 0.0).unwrap(),
        );
        // One lost race, then the probe permit is taken.
        store.inject(KEY, Fault::CasMismatch);
        assert!(matches!(
            admit(&store, &b, 2 * SEC),
            Cas::Written(Decision::Probe { .. }, _, Some(_))
        ));
        assert_eq!(record(&store).state, State::HalfOpen);
        // Every attempt lost: the decision computed last, nothing written.
        let before = record(&store);
        for _ in 0..ADMIT_ATTEMPTS {
            store.inject(KEY, Fault::CasMismatch);
        }
        let b3 = breaker(r#"{"name": "b", "halfOpenProbes": 3}"#);
        assert!(matches!(
            admit(&store, &b3, 2 * SEC),
            Cas::Exhausted(Decision::Probe { .. })
        ));
        assert_eq!(record(&store), before);
        // Shared data failing is not a decision.
        store.inject(KEY, Fault::ReadError);
        assert!(matches!(admit(&store, &b, 2 * SEC), Cas::Failed));
        store.inject(KEY, Fault::WriteError);
        assert!(matches!(admit(&store, &b3, 2 * SEC), Cas::Failed));
        // A missing record is neither read nor written (`update_slot` creates it).
        store.inject(KEY, Fault::Missing);
        assert!(matches!(admit(&store, &b, 2 * SEC), Cas::Missing));
        // An unreadable one reads as a new closed breaker.
        store.set(KEY, b"garbage", 0);
        assert!(matches!(
            admit(&store, &b, 2 * SEC),
            Cas::Written(Decision::Admit { .. }, _, None)
        ));
    }

    /// xorshift64*: a deterministic schedule per seed.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.max(1);
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Two workers admit requests to one open breaker whose deadline has passed, and report probe
    /// results, in random interleavings: another worker's whole step may land between any read and its
    /// write. Whatever the schedule: never more probes than `halfOpenProbes` in one half-open period,
    /// every granted probe is in the record (no lost update), and the breaker ends closed after the
    /// probes succeed, with exactly one transition written per state change.
    #[test]
    fn two_workers_never_admit_more_probes_than_allowed() {
        let b = breaker(
            r#"{"name": "b", "halfOpenProbes": 3, "openDuration": "1s", "openJitter": 0, "maxHalfOpenDuration": "1h"}"#,
        );
        for seed in 1..300u64 {
            let now = 2 * SEC;
            let probes = Cell::new(0u32);
            let transitions = Cell::new(0u32);
            let granted: std::cell::RefCell<Vec<u32>> = Default::default();
            let mut next = rng(seed);
            let racing = Cell::new(true);
            let step = |store: &MemoryStore| match admit(store, &b, now) {
                Cas::Written(Decision::Probe { gen }, before, after) => {
                    probes.set(probes.get() + 1);
                    granted.borrow_mut().push(gen);
                    if after.is_some_and(|a| a.state != before.state) {
                        transitions.set(transitions.get() + 1);
                    }
                }
                Cas::Written(..) | Cas::Exhausted(_) => {}
                Cas::Failed | Cas::Missing => panic!("the store does not fail here"),
            };
            let store = MemoryStore::new();
            put(
                &store,
                &state::on_trip(&Record::default(), 1, 0, &b, 0.0).unwrap(),
            );
            // The other worker: at random, one whole admission lands before this worker's write.
            store.before_write(|_, s| {
                if racing.get() && next().is_multiple_of(3) {
                    step(s);
                }
            });
            for _ in 0..6 {
                step(&store);
            }
            racing.set(false);
            let rec = record(&store);
            assert!(probes.get() <= 3, "seed {seed}: {} probes", probes.get());
            assert_eq!(
                rec.probes_admitted,
                probes.get(),
                "seed {seed}: lost update"
            );
            assert_eq!(transitions.get(), 1, "seed {seed}: open -> half-open once");
            // The probes succeed, reported by both workers in turn: one close, written once.
            let closes = Cell::new(0u32);
            for gen in granted.borrow().iter() {
                if let Cas::Written((), before, Some(after)) =
                    update(&store, KEY, RESULT_ATTEMPTS, |rec| {
                        (
                            (),
                            state::on_probe_result(rec, *gen, ProbeOutcome::Success, now, &b, 0.0),
                        )
                    })
                {
                    if before.state != after.state {
                        closes.set(closes.get() + 1);
                    }
                }
            }
            assert_eq!(record(&store).state, State::Closed, "seed {seed}");
            assert_eq!(closes.get(), 1, "seed {seed}");
        }
    }

    /// Two workers find the same closed window over the threshold at once: exactly one opens the
    /// breaker (the other's trip, of the same generation, writes nothing), whatever the interleaving.
    #[test]
    fn a_breaker_opens_once_when_two_workers_trip_it() {
        let b = breaker(r#"{"name": "b", "openJitter": 0}"#);
        for seed in 1..100u64 {
            let opened = Cell::new(0u32);
            let mut next = rng(seed);
            let once = Cell::new(true);
            let gen = Record::default().gen;
            let trip = |store: &MemoryStore| {
                if let Cas::Written((), before, Some(after)) =
                    update(store, KEY, RESULT_ATTEMPTS, |rec| {
                        ((), state::on_trip(rec, gen, SEC, &b, 0.0))
                    })
                {
                    if before.state == State::Closed && after.state == State::Open {
                        opened.set(opened.get() + 1);
                    }
                }
            };
            let store = MemoryStore::new();
            put(&store, &Record::default());
            store.before_write(|_, s| {
                if once.replace(false) && next().is_multiple_of(2) {
                    trip(s);
                }
            });
            trip(&store);
            trip(&store);
            assert_eq!(opened.get(), 1, "seed {seed}");
            assert_eq!(record(&store).trips, 1, "seed {seed}");
        }
    }

    #[test]
    fn a_held_lease_is_kept_renewed_when_due_and_replaced_when_lost() {
        use crate::leases::{LEASE_SECS, RENEW_AFTER_SECS};
        let keys = Keys::new("lease-held");
        let store = MemoryStore::new();
        create_tables(&store, &keys, &[]);
        let mut mine = Stripes::default();
        let mut lease_at = |now_s: u64, claim: bool| {
            let mut table = read_leases(&store, &keys);
            lease(&store, &mut mine, &keys, 5, now_s, &mut table, claim)
        };
        assert_eq!(lease_at(1_000, true), Some(0));
        // Held and not due: kept without a write.
        let writes = store.calls().1;
        assert_eq!(lease_at(1_000 + RENEW_AFTER_SECS - 1, true), Some(0));
        assert_eq!(store.calls().1, writes, "no write while the lease is fresh");
        // Due: renewed in place.
        let due = 1_000 + RENEW_AFTER_SECS;
        assert_eq!(lease_at(due, false), Some(0));
        let (t, _) = read_leases(&store, &keys).unwrap();
        assert!(t.holds(0, 5, due) && !t.due(0, 5, due));
        // Lost (the lease ended and 77 leased the number): the timer's renewal gives up, leaving the
        // table alone; a recorded call leases another number.
        let late = due + LEASE_SECS;
        let (mut t, cas) = read_leases(&store, &keys).unwrap();
        assert_eq!(t.claim(77, late), Some(0));
        assert_eq!(
            store.set(keys.leases(), &t.encode(), cas),
            SharedWrite::Written
        );
        assert_eq!(lease_at(late, false), None);
        let (t, _) = read_leases(&store, &keys).unwrap();
        assert_eq!(t.live(late).collect::<Vec<_>>(), vec![(0, 77)]);
        assert_eq!(lease_at(late, true), Some(1));
        let (t, _) = read_leases(&store, &keys).unwrap();
        assert_eq!(t.live(late).collect::<Vec<_>>(), vec![(0, 77), (1, 5)]);
    }

    #[test]
    fn generations_are_newer_across_the_wrap() {
        assert!(newer(2, 1));
        assert!(!newer(1, 2));
        assert!(!newer(7, 7));
        assert!(newer(1, u32::MAX), "1 follows the wrap");
        assert!(!newer(u32::MAX, 1));
    }

    /// This VM (owner 5) among others: 11 holds number 0 and wrote its stripe, 33 holds number 1 but the
    /// stripe there is still its predecessor 44's, the leases of 22 (number 2) and 66 (number 3) ended.
    #[test]
    fn calls_go_into_this_worker_s_stripe_and_decisions_see_the_live_workers() {
        let keys = Keys::new("record-and-collect");
        let b = breaker(r#"{"name": "b", "window": {"duration": "10s", "buckets": 10}}"#);
        let state_key = keys.state("b", 0);
        let store = MemoryStore::new();
        create_tables(&store, &keys, std::slice::from_ref(&b));
        let mut this_vm = Stripes::default();
        let now = 1_000 * SEC;
        let mut table = Table::default().encode();
        for (owner, renewed_s) in [(11u64, 1_000u64), (33, 1_000), (22, 700), (66, 600)] {
            table.extend_from_slice(&owner.to_le_bytes());
            table.extend_from_slice(&renewed_s.to_le_bytes());
        }
        let (_, cas) = read_leases(&store, &keys).unwrap();
        assert_eq!(store.set(keys.leases(), &table, cas), SharedWrite::Written);
        let stripe_by = |writer: u64, failures: usize| {
            let mut s = Stripe::new(1, &b);
            for _ in 0..failures {
                s.record(now - SEC, true, false, &b);
            }
            let mut value = writer.to_le_bytes().to_vec();
            s.encode_into(&mut value);
            (s, value)
        };
        let (theirs, value) = stripe_by(11, 2);
        store.set(&Keys::stripe(&state_key, 0), &value, 0);
        store.set(&Keys::stripe(&state_key, 1), &stripe_by(44, 4).1, 0);
        store.set(&Keys::stripe(&state_key, 3), &stripe_by(66, 5).1, 0);
        let call = |gen, failure| Finished {
            gen,
            now,
            failure,
            slow: false,
        };
        let published = |store: &MemoryStore| {
            let value = store.value(&Keys::stripe(&state_key, 2)).unwrap();
            let (writer, stripe) = value.split_first_chunk::<8>().unwrap();
            (u64::from_le_bytes(*writer), Stripe::decode(stripe).unwrap())
        };
        let calls_of = |s: &Stripe| crate::window::totals(std::slice::from_ref(s), s.gen, now, &b);

        // The first call leases the lowest number whose lease ended, and sees 11's stripe only: not
        // 44's (no longer the holder) nor 66's (its lease ended).
        let all = record_and_collect(
            &store,
            &mut this_vm,
            5,
            &keys,
            &state_key,
            &b,
            call(1, true),
            true,
        );
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0], theirs);
        assert_eq!(
            (calls_of(&all[1]).calls, calls_of(&all[1]).failures),
            (1, 1)
        );
        let (t, _) = read_leases(&store, &keys).unwrap();
        assert!(t.holds(2, 5, 1_000));
        assert_eq!(published(&store), (5, all[1].clone()));

        // While the lease is fresh, a call that decides nothing costs one write and no read.
        let before = store.calls();
        assert!(record_and_collect(
            &store,
            &mut this_vm,
            5,
            &keys,
            &state_key,
            &b,
            call(1, false),
            false
        )
        .is_empty());
        let after = store.calls();
        assert_eq!((after.0 - before.0, after.1 - before.1), (0, 1));
        let (_, mine) = published(&store);
        assert_eq!((calls_of(&mine).calls, calls_of(&mine).failures), (2, 1));

        // A new closed period starts this worker's window afresh.
        let all = record_and_collect(
            &store,
            &mut this_vm,
            5,
            &keys,
            &state_key,
            &b,
            call(2, true),
            true,
        );
        let own = all.last().unwrap();
        assert_eq!((own.gen, calls_of(own).calls), (2, 1));
        // A late call of the previous period counts nowhere and changes nothing.
        assert!(record_and_collect(
            &store,
            &mut this_vm,
            5,
            &keys,
            &state_key,
            &b,
            call(1, true),
            true
        )
        .is_empty());
        assert_eq!(published(&store).1, own.clone());
        // A configuration push with another window shape starts it afresh too.
        let counted = breaker(r#"{"name": "b", "window": {"type": "count", "size": 5}}"#);
        let all = record_and_collect(
            &store,
            &mut this_vm,
            5,
            &keys,
            &state_key,
            &counted,
            call(2, true),
            true,
        );
        let own = all.last().unwrap();
        assert!(own.fits(&counted));
        assert_eq!(
            crate::window::totals(std::slice::from_ref(own), 2, now, &counted).calls,
            1
        );
    }

    #[test]
    fn a_lost_lease_race_rereads_the_table_and_takes_another_number() {
        let keys = Keys::new("cb");
        let once = Cell::new(true);
        let other = |s: &MemoryStore| {
            let (mut t, cas) = read_leases(s, &keys).unwrap();
            t.claim(77, 100).unwrap();
            assert_eq!(s.set(keys.leases(), &t.encode(), cas), SharedWrite::Written);
        };
        let store = MemoryStore::new();
        create_tables(&store, &keys, &[]);
        store.before_write(|_, s| {
            if once.replace(false) {
                other(s);
            }
        });
        let mut table = read_leases(&store, &keys);
        let mine = lease(
            &store,
            &mut Stripes::default(),
            &keys,
            5,
            100,
            &mut table,
            true,
        );
        assert_eq!(mine, Some(1), "number 0 went to the other worker first");
        let (t, _) = read_leases(&store, &keys).unwrap();
        assert!(t.holds(0, 77, 100) && t.holds(1, 5, 100));
    }
}
