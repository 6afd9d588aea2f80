//! The worst-case shared memory of a configuration: the stale-if-error cache is a fixed number of slots
//! (`cache.maxBytes / cache.maxBodyBytes`), each holding at most one entry of the largest size the store
//! writes, and the slots' hash seed. Nothing is kept when no rule serves stale responses.

use crate::config::Config;
use filter_common::config::{parse, ConfigError};
use filter_common::keys::ROOT_ID_ALLOWANCE;
use filter_common::limits::{shared_entry_bytes, slot_table_bytes, MemoryBudget};

/// An entry's largest size besides its body: fixed fields, the longest Vary list and content type.
const ENTRY_FIXED: usize =
    crate::cache::FIXED + crate::policy::MAX_VARY_BYTES + crate::policy::MAX_CONTENT_TYPE_LEN;

/// The configuration the filter loads: read and validated, then refused when its worst-case shared
/// memory is above `maxSharedMemory` (the budget needs the store's sizes, so it is checked here, where
/// the filter loads, rather than in `config`).
pub fn load(raw: Option<&[u8]>) -> Result<Config, ConfigError> {
    let config: Config = parse(raw)?;
    budget(&config).check(config.max_shared_memory)?;
    Ok(config)
}

pub fn budget(config: &Config) -> MemoryBudget {
    let mut budget = MemoryBudget::default();
    if config.serves_stale() {
        budget.add(
            "cache.maxBytes",
            slot_table_bytes(
                config.cache.slots(),
                filter_common::keys::fallback_cache_prefix("").len() + ROOT_ID_ALLOWANCE,
                ENTRY_FIXED + config.cache.max_body_bytes,
            ) + shared_entry_bytes(
                filter_common::keys::fallback_seed("").len() + ROOT_ID_ALLOWANCE,
                filter_common::keyed_hash::SEED_LEN,
            ),
        );
    }
    budget
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_above_the_ceiling_is_refused_unless_the_ceiling_is_raised() {
        let big = br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}], "cache": {"maxBytes": 134217728}}"#;
        assert!(parse::<Config>(Some(big)).is_ok());
        let e = load(Some(big)).unwrap_err();
        assert_eq!(e.field, "cache.maxBytes");
        let raised = br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}], "cache": {"maxBytes": 134217728}, "maxSharedMemory": "256Mi"}"#;
        assert_eq!(load(Some(raised)).unwrap().max_shared_memory, 256 << 20);
        // A cache nobody reads costs nothing: without a stale rule, any cache size fits.
        let unused = br#"{"cache": {"maxBytes": 1073741824}, "maxSharedMemory": 1}"#;
        assert!(load(Some(unused)).is_ok());
    }

    /// The estimate covers the largest entry the store can write in every slot, under the longest
    /// root id, and overshoots by at most a byte per slot (Vary's allowance counts a separator more).
    #[test]
    fn the_estimate_is_what_the_largest_entries_take() {
        use crate::cache::Entry;
        use filter_common::keys::{fallback_cache_prefix, fallback_seed};
        let c: Config = parse(Some(
            br#"{"rules": [{"name": "s", "triggers": {"status": "503"},
                "response": {"kind": "stale", "maxBodyBytes": 4096}}],
                "cache": {"maxBytes": 524288, "maxBodyBytes": 4096}}"#,
        ))
        .unwrap();
        let slots = c.cache.slots();
        assert_eq!(slots, 128);
        let vary =
            crate::policy::vary_names(["x".repeat(crate::policy::MAX_VARY_BYTES - 1).as_bytes()])
                .unwrap();
        let largest = Entry {
            key: u128::MAX,
            stored_at_ns: u64::MAX,
            initial_age_s: u32::MAX,
            lifetime_s: u32::MAX,
            serve_for_ns: u64::MAX,
            vary: vary.join(","),
            vary_hash: u128::MAX,
            content_type: "t".repeat(crate::policy::MAX_CONTENT_TYPE_LEN),
            body: vec![0; c.cache.max_body_bytes],
        };
        let root = "r".repeat(ROOT_ID_ALLOWANCE);
        let last_slot = format!("{}{}", fallback_cache_prefix(&root), slots - 1);
        let actual = u64::from(slots) * shared_entry_bytes(last_slot.len(), largest.encode().len())
            + shared_entry_bytes(
                fallback_seed(&root).len(),
                filter_common::keyed_hash::SEED_LEN,
            );
        let estimate = budget(&c).total();
        assert!(
            actual <= estimate && estimate <= actual + u64::from(slots),
            "{actual} estimated {estimate}"
        );
    }

    #[test]
    fn only_a_stale_rule_costs_shared_memory() {
        let c: Config = parse(None).unwrap();
        assert_eq!(budget(&c).total(), 0);
        let c: Config = parse(Some(
            br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}]}"#,
        ))
        .unwrap();
        let total = budget(&c).total();
        // 128 slots of 64 KiB bodies: the configured bytes plus each slot's overhead.
        assert!(total > 8 << 20 && total < 9 << 20, "{total}");
    }
}
