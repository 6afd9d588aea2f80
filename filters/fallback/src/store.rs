//! The stale cache's shared-data I/O: a fixed set of slots (`filter_common::keys`), created before
//! traffic, read when a rule serves a stale response, written with compare-and-swap when a good response
//! completes.

use crate::cache::{self, Entry};
use crate::config::{Config, Kind};
use filter_common::host::{self, SharedWrite};

const FILTER: &str = "fallback";

/// The key of the slot `key` lives in.
pub fn slot_key(prefix: &str, key: u128, config: &Config) -> String {
    format!("{prefix}{}", cache::slot(key, config.cache.slots()))
}

/// Creates every cache slot before traffic (empty), so every later write is a real compare-and-swap.
/// Nothing when no rule serves stale responses.
pub fn create_slots(prefix: &str, config: &Config) {
    if !config.rules.iter().any(|r| r.response.kind == Kind::Stale) {
        return;
    }
    for slot in 0..config.cache.slots() {
        let key = format!("{prefix}{slot}");
        if let Err(e) = host::create_shared_key(&key, b"") {
            log::warn!("{FILTER}: could not create cache slot {key}: {e}");
            return;
        }
    }
}

/// The entry in a slot, if it holds a readable one.
pub fn read(slot_key: &str) -> Option<Entry> {
    host::shared_data(slot_key)
        .ok()
        .flatten()
        .and_then(|(bytes, _)| Entry::decode(&bytes))
}

/// A write that happened: whether it replaced another key's entry, and by how many bytes the cache grew.
pub struct Written {
    pub evicted: bool,
    pub bytes_delta: i64,
}

/// Writes `entry` into its slot unless the slot holds the same variant stored moments ago. The write is
/// a compare-and-swap against the value read, so the byte count stays exact when workers race; the loser
/// skips its store (the slot was just refreshed).
pub fn write(slot_key: &str, entry: &Entry) -> Option<Written> {
    let (previous, cas) = match host::shared_data(slot_key).ok()? {
        Some((bytes, cas)) => (Entry::decode(&bytes), cas),
        None => (None, 0),
    };
    if previous
        .as_ref()
        .is_some_and(|p| p.is_recent_copy_of(entry))
    {
        return None;
    }
    match host::set_shared_data(slot_key, &entry.encode(), cas) {
        SharedWrite::Written => {}
        SharedWrite::CasMismatch => return None,
        SharedWrite::Failed(e) => {
            log::warn!("{FILTER}: could not cache a response: {e}");
            return None;
        }
    }
    let before = previous.as_ref().map_or(0, Entry::size);
    Some(Written {
        evicted: previous.is_some_and(|p| p.key != entry.key),
        bytes_delta: i64::try_from(entry.size()).unwrap_or(i64::MAX)
            - i64::try_from(before).unwrap_or(0),
    })
}
