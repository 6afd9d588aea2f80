//! Every shared-data key the filters use, in one place. Istio gives every WasmPlugin one shared-data
//! namespace (it sets no `vm_id`), so every family starts with its filter's name; families two plugins
//! of one filter must not share go on with the plugin's root id (Istio's `pluginName`). The filters'
//! READMEs describe the values; the memory budgets (`memory.rs` of each filter) count these keys.

/// Every key of the circuit breaker: `circuit-breaker/<root id>/...`.
#[derive(Debug, Clone)]
pub struct BreakerKeys {
    prefix: String,
    /// The lease table's key, read on every recorded call: built once.
    leases: String,
}

pub const BREAKER_PREFIX: &str = "circuit-breaker/";

/// The memory budgets count keys as if the plugin's root id were this long (Istio's `pluginName`s are
/// short).
pub const ROOT_ID_ALLOWANCE: usize = 64;

impl BreakerKeys {
    pub fn new(root_id: &str) -> BreakerKeys {
        let prefix = format!("{BREAKER_PREFIX}{root_id}/");
        BreakerKeys {
            leases: format!("{prefix}leases"),
            prefix,
        }
    }

    /// The state record of a breaker's key slot: `.../<breaker>/<slot>`.
    pub fn state(&self, breaker: &str, slot: u32) -> String {
        // Built twice per request: without `format!`'s machinery.
        let mut key = String::with_capacity(self.prefix.len() + breaker.len() + 11);
        key.push_str(&self.prefix);
        key.push_str(breaker);
        key.push('/');
        crate::text::push_decimal(&mut key, u64::from(slot));
        key
    }

    /// A window stripe of the key slot whose record is `state_key`: `<state key>/s/<stripe>`. `s/`:
    /// stripes that start with their writer's owner id (modules before stripe leases used `w/`,
    /// without it, so the two never read each other's during an upgrade).
    pub fn stripe(state_key: &str, stripe: usize) -> String {
        let mut key = String::with_capacity(state_key.len() + 6);
        Self::stripe_into(&mut key, state_key, stripe);
        key
    }

    /// [`BreakerKeys::stripe`] written into `key` (cleared first), reusing its allocation.
    pub fn stripe_into(key: &mut String, state_key: &str, stripe: usize) {
        key.clear();
        key.push_str(state_key);
        key.push_str("/s/");
        crate::text::push_decimal(key, stripe as u64);
    }

    /// Which of a breaker's key slots have a record (the circuit breaker's `created.rs`):
    /// `.../<breaker>/created`.
    pub fn created(&self, breaker: &str) -> String {
        format!("{}{breaker}/created", self.prefix)
    }

    /// The stripe lease table: `.../leases`.
    pub fn leases(&self) -> &str {
        &self.leases
    }

    /// The key-fingerprint seed: `.../seed`.
    pub fn seed(&self) -> String {
        format!("{}seed", self.prefix)
    }
}

pub const FALLBACK_PREFIX: &str = "fallback/";

/// The fallback's stale-cache slots: `fallback/<root id>/cache/<slot>`; this is the part before the
/// slot number.
pub fn fallback_cache_prefix(root_id: &str) -> String {
    format!("{FALLBACK_PREFIX}{root_id}/cache/")
}

/// The fallback's cache-slot seed (`keyed_hash`): `fallback/<root id>/seed`.
pub fn fallback_seed(root_id: &str) -> String {
    format!("{FALLBACK_PREFIX}{root_id}/seed")
}

/// Trace-context's request-id correlation slots: `trace-context/correlation/<slot>`. Without the root
/// id: the outbound side restores what the inbound side stored, and outside Istio the two listeners'
/// filters may be configured as two plugins.
pub const CORRELATION_PREFIX: &str = "trace-context/correlation/";

/// The seed that places request ids in the correlation slots (`slots::Seed`), shared like the slots.
pub const CORRELATION_SEED: &str = "trace-context/correlation-seed";

pub fn correlation_slot(slot: u64) -> String {
    format!("{CORRELATION_PREFIX}{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_disjoint_and_carry_the_root_id() {
        let b = BreakerKeys::new("cb");
        let state = b.state("payments", 7);
        assert_eq!(state, "circuit-breaker/cb/payments/7");
        assert_eq!(
            BreakerKeys::stripe(&state, 3),
            "circuit-breaker/cb/payments/7/s/3"
        );
        assert_eq!(b.leases(), "circuit-breaker/cb/leases");
        assert_eq!(b.created("payments"), "circuit-breaker/cb/payments/created");
        assert_eq!(b.seed(), "circuit-breaker/cb/seed");
        assert_eq!(fallback_cache_prefix("fb"), "fallback/fb/cache/");
        assert_eq!(fallback_seed("fb"), "fallback/fb/seed");
        assert_eq!(correlation_slot(12), "trace-context/correlation/12");
    }
}
