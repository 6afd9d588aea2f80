//! Writes to a key's record after admission (a trip, a probe's result) and the one log line and count
//! of each state change, made by the one worker whose compare-and-swap landed.

use super::plugin::Plugin;
use crate::config::BreakerConfig;
use crate::metrics::BreakerMetrics;
use crate::state::{Cas, Record, State};
use crate::store::{self, RESULT_ATTEMPTS};
use crate::window::Trip;
use filter_common::host::Host;

/// A CAS loop applying `change` to the key's record; the worker whose write lands logs the transition.
#[allow(clippy::too_many_arguments)]
pub fn update_state(
    host: &impl Host,
    plugin: &Plugin,
    b: &BreakerConfig,
    slot: u32,
    key: &str,
    metrics: &BreakerMetrics,
    trip: Option<Trip>,
    change: impl Fn(&Record, f64) -> Option<Record>,
) {
    let result = store::update(host, key, RESULT_ATTEMPTS, |rec| {
        ((), change(rec, plugin.jitter_unit()))
    });
    match result {
        Cas::Written((), before, Some(after)) => {
            transitioned(host, b, slot, &before, &after, metrics, trip)
        }
        Cas::Written((), _, None) => {}
        Cas::Exhausted(()) | Cas::Failed | Cas::Missing => {
            log::warn!("breaker {} could not record a result in its state", b.name)
        }
    }
}

/// Logs and counts a state change, once per sidecar (only the writer that won the CAS calls this).
pub fn transitioned(
    host: &impl Host,
    b: &BreakerConfig,
    slot: u32,
    from: &Record,
    to: &Record,
    metrics: &BreakerMetrics,
    trip: Option<Trip>,
) {
    if from.state == to.state {
        return;
    }
    match to.state {
        State::Open => metrics.to_open.add_on(host, 1),
        State::HalfOpen => metrics.to_half_open.add_on(host, 1),
        State::Closed => metrics.to_closed.add_on(host, 1),
    }
    if from.state == State::Closed {
        metrics.open_keys.add_on(host, 1);
    } else if to.state == State::Closed {
        metrics.open_keys.add_on(host, -1);
    }
    let why = trip.map(|t| format!(": {t}")).unwrap_or_default();
    let key = if b.key_by.is_some() {
        format!(" (key slot {slot})")
    } else {
        String::new()
    };
    log::info!(
        "breaker {}{key} {} -> {}{why}",
        b.name,
        from.state.label(),
        to.state.label()
    );
}
