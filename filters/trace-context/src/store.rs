//! Request-id correlation in Envoy's shared data: a fixed set of slots (`filter_common::keys`), created
//! before traffic, read by the outbound side, claimed with compare-and-set by the inbound side; and the
//! sidecar's seed that places request ids in them.

use crate::config::Config;
use crate::context::TraceContext;
use crate::correlation::{self, Look, Plan};
use crate::propagation::Restored;
use crate::tracestate::TraceState;
use filter_common::host::SharedWrite;
use filter_common::ids::IdGenerator;
use filter_common::shared::{create_key, SharedData};
use filter_common::slots::{shared_seed, Seed};

/// Bounded compare-and-set retries: another worker writing the same slot at the same moment is rare,
/// and giving up only costs this request its correlation.
const CAS_ATTEMPTS: usize = 4;

/// Creates every slot before traffic (empty), so that every later write is a real compare-and-set:
/// the host checks a CAS token only on keys that exist.
pub fn create_slots(store: &impl SharedData, config: &Config) {
    if !config.correlation.enabled {
        return;
    }
    for slot in 0..u64::from(config.correlation.slots) {
        let key = filter_common::keys::correlation_slot(slot);
        if let Err(e) = create_key(store, &key, b"") {
            log::warn!("could not create correlation slot {key}: {e}");
            return;
        }
    }
}

/// The sidecar's seed for placing request ids (shared by every worker VM and both listeners' plugins);
/// a fixed one, with a warning, when shared data fails (correlation then fails too). `ids` makes a new
/// one when none is stored yet.
pub fn seed(store: &impl SharedData, config: &Config, ids: &mut IdGenerator) -> Seed {
    if !config.correlation.enabled {
        return Seed::default();
    }
    let key = filter_common::keys::CORRELATION_SEED;
    shared_seed(store, key, Seed::random(ids)).unwrap_or_else(|| {
        log::warn!("no shared {key}; request ids are placed with a fixed seed");
        Seed::default()
    })
}

/// The live context stored under `request_id`, if any: its probes are read in order, up to its entry
/// or a slot never written (no later probe holds it then).
pub fn restore(
    store: &impl SharedData,
    config: &Config,
    seed: &Seed,
    request_id: &[u8],
    now: u64,
) -> Option<Restored> {
    for key in correlation::slot_keys(seed, request_id, config.correlation.slots) {
        let (entry, _cas) = store.get(&key).ok()??;
        if entry.is_empty() {
            return None;
        }
        if let Some(restored) = correlation::decode(&entry, request_id, now) {
            return Some(restored);
        }
    }
    None
}

/// What became of an inbound context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Stored,
    /// Stored over the oldest live entry of another request id: every slot of this id held one.
    Evicted,
    /// A live entry holds this request id for another trace: the first writer keeps it.
    Refused,
    /// Not stored: too long to store, the slot contended past the retries, or shared data failed.
    NotStored,
}

/// Stores the inbound context under the request id so the workload's outbound call can be tied to it,
/// unless a live entry of the same id with another trace holds one of its slots (see
/// `correlation::plan`). The slots are read, then the chosen one written with compare-and-set on what
/// was read, so of two workers racing for a slot only one writes on what it read; the loser reads again.
pub fn remember(
    store: &impl SharedData,
    config: &Config,
    seed: &Seed,
    request_id: &[u8],
    context: &TraceContext,
    tracestate: &TraceState,
    now: u64,
) -> Remembered {
    let expiry = now.saturating_add(config.correlation.ttl.as_nanos_u64());
    let Some(entry) = correlation::encode(request_id, context, tracestate, expiry) else {
        return Remembered::NotStored;
    };
    let mut slots: Vec<(String, u32)> = Vec::with_capacity(correlation::PROBES as usize);
    let mut looks: Vec<Look> = Vec::with_capacity(correlation::PROBES as usize);
    for _ in 0..CAS_ATTEMPTS {
        slots.clear();
        looks.clear();
        for key in correlation::slot_keys(seed, request_id, config.correlation.slots) {
            let (current, cas) = match store.get(&key) {
                Ok(Some((value, cas))) => (Some(value), cas),
                Ok(None) => (None, 0),
                Err(e) => {
                    log::warn!("could not read the correlation slot: {e}");
                    return Remembered::NotStored;
                }
            };
            let look = correlation::look(current.as_deref(), request_id, context.trace_id, now);
            slots.push((key, cas));
            looks.push(look);
            if matches!(look, Look::Empty | Look::Mine { .. }) {
                break;
            }
        }
        let (probe, evicts) = match correlation::plan(&looks) {
            Plan::Refuse => return Remembered::Refused,
            Plan::Write { probe, evicts } => (probe, evicts),
        };
        let Some((key, cas)) = slots.get(probe) else {
            return Remembered::NotStored;
        };
        match store.set(key, &entry, *cas) {
            SharedWrite::Written if evicts => return Remembered::Evicted,
            SharedWrite::Written => return Remembered::Stored,
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(e) => {
                log::warn!("could not store the correlation entry: {e}");
                return Remembered::NotStored;
            }
        }
    }
    Remembered::NotStored
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;
    use filter_common::shared::{Fault, MemoryStore};
    use std::cell::Cell;

    const SEC: u64 = 1_000_000_000;
    const SEED: Seed = Seed([5, 6]);

    fn config() -> Config {
        parse(Some(
            br#"{"correlation": {"enabled": true, "slots": 4, "ttl": "60s"}}"#,
        ))
        .unwrap()
    }

    fn ctx(trace_id: u128) -> TraceContext {
        TraceContext {
            trace_id,
            span_id: 7,
            sampled: Some(true),
            debug: false,
            random: false,
        }
    }

    fn remember_at(store: &MemoryStore, rid: &[u8], trace: u128, now: u64) -> Remembered {
        remember(
            store,
            &config(),
            &SEED,
            rid,
            &ctx(trace),
            &TraceState::default(),
            now,
        )
    }

    #[test]
    fn the_first_writer_keeps_a_live_request_id() {
        let store = MemoryStore::new();
        create_slots(&store, &config());
        assert_eq!(store.len(), 4, "every slot exists before traffic");
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::Stored);
        assert_eq!(remember_at(&store, b"r1", 2, SEC), Remembered::Refused);
        assert_eq!(
            restore(&store, &config(), &SEED, b"r1", SEC)
                .unwrap()
                .context,
            ctx(1)
        );
        // A retry of the same trace refreshes; once expired, the id is free.
        assert_eq!(remember_at(&store, b"r1", 1, 2 * SEC), Remembered::Stored);
        assert_eq!(remember_at(&store, b"r1", 2, 70 * SEC), Remembered::Stored);
        assert_eq!(
            restore(&store, &config(), &SEED, b"r1", 70 * SEC)
                .unwrap()
                .context,
            ctx(2)
        );
    }

    #[test]
    fn another_request_id_in_a_live_slot_evicts_it_and_is_never_restored_as_it() {
        let one: Config =
            parse(Some(br#"{"correlation": {"enabled": true, "slots": 1}}"#)).unwrap();
        let store = MemoryStore::new();
        create_slots(&store, &one);
        let at = |rid: &[u8], trace| {
            remember(
                &store,
                &one,
                &SEED,
                rid,
                &ctx(trace),
                &TraceState::default(),
                0,
            )
        };
        assert_eq!(at(b"a", 1), Remembered::Stored);
        assert_eq!(at(b"b", 2), Remembered::Evicted);
        assert!(restore(&store, &one, &SEED, b"a", 0).is_none());
    }

    /// Issue 16 item 1: ids sharing slots each get their own while one is free; a full set of probes
    /// loses its oldest entry, never the live entry an id was aimed at.
    #[test]
    fn issue16_item1_other_ids_take_free_slots_and_evict_only_the_oldest() {
        let store = MemoryStore::new();
        create_slots(&store, &config());
        // Four slots, four probes: every id may use every slot.
        for (i, rid) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            let now = i as u64 * SEC;
            assert_eq!(
                remember_at(&store, *rid, 10 + i as u128, now),
                Remembered::Stored
            );
        }
        for (i, rid) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            let r = restore(&store, &config(), &SEED, *rid, 4 * SEC).unwrap();
            assert_eq!(r.context, ctx(10 + i as u128));
        }
        // Full: `e` replaces the entry that expires first (`a`'s), whichever slot that is.
        assert_eq!(remember_at(&store, b"e", 20, 5 * SEC), Remembered::Evicted);
        assert!(restore(&store, &config(), &SEED, b"a", 5 * SEC).is_none());
        for (rid, trace) in [(b"b", 11), (b"c", 12), (b"d", 13), (b"e", 20)] {
            let r = restore(&store, &config(), &SEED, rid, 5 * SEC).unwrap();
            assert_eq!(r.context, ctx(trace));
        }
        // `a`'s id is free again, but `b`'s is still `b`'s: another trace is refused.
        assert_eq!(remember_at(&store, b"b", 99, 6 * SEC), Remembered::Refused);
        // Once `b` expired, its slot is free and taken without eviction.
        assert_eq!(remember_at(&store, b"f", 30, 62 * SEC), Remembered::Stored);
        // The seed is shared and kept.
        let mut ids = IdGenerator::from_seed(1);
        let first = seed(&store, &config(), &mut ids);
        assert_eq!(seed(&store, &config(), &mut ids), first);
        assert_ne!(first, Seed::default());
    }

    #[test]
    fn shared_data_failures_store_nothing_and_restore_nothing() {
        let store = MemoryStore::new();
        create_slots(&store, &config());
        let key = correlation::slot_keys(&SEED, b"r1", 4).next().unwrap();
        store.inject(&key, Fault::ReadError);
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        store.inject(&key, Fault::WriteError);
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        for _ in 0..CAS_ATTEMPTS {
            store.inject(&key, Fault::CasMismatch);
        }
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        assert!(restore(&store, &config(), &SEED, b"r1", 0).is_none());
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::Stored);
        store.inject(&key, Fault::ReadError);
        assert!(restore(&store, &config(), &SEED, b"r1", 0).is_none());
    }

    /// Two inbound requests with the same request id and different traces, on two workers, in random
    /// interleavings (the other's whole step may land between a read and a write): exactly one is
    /// stored, the other refused, and the id restores into the one stored.
    #[test]
    fn two_workers_racing_for_one_request_id_leave_one_owner() {
        for seed in 1..200u64 {
            let mut x = seed;
            let mut coin = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 2 == 0
            };
            let other_result = Cell::new(None);
            let store = MemoryStore::new();
            create_slots(&store, &config());
            store.before_write(|_, s| {
                if other_result.get().is_none() && coin() {
                    other_result.set(Some(remember_at(s, b"r", 2, 0)));
                }
            });
            let mine = remember_at(&store, b"r", 1, 0);
            let theirs = other_result
                .get()
                .unwrap_or_else(|| remember_at(&store, b"r", 2, 0));
            let results = [mine, theirs];
            assert_eq!(
                results.iter().filter(|r| **r == Remembered::Stored).count(),
                1,
                "seed {seed}: {results:?}"
            );
            assert!(results.contains(&Remembered::Refused), "seed {seed}");
            let winner = if mine == Remembered::Stored { 1 } else { 2 };
            let restored = restore(&store, &config(), &SEED, b"r", 0).unwrap();
            assert_eq!(restored.context, ctx(winner), "seed {seed}");
        }
    }
}
