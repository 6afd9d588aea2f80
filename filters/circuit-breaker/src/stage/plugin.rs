//! The state a stream's callbacks share: [`Plugin`], one per configuration (root context), and
//! [`Worker`], one per VM (worker thread), kept across configuration pushes.

use crate::config::Config;
use crate::matching::{needs, Needs};
use crate::metrics::BreakerMetrics;
use crate::overload;
use crate::permits::{self, Ledger};
use crate::store::{self, Keys, Stripes};
use filter_common::host::Host;
use filter_common::ids::IdGenerator;
use filter_common::slots::Seed;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// How often the root context checks whether this VM's stripe lease is due for renewal.
pub const LEASE_TICK_MS: u32 = 30_000;

/// What a VM keeps for as long as it runs, whatever configuration it serves: Envoy gives a
/// configuration push a new root context in the same VM, and the window this worker recorded, the
/// stripe number it leased and the permits its calls hold must outlive the old one.
pub struct Worker {
    /// This VM's lease owner id in the stripe and permit tables (random, never 0).
    pub(super) owner: u64,
    /// This VM's stripes and the stripe numbers it leased (`store`).
    pub(super) stripes: Stripes,
    /// The permits this VM's calls hold, per key (`permits::Ledger`).
    pub(super) ledger: Ledger,
}

impl Worker {
    /// A VM's state before its first call; `now` seeds the owner id when the host has no entropy.
    pub fn new(now: u64) -> Self {
        Worker {
            owner: IdGenerator::from_entropy(now).next_u64() | 1,
            stripes: Stripes::default(),
            ledger: Ledger::default(),
        }
    }

    /// A VM with a given owner id (tests: two workers over one shared data).
    #[cfg(test)]
    pub fn with_owner(owner: u64) -> Self {
        Worker {
            owner: owner | 1,
            ..Worker::new(owner)
        }
    }

    /// Whether this VM's calls hold permits (its timer must run to keep them counted).
    pub fn holds_permits(&self) -> bool {
        !self.ledger.is_empty()
    }
}

/// One configuration's state, shared by every stream of its root context.
pub struct Plugin {
    pub(super) config: Config,
    pub(super) needs: Needs,
    pub(super) keys: Keys,
    /// Keys every key's fingerprint (the same in every worker VM).
    pub(super) seed: Seed,
    pub(super) metrics: Vec<BreakerMetrics>,
    ids: RefCell<IdGenerator>,
    /// Borrowed for one step at a time; callbacks never nest.
    pub(super) worker: Rc<RefCell<Worker>>,
}

impl Plugin {
    /// Loads a validated configuration: creates the shared tables, reads (or makes) the sidecar's
    /// fingerprint seed, defines the metrics and starts the timer.
    pub fn configure(host: &impl Host, config: Config, worker: Rc<RefCell<Worker>>) -> Self {
        let now = host.now_nanos();
        let keys = Keys::new(&host.plugin_root_id());
        store::create_tables(host, &keys, &config.breakers);
        let seed = store::key_seed(host, &keys, now).unwrap_or_else(|| {
            log::warn!("no shared fingerprint seed; keys are fingerprinted with a fixed one");
            Seed::default()
        });
        // Permits held by this VM must be renewed well within their time to live.
        let limited = config
            .breakers
            .iter()
            .any(|b| b.max_concurrent_calls.is_some());
        let tick = if limited {
            permits::RENEW_EVERY_MS
        } else {
            LEASE_TICK_MS
        };
        if host.set_tick_period(tick).is_err() {
            log::warn!("no timer: an idle worker's calls stop counting after 5 minutes");
        }
        Plugin {
            needs: needs(&config),
            metrics: config
                .breakers
                .iter()
                .map(|b| BreakerMetrics::define(host, &b.name))
                .collect(),
            ids: RefCell::new(IdGenerator::from_entropy(now)),
            keys,
            seed,
            config,
            worker,
        }
    }

    /// The root context's timer: renews this VM's stripe lease when due, and its entry in every key
    /// it holds permits in (so they keep counting), repairing any lost write.
    pub fn on_tick(&self, host: &impl Host) {
        let Ok(mut worker) = self.worker.try_borrow_mut() else {
            return;
        };
        let now = host.now_nanos();
        let Worker {
            owner,
            stripes,
            ledger,
        } = &mut *worker;
        store::renew_lease(host, stripes, *owner, &self.keys, now);
        if !ledger.is_empty() {
            overload::renew(host, ledger, *owner, now, |key, n| {
                overload::forget_expired(
                    host,
                    &self.keys,
                    &self.config.breakers,
                    &self.metrics,
                    key,
                    n,
                )
            });
        }
    }

    /// A uniform number in [-1, 1) spreading open durations (`openJitter`).
    pub(super) fn jitter_unit(&self) -> f64 {
        let Ok(mut ids) = self.ids.try_borrow_mut() else {
            return 0.0;
        };
        (ids.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// The host's clock, read at most once per callback (and only when a step needs it).
pub struct Clock<'h, H: Host> {
    host: &'h H,
    now: Cell<Option<u64>>,
}

impl<'h, H: Host> Clock<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Clock {
            host,
            now: Cell::new(None),
        }
    }

    pub fn now(&self) -> u64 {
        match self.now.get() {
            Some(now) => now,
            None => {
                let now = self.host.now_nanos();
                self.now.set(Some(now));
                now
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use filter_common::fake_host::FakeHost;

    /// `openJitter` spreads open durations by `jitter_unit`: uniform in [-1, 1), both signs, so breakers
    /// opened together do not all probe at the same instant.
    #[test]
    fn jitter_units_spread_over_minus_one_to_one() {
        let host = FakeHost::new();
        let config = crate::memory::load(None).unwrap();
        let plugin = Plugin::configure(&host, config, Rc::new(RefCell::new(Worker::new(0))));
        let draws: Vec<f64> = (0..2_000).map(|_| plugin.jitter_unit()).collect();
        assert!(draws.iter().all(|u| (-1.0..1.0).contains(u)), "{draws:?}");
        let (min, max) = draws
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), u| (lo.min(*u), hi.max(*u)));
        assert!(min < -0.9 && max > 0.9, "min {min}, max {max}");
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
    }
}
