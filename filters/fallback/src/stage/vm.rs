//! What every stream of one VM shares, built once when the configuration loads: the rules, the request
//! attributes they match on, the cache's shared-data names and seed, the metrics.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store;
use filter_common::host::Host;
use filter_common::ids::IdGenerator;
use filter_common::keyed_hash::Seed;
use filter_common::matching::Needs;
use filter_common::plugin::load_config_from;
use filter_common::{keys, slots};

pub struct Vm {
    pub config: Config,
    /// The request attributes the rules' matches read.
    pub needs: Needs,
    pub cache_prefix: String,
    /// The cache slots' hash seed (shared by every worker of the sidecar).
    pub seed: Seed,
    pub metrics: Metrics,
}

impl Vm {
    /// Reads, checks and sets up the plugin configuration; `None` (one log line naming the field) when
    /// it is invalid, and the filter refuses it.
    pub fn load(host: &impl Host) -> Option<Vm> {
        let config = load_config_from(host, crate::memory::load)?;
        Some(Vm::new(host, config))
    }

    /// The VM's state for `config`: the cache slots are created before traffic and the sidecar's seed
    /// is agreed on through shared data (both only when a rule serves stale responses).
    pub fn new(host: &impl Host, config: Config) -> Vm {
        let mut needs = Needs::default();
        for r in &config.rules {
            needs.add_match(&r.matcher);
        }
        let root_id = host.plugin_root_id();
        let cache_prefix = keys::fallback_cache_prefix(&root_id);
        store::create_slots(host, &cache_prefix, &config);
        let seed = if config.serves_stale() {
            let key = keys::fallback_seed(&root_id);
            let fresh = Seed::random(&mut IdGenerator::from_entropy(host.now_nanos()));
            slots::shared_seed(host, &key, fresh).unwrap_or_else(|| {
                log::warn!("no shared cache-slot seed; slots are chosen with a fixed one");
                Seed::default()
            })
        } else {
            Seed::default()
        };
        Vm {
            needs,
            cache_prefix,
            seed,
            metrics: Metrics::define(host, &config),
            config,
        }
    }

    /// The shared-data key of the slot a cache key lives in.
    pub fn slot_key(&self, key: u128) -> String {
        store::slot_key(&self.cache_prefix, &self.seed, key, &self.config)
    }
}
