//! Request-id correlation in Envoy's shared data: a fixed set of slots (`filter_common::keys`), created
//! before traffic, read by the outbound side, claimed with compare-and-set by the inbound side.

use crate::config::Config;
use crate::context::TraceContext;
use crate::correlation::{self, Admit};
use crate::propagation::Restored;
use crate::tracestate::TraceState;
use filter_common::host::SharedWrite;
use filter_common::shared::{create_key, SharedData};

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

/// The live context stored under `request_id`, if any.
pub fn restore(
    store: &impl SharedData,
    config: &Config,
    request_id: &[u8],
    now: u64,
) -> Option<Restored> {
    let key = correlation::slot_key(request_id, config.correlation.slots);
    let (entry, _cas) = store.get(&key).ok()??;
    correlation::decode(&entry, request_id, now)
}

/// What became of an inbound context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Stored,
    /// Stored over a live entry of another request id.
    Evicted,
    /// A live entry holds this request id for another trace: the first writer keeps it.
    Refused,
    /// Not stored: too long to store, the slot contended past the retries, or shared data failed.
    NotStored,
}

/// Stores the inbound context under the request id so the workload's outbound call can be tied to it,
/// unless the slot holds a live entry of the same id with another trace (see `correlation::admit`). The
/// read and the write are one compare-and-set, so of two workers racing for a slot only one writes on
/// what it read.
pub fn remember(
    store: &impl SharedData,
    config: &Config,
    request_id: &[u8],
    context: &TraceContext,
    tracestate: &TraceState,
    now: u64,
) -> Remembered {
    let expiry = now.saturating_add(config.correlation.ttl.as_nanos_u64());
    let Some(entry) = correlation::encode(request_id, context, tracestate, expiry) else {
        return Remembered::NotStored;
    };
    let key = correlation::slot_key(request_id, config.correlation.slots);
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = match store.get(&key) {
            Ok(Some((value, cas))) => (Some(value), cas),
            Ok(None) => (None, 0),
            Err(e) => {
                log::warn!("could not read the correlation slot: {e}");
                return Remembered::NotStored;
            }
        };
        let admit = correlation::admit(current.as_deref(), request_id, context.trace_id, now);
        if admit == Admit::Refuse {
            return Remembered::Refused;
        }
        match store.set(&key, &entry, cas) {
            SharedWrite::Written if admit == Admit::Evict => return Remembered::Evicted,
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
            restore(&store, &config(), b"r1", SEC).unwrap().context,
            ctx(1)
        );
        // A retry of the same trace refreshes; once expired, the id is free.
        assert_eq!(remember_at(&store, b"r1", 1, 2 * SEC), Remembered::Stored);
        assert_eq!(remember_at(&store, b"r1", 2, 70 * SEC), Remembered::Stored);
        assert_eq!(
            restore(&store, &config(), b"r1", 70 * SEC).unwrap().context,
            ctx(2)
        );
    }

    #[test]
    fn another_request_id_in_a_live_slot_evicts_it_and_is_never_restored_as_it() {
        let one: Config =
            parse(Some(br#"{"correlation": {"enabled": true, "slots": 1}}"#)).unwrap();
        let store = MemoryStore::new();
        create_slots(&store, &one);
        let at =
            |rid: &[u8], trace| remember(&store, &one, rid, &ctx(trace), &TraceState::default(), 0);
        assert_eq!(at(b"a", 1), Remembered::Stored);
        assert_eq!(at(b"b", 2), Remembered::Evicted);
        assert!(restore(&store, &one, b"a", 0).is_none());
    }

    #[test]
    fn shared_data_failures_store_nothing_and_restore_nothing() {
        let store = MemoryStore::new();
        create_slots(&store, &config());
        let key = correlation::slot_key(b"r1", 4);
        store.inject(&key, Fault::ReadError);
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        store.inject(&key, Fault::WriteError);
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        for _ in 0..CAS_ATTEMPTS {
            store.inject(&key, Fault::CasMismatch);
        }
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::NotStored);
        assert!(restore(&store, &config(), b"r1", 0).is_none());
        assert_eq!(remember_at(&store, b"r1", 1, 0), Remembered::Stored);
        store.inject(&key, Fault::ReadError);
        assert!(restore(&store, &config(), b"r1", 0).is_none());
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
            let restored = restore(&store, &config(), b"r", 0).unwrap();
            assert_eq!(restored.context, ctx(winner), "seed {seed}");
        }
    }
}
