//! A request's admission: the key's slot and record (claiming a slot for a new key), the overload
//! checks of a call the breaker admitted (the dependency's pushback, the key's permits), and the
//! rejection sent when the call may not go.

use super::outcome::AdmittedCall;
use super::plugin::Plugin;
use super::transitions::{transitioned, update_state};
use crate::config::BreakerConfig;
use crate::matching::Selected;
use crate::metrics::BreakerMetrics;
use crate::overload::{self, Permit, Refusal};
use crate::reject;
use crate::slots::{self, Admission};
use crate::state::{self, Cas, ProbeOutcome};
use crate::store::{self, ADMIT_ATTEMPTS};
use filter_common::host::Host;

/// Finds the key's slot (claiming one if it has none) and applies `on_request` to its record,
/// writing any change with CAS. A key in its home slot reads one record, as before slots had owners.
/// Also gives the record key of the slot it ended in, built once for the whole call.
pub fn admit(
    host: &impl Host,
    plugin: &Plugin,
    b: &BreakerConfig,
    selected: Selected,
    now: u64,
    metrics: &BreakerMetrics,
) -> (Admission, String) {
    let jitter = plugin.jitter_unit();
    let mut last_key = String::new();
    let admission = slots::admit(selected.key, now, b, jitter, |slot, create, change| {
        let key = plugin.keys.state(&b.name, slot);
        let result = store::update_slot(
            host,
            &plugin.keys,
            &key,
            b,
            slot,
            ADMIT_ATTEMPTS,
            create,
            change,
        );
        if let Cas::Written(_, before, Some(after)) = &result {
            transitioned(host, b, slot, before, after, metrics, None);
        }
        last_key = key;
        result
    });
    // `slots::admit` answers with the slot it updated last: `last_key` is that slot's key.
    (admission, last_key)
}

/// No slot for this key: it passes unprotected rather than share another key's state.
pub fn overflowed(host: &impl Host, b: &BreakerConfig, metrics: &BreakerMetrics) {
    metrics.keys_overflow.add_on(host, 1);
    if !metrics.warned_overflow.replace(true) {
        log::warn!(
            "breaker {}: every slot a new key may use is owned by another key; such keys pass unprotected (counted in circuit_breaker_keys_overflow, raise maxKeys)",
            b.name
        );
    }
}

/// The pushback and concurrency checks of a call the breaker admitted (`overload`): the permit the
/// call holds (`None`: no limit to count against), or why it may not go.
pub fn check_overload(
    host: &impl Host,
    plugin: &Plugin,
    b: &BreakerConfig,
    breaker: usize,
    state_key: &str,
    now: u64,
    metrics: &BreakerMetrics,
) -> Result<Option<Permit>, Refusal> {
    let Ok(mut worker) = plugin.worker.try_borrow_mut() else {
        // Never while another step holds the VM's state (callbacks do not nest): admit unlimited.
        return Ok(None);
    };
    let owner = worker.owner;
    overload::admit(
        host,
        &mut worker.ledger,
        b,
        breaker,
        state_key,
        owner,
        now,
        metrics,
    )
}

/// An admitted probe that does not go gives its permit back, deciding nothing.
pub fn return_probe(
    host: &impl Host,
    plugin: &Plugin,
    b: &BreakerConfig,
    probe: &AdmittedCall,
    now: u64,
    metrics: &BreakerMetrics,
) {
    let (slot, key) = (probe.slot, probe.state_key.as_str());
    update_state(host, plugin, b, slot, key, metrics, None, |rec, jitter| {
        state::on_probe_result(rec, probe.gen, ProbeOutcome::Ignored, now, b, jitter)
    });
}

/// Counts an overload refusal under its reason.
pub fn count_refusal(host: &impl Host, refusal: &Refusal, metrics: &BreakerMetrics) {
    if refusal.label == reject::FULL {
        metrics.full.add_on(host, 1);
    } else {
        metrics.pushback.add_on(host, 1);
    }
}

/// The value of the status header on a response the breaker would have rejected (dry run).
pub fn dry_run_mark(b: &BreakerConfig, label: &str) -> String {
    format!("{}; state={label}; dry-run", b.name)
}

/// Answers at once: the request never reaches the upstream. False when the host refused the reply (the
/// stream is gone): the request is resumed rather than left hanging.
pub fn reject(
    host: &impl Host,
    plugin: &Plugin,
    b: &BreakerConfig,
    grpc: bool,
    label: &str,
    retry_at_ns: Option<u64>,
    now: u64,
) -> bool {
    let r = reject::rejection(
        &plugin.config.status_header,
        b,
        grpc,
        label,
        retry_at_ns,
        now,
    );
    let headers: Vec<(&str, &[u8])> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let sent = host.send_local_response(
        r.status,
        r.details,
        &headers,
        r.body.as_bytes(),
        r.grpc_status,
    );
    if sent.is_err() {
        log::warn!("could not send the rejection for breaker {}", b.name);
        let _ = host.resume_request();
        return false;
    }
    true
}
