//! The proxy-wasm adapter: reads headers once, asks `Propagator` what to do, applies the edits. Every
//! host call goes through `filter_common::host`, which never panics.

use crate::config::{Config, Direction};
use crate::context::TraceContext;
use crate::formats::w3c;
use crate::headers::{HeaderEdit, RequestHeaders};
use crate::metrics::Metrics;
use crate::propagation::{Decision, Propagator};
use crate::store::{self, Remembered};
use crate::tracestate::TraceState;
use filter_common::host::{self, MapType};
use filter_common::ids::IdGenerator;
use filter_common::plugin::load_config;
use filter_common::shared::HostSharedData;
use filter_common::slots::Seed;
use filter_common::w3c::TRACERESPONSE;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

const REQUEST_ID: &str = "x-request-id";
/// Envoy's `listener_direction` attribute: 1 inbound, 2 outbound.
const LISTENER_INBOUND: u64 = 1;
const LISTENER_OUTBOUND: u64 = 2;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TraceRoot::default()) });
}}

/// Per-VM state shared by every stream of a worker thread.
struct VmState {
    propagator: Propagator,
    metrics: Metrics,
    ids: RefCell<IdGenerator>,
    /// Places request ids in the correlation slots (`store::seed`).
    seed: Seed,
}

#[derive(Default)]
struct TraceRoot {
    vm: Option<Rc<VmState>>,
}

impl Context for TraceRoot {}

impl RootContext for TraceRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config(crate::memory::load) else {
            return false;
        };
        store::create_slots(&HostSharedData, &config);
        let mut ids = IdGenerator::from_entropy(host::now_nanos());
        let seed = store::seed(&HostSharedData, &config, &mut ids);
        self.vm = Some(Rc::new(VmState {
            metrics: Metrics::define(),
            ids: RefCell::new(ids),
            seed,
            propagator: Propagator::new(config),
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK requires a context; without a configuration the stream just passes through.
        Some(Box::new(TraceStream {
            vm: self.vm.clone(),
            context: None,
        }))
    }
}

struct TraceStream {
    vm: Option<Rc<VmState>>,
    /// The context forwarded, kept for the response (request headers are unreadable by then).
    context: Option<TraceContext>,
}

impl Context for TraceStream {}

impl HttpContext for TraceStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(vm) = self.vm.clone() {
            self.context = Some(handle_request(&vm));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.as_ref() else {
            return Action::Continue;
        };
        let config = vm.propagator.config();
        let context = match &self.context {
            Some(ctx) => ctx.clone(),
            // A local reply sent before our request callback ran (an earlier filter rejected the
            // request): give the caller an id that the access log shows too.
            None => {
                let ctx = vm.propagator.start_for_response(
                    &mut vm.ids.borrow_mut(),
                    host::now_nanos() / 1_000_000_000,
                );
                set_filter_state(config, &ctx);
                ctx
            }
        };
        if !config.response_header.is_empty() {
            host::set_header(
                MapType::HttpResponseHeaders,
                &config.response_header,
                &context.trace_id_hex_bytes(),
            );
        }
        if config.trace_response {
            host::set_header(
                MapType::HttpResponseHeaders,
                TRACERESPONSE,
                &w3c::traceparent_bytes(&context),
            );
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        filter_common::host::stream_end();
    }
}

fn handle_request(vm: &VmState) -> TraceContext {
    let config = vm.propagator.config();
    let headers =
        RequestHeaders::from_encoded(host::header_map_encoded(MapType::HttpRequestHeaders));
    // Read per request: one root context may serve listeners of both directions.
    let direction = listener_direction(config.direction);
    let outbound = direction == Some(LISTENER_OUTBOUND);
    let request_id = headers.get_first(REQUEST_ID);
    let needs_clock = config.correlation.enabled || vm.propagator.needs_clock();
    let now = if needs_clock { host::now_nanos() } else { 0 };

    let restore = || {
        if !(outbound && config.correlation.enabled) {
            return None;
        }
        store::restore(&HostSharedData, config, &vm.seed, request_id?, now)
    };
    let decision = vm.propagator.decide(
        &headers,
        &mut vm.ids.borrow_mut(),
        outbound,
        now / 1_000_000_000,
        restore,
    );

    apply_edits(&decision);
    vm.metrics.record(&decision, outbound);
    if direction == Some(LISTENER_INBOUND) && config.correlation.enabled {
        if let Some(rid) = request_id {
            let tracestate = vm.propagator.forwarded_tracestate(&decision, &headers);
            remember(vm, rid, &decision.context, &tracestate, now);
        }
    }
    set_filter_state(config, &decision.context);
    decision.context
}

fn apply_edits(decision: &Decision) {
    for edit in decision.edits.iter() {
        let ok = match edit {
            HeaderEdit::Set(name, value) => {
                host::set_header(MapType::HttpRequestHeaders, name, value.as_bytes())
            }
            HeaderEdit::Remove(name) => host::remove_header(MapType::HttpRequestHeaders, name),
        };
        if !ok {
            let (HeaderEdit::Set(name, _) | HeaderEdit::Remove(name)) = edit;
            log::warn!("the host refused to edit request header {name}");
        }
    }
}

/// Stores the inbound context under its request id (see `store::remember`), counting refusals and
/// evictions.
fn remember(
    vm: &VmState,
    request_id: &[u8],
    context: &TraceContext,
    tracestate: &TraceState,
    now: u64,
) {
    match store::remember(
        &HostSharedData,
        vm.propagator.config(),
        &vm.seed,
        request_id,
        context,
        tracestate,
        now,
    ) {
        Remembered::Refused => vm.metrics.correlation_refused.inc(),
        Remembered::Evicted => vm.metrics.correlation_evicted.inc(),
        Remembered::Stored | Remembered::NotStored => {}
    }
}

fn set_filter_state(config: &Config, context: &TraceContext) {
    if !config.filter_state_name.is_empty() {
        host::set_property(
            &[config.filter_state_name.as_str()],
            &context.trace_id_hex_bytes(),
        );
    }
}

fn listener_direction(configured: Direction) -> Option<u64> {
    match configured {
        Direction::Inbound => Some(LISTENER_INBOUND),
        Direction::Outbound => Some(LISTENER_OUTBOUND),
        // Envoy 1.3x+ names it `xds.listener_direction`; older ones (and Istio's docs) `listener_direction`.
        Direction::Auto => host::property_u64(&["xds", "listener_direction"])
            .or_else(|| host::property_u64(&["listener_direction"])),
    }
}
