//! Request-id correlation in Envoy's shared data: a fixed set of slots (`filter_common::keys`), created
//! before traffic, read by the outbound side, claimed with compare-and-set by the inbound side.

use crate::config::Config;
use crate::context::TraceContext;
use crate::correlation::{self, Admit};
use crate::propagation::Restored;
use crate::tracestate::TraceState;
use filter_common::host::{self, SharedWrite};

const FILTER: &str = "trace-context";

/// Bounded compare-and-set retries: another worker writing the same slot at the same moment is rare,
/// and giving up only costs this request its correlation.
const CAS_ATTEMPTS: usize = 4;

/// Creates every slot before traffic (empty), so that every later write is a real compare-and-set:
/// the host checks a CAS token only on keys that exist.
pub fn create_slots(config: &Config) {
    if !config.correlation.enabled {
        return;
    }
    for slot in 0..u64::from(config.correlation.slots) {
        let key = filter_common::keys::correlation_slot(slot);
        if let Err(e) = host::create_shared_key(&key, b"") {
            log::warn!("{FILTER}: could not create correlation slot {key}: {e}");
            return;
        }
    }
}

/// The live context stored under `request_id`, if any.
pub fn restore(config: &Config, request_id: &[u8], now: u64) -> Option<Restored> {
    let key = correlation::slot_key(request_id, config.correlation.slots);
    let (entry, _cas) = host::shared_data(&key).ok()??;
    correlation::decode(&entry, request_id, now)
}

/// What became of an inbound context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Stored,
    /// Stored over a live entry of another request id.
    Evicted,
    /// A live entry holds this request id for another trace: the first writer keeps it.
    Refused,
    /// Not stored: too long to store, the slot contended past the retries, or shared data failed.
    NotStored,
}

/// Stores the inbound context under the request id so the workload's outbound call can be tied to it,
/// unless the slot holds a live entry of the same id with another trace (see `correlation::admit`). The
/// read and the write are one compare-and-set, so of two workers racing for a slot only one writes on
/// what it read.
pub fn remember(
    config: &Config,
    request_id: &[u8],
    context: &TraceContext,
    tracestate: &TraceState,
    now: u64,
) -> Remembered {
    let expiry = now.saturating_add(config.correlation.ttl.as_nanos_u64());
    let Some(entry) = correlation::encode(request_id, context, tracestate, expiry) else {
        return Remembered::NotStored;
    };
    let key = correlation::slot_key(request_id, config.correlation.slots);
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = match host::shared_data(&key) {
            Ok(Some((value, cas))) => (Some(value), cas),
            Ok(None) => (None, 0),
            Err(e) => {
                log::warn!("{FILTER}: could not read the correlation slot: {e}");
                return Remembered::NotStored;
            }
        };
        let admit = correlation::admit(current.as_deref(), request_id, context.trace_id, now);
        if admit == Admit::Refuse {
            return Remembered::Refused;
        }
        match host::set_shared_data(&key, &entry, cas) {
            SharedWrite::Written if admit == Admit::Evict => return Remembered::Evicted,
            SharedWrite::Written => return Remembered::Stored,
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(e) => {
                log::warn!("{FILTER}: could not store the correlation entry: {e}");
                return Remembered::NotStored;
            }
        }
    }
    Remembered::NotStored
}
