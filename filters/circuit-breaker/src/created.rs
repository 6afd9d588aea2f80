//! Which of a breaker's key slots have a record in shared data. A slot's record is created when a key
//! first needs the slot, not at load, so loading costs the same whatever `maxKeys` is and shared data
//! holds records only for slots keys have used.
//!
//! Envoy's shared data has no "create if absent": a write to a key that does not exist succeeds
//! whatever CAS token it carries. Two workers that both created one record could therefore both
//! write it, and the later creation could erase a key's claim (or a trip) written in between. So a
//! worker first marks the slot as created in this per-breaker bitmap, which exists from load, with
//! compare-and-swap: only the worker whose mark lands writes the new record, once in the sidecar's
//! life, and every later write of the record is a real compare-and-swap on an existing key.

use filter_common::host::SharedWrite;
use filter_common::shared::{create_key, SharedData};

const VERSION: u8 = 1;

/// The slots whose creation was claimed, one bit per slot. It grows with the highest slot claimed, so
/// it is at most `maxKeys / 8 + 2` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Created {
    bits: Vec<u8>,
}

impl Created {
    /// Reads a bitmap; anything malformed reads as empty (the records that exist are used whatever it
    /// says: it is consulted only for a slot whose record is missing).
    pub fn decode(bytes: &[u8]) -> Created {
        match bytes.split_first() {
            Some((&VERSION, bits)) => Created {
                bits: bits.to_vec(),
            },
            _ => Created::default(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.bits.len());
        out.push(VERSION);
        out.extend_from_slice(&self.bits);
        out
    }

    pub fn contains(&self, slot: u32) -> bool {
        let (byte, bit) = position(slot);
        self.bits.get(byte).is_some_and(|b| b & bit != 0)
    }

    /// Marks `slot`; false when it already was.
    pub fn insert(&mut self, slot: u32) -> bool {
        let (byte, bit) = position(slot);
        if self.bits.len() <= byte {
            self.bits.resize(byte + 1, 0);
        }
        match self.bits.get_mut(byte) {
            Some(b) if *b & bit == 0 => {
                *b |= bit;
                true
            }
            _ => false,
        }
    }
}

fn position(slot: u32) -> (usize, u8) {
    ((slot / 8) as usize, 1 << (slot % 8))
}

/// The largest encoded bitmap of a breaker with `max_keys` slots.
pub fn max_encoded_len(max_keys: u32) -> usize {
    1 + (max_keys as usize).div_ceil(8)
}

/// What [`create`] did for a slot whose record was missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// This worker claimed the slot's creation and wrote its record.
    Created,
    /// Another worker claimed it first (its record is there, or is being written), or every attempt to
    /// claim it lost a race: this worker must not write the record.
    ClaimedElsewhere,
    /// Shared data failed.
    Failed,
}

/// Claims the creation of `slot` in the bitmap at `bitmap_key` and, when the claim lands, writes the
/// slot's first values: `companions` (the keys a record needs beside it, such as its permit table),
/// then the record (`initial`) at `record_key`, last, so that whoever finds the record finds them too.
/// A missing bitmap (its creation at load failed) is created first.
pub fn create(
    store: &impl SharedData,
    bitmap_key: &str,
    (record_key, initial): (&str, &[u8]),
    companions: &[(String, Vec<u8>)],
    slot: u32,
    attempts: u32,
) -> Creation {
    for _ in 0..attempts {
        let (bytes, cas) = match store.get(bitmap_key) {
            Ok(Some(found)) => found,
            Ok(None) => match create_key(store, bitmap_key, &Created::default().encode()) {
                Ok(()) => continue,
                Err(_) => return Creation::Failed,
            },
            Err(_) => return Creation::Failed,
        };
        let mut created = Created::decode(&bytes);
        if !created.insert(slot) {
            return Creation::ClaimedElsewhere;
        }
        match store.set(bitmap_key, &created.encode(), cas) {
            SharedWrite::Written => {
                for (key, value) in companions {
                    // A companion that could not be written is created by its first user instead.
                    let _ = store.set(key, value, 0);
                }
                return match store.set(record_key, initial, 0) {
                    // The slot stays marked without a record: keys pass it by as taken.
                    SharedWrite::Failed(_) => Creation::Failed,
                    SharedWrite::Written | SharedWrite::CasMismatch => Creation::Created,
                };
            }
            SharedWrite::CasMismatch => {}
            SharedWrite::Failed(_) => return Creation::Failed,
        }
    }
    Creation::ClaimedElsewhere
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::shared::{Fault, MemoryStore};
    use std::cell::Cell;

    const MAP: &str = "circuit-breaker/cb/b/slots";
    const REC: &str = "circuit-breaker/cb/b/9";

    #[test]
    fn marks_round_trip_and_grow_only_to_the_highest_slot() {
        let mut c = Created::default();
        assert!(!c.contains(9));
        assert!(c.insert(9));
        assert!(!c.insert(9), "marked once");
        assert!(c.contains(9) && !c.contains(8) && !c.contains(10_000));
        assert_eq!(c.encode().len(), 1 + 2);
        assert!(c.insert(9_999));
        assert_eq!(c.encode().len(), max_encoded_len(10_000));
        assert_eq!(Created::decode(&c.encode()), c);
        assert_eq!(Created::decode(&[]), Created::default());
        assert_eq!(Created::decode(&[7, 255]), Created::default());
    }

    #[test]
    fn the_first_claim_writes_the_record_and_later_ones_do_not() {
        let store = MemoryStore::new();
        create_key(&store, MAP, &Created::default().encode()).unwrap();
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::Created
        );
        assert_eq!(store.value(REC).unwrap(), b"new");
        // The record changed since (a claim): a second creation must not reset it.
        store.set(REC, b"claimed", 0);
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::ClaimedElsewhere
        );
        assert_eq!(store.value(REC).unwrap(), b"claimed");
        assert!(Created::decode(&store.value(MAP).unwrap()).contains(9));
    }

    /// Two workers find the record missing at once: the one whose mark lands second rereads the
    /// bitmap, sees the slot claimed and writes nothing, so the first worker's later writes stand.
    #[test]
    fn of_two_racing_creators_only_one_writes() {
        let raced = Cell::new(false);
        let store = MemoryStore::new();
        create_key(&store, MAP, &Created::default().encode()).unwrap();
        store.before_write(|key, s| {
            if key == MAP && !raced.replace(true) {
                assert_eq!(
                    create(s, MAP, (REC, b"other"), &[], 9, 8),
                    Creation::Created
                );
                s.set(REC, b"other's claim", 0);
            }
        });
        assert_eq!(
            create(&store, MAP, (REC, b"mine"), &[], 9, 8),
            Creation::ClaimedElsewhere
        );
        assert_eq!(store.value(REC).unwrap(), b"other's claim");
        // Another slot of the same bitmap: the race on the bitmap is retried, both marks kept.
        let raced = Cell::new(false);
        let store = MemoryStore::new();
        create_key(&store, MAP, &Created::default().encode()).unwrap();
        store.before_write(|key, s| {
            if key == MAP && !raced.replace(true) {
                create(s, MAP, ("circuit-breaker/cb/b/3", b"other"), &[], 3, 8);
            }
        });
        assert_eq!(
            create(&store, MAP, (REC, b"mine"), &[], 9, 8),
            Creation::Created
        );
        let map = Created::decode(&store.value(MAP).unwrap());
        assert!(map.contains(3) && map.contains(9));
    }

    #[test]
    fn failures_are_reported_and_a_missing_bitmap_is_made() {
        let store = MemoryStore::new();
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::Created
        );
        let store = MemoryStore::new();
        store.inject(MAP, Fault::ReadError);
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::Failed
        );
        store.inject(REC, Fault::WriteError);
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::Failed
        );
        assert_eq!(store.value(REC), None);
        assert_eq!(
            create(&store, MAP, (REC, b"new"), &[], 9, 8),
            Creation::ClaimedElsewhere,
            "marked without a record: never written by another"
        );
    }
}
