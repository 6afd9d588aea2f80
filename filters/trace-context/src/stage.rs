//! Trace-context's request path over the host seam: what the filter does in each stream callback, as
//! plain Rust over `host: &impl Host`, so it runs natively over `FakeHost` (tests, `examples/
//! request_path.rs`) exactly as it runs in Envoy over `ProxyHost`.
//!
//! Request headers: read every header once, decide the context (`Propagator`: extract, translate,
//! restore by `x-request-id` on the outbound side, or start a trace), apply the header edits, count,
//! remember the context by `x-request-id` on the inbound side, write the trace id to filter state.
//! Response headers: the trace id and `traceresponse` of the context forwarded, or of a new trace when
//! the request never reached this filter (a local reply sent by an earlier filter).
//!
//! Every host failure is tolerated: a header or property the host refuses costs only that echo; a
//! shared-data failure costs only correlation; a refused clock reads 0.

use crate::config::{Config, Direction};
use crate::context::TraceContext;
use crate::formats::w3c;
use crate::headers::{HeaderEdit, RequestHeaders};
use crate::metrics::Metrics;
use crate::propagation::{Decision, Propagator};
use crate::store::{self, Remembered};
use filter_common::host::{Action, Host, MapType};
use filter_common::ids::IdGenerator;
use filter_common::slots::Seed;
use filter_common::w3c::TRACERESPONSE;
use std::cell::RefCell;

const REQUEST_ID: &str = "x-request-id";
/// Envoy's `listener_direction` attribute: 1 inbound, 2 outbound.
const LISTENER_INBOUND: u64 = 1;
const LISTENER_OUTBOUND: u64 = 2;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Per-VM state, shared by every stream of a worker thread: built once by `on_configure`.
pub struct Vm {
    propagator: Propagator,
    metrics: Metrics,
    /// Interior mutability because every stream of the VM borrows the VM shared; callbacks never nest.
    ids: RefCell<IdGenerator>,
    /// Places request ids in the correlation slots (`store::seed`).
    seed: Seed,
}

impl Vm {
    /// Creates the correlation slots (when enabled), reads or makes the sidecar's seed and defines the
    /// counters. `ids` seeds from entropy, falling back to the host's clock.
    pub fn configure(host: &impl Host, config: Config) -> Self {
        let ids = IdGenerator::from_entropy(host.now_nanos());
        Self::with_ids(host, config, ids)
    }

    /// [`Vm::configure`] with the id generator given (tests and benchmarks want repeatable ids).
    pub fn with_ids(host: &impl Host, config: Config, mut ids: IdGenerator) -> Self {
        store::create_slots(host, &config);
        let seed = store::seed(host, &config, &mut ids);
        Vm {
            metrics: Metrics::define(host),
            ids: RefCell::new(ids),
            seed,
            propagator: Propagator::new(config),
        }
    }

    pub fn config(&self) -> &Config {
        self.propagator.config()
    }
}

/// One stream's state.
#[derive(Debug, Default)]
pub struct Stream {
    /// The context forwarded, kept for the response (request headers are unreadable by then).
    context: Option<TraceContext>,
}

impl Stream {
    pub fn on_request_headers(&mut self, host: &impl Host, vm: &Vm) -> Action {
        self.context = Some(handle_request(host, vm));
        Action::Continue
    }

    pub fn on_response_headers(&mut self, host: &impl Host, vm: &Vm) -> Action {
        let config = vm.config();
        let context = match &self.context {
            Some(ctx) => ctx.clone(),
            // A local reply sent before our request callback ran (an earlier filter rejected the
            // request): give the caller an id that the access log shows too.
            None => {
                let now_secs = host.now_nanos() / NANOS_PER_SEC;
                let ctx = vm
                    .propagator
                    .start_for_response(&mut vm.ids.borrow_mut(), now_secs);
                set_filter_state(host, config, &ctx);
                ctx
            }
        };
        if !config.response_header.is_empty() {
            set_response_header(host, &config.response_header, &context.trace_id_hex_bytes());
        }
        if config.trace_response {
            set_response_header(host, TRACERESPONSE, &w3c::traceparent_bytes(&context));
        }
        Action::Continue
    }

    /// The context this stream forwarded; `None` before its request headers.
    pub fn context(&self) -> Option<&TraceContext> {
        self.context.as_ref()
    }
}

fn handle_request(host: &impl Host, vm: &Vm) -> TraceContext {
    let config = vm.config();
    let headers = RequestHeaders::from(host.header_map(MapType::HttpRequestHeaders));
    // Read per request: one root context may serve listeners of both directions. Caching it per root
    // context (issue 19) broke the end-to-end test `request_id_correlation_restores_context_across_listeners`
    // on Envoy 1.40: its inbound and outbound listeners, with one plugin configuration, shared a root
    // context.
    let direction = listener_direction(host, config.direction);
    let outbound = direction == Some(LISTENER_OUTBOUND);
    let request_id = headers.get_first(REQUEST_ID);
    // The clock only when something needs it: one host call less on every other request.
    let needs_clock = config.correlation.enabled || vm.propagator.needs_clock();
    let now = if needs_clock { host.now_nanos() } else { 0 };

    let restore = || {
        if !(outbound && config.correlation.enabled) {
            return None;
        }
        store::restore(host, config, &vm.seed, request_id?, now)
    };
    let decision = vm.propagator.decide(
        &headers,
        &mut vm.ids.borrow_mut(),
        outbound,
        now / NANOS_PER_SEC,
        restore,
    );

    apply_edits(host, &decision);
    vm.metrics.record(host, &decision, outbound);
    if direction == Some(LISTENER_INBOUND) && config.correlation.enabled {
        if let Some(rid) = request_id {
            remember(host, vm, rid, &decision, &headers, now);
        }
    }
    set_filter_state(host, config, &decision.context);
    decision.context
}

fn apply_edits(host: &impl Host, decision: &Decision) {
    for edit in decision.edits.iter() {
        let result = match edit {
            HeaderEdit::Set(name, value) => {
                host.set_header(MapType::HttpRequestHeaders, name, value.as_bytes())
            }
            HeaderEdit::Remove(name) => host.remove_header(MapType::HttpRequestHeaders, name),
        };
        if let Err(e) = result {
            let (HeaderEdit::Set(name, _) | HeaderEdit::Remove(name)) = edit;
            log::warn!("the host refused to edit request header {name}: {e}");
        }
    }
}

/// Stores the inbound context under its request id (see `store::remember`), counting refusals and
/// evictions.
fn remember(
    host: &impl Host,
    vm: &Vm,
    request_id: &[u8],
    decision: &Decision,
    headers: &RequestHeaders,
    now: u64,
) {
    let tracestate = vm.propagator.forwarded_tracestate(decision, headers);
    let outcome = store::remember(
        host,
        vm.config(),
        &vm.seed,
        request_id,
        &decision.context,
        &tracestate,
        now,
    );
    match outcome {
        Remembered::Refused => vm.metrics.correlation_refused.add_on(host, 1),
        Remembered::Evicted => vm.metrics.correlation_evicted.add_on(host, 1),
        Remembered::Stored | Remembered::NotStored => {}
    }
}

/// A refused response header costs only that echo: the response goes on without it, and a log line
/// per response would cost more than the echo is worth.
fn set_response_header(host: &impl Host, name: &str, value: &[u8]) {
    let _ = host.set_header(MapType::HttpResponseHeaders, name, value);
}

/// The trace id as filter state, for access logs (`%FILTER_STATE(wasm.NAME)%`). A refusal costs only
/// the access log's field, as for response headers.
fn set_filter_state(host: &impl Host, config: &Config, context: &TraceContext) {
    if !config.filter_state_name.is_empty() {
        let name = config.filter_state_name.as_str();
        let _ = host.set_property(&[name], &context.trace_id_hex_bytes());
    }
}

fn listener_direction(host: &impl Host, configured: Direction) -> Option<u64> {
    match configured {
        Direction::Inbound => Some(LISTENER_INBOUND),
        Direction::Outbound => Some(LISTENER_OUTBOUND),
        // Envoy 1.3x+ names it `xds.listener_direction`; older ones (and Istio's docs) `listener_direction`.
        Direction::Auto => host
            .property_u64(&["xds", "listener_direction"])
            .or_else(|| host.property_u64(&["listener_direction"])),
    }
}

#[cfg(test)]
mod tests;
