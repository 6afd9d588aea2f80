//! The worst-case shared memory of a configuration: with correlation on, a fixed number of slots, each
//! holding at most one entry of `correlation::MAX_ENTRY_LEN` bytes, and the seed that places request
//! ids in them. Nothing is kept otherwise.

use crate::config::Config;
use crate::correlation::{KEY_PREFIX, MAX_ENTRY_LEN};
use filter_common::config::{parse, ConfigError};
use filter_common::keys::CORRELATION_SEED;
use filter_common::limits::{shared_entry_bytes, slot_table_bytes, MemoryBudget};
use filter_common::slots::Seed;

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
    if config.correlation.enabled {
        budget.add(
            "correlation.slots",
            slot_table_bytes(config.correlation.slots, KEY_PREFIX.len(), MAX_ENTRY_LEN)
                + shared_entry_bytes(CORRELATION_SEED.len(), Seed::default().encode().len()),
        );
    }
    budget
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn correlation_above_the_ceiling_is_refused() {
        for json in [
            &br#"{"correlation": {"enabled": true, "slots": 1048576}}"#[..],
            br#"{"correlation": {"enabled": true}, "maxSharedMemory": 1000}"#,
        ] {
            assert!(parse::<Config>(Some(json)).is_ok());
            assert_eq!(load(Some(json)).unwrap_err().field, "correlation.slots");
        }
    }
    use filter_common::limits::{human, DEFAULT_MAX_SHARED_MEMORY};

    /// The README's figures; `-- --nocapture` prints them.
    #[test]
    fn only_correlation_costs_shared_memory() {
        let off: Config = parse(Some(br#"{"correlation": {"slots": 1048576}}"#)).unwrap();
        assert_eq!(budget(&off).total(), 0);
        let default: Config = parse(Some(br#"{"correlation": {"enabled": true}}"#)).unwrap();
        let total = budget(&default).total();
        println!("4096 slots: {}", human(total));
        assert!(total > 4096 * MAX_ENTRY_LEN as u64 && total < DEFAULT_MAX_SHARED_MEMORY / 8);
        // Every slot at its widest entry, and the seed's entry on top.
        let slots = slot_table_bytes(4096, KEY_PREFIX.len(), MAX_ENTRY_LEN);
        let seed = shared_entry_bytes(CORRELATION_SEED.len(), Seed::default().encode().len());
        assert!(seed > 0);
        assert_eq!(total, slots + seed);
        let fitting = 65_536;
        let c: Config = parse(Some(
            format!(r#"{{"correlation": {{"enabled": true, "slots": {fitting}}}}}"#).as_bytes(),
        ))
        .unwrap();
        println!("{fitting} slots: {}", human(budget(&c).total()));
        let max: Config = parse(Some(
            br#"{"correlation": {"enabled": true, "slots": 1048576}, "maxSharedMemory": "2Gi"}"#,
        ))
        .unwrap();
        println!("1048576 slots: {}", human(budget(&max).total()));
        assert!(budget(&max).total() > DEFAULT_MAX_SHARED_MEMORY);
    }
}
