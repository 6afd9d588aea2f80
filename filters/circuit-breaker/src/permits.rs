//! `maxConcurrentCalls`: calls in flight for one breaker key, counted across every worker VM of the
//! sidecar. Shared data has no atomic add, so each key's value is a small table with one entry per VM
//! that holds permits: (owner id, count, heartbeat). A VM writes only its own entry, from its own count
//! kept in the VM ([`Ledger`], the authoritative copy), with compare-and-swap: a call is admitted when
//! the live entries of the other VMs plus this VM's count stay under the limit as of the value it
//! replaces, so two workers can never both take the last permit.
//!
//! Permits never leak: a VM that stops without ending its streams (a `FAIL_RELOAD` after a trap, a
//! module update) runs no `on_log` for them, but it also stops renewing its heartbeat, and an entry whose
//! heartbeat is older than [`PERMIT_TTL_S`] counts for nothing (and is dropped by the next writer). A
//! live VM renews its heartbeat on every acquire and release and from its timer
//! ([`RENEW_EVERY_MS`]). A lost write (CAS retries exhausted on a release) is repaired by the VM's next
//! write of its entry, which always carries the full count, never a delta.

use filter_common::host::SharedWrite;
use filter_common::shared::{create_key, SharedData};
use filter_common::HashMap;

/// An entry not renewed for this long belongs to a VM that stopped: its permits no longer count.
pub const PERMIT_TTL_S: u64 = 30;
/// How often a VM holding permits renews its heartbeat from its timer (well inside the TTL, so a busy
/// timer a few seconds late does not drop a live VM's count).
pub const RENEW_EVERY_MS: u32 = 10_000;
/// Most entries in one table: VMs holding permits on one key at once (live workers, plus stopped VMs
/// until their entries expire). Bounds the value whatever happens.
pub const MAX_ENTRIES: usize = 64;
/// CAS attempts to take a permit on the request path; past them the call is rejected as full, because
/// a permit that cannot be counted must not be handed out.
pub const ACQUIRE_ATTEMPTS: u32 = 16;
/// CAS attempts to give a permit back; a release that still loses is written by the VM's next write.
pub const RELEASE_ATTEMPTS: u32 = 64;

const VERSION: u8 = 1;
const ENTRY_BYTES: usize = 20;

/// The largest value of one key's table.
pub const MAX_VALUE_BYTES: usize = 1 + MAX_ENTRIES * ENTRY_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    owner: u64,
    count: u32,
    heartbeat_s: u64,
}

impl Entry {
    /// Renewed within the TTL (a clock stepping back keeps an entry live, as it keeps a lease).
    fn live(&self, now_s: u64) -> bool {
        now_s.saturating_sub(self.heartbeat_s) < PERMIT_TTL_S
    }
}

/// One key's permit table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    entries: Vec<Entry>,
}

impl Table {
    /// Reads a table; anything malformed reads as empty (a value from a newer module counts nothing
    /// rather than blocking calls).
    pub fn decode(bytes: &[u8]) -> Table {
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Table::default();
        };
        let entries = rest
            .chunks_exact(ENTRY_BYTES)
            .take(MAX_ENTRIES)
            .filter_map(|c| {
                let (owner, rest) = c.split_first_chunk::<8>()?;
                let (count, rest) = rest.split_first_chunk::<4>()?;
                let heartbeat = rest.first_chunk::<8>()?;
                Some(Entry {
                    owner: u64::from_le_bytes(*owner),
                    count: u32::from_le_bytes(*count),
                    heartbeat_s: u64::from_le_bytes(*heartbeat),
                })
            })
            .collect();
        Table { entries }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.entries.len() * ENTRY_BYTES);
        out.push(VERSION);
        for e in &self.entries {
            out.extend_from_slice(&e.owner.to_le_bytes());
            out.extend_from_slice(&e.count.to_le_bytes());
            out.extend_from_slice(&e.heartbeat_s.to_le_bytes());
        }
        out
    }

    /// Permits held by live VMs other than `owner`.
    pub fn others(&self, owner: u64, now_s: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.owner != owner && e.live(now_s))
            .map(|e| u64::from(e.count))
            .sum()
    }

    /// Permits held by every live VM.
    pub fn total(&self, now_s: u64) -> u64 {
        self.others(0, now_s)
    }

    /// The table with `owner`'s entry set to `count` (removed at 0) and renewed, and the entries of
    /// stopped VMs dropped. Returns it with the permits those dropped entries held (the writer that
    /// drops them takes them off the in-flight gauge, once) or `None` when the table is full of live
    /// entries (no room for a new VM's entry).
    pub fn with_own(&self, owner: u64, count: u32, now_s: u64) -> Option<(Table, u64)> {
        let mut expired = 0u64;
        let mut entries: Vec<Entry> = Vec::with_capacity(self.entries.len() + 1);
        for e in &self.entries {
            if e.owner == owner {
                continue;
            }
            if e.live(now_s) {
                entries.push(*e);
            } else {
                expired += u64::from(e.count);
            }
        }
        if count > 0 {
            if entries.len() >= MAX_ENTRIES {
                return None;
            }
            entries.push(Entry {
                owner,
                count,
                heartbeat_s: now_s,
            });
        }
        Some((Table { entries }, expired))
    }
}

/// Whether one more call fits: the other live VMs' permits plus `mine` (this VM's own count, from its
/// ledger) stay under `limit`.
pub fn fits(table: &Table, owner: u64, mine: u32, limit: u32, now_s: u64) -> bool {
    table
        .others(owner, now_s)
        .saturating_add(u64::from(mine))
        .saturating_add(1)
        <= u64::from(limit)
}

/// The permits this VM holds, per permit key. Kept in the VM, it is what the VM's entry must say: every
/// write carries the whole count, so a write that was lost is repaired by the next one.
/// A key stays listed while it holds permits or its entry may not say so (a write that failed).
#[derive(Debug, Default)]
pub struct Ledger {
    held: HashMap<String, u32>,
}

impl Ledger {
    pub fn count(&self, key: &str) -> u32 {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// No key to renew or repair.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Keys whose entry must be renewed or repaired: held permits or a failed write.
    pub fn keys(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    /// `dirty`: the shared entry may not say `count` yet.
    fn set(&mut self, key: &str, count: u32, dirty: bool) {
        if count == 0 && !dirty {
            self.held.remove(key);
        } else if let Some(h) = self.held.get_mut(key) {
            *h = count;
        } else {
            self.held.insert(key.to_string(), count);
        }
    }
}

/// What taking a permit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// Taken; the permits of stopped VMs this write dropped (to take off the gauge).
    Granted { expired: u64 },
    /// The limit is reached (or the permit could not be counted: every CAS attempt lost, shared data
    /// failed, the table is full of live VMs). Nothing was taken.
    Full,
}

/// Takes one permit of `key` for `owner` if the limit allows, with compare-and-swap.
pub fn acquire(
    store: &impl SharedData,
    ledger: &mut Ledger,
    key: &str,
    owner: u64,
    limit: u32,
    now_s: u64,
) -> Acquire {
    let mine = ledger.count(key);
    for _ in 0..ACQUIRE_ATTEMPTS {
        let Some((table, cas)) = read(store, key) else {
            return Acquire::Full;
        };
        if !fits(&table, owner, mine, limit, now_s) {
            return Acquire::Full;
        }
        let Some((next, expired)) = table.with_own(owner, mine.saturating_add(1), now_s) else {
            return Acquire::Full;
        };
        match store.set(key, &next.encode(), cas) {
            SharedWrite::Written => {
                ledger.set(key, mine.saturating_add(1), false);
                return Acquire::Granted { expired };
            }
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(_) => return Acquire::Full,
        }
    }
    Acquire::Full
}

/// Gives one permit of `key` back: the ledger at once (so the count this VM writes next is right
/// whatever happens), then the shared entry. Returns the permits of stopped VMs the write dropped.
pub fn release(
    store: &impl SharedData,
    ledger: &mut Ledger,
    key: &str,
    owner: u64,
    now_s: u64,
) -> u64 {
    let count = ledger.count(key).saturating_sub(1);
    ledger.set(key, count, true);
    publish(store, ledger, key, owner, now_s)
}

/// Writes this VM's entry of `key` from its ledger and renews its heartbeat (the timer calls this for
/// every key it holds permits in, and to repair a failed write). Returns the permits of stopped VMs
/// the write dropped.
pub fn publish(
    store: &impl SharedData,
    ledger: &mut Ledger,
    key: &str,
    owner: u64,
    now_s: u64,
) -> u64 {
    let count = ledger.count(key);
    for _ in 0..RELEASE_ATTEMPTS {
        let Some((table, cas)) = read(store, key) else {
            break;
        };
        // A full table can only refuse a new entry; this VM's own may always shrink or go.
        let Some((next, expired)) = table.with_own(owner, count, now_s) else {
            break;
        };
        match store.set(key, &next.encode(), cas) {
            SharedWrite::Written => {
                ledger.set(key, count, false);
                return expired;
            }
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(_) => break,
        }
    }
    ledger.set(key, count, true);
    0
}

/// The table and its CAS token. A key's table is created with its slot's record, by the one worker
/// whose claim of the slot landed (`store::update_slot`), because the host ignores the token when it
/// writes a missing key. One missing all the same (its creation failed, or the slot was created
/// before the breaker had `maxConcurrentCalls`) is created here empty, then read for its token: two workers
/// doing so at once may each write over the other's first entry (the host's create race), which the
/// losing VM's ledger puts back at its next write or renewal, within [`RENEW_EVERY_MS`]: until then
/// the limit may be passed by that one VM's permits, once. `None` when shared data fails.
fn read(store: &impl SharedData, key: &str) -> Option<(Table, u32)> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => Some((Table::decode(&bytes), cas)),
        Ok(None) => {
            create_key(store, key, &Table::default().encode()).ok()?;
            match store.get(key) {
                Ok(Some((bytes, cas))) => Some((Table::decode(&bytes), cas)),
                _ => None,
            }
        }
        Err(_) => None,
    }
}

/// The permit key of the breaker key whose state record is `state_key`: `<state key>/p`.
pub fn key(state_key: &str) -> String {
    let mut key = String::with_capacity(state_key.len() + 2);
    key.push_str(state_key);
    key.push_str("/p");
    key
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use filter_common::shared::{Fault, MemoryStore};
    use std::cell::{Cell, RefCell};

    const T: u64 = 1_800_000_000;
    const KEY: &str = "circuit-breaker/cb/b/0/p";

    fn total(store: &MemoryStore, now_s: u64) -> u64 {
        Table::decode(&store.value(KEY).unwrap()).total(now_s)
    }

    #[test]
    fn the_limit_holds_across_vms_and_permits_come_back() {
        let store = MemoryStore::new();
        let (mut a, mut b) = (Ledger::default(), Ledger::default());
        assert!(matches!(
            acquire(&store, &mut a, KEY, 1, 3, T),
            Acquire::Granted { .. }
        ));
        assert!(matches!(
            acquire(&store, &mut b, KEY, 2, 3, T),
            Acquire::Granted { .. }
        ));
        assert!(matches!(
            acquire(&store, &mut a, KEY, 1, 3, T),
            Acquire::Granted { .. }
        ));
        assert_eq!(acquire(&store, &mut b, KEY, 2, 3, T), Acquire::Full);
        assert_eq!(acquire(&store, &mut a, KEY, 1, 3, T), Acquire::Full);
        assert_eq!(total(&store, T), 3);
        release(&store, &mut a, KEY, 1, T);
        assert!(matches!(
            acquire(&store, &mut b, KEY, 2, 3, T),
            Acquire::Granted { .. }
        ));
        for _ in 0..2 {
            release(&store, &mut b, KEY, 2, T);
        }
        release(&store, &mut a, KEY, 1, T);
        assert_eq!(total(&store, T), 0);
        assert_eq!(
            Table::decode(&store.value(KEY).unwrap()),
            Table::default(),
            "entries at 0 are removed"
        );
        assert!(a.is_empty() && b.is_empty());
    }

    #[test]
    fn a_stopped_vm_s_permits_expire_and_leave_the_gauge_once() {
        let store = MemoryStore::new();
        let (mut dead, mut live) = (Ledger::default(), Ledger::default());
        for _ in 0..2 {
            acquire(&store, &mut dead, KEY, 1, 2, T);
        }
        assert_eq!(acquire(&store, &mut live, KEY, 2, 2, T), Acquire::Full);
        // The first VM stops: no release, no heartbeat. Within the TTL it still counts...
        assert_eq!(
            acquire(&store, &mut live, KEY, 2, 2, T + PERMIT_TTL_S - 1),
            Acquire::Full
        );
        // ...after it, no longer, and the write that drops its entry reports its 2 permits once.
        assert_eq!(
            acquire(&store, &mut live, KEY, 2, 2, T + PERMIT_TTL_S),
            Acquire::Granted { expired: 2 }
        );
        assert_eq!(
            acquire(&store, &mut live, KEY, 2, 2, T + PERMIT_TTL_S),
            Acquire::Granted { expired: 0 }
        );
        assert_eq!(total(&store, T + PERMIT_TTL_S), 2);
    }

    #[test]
    fn a_live_vm_keeps_its_permits_by_renewing() {
        let store = MemoryStore::new();
        let (mut a, mut b) = (Ledger::default(), Ledger::default());
        acquire(&store, &mut a, KEY, 1, 1, T);
        // A long call: the timer renews the entry every RENEW_EVERY_MS.
        let mut now = T;
        for _ in 0..10 {
            now += u64::from(RENEW_EVERY_MS) / 1000;
            for k in a.keys() {
                publish(&store, &mut a, &k, 1, now);
            }
            assert_eq!(acquire(&store, &mut b, KEY, 2, 1, now), Acquire::Full);
        }
    }

    #[test]
    fn a_lost_release_is_repaired_by_the_next_write() {
        let store = MemoryStore::new();
        let mut a = Ledger::default();
        acquire(&store, &mut a, KEY, 1, 1, T);
        for _ in 0..RELEASE_ATTEMPTS {
            store.inject(KEY, Fault::CasMismatch);
        }
        release(&store, &mut a, KEY, 1, T);
        assert_eq!(total(&store, T), 1, "the write was lost");
        assert_eq!(a.keys(), vec![KEY.to_string()], "kept to be repaired");
        // The timer's next renewal writes the ledger's count.
        publish(&store, &mut a, KEY, 1, T + 1);
        assert_eq!(total(&store, T + 1), 0);
        assert!(a.keys().is_empty());
        // A failing store on acquire hands out nothing.
        store.inject(KEY, Fault::ReadError);
        assert_eq!(acquire(&store, &mut a, KEY, 1, 5, T), Acquire::Full);
        store.inject(KEY, Fault::WriteError);
        assert_eq!(acquire(&store, &mut a, KEY, 1, 5, T), Acquire::Full);
        assert_eq!(a.count(KEY), 0);
    }

    #[test]
    fn a_missing_key_is_created_empty_before_the_compare_and_swap() {
        let store = MemoryStore::new();
        let mut a = Ledger::default();
        assert!(matches!(
            acquire(&store, &mut a, KEY, 1, 1, T),
            Acquire::Granted { .. }
        ));
        assert_eq!(total(&store, T), 1);
    }

    /// The host's create race, on a key missing at request time: the other VM's whole acquire lands
    /// between this VM's read of "absent" and its create, which writes over it. The lost entry comes
    /// back with the losing VM's next write (here its timer's renewal), as documented on `read`.
    #[test]
    fn the_create_race_loses_an_entry_until_its_owner_writes_again() {
        let other = RefCell::new(Ledger::default());
        let once = Cell::new(true);
        let store = MemoryStore::new();
        store.before_write(|_, s| {
            if once.replace(false) {
                acquire(s, &mut other.borrow_mut(), KEY, 2, 2, T);
            }
        });
        let mut mine = Ledger::default();
        assert!(matches!(
            acquire(&store, &mut mine, KEY, 1, 2, T),
            Acquire::Granted { .. }
        ));
        assert_eq!(other.borrow().count(KEY), 1);
        assert_eq!(total(&store, T), 1, "the other VM's entry was written over");
        publish(&store, &mut other.borrow_mut(), KEY, 2, T + 10);
        assert_eq!(total(&store, T + 10), 2, "and is back after its renewal");
    }

    #[test]
    fn malformed_or_oversized_tables_are_bounded() {
        assert_eq!(Table::decode(&[]), Table::default());
        assert_eq!(Table::decode(&[7, 1, 2]), Table::default());
        let huge = [vec![VERSION], vec![1u8; ENTRY_BYTES * (MAX_ENTRIES + 3)]].concat();
        assert_eq!(Table::decode(&huge).entries.len(), MAX_ENTRIES);
        // A table full of live VMs has no room for one more, but each may still shrink its own.
        let mut t = Table::default();
        for owner in 1..=MAX_ENTRIES as u64 {
            t = t.with_own(owner, 1, T).unwrap().0;
        }
        assert_eq!(t.encode().len(), MAX_VALUE_BYTES);
        assert!(t.with_own(999, 1, T).is_none());
        assert_eq!(
            t.with_own(1, 0, T).unwrap().0.entries.len(),
            MAX_ENTRIES - 1
        );
    }

    /// Two VMs take and return permits in random interleavings, the other VM's whole step landing
    /// between any read and write: the table never says more than the limit, every permit a VM
    /// believes it holds is in the table, and everything returns to 0.
    #[test]
    fn two_vms_racing_never_exceed_the_limit_nor_leak() {
        const LIMIT: u32 = 3;
        for seed in 1..200u64 {
            let ledgers = [
                RefCell::new(Ledger::default()),
                RefCell::new(Ledger::default()),
            ];
            // A deterministic schedule per seed, from the filters' own generator.
            let next = RefCell::new(filter_common::ids::IdGenerator::from_seed(seed));
            let racing = Cell::new(true);
            // One step of VM `vm`: take a permit or give one back, at random.
            let step = |s: &MemoryStore, vm: usize| {
                let Ok(mut ledger) = ledgers[vm].try_borrow_mut() else {
                    return;
                };
                let owner = vm as u64 + 1;
                let take = next.borrow_mut().next_u64().is_multiple_of(2);
                if take || ledger.count(KEY) == 0 {
                    acquire(s, &mut ledger, KEY, owner, LIMIT, T);
                } else {
                    release(s, &mut ledger, KEY, owner, T);
                }
            };
            let store = MemoryStore::new();
            // Created before traffic, as at configuration.
            create_key(&store, KEY, &Table::default().encode()).unwrap();
            store.before_write(|_, s| {
                if racing.get() && next.borrow_mut().next_u64().is_multiple_of(3) {
                    step(s, 1);
                }
            });
            for _ in 0..40 {
                step(&store, 0);
                let t = Table::decode(&store.value(KEY).unwrap());
                assert!(t.total(T) <= u64::from(LIMIT), "seed {seed}");
                for (vm, l) in ledgers.iter().enumerate() {
                    if let Ok(l) = l.try_borrow() {
                        let e = t.entries.iter().find(|e| e.owner == vm as u64 + 1);
                        assert_eq!(
                            e.map_or(0, |e| e.count),
                            l.count(KEY),
                            "seed {seed}: VM {vm}'s entry says what it holds"
                        );
                    }
                }
            }
            racing.set(false);
            for (vm, l) in ledgers.iter().enumerate() {
                let mut l = l.borrow_mut();
                while l.count(KEY) > 0 {
                    release(&store, &mut l, KEY, vm as u64 + 1, T);
                }
            }
            assert_eq!(total(&store, T), 0, "seed {seed}");
        }
    }
}
