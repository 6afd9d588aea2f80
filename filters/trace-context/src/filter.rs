//! The proxy-wasm adapter: reads headers once, asks `Propagator` what to do, applies the edits. Every
//! host call goes through `filter_common::host`, which never panics.

use crate::config::{Config, Direction};
use crate::context::TraceContext;
use crate::correlation;
use crate::formats::{w3c, Format};
use crate::headers::{HeaderEdit, RequestHeaders};
use crate::propagation::{Decision, Propagator, Source};
use crate::tracestate::TraceState;
use filter_common::host::{self, MapType};
use filter_common::ids::IdGenerator;
use filter_common::metrics::{tagged_name, Counter};
use filter_common::plugin::load_config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

const FILTER: &str = "trace-context";
const REQUEST_ID: &str = "x-request-id";
const TRACE_RESPONSE: &str = "traceresponse";
/// Envoy's `listener_direction` attribute: 1 inbound, 2 outbound.
const LISTENER_INBOUND: u64 = 1;
const LISTENER_OUTBOUND: u64 = 2;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TraceRoot::default()) });
}}

/// Per-VM state shared by every stream of a worker thread.
struct VmState {
    propagator: Propagator,
    metrics: Metrics,
    ids: RefCell<IdGenerator>,
}

#[derive(Default)]
struct TraceRoot {
    vm: Option<Rc<VmState>>,
}

impl Context for TraceRoot {}

impl RootContext for TraceRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config::<Config>(FILTER) else {
            return false;
        };
        self.vm = Some(Rc::new(VmState {
            metrics: Metrics::define(),
            ids: RefCell::new(IdGenerator::from_entropy(host::now_nanos())),
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
                context.trace_id_hex().as_bytes(),
            );
        }
        if config.trace_response {
            host::set_header(
                MapType::HttpResponseHeaders,
                TRACE_RESPONSE,
                w3c::format_traceparent(&context).as_bytes(),
            );
        }
        Action::Continue
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
        let rid = request_id?;
        let key = correlation::slot_key(rid, config.correlation.slots);
        let (entry, _cas) = host::shared_data(&key).ok()??;
        correlation::decode(&entry, rid, now)
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
            log::warn!("{FILTER}: the host refused to edit request header {edit:?}");
        }
    }
}

/// Bounded compare-and-set retries: another worker writing the same slot at the same moment is rare,
/// and giving up only costs this request its correlation.
const CAS_ATTEMPTS: usize = 4;

/// Stores the inbound context under the request id so the workload's outbound call can be tied to it,
/// unless the slot holds a live entry of the same id with another trace (see `correlation::admit`). The
/// read and the write are one compare-and-set, so of two workers racing for a slot only one writes on
/// what it read. (The host creates a missing key whatever the CAS, so the first write to a slot after
/// Envoy starts cannot be guarded: see the README.)
fn remember(
    vm: &VmState,
    request_id: &[u8],
    context: &TraceContext,
    tracestate: &TraceState,
    now: u64,
) {
    let config = vm.propagator.config();
    let expiry = now.saturating_add(config.correlation.ttl.as_nanos_u64());
    let Some(entry) = correlation::encode(request_id, context, tracestate, expiry) else {
        return;
    };
    let key = correlation::slot_key(request_id, config.correlation.slots);
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = match host::shared_data(&key) {
            Ok(Some((value, cas))) => (Some(value), cas),
            Ok(None) => (None, 0),
            Err(e) => {
                log::warn!("{FILTER}: could not read the correlation slot: {e}");
                return;
            }
        };
        let admit = correlation::admit(current.as_deref(), request_id, context.trace_id, now);
        if admit == correlation::Admit::Refuse {
            vm.metrics.correlation_refused.inc();
            return;
        }
        match host::set_shared_data(&key, &entry, cas) {
            host::SharedWrite::Written => {
                if admit == correlation::Admit::Evict {
                    vm.metrics.correlation_evicted.inc();
                }
                return;
            }
            host::SharedWrite::CasMismatch => continue,
            host::SharedWrite::Failed(e) => {
                log::warn!("{FILTER}: could not store the correlation entry: {e}");
                return;
            }
        }
    }
    log::debug!("{FILTER}: correlation slot contended, entry not stored");
}

fn set_filter_state(config: &Config, context: &TraceContext) {
    if !config.filter_state_name.is_empty() {
        host::set_property(
            &[config.filter_state_name.as_str()],
            context.trace_id_hex().as_bytes(),
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

/// Counters, defined once per VM. Names carry Istio-style tags (see `filter_common::metrics`).
struct Metrics {
    extracted: Vec<(Format, Counter)>,
    invalid: Vec<(Format, Counter)>,
    conflicts: Vec<(Format, Counter)>,
    started: Counter,
    restored: Counter,
    outbound_without_context: Counter,
    baggage_dropped: Counter,
    /// Inbound requests refused a correlation slot held by a live entry of the same request id with
    /// another trace.
    correlation_refused: Counter,
    /// Live correlation entries replaced by another request id hashing to the same slot.
    correlation_evicted: Counter,
}

impl Metrics {
    fn define() -> Self {
        let per_format = |base: &str| -> Vec<(Format, Counter)> {
            Format::ALL
                .iter()
                .map(|f| {
                    (
                        *f,
                        Counter::define(&tagged_name(base, &[("format", f.name())])),
                    )
                })
                .collect()
        };
        Metrics {
            extracted: per_format("trace_context_extracted"),
            invalid: per_format("trace_context_invalid"),
            conflicts: per_format("trace_context_conflicts"),
            started: Counter::define("trace_context_started"),
            restored: Counter::define("trace_context_restored"),
            outbound_without_context: Counter::define("trace_context_outbound_without_context"),
            baggage_dropped: Counter::define("trace_context_baggage_dropped"),
            correlation_refused: Counter::define("trace_context_correlation_refused"),
            correlation_evicted: Counter::define("trace_context_correlation_evicted"),
        }
    }

    fn record(&self, decision: &Decision, outbound: bool) {
        match decision.source {
            Source::Extracted(format) => inc(&self.extracted, format),
            Source::Restored => self.restored.inc(),
            Source::Started => self.started.inc(),
        }
        // An outbound call with no context of its own means the workload did not propagate it.
        if outbound && !matches!(decision.source, Source::Extracted(_)) {
            self.outbound_without_context.inc();
        }
        for f in &decision.invalid {
            inc(&self.invalid, *f);
        }
        for f in &decision.conflicting {
            inc(&self.conflicts, *f);
        }
        self.baggage_dropped.add(decision.baggage_dropped as u64);
    }
}

fn inc(counters: &[(Format, Counter)], format: Format) {
    if let Some((_, c)) = counters.iter().find(|(f, _)| *f == format) {
        c.inc();
    }
}
