//! Envoy's shared data seen through a narrow trait, so the code that reads it and writes it with
//! compare-and-swap (breaker records, stripe leases, the stale cache, correlation slots) asks for no more
//! of the host than it uses and runs natively in unit tests.
//!
//! [`SharedData`] stays a trait of its own beside [`Host`] (which carries the same two calls) because
//! the stores need only these two calls: every `Host` is a `SharedData` (the blanket impl below), and so
//! is [`MemoryStore`], which behaves as proxy-wasm-cpp-host's `SharedData` does (a CAS token checked only
//! on keys that exist, a new token on every write) and fails on demand: CAS mismatches, missing keys,
//! host errors, and another worker's write landing between a read and a write. `fake_host::FakeHost`
//! keeps its shared data in one. [`MemoryStore`] is built only for tests (cargo feature `test-support`).

use crate::host::{Host, HostError, SharedWrite};

/// The host's shared data, as filters named it before the `Host` seam: the one host.
pub use crate::host::ProxyHost as HostSharedData;

/// Shared-data reads and writes.
pub trait SharedData {
    /// The value and its CAS token; `Ok(None)` when the key does not exist.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes `value`; `cas` 0 writes unconditionally, another token only if the key still has it.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite;
}

impl<H: Host> SharedData for H {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.shared_data(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.set_shared_data(key, value, cas)
    }
}

/// Creates `key` with `initial` unless it exists. The host checks a CAS token only on keys that exist,
/// so the filters create their keys before traffic (from the first VM to configure, Envoy's canary on
/// the main thread) to make every later compare-and-swap real.
pub fn create_key(store: &impl SharedData, key: &str, initial: &[u8]) -> Result<(), HostError> {
    match store.get(key)? {
        Some(_) => Ok(()),
        None => match store.set(key, initial, 0) {
            SharedWrite::Failed(e) => Err(e),
            SharedWrite::Written | SharedWrite::CasMismatch => Ok(()),
        },
    }
}

#[cfg(any(test, feature = "test-support"))]
pub use memory::{Fault, MemoryStore};

#[cfg(any(test, feature = "test-support"))]
mod memory {
    use super::SharedData;
    use crate::host::{HostError, SharedWrite};
    use crate::HashMap;
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    /// A failure [`MemoryStore`] returns once, for the next matching call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// The next read of the key fails.
        ReadError,
        /// The next read of the key finds nothing.
        Missing,
        /// The next write of the key fails.
        WriteError,
        /// The next write of the key loses to a write that was not seen.
        CasMismatch,
    }

    /// Another worker's step, run just before a write: `(key, store)`.
    type BeforeWrite<'a> = Box<dyn FnMut(&str, &MemoryStore) + 'a>;

    /// Shared data in memory, with the host's semantics and faults on demand.
    #[derive(Default)]
    pub struct MemoryStore<'a> {
        entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        last_cas: Cell<u32>,
        faults: RefCell<VecDeque<(String, Fault)>>,
        before_write: RefCell<Option<BeforeWrite<'a>>>,
        reads: Cell<u32>,
        writes: Cell<u32>,
    }

    impl<'a> MemoryStore<'a> {
        pub fn new() -> Self {
            Self::default()
        }

        /// Makes the next matching call on `key` fail with `fault` (faults queue in order).
        pub fn inject(&self, key: &str, fault: Fault) {
            self.faults.borrow_mut().push_back((key.to_string(), fault));
        }

        /// Runs `step` before every write from now on (not before writes `step` itself makes): another
        /// worker acting between this worker's read and its write.
        pub fn before_write(&self, step: impl FnMut(&str, &MemoryStore) + 'a) {
            *self.before_write.borrow_mut() = Some(Box::new(step));
        }

        pub fn value(&self, key: &str) -> Option<Vec<u8>> {
            self.entries.borrow().get(key).map(|(v, _)| v.clone())
        }

        pub fn len(&self) -> usize {
            self.entries.borrow().len()
        }

        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Reads and writes so far (host calls a request would make).
        pub fn calls(&self) -> (u32, u32) {
            (self.reads.get(), self.writes.get())
        }

        fn take_fault(&self, key: &str, reading: bool) -> Option<Fault> {
            let mut faults = self.faults.borrow_mut();
            let pos = faults.iter().position(|(k, f)| {
                k == key && reading == matches!(f, Fault::ReadError | Fault::Missing)
            })?;
            faults.remove(pos).map(|(_, f)| f)
        }
    }

    impl SharedData for MemoryStore<'_> {
        fn get(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
            self.reads.set(self.reads.get() + 1);
            match self.take_fault(key, true) {
                Some(Fault::ReadError) => return Err(HostError(1)),
                Some(_) => return Ok(None),
                None => {}
            }
            Ok(self.entries.borrow().get(key).cloned())
        }

        fn set(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
            self.writes.set(self.writes.get() + 1);
            // Taken out while it runs, so its own writes do not call it again.
            let step = self.before_write.borrow_mut().take();
            if let Some(mut step) = step {
                step(key, self);
                *self.before_write.borrow_mut() = Some(step);
            }
            match self.take_fault(key, false) {
                Some(Fault::WriteError) => return SharedWrite::Failed(HostError(1)),
                Some(_) => return SharedWrite::CasMismatch,
                None => {}
            }
            let mut entries = self.entries.borrow_mut();
            if let Some((_, current)) = entries.get(key) {
                if cas != 0 && cas != *current {
                    return SharedWrite::CasMismatch;
                }
            }
            // As the host: a missing key is created whatever the token.
            self.last_cas
                .set(self.last_cas.get().wrapping_add(1).max(1));
            entries.insert(key.to_string(), (value.to_vec(), self.last_cas.get()));
            SharedWrite::Written
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_store_counts_its_keys() {
        let store = MemoryStore::new();
        assert!(store.is_empty());
        assert_eq!(store.len(), 0);
        store.set("a", b"1", 0);
        store.set("b", b"2", 0);
        store.set("a", b"3", 0);
        assert_eq!(store.len(), 2);
        assert!(!store.is_empty());
        assert_eq!(store.value("a"), Some(b"3".to_vec()));
        assert_eq!(store.calls(), (0, 3));
    }

    #[test]
    fn cas_is_checked_only_on_keys_that_exist() {
        let s = MemoryStore::new();
        assert_eq!(s.get("k").unwrap(), None);
        // The host creates a missing key whatever the token: why the filters create keys first.
        assert_eq!(s.set("k", b"a", 42), SharedWrite::Written);
        let (v, cas) = s.get("k").unwrap().unwrap();
        assert_eq!(v, b"a");
        assert_eq!(s.set("k", b"b", cas + 1), SharedWrite::CasMismatch);
        assert_eq!(s.set("k", b"b", cas), SharedWrite::Written);
        assert_eq!(s.set("k", b"c", cas), SharedWrite::CasMismatch);
        assert_eq!(s.set("k", b"c", 0), SharedWrite::Written);
        assert_eq!(s.value("k").unwrap(), b"c");
    }

    #[test]
    fn faults_fire_once_in_order() {
        let s = MemoryStore::new();
        create_key(&s, "k", b"x").unwrap();
        s.inject("k", Fault::ReadError);
        s.inject("k", Fault::CasMismatch);
        s.inject("k", Fault::Missing);
        assert!(s.get("k").is_err());
        assert_eq!(s.get("k").unwrap(), None);
        assert!(s.get("k").unwrap().is_some());
        assert_eq!(s.set("k", b"y", 0), SharedWrite::CasMismatch);
        assert_eq!(s.set("k", b"y", 0), SharedWrite::Written);
        s.inject("k", Fault::WriteError);
        assert!(matches!(s.set("k", b"z", 0), SharedWrite::Failed(_)));
        assert!(create_key(&s, "new", b"").is_ok());
        // An existing key is left as it is.
        create_key(&s, "k", b"other").unwrap();
        assert_eq!(s.value("k").unwrap(), b"y");
    }

    #[test]
    fn another_worker_can_write_between_a_read_and_a_write() {
        let s = MemoryStore::new();
        create_key(&s, "k", b"0").unwrap();
        let (_, cas) = s.get("k").unwrap().unwrap();
        s.before_write(|key, store| {
            if key == "k" && store.value("k").as_deref() == Some(b"0") {
                assert_eq!(store.set("k", b"other", 0), SharedWrite::Written);
            }
        });
        assert_eq!(s.set("k", b"mine", cas), SharedWrite::CasMismatch);
        assert_eq!(s.value("k").unwrap(), b"other");
        assert_eq!(s.calls(), (2, 3));
    }
}
