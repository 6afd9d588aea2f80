//! What an admitted call's response says: the status noted before earlier filters can rewrite it, the
//! dependency's pushback, and at the stream's end the call's classification, recorded in this worker's
//! stripe (or deciding a half-open probe), opening the breaker when the window says so.

use super::plugin::{Clock, Plugin};
use super::transitions::update_state;
use crate::classify::{is_slow, judge, Call, Outcome};
use crate::overload;
use crate::state;
use crate::store;
use crate::window::{evaluate, totals};
use filter_common::failure::is_upstream_answer;
use filter_common::host::{Host, MapType};

/// A call this filter admitted, remembered until the stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedCall {
    pub breaker: usize,
    /// The slot of the call's key, found at admission.
    pub slot: u32,
    /// The slot's record key, built at admission (`keys.state(breaker, slot)`).
    pub state_key: String,
    pub gen: u32,
    pub probe: bool,
    pub grpc: bool,
    pub started_ns: u64,
    /// What the upstream answered, noted before earlier filters could rewrite it.
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    /// Whether the response this filter saw was made in this proxy rather than by the upstream. Noted
    /// with the status: a filter before this one (fallback) may replace the upstream's answer with
    /// its own reply afterwards, and that must not hide the upstream's failure.
    pub local_reply: Option<bool>,
    /// Time to the response headers: what "slow" means (a long download is not a slow dependency).
    pub elapsed_ns: Option<u64>,
}

impl AdmittedCall {
    pub fn new(
        breaker: usize,
        slot: u32,
        state_key: String,
        gen: u32,
        probe: bool,
        grpc: bool,
        now: u64,
    ) -> Self {
        AdmittedCall {
            breaker,
            slot,
            state_key,
            gen,
            probe,
            grpc,
            started_ns: now,
            status: None,
            grpc_status: None,
            local_reply: None,
            elapsed_ns: None,
        }
    }

    /// Notes the response headers: status, gRPC status, time to them and who made them.
    pub fn note_response(&mut self, host: &impl Host, now: u64) {
        self.elapsed_ns = Some(now.saturating_sub(self.started_ns));
        self.status = host.header_number(MapType::HttpResponseHeaders, ":status");
        if self.grpc {
            self.grpc_status = host.header_number(MapType::HttpResponseHeaders, "grpc-status");
        }
        // Envoy's own replies on the way to an upstream (no healthy upstream, timeouts, resets,
        // overflow, a rate limit or denial) are 4xx or 5xx, and gRPC ones a 200 with a grpc-status:
        // a plain answer below 400 is the upstream's and skips the attribute read.
        let plain_success = !self.grpc && self.status.is_some_and(|s| s < 400);
        self.local_reply = Some(!plain_success && made_in_proxy(host));
    }

    /// Notes the response trailers: a gRPC status there is the call's final one.
    pub fn note_trailers(&mut self, host: &impl Host) {
        if let Some(status) = host.header_number(MapType::HttpResponseTrailers, "grpc-status") {
            self.grpc_status = Some(status);
        }
    }
}

/// The response was made by Envoy or a filter, not received from the upstream.
fn made_in_proxy(host: &impl Host) -> bool {
    !is_upstream_answer(host.property(&["response", "code_details"]).as_deref())
}

/// With `maxPushback` on: an upstream answer asking callers to back off (`Retry-After` on a 503 or
/// 429, gRPC `grpc-retry-pushback-ms` in `map`) closes the call's key for the time asked, capped.
pub fn note_pushback(
    host: &impl Host,
    plugin: &Plugin,
    call: &AdmittedCall,
    map: MapType,
    clock: &Clock<'_, impl Host>,
) {
    let Some(b) = plugin.config.breakers.get(call.breaker) else {
        return;
    };
    // Only the upstream speaks for itself: Envoy's and filters' own replies ask nothing.
    if b.max_pushback.0.is_zero() || call.local_reply != Some(false) {
        return;
    }
    let headers = map == MapType::HttpResponseHeaders;
    let retry_after = (headers && matches!(call.status, Some(503 | 429)))
        .then(|| host.header(map, "retry-after"))
        .flatten();
    let grpc_pushback = call
        .grpc
        .then(|| host.header(map, "grpc-retry-pushback-ms"))
        .flatten();
    if retry_after.is_none() && grpc_pushback.is_none() {
        return;
    }
    let now = clock.now();
    let status = headers.then_some(call.status).flatten();
    let since_epoch = std::time::Duration::from_nanos(now);
    let Some(asked) = crate::pushback::asked(
        status,
        retry_after.as_deref(),
        grpc_pushback.as_deref(),
        since_epoch,
    ) else {
        return;
    };
    if overload::note_pushback(host, b, &call.state_key, asked, now) {
        log::debug!(
            "breaker {}: the upstream asked callers to wait {} ms",
            b.name,
            u64::try_from(asked.as_millis()).unwrap_or(u64::MAX)
        );
    }
}

/// Classifies the finished call and records it: a probe decides the half-open breaker; another call goes
/// into this worker's stripe of the closed window it was admitted in. `now`: the response headers' time
/// when they came (the window's clock needs no more precision), else the stream's end.
pub fn record_call(host: &impl Host, plugin: &Plugin, call: &AdmittedCall, now: u64) {
    let (breaker, slot) = (call.breaker, call.slot);
    let (Some(b), Some(metrics)) = (
        plugin.config.breakers.get(breaker),
        plugin.metrics.get(breaker),
    ) else {
        return;
    };
    let finished = Call {
        // No response headers reached this filter: the status Envoy answered with, if any.
        status: call.status.or_else(|| {
            host.property_u64(&["response", "code"])
                .filter(|c| *c != 0)
                .and_then(|c| u16::try_from(c).ok())
        }),
        grpc_status: call.grpc_status,
        response_flags: host.property_u64(&["response", "flags"]).unwrap_or(0),
        local_reply: call.local_reply.unwrap_or_else(|| made_in_proxy(host)),
    };
    let elapsed = call
        .elapsed_ns
        .unwrap_or_else(|| now.saturating_sub(call.started_ns));
    let verdict = judge(&b.classify, &finished, is_slow(b, elapsed));
    match verdict.outcome {
        _ if verdict.cancelled => metrics.cancelled.add_on(host, 1),
        Outcome::Success => metrics.success.add_on(host, 1),
        Outcome::Failure => metrics.failure.add_on(host, 1),
        Outcome::Ignore => metrics.ignored.add_on(host, 1),
    }
    if verdict.slow {
        metrics.slow.add_on(host, 1);
    }
    let key = call.state_key.as_str();
    if call.probe {
        let probe = verdict.probe();
        update_state(host, plugin, b, slot, key, metrics, None, |rec, jitter| {
            state::on_probe_result(rec, call.gen, probe, now, b, jitter)
        });
        return;
    }
    if !verdict.counts_in_window(call.gen) {
        return;
    }
    let failure = verdict.outcome == Outcome::Failure;
    // The window decides after a failed or slow call only: a success lowers both rates and ends
    // every run (one that completes `minimumCalls` is judged at the next failure), so a healthy call
    // publishes its stripe and reads nothing else.
    let decide = failure || verdict.slow;
    let stripes = {
        let Ok(mut worker) = plugin.worker.try_borrow_mut() else {
            return;
        };
        let owner = worker.owner;
        store::record_and_collect(
            host,
            &mut worker.stripes,
            owner,
            &plugin.keys,
            key,
            b,
            store::Finished {
                gen: call.gen,
                now,
                failure,
                slow: verdict.slow,
            },
            decide,
        )
    };
    if !decide {
        return;
    }
    let Some(trip) = evaluate(&totals(&stripes, call.gen, now, b), b) else {
        return;
    };
    // Only a closed breaker of this generation opens (checked under CAS), so a late call cannot re-trip.
    update_state(
        host,
        plugin,
        b,
        slot,
        key,
        metrics,
        Some(trip),
        |rec, jitter| state::on_trip(rec, call.gen, now, b, jitter),
    );
}
