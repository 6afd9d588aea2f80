//! The worst-case shared memory of a configuration, from the sizes the store really writes: per breaker
//! key one state record, and one window stripe per key and leased stripe number, plus per breaker the
//! bitmap of created slots. The stripe count is the
//! lease table's bound (`leases::MAX_STRIPES`), not today's worker count, because stripes of VMs that
//! stopped (restarts, module updates) stay until their number is leased again.

use crate::config::{BreakerConfig, Config};
use crate::created::max_encoded_len;
use crate::leases::MAX_STRIPES;
use crate::state::Record;
use crate::window::Stripe;
use filter_common::config::{parse, ConfigError};
use filter_common::keys::{BREAKER_PREFIX, ROOT_ID_ALLOWANCE};
use filter_common::limits::{decimal_digits, shared_entry_bytes, MemoryBudget};

/// The configuration the filter loads: read and validated, then refused when its worst-case shared
/// memory is above `maxSharedMemory` (the budget needs the store's sizes, so it is checked here, where
/// the filter loads, rather than in `config`).
pub fn load(raw: Option<&[u8]>) -> Result<Config, ConfigError> {
    let config: Config = parse(raw)?;
    budget(&config).check(config.max_shared_memory)?;
    Ok(config)
}

/// The longest state key of a breaker: `circuit-breaker/<root id>/<name>/<slot>`.
fn state_key_len(b: &BreakerConfig) -> usize {
    BREAKER_PREFIX.len() + ROOT_ID_ALLOWANCE + 1 + b.name.len() + 1 + decimal_digits(b.max_keys)
}

/// The largest stripe value of a breaker: the writer's owner id, then a full window and failure run.
fn stripe_value_len(b: &BreakerConfig) -> usize {
    let mut stripe = Stripe::new(0, b);
    stripe.run = vec![0; b.consecutive_failures as usize];
    8 + stripe.encode().len()
}

/// Worst-case bytes of one breaker.
pub fn breaker_bytes(b: &BreakerConfig) -> u64 {
    let key = state_key_len(b);
    let record = shared_entry_bytes(key, Record::default().encode().len());
    let stripe_key = key + "/s/".len() + decimal_digits(MAX_STRIPES as u32);
    let stripes = MAX_STRIPES as u64 * shared_entry_bytes(stripe_key, stripe_value_len(b));
    let created_key =
        BREAKER_PREFIX.len() + ROOT_ID_ALLOWANCE + 1 + b.name.len() + "/created".len();
    let overload = crate::overload::key_bytes(b, key);
    u64::from(b.max_keys)
        .saturating_mul(record.saturating_add(stripes).saturating_add(overload))
        .saturating_add(shared_entry_bytes(created_key, max_encoded_len(b.max_keys)))
}

/// Every breaker's worst case, named by the field that scales it, plus the lease table.
pub fn budget(config: &Config) -> MemoryBudget {
    let mut budget = MemoryBudget::default();
    for (i, b) in config.breakers.iter().enumerate() {
        budget.add(format!("breakers[{i}].maxKeys"), breaker_bytes(b));
    }
    // The lease table and the key fingerprint seed, one entry each.
    let lease_key = BREAKER_PREFIX.len() + ROOT_ID_ALLOWANCE + "/leases".len();
    let seed_key = BREAKER_PREFIX.len() + ROOT_ID_ALLOWANCE + "/seed".len();
    budget.add(
        "maxSharedMemory",
        shared_entry_bytes(lease_key, 1 + 16 * MAX_STRIPES)
            + shared_entry_bytes(seed_key, crate::slots::Seed::default().encode().len()),
    );
    budget
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_above_the_ceiling_is_refused_naming_the_largest_part() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"breakers": [{"name": "a", "maxKeys": 10}, {"name": "b", "maxKeys": 10000}]}"#,
                "breakers[1].maxKeys",
            ),
            (
                br#"{"breakers": [{"name": "a", "maxKeys": 100}], "maxSharedMemory": "1Mi"}"#,
                "breakers[0].maxKeys",
            ),
        ];
        for (json, field) in cases {
            assert!(parse::<Config>(Some(json)).is_ok());
            let e = load(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{e}");
            assert!(e.reason.contains("above maxSharedMemory"), "{e}");
        }
        assert_eq!(load(None).unwrap(), Config::default());
    }

    /// The estimate is the size of what the store writes, built here with the store's own key names and
    /// encodings: the longest root id, the last slot, the last stripe, a full window and failure run, a
    /// full bitmap of created slots, a full lease table.
    #[test]
    fn the_estimate_is_what_the_store_writes_at_its_largest() {
        use crate::created::Created;
        use crate::leases::Table;
        use crate::slots::Seed;
        use crate::store::Keys;
        let c: Config = parse(Some(
            br#"{"breakers": [{"name": "payments", "maxKeys": 99, "consecutiveFailures": 7,
                "window": {"duration": "10s", "buckets": 10}},
                {"name": "b", "maxKeys": 9, "window": {"type": "count", "size": 30}}]}"#,
        ))
        .unwrap();
        let keys = Keys::new(&"r".repeat(ROOT_ID_ALLOWANCE));
        let mut expected_total = 0;
        for b in &c.breakers {
            // 99 and 9 keys: slot numbers have as many digits as maxKeys, so the estimate is exact.
            let state_key = keys.state(&b.name, b.max_keys - 1);
            assert_eq!(state_key_len(b), state_key.len(), "{}", b.name);
            let mut stripe = Stripe::new(u32::MAX, b);
            for i in 0..u64::from(b.window.size.max(b.window.buckets)) {
                stripe.record(i + 1, true, true, b);
            }
            assert_eq!(stripe.run.len(), b.consecutive_failures as usize);
            let mut value = u64::MAX.to_le_bytes().to_vec();
            stripe.encode_into(&mut value);
            assert_eq!(stripe_value_len(b), value.len(), "{}", b.name);
            let stripe_key = Keys::stripe(&state_key, MAX_STRIPES - 1);
            let mut created = Created::default();
            for slot in 0..b.max_keys {
                created.insert(slot);
            }
            let per_key = shared_entry_bytes(state_key.len(), Record::default().encode().len())
                + MAX_STRIPES as u64 * shared_entry_bytes(stripe_key.len(), value.len());
            let expected = u64::from(b.max_keys) * per_key
                + shared_entry_bytes(keys.created(&b.name).len(), created.encode().len());
            assert_eq!(breaker_bytes(b), expected, "{}", b.name);
            expected_total += expected;
        }
        let mut table = Table::default();
        for owner in 1..=MAX_STRIPES as u64 {
            assert!(table.claim(owner, u64::MAX).is_some());
        }
        assert!(table.claim(0, u64::MAX).is_none(), "the table is full");
        expected_total += shared_entry_bytes(keys.leases().len(), table.encode().len())
            + shared_entry_bytes(keys.seed().len(), Seed::default().encode().len());
        assert_eq!(budget(&c).total(), expected_total);
    }

    #[test]
    fn the_default_configuration_fits_with_room() {
        let c: Config = parse(None).unwrap();
        let total = budget(&c).total();
        assert!(total < 16 << 20, "{total}");
        assert!(
            total > 100 * MAX_STRIPES as u64 * 200,
            "counts every stripe: {total}"
        );
    }

    #[test]
    fn the_stripe_estimate_covers_a_full_window() {
        let c: Config = parse(Some(
            br#"{"breakers": [{"name": "c", "window": {"type": "count", "size": 1000}, "consecutiveFailures": 10, "maxKeys": 1}]}"#,
        ))
        .unwrap();
        let b = &c.breakers[0];
        assert!(stripe_value_len(b) >= 8 + 1000 * 9 + 10 * 8);
        assert!(breaker_bytes(b) >= MAX_STRIPES as u64 * 9_000);
    }

    /// The README's table; `-- --nocapture` prints the figures.
    #[test]
    fn documented_figures() {
        let cases: [(&str, &[u8]); 5] = [
            ("defaults", b"{}"),
            (
                "defaults, maxConcurrentCalls and maxPushback",
                br#"{"breakers": [{"name": "default", "keyBy": "cluster", "maxConcurrentCalls": 10, "maxPushback": "10s"}]}"#,
            ),
            (
                "maxKeys 1000",
                br#"{"breakers": [{"name": "a", "maxKeys": 1000}]}"#,
            ),
            (
                "count window 1000",
                br#"{"breakers": [{"name": "a", "window": {"type": "count", "size": 1000}}]}"#,
            ),
            (
                "1000 x 10000",
                br#"{"maxSharedMemory": "1000Gi", "breakers": [{"name": "a", "maxKeys": 10000}]}"#,
            ),
        ];
        let mut totals = Vec::new();
        for (what, json) in cases {
            let c: Config = load(Some(json)).unwrap();
            let mut total = budget(&c).total();
            if what == "1000 x 10000" {
                total = total.saturating_mul(1000);
            }
            println!("{what}: {}", filter_common::limits::human(total));
            totals.push(total);
        }
        let limit = filter_common::limits::DEFAULT_MAX_SHARED_MEMORY;
        assert!(totals[0] < limit / 8 && totals[2] < limit && totals[3] < limit);
        assert!(totals[1] > totals[0] && totals[1] < limit / 8);
        assert!(totals[4] > 100 * limit);
    }
}
