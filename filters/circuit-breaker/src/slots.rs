//! Which of a breaker's `maxKeys` slots holds a key's state. A slot remembers the 64-bit fingerprint of
//! the key that owns it, so two keys never share a breaker: a key looks in its home slot and the next
//! few ([`PROBES`]), uses the one it owns, else claims the first free one (with compare-and-swap on the
//! record, so two workers cannot both claim it), else passes unprotected (an overflow). A slot is free
//! when no key owns it, or when its owner's breaker is closed and was not used for a full window.

use crate::config::BreakerConfig;
use crate::state::Cas;
use crate::state::{self, Decision, Record, State};

/// Slots a key may live in: its home slot and the next ones. Few, so that a key that is nowhere costs
/// a bounded number of reads.
pub const PROBES: u32 = 4;

/// The keyed fingerprint of a key and its seed, shared with the other filters' slot tables: callers that
/// choose key values cannot compute colliding ones, nor aim at a victim's slots.
pub use filter_common::slots::{fingerprint, Seed};

/// The slots `fingerprint` may live in, home slot first (distinct, fewer when `maxKeys` is smaller).
pub fn probes(fingerprint: u64, max_keys: u32) -> impl Iterator<Item = u32> {
    filter_common::slots::probes(fingerprint, max_keys, PROBES)
}

/// What one slot tells a key looking for its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The key owns the slot: the admission decision there.
    Mine(Decision),
    /// Another key owns it, or owned it and left it idle: the slot may be claimed.
    Free,
    Taken,
}

/// Looks at a slot: admits there if the key owns it (and writes what admission writes), else only
/// reads.
pub fn look(
    rec: &Record,
    fp: u64,
    now_ns: u64,
    cfg: &BreakerConfig,
    jitter_unit: f64,
) -> (Look, Option<Record>) {
    if rec.owner == fp {
        let step = state::on_request(rec, now_ns, cfg, jitter_unit);
        (Look::Mine(step.decision), step.write)
    } else if state::is_free(rec, now_ns, cfg) {
        (Look::Free, None)
    } else {
        (Look::Taken, None)
    }
}

/// Claims a slot seen free: the key owns a new closed breaker there and is admitted. A slot another
/// worker claimed meanwhile for the same key is simply used; one taken by another key is `Taken`.
pub fn claim(
    rec: &Record,
    fp: u64,
    now_ns: u64,
    cfg: &BreakerConfig,
    jitter_unit: f64,
) -> (Look, Option<Record>) {
    if rec.owner != fp && state::is_free(rec, now_ns, cfg) {
        let taken = state::claimed(rec, fp, now_ns);
        let step = state::on_request(&taken, now_ns, cfg, jitter_unit);
        (Look::Mine(step.decision), Some(step.write.unwrap_or(taken)))
    } else {
        look(rec, fp, now_ns, cfg, jitter_unit)
    }
}

/// Where a request's key was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// In the breaker of the key's slot (generation 0 when shared data failed: the call decides
    /// nothing).
    Slot(u32, Decision),
    /// Every slot the key may use is owned by another key: it passes unprotected.
    Overflow,
}

/// Finds the key's slot and admits the request there. `update(slot, create, change)` is a CAS loop on
/// the slot's record that, with `create`, first creates a missing one
/// ([`crate::store::update_slot`]). The key's own slot is searched for in every probe before any is
/// claimed, so a key never takes a second slot while it owns one; a key at home costs one read. A
/// slot without a record is free, and only the slot a key claims is created: shared data holds
/// records for the slots keys have owned, not for every slot they looked at. The slot of an
/// `Admission::Slot` is always the one `update` was called for last (the stage keeps the record key
/// it built for that call).
pub fn admit(
    fp: u64,
    now_ns: u64,
    cfg: &BreakerConfig,
    jitter_unit: f64,
    mut update: impl FnMut(u32, bool, &mut dyn FnMut(&Record) -> (Look, Option<Record>)) -> Cas<Look>,
) -> Admission {
    let failed = |slot| Admission::Slot(slot, Decision::Admit { gen: 0 });
    let mut free = Vec::new();
    for slot in probes(fp, cfg.max_keys) {
        match update(slot, false, &mut |rec| {
            look(rec, fp, now_ns, cfg, jitter_unit)
        }) {
            Cas::Written(Look::Mine(decision), ..) => return Admission::Slot(slot, decision),
            Cas::Exhausted(_) => return busy(slot, now_ns),
            Cas::Written(Look::Free, ..) | Cas::Missing => free.push(slot),
            Cas::Written(Look::Taken, ..) => {}
            Cas::Failed => return failed(slot),
        }
    }
    for slot in free {
        match update(slot, true, &mut |rec| {
            claim(rec, fp, now_ns, cfg, jitter_unit)
        }) {
            Cas::Written(Look::Mine(decision), ..) => return Admission::Slot(slot, decision),
            // Another key won the slot (or kept winning it), or another worker is creating its
            // record: try the next.
            Cas::Written(..) | Cas::Exhausted(_) | Cas::Missing => {}
            Cas::Failed => return failed(slot),
        }
    }
    Admission::Overflow
}

/// Every attempt on the key's own slot lost a race for a state change or a probe permit: other
/// workers are probing, so this request waits its turn like any request beyond the permits.
fn busy(slot: u32, now_ns: u64) -> Admission {
    Admission::Slot(
        slot,
        Decision::Reject {
            state: State::HalfOpen,
            retry_at_ns: now_ns.saturating_add(1_000_000_000),
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Keys;
    use filter_common::config::parse;
    use filter_common::shared::{MemoryStore, SharedData};
    use std::cell::Cell;

    const SEC: u64 = 1_000_000_000;

    fn cfg(json: &str) -> BreakerConfig {
        let c: crate::config::Config =
            parse(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes())).unwrap();
        c.breakers[0].clone()
    }

    /// A breaker's slot records in shared data, admitted through the filter's own CAS loop
    /// (`store::update_slot`).
    struct Store<'a> {
        mem: MemoryStore<'a>,
        reads_before: Cell<u32>,
    }

    fn key(slot: u32) -> String {
        format!("circuit-breaker/cb/b/{slot}")
    }

    impl<'a> Store<'a> {
        /// `n` slots whose records exist (0: every record is created when first needed).
        fn new(n: u32) -> Store<'a> {
            let mem = MemoryStore::new();
            for slot in 0..n {
                mem.set(&key(slot), &Record::default().encode(), 0);
            }
            Store {
                mem,
                reads_before: Cell::new(0),
            }
        }

        fn get(&self, slot: u32) -> Record {
            Record::decode(&self.mem.value(&key(slot)).unwrap()).unwrap()
        }

        fn set(&self, slot: u32, rec: Record) {
            self.mem.set(&key(slot), &rec.encode(), 0);
        }

        /// Between this worker's first read of `slot` and its write, another worker writes `other`.
        fn race(&self, slot: u32, other: Record) {
            let mut pending = Some(other);
            self.mem.before_write(move |k, mem| {
                if k == key(slot) {
                    if let Some(other) = pending.take() {
                        mem.set(k, &other.encode(), 0);
                    }
                }
            });
        }

        /// Record reads of the last admission.
        fn reads(&self) -> u32 {
            self.mem.calls().0 - self.reads_before.get()
        }

        fn admit(&self, fp: u64, now: u64, c: &BreakerConfig) -> Admission {
            self.reads_before.set(self.mem.calls().0);
            let named = BreakerConfig {
                name: "b".into(),
                ..c.clone()
            };
            let last = Cell::new(None);
            let admission = admit(fp, now, c, 0.0, |slot, create, change| {
                last.set(Some(slot));
                let keys = Keys::new("cb");
                crate::store::update_slot(
                    &self.mem,
                    &keys,
                    &keys.state("b", slot),
                    &named,
                    slot,
                    8,
                    create,
                    change,
                )
            });
            if let Admission::Slot(slot, _) = &admission {
                assert_eq!(Some(*slot), last.get(), "not the slot updated last");
            }
            admission
        }
    }

    fn admitted(a: Admission) -> u32 {
        match a {
            Admission::Slot(slot, Decision::Admit { .. }) => slot,
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn probes_are_distinct_and_bounded_by_max_keys() {
        assert_eq!(probes(7, 100).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert_eq!(probes(99, 100).collect::<Vec<_>>(), vec![99, 0, 1, 2]);
        assert_eq!(probes(5, 2).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(probes(5, 1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(probes(5, 0).collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn colliding_keys_get_their_own_slots_and_state() {
        let c = cfg(r#"{"maxKeys": 100, "window": {"duration": "10s"}}"#);
        let store = Store::new(100);
        // 187 and 287 share home slot 87.
        assert_eq!(admitted(store.admit(187, SEC, &c)), 87);
        assert_eq!(admitted(store.admit(287, SEC, &c)), 88);
        assert_eq!((store.get(87).owner, store.get(88).owner), (187, 287));
        // Opening 187's breaker leaves 287 closed.
        let open = state::on_trip(&store.get(87), store.get(87).gen, SEC, &c, 0.0).unwrap();
        store.set(87, open);
        assert!(matches!(
            store.admit(187, 2 * SEC, &c),
            Admission::Slot(87, Decision::Reject { .. })
        ));
        assert_eq!(admitted(store.admit(287, 2 * SEC, &c)), 88);
        // The healthy path of a key at home is one read, as before slots had owners.
        store.set(88, Record::default());
        assert_eq!(admitted(store.admit(87 + 100 * 5, 2 * SEC, &c)), 88);
        assert_eq!(admitted(store.admit(188, 2 * SEC, &c)), 89);
        store.admit(187, 2 * SEC, &c);
        assert_eq!(store.reads(), 1);
    }

    #[test]
    fn a_key_finds_its_slot_past_a_freed_one() {
        let c = cfg(r#"{"maxKeys": 10, "window": {"duration": "4s"}}"#);
        let store = Store::new(10);
        admitted(store.admit(3, 0, &c));
        assert_eq!(admitted(store.admit(13, 0, &c)), 4);
        // 3 goes idle and 13 keeps its slot busy: 13 must not claim slot 3 as a second slot.
        assert_eq!(admitted(store.admit(13, 5 * SEC, &c)), 4);
        assert_eq!(store.get(3).owner, 3);
        assert_eq!(store.reads(), 2);
    }

    #[test]
    fn keys_beyond_the_probes_overflow_until_a_slot_is_idle() {
        let c = cfg(r#"{"maxKeys": 2, "window": {"duration": "4s"}}"#);
        let store = Store::new(2);
        admitted(store.admit(10, 0, &c));
        admitted(store.admit(11, 0, &c));
        assert_eq!(store.admit(12, SEC, &c), Admission::Overflow);
        assert_eq!(store.reads(), 2, "each probe read once");
        // 11 stays in use (touched every second), 10 does not: after a window and a quarter, 12 takes
        // 10's slot, with a new generation so its window starts empty.
        for s in 1..=5 {
            admitted(store.admit(11, s * SEC, &c));
        }
        assert_eq!(store.admit(12, 4 * SEC, &c), Admission::Overflow);
        let before = store.get(0);
        assert_eq!(admitted(store.admit(12, 5 * SEC, &c)), 0);
        let after = store.get(0);
        assert_eq!((after.owner, after.gen), (12, before.gen + 1));
        assert_eq!(store.admit(10, 5 * SEC, &c), Admission::Overflow);
    }

    #[test]
    fn an_open_breaker_keeps_its_slot() {
        let c = cfg(r#"{"maxKeys": 1, "window": {"duration": "1s"}, "maxOpenDuration": "1h"}"#);
        let store = Store::new(1);
        admitted(store.admit(10, 0, &c));
        let open = state::on_trip(&store.get(0), store.get(0).gen, 0, &c, 0.0).unwrap();
        store.set(0, open);
        assert_eq!(store.admit(11, 3_000 * SEC, &c), Admission::Overflow);
    }

    #[test]
    fn two_workers_cannot_both_claim_a_slot() {
        let c = cfg(r#"{"maxKeys": 2}"#);
        let store = Store::new(2);
        // Between this worker's read of slot 0 and its write, another worker claims it for key 20.
        store.race(0, state::claimed(&Record::default(), 20, 0));
        assert_eq!(admitted(store.admit(10, 0, &c)), 1, "lost slot 0, took 1");
        assert_eq!((store.get(0).owner, store.get(1).owner), (20, 10));
        // The same race for the same key: both workers end up in the one slot.
        let store = Store::new(2);
        store.race(0, state::claimed(&Record::default(), 10, 0));
        assert_eq!(admitted(store.admit(10, 0, &c)), 0);
        assert_eq!(store.get(1).owner, 0, "no second slot");
    }

    /// Records are created when a key first needs a slot: only the slots probed exist, a key at home
    /// then costs one read, and overflow and reuse work as with records made in advance.
    #[test]
    fn records_are_created_when_keys_first_need_them() {
        let c = cfg(r#"{"maxKeys": 1000, "window": {"duration": "4s"}}"#);
        let store = Store::new(0);
        assert_eq!(admitted(store.admit(7, 0, &c)), 7);
        assert_eq!(store.get(7).owner, 7);
        assert_eq!(
            store.mem.len(),
            2,
            "the claimed slot's record and the bitmap of created slots"
        );
        admitted(store.admit(7, SEC, &c));
        assert_eq!(store.reads(), 1);
        // Another key at the same home takes the next slot, created for it.
        assert_eq!(admitted(store.admit(1007, SEC, &c)), 8);
        assert_eq!(store.mem.len(), 3);
        // A slot whose creation another worker claimed but has not written yet is passed by. (The
        // lookup reads slots 20 to 23 and claims 20, so 21 is still missing when the key claims it.)
        let map = Keys::new("cb").created("b");
        let mut created = crate::created::Created::decode(&store.mem.value(&map).unwrap());
        created.insert(20);
        store.mem.set(&map, &created.encode(), 0);
        assert_eq!(admitted(store.admit(20, SEC, &c)), 21);
        assert_eq!(
            store.mem.value(&key(20)),
            None,
            "never written by a second creator"
        );
    }
}
