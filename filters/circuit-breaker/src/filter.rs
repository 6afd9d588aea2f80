//! The proxy-wasm adapter. Per request: load the attributes breakers need, read the breaker key's shared
//! record, admit, probe or reject. When the stream ends (`on_log`, where every signal is final): classify,
//! record in this worker's stripe, read the other stripes, and open the breaker when the window says so.
//! Every host call goes through `filter_common::host`, which never panics.

use crate::classify::{classify, Call, Outcome};
use crate::config::{BreakerConfig, Config, Mode};
use crate::matching::{select, Needs, RequestInfo, Selected};
use crate::state::{self, Decision, ProbeOutcome, Record, State};
use crate::window::{evaluate, totals, Stripe, Trip};
use filter_common::host::{self, MapType, SharedWrite};
use filter_common::ids::IdGenerator;
use filter_common::metrics::{tagged_name, Counter, Gauge};
use filter_common::plugin::load_config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

const FILTER: &str = "circuit-breaker";
const KEY_PREFIX: &str = "circuit-breaker/";
const STRIPES_KEY: &str = "circuit-breaker/stripes";
/// Stripes are reused beyond this many VMs (reloads); readers never read more.
const MAX_STRIPES: u32 = 64;
/// Bounded compare-and-swap retries; past them the request is admitted (fail open).
const CAS_ATTEMPTS: u32 = 8;
const GRPC_UNAVAILABLE: i32 = 14;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BreakerRoot::default()) });
}}

thread_local! {
    /// This VM's stripe, claimed once per VM whatever the number of configurations it serves.
    static STRIPE: Cell<Option<u32>> = const { Cell::new(None) };
}

struct Shared {
    config: Config,
    needs: Needs,
    metrics: Vec<BreakerMetrics>,
    ids: RefCell<IdGenerator>,
    stripe: u32,
    /// This worker's stripes by (breaker, slot): the authoritative copy; shared data holds a mirror the
    /// other workers read.
    local: RefCell<HashMap<(usize, u32), Stripe>>,
}

#[derive(Default)]
struct BreakerRoot {
    shared: Option<Rc<Shared>>,
}

impl Context for BreakerRoot {}

impl RootContext for BreakerRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config::<Config>(FILTER) else {
            return false;
        };
        create_state_keys(&config);
        let stripe = STRIPE.with(|s| {
            let id = s.get().unwrap_or_else(claim_stripe);
            s.set(Some(id));
            id
        });
        self.shared = Some(Rc::new(Shared {
            needs: Needs::of(&config),
            metrics: config
                .breakers
                .iter()
                .map(|b| BreakerMetrics::define(&b.name))
                .collect(),
            ids: RefCell::new(IdGenerator::from_entropy(host::now_nanos())),
            stripe,
            local: RefCell::new(HashMap::new()),
            config,
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BreakerStream {
            shared: self.shared.clone(),
            call: None,
            dry_run_mark: None,
            rejected: false,
        }))
    }
}

/// Creates every breaker key's record before traffic, so that every later write is a real
/// compare-and-swap (the host skips the CAS check for a key that does not exist yet). The first VM to
/// configure (Envoy's canary, on the main thread) does it before any worker serves a request.
fn create_state_keys(config: &Config) {
    for b in &config.breakers {
        for slot in 0..b.max_keys {
            let key = state_key(b, slot);
            if let Ok(None) = host::shared_data(&key) {
                let _ = host::set_shared_data(&key, &Record::default().encode(), 0);
            }
        }
    }
}

/// Claims a stripe number with a CAS increment of a shared counter.
fn claim_stripe() -> u32 {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = match host::shared_data(STRIPES_KEY) {
            Ok(Some((v, cas))) => (read_u32(&v), cas),
            Ok(None) => (0, 0),
            Err(_) => break,
        };
        if host::set_shared_data(STRIPES_KEY, &current.wrapping_add(1).to_le_bytes(), cas)
            == SharedWrite::Written
        {
            return current % MAX_STRIPES;
        }
    }
    // Without a claimed stripe this VM uses the last one; sharing a stripe loses some counts, never safety.
    MAX_STRIPES - 1
}

fn read_u32(v: &[u8]) -> u32 {
    v.first_chunk::<4>().map_or(0, |b| u32::from_le_bytes(*b))
}

fn state_key(b: &BreakerConfig, slot: u32) -> String {
    format!("{KEY_PREFIX}{}/{slot}", b.name)
}

fn stripe_key(b: &BreakerConfig, slot: u32, stripe: u32) -> String {
    format!("{KEY_PREFIX}{}/{slot}/w/{stripe}", b.name)
}

/// A call this filter admitted, remembered until the stream ends.
struct AdmittedCall {
    selected: Selected,
    gen: u32,
    probe: bool,
    grpc: bool,
}

struct BreakerStream {
    shared: Option<Rc<Shared>>,
    call: Option<AdmittedCall>,
    /// Dry-run: the header value marking a response the breaker would have rejected.
    dry_run_mark: Option<String>,
    /// This stream was answered by our own rejection.
    rejected: bool,
}

impl Context for BreakerStream {}

impl HttpContext for BreakerStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        let info = load_request_info(&shared.needs);
        let Some(selected) = select(&shared.config, &info) else {
            return Action::Continue;
        };
        let (Some(b), Some(metrics)) = (
            shared.config.breakers.get(selected.breaker),
            shared.metrics.get(selected.breaker),
        ) else {
            return Action::Continue;
        };
        let grpc = host::header(MapType::HttpRequestHeaders, "content-type")
            .is_some_and(|ct| ct.starts_with(b"application/grpc"));
        let now = host::now_nanos();
        let decision = match b.mode {
            Mode::Disabled => return Action::Continue,
            Mode::ForcedOpen => {
                metrics.rejected.inc();
                self.reject(&shared, b, grpc, "forced-open", None, now);
                return Action::Pause;
            }
            Mode::Normal | Mode::DryRun => admit(&shared, b, selected.slot, now, metrics),
        };
        match decision {
            Decision::Admit { gen } => {
                self.call = Some(AdmittedCall {
                    selected,
                    gen,
                    probe: false,
                    grpc,
                });
            }
            Decision::Probe { gen } => {
                metrics.probe.inc();
                self.call = Some(AdmittedCall {
                    selected,
                    gen,
                    probe: true,
                    grpc,
                });
            }
            Decision::Reject { state, retry_at_ns } => {
                let label = state_label(state);
                if b.mode == Mode::DryRun {
                    metrics.would_reject.inc();
                    self.dry_run_mark = Some(format!("{}; state={label}; dry-run", b.name));
                    // Not recorded: only calls admitted by a closed breaker (or probes) decide.
                    return Action::Continue;
                }
                metrics.rejected.inc();
                self.reject(&shared, b, grpc, label, Some(retry_at_ns), now);
                return Action::Pause;
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let (Some(mark), Some(shared)) = (&self.dry_run_mark, &self.shared) {
            host::set_header(
                MapType::HttpResponseHeaders,
                &shared.config.status_header,
                mark.as_bytes(),
            );
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.rejected {
            return;
        }
        if let (Some(shared), Some(call)) = (self.shared.clone(), self.call.take()) {
            record_call(&shared, &call);
        }
    }
}

impl BreakerStream {
    /// Answers at once: the request never reaches the upstream.
    fn reject(
        &mut self,
        shared: &Shared,
        b: &BreakerConfig,
        grpc: bool,
        label: &str,
        retry_at_ns: Option<u64>,
        now: u64,
    ) {
        self.rejected = true;
        let status_value = format!("{}; state={label}", b.name);
        let retry_after = retry_at_ns.map(|at| {
            at.saturating_sub(now)
                .div_ceil(1_000_000_000)
                .max(1)
                .to_string()
        });
        let mut headers: Vec<(&str, &[u8])> = vec![(
            shared.config.status_header.as_str(),
            status_value.as_bytes(),
        )];
        if let (true, Some(secs)) = (b.retry_after, &retry_after) {
            headers.push(("retry-after", secs.as_bytes()));
        }
        if b.envoy_overloaded {
            headers.push(("x-envoy-overloaded", b"true"));
        }
        let message = format!("circuit breaker '{}' is {label}", b.name);
        let sent = if grpc {
            host::send_local_response(
                200,
                "circuit_breaker_open",
                &headers,
                message.as_bytes(),
                GRPC_UNAVAILABLE,
            )
        } else {
            headers.push(("content-type", b"text/plain"));
            let body = format!("{message}\n");
            host::send_local_response(
                b.reject_status,
                "circuit_breaker_open",
                &headers,
                body.as_bytes(),
                -1,
            )
        };
        if !sent {
            // The stream is gone or the host refused: let it continue rather than hang.
            log::warn!(
                "{FILTER}: could not send the rejection for breaker {}",
                b.name
            );
            self.rejected = false;
            host::resume_request();
        }
    }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half-open",
    }
}

fn load_request_info(needs: &Needs) -> RequestInfo {
    let text = |bytes: Option<Vec<u8>>| bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
    let req = |name: &str| text(host::header(MapType::HttpRequestHeaders, name));
    RequestInfo {
        cluster: if needs.cluster {
            text(host::property(&["xds", "cluster_name"]))
        } else {
            None
        },
        route: if needs.route {
            text(host::property(&["xds", "route_name"]))
        } else {
            None
        },
        authority: if needs.authority {
            req(":authority")
        } else {
            None
        },
        path: if needs.path { req(":path") } else { None },
        method: if needs.method { req(":method") } else { None },
        headers: needs
            .headers
            .iter()
            .filter_map(|h| host::header(MapType::HttpRequestHeaders, h).map(|v| (h.clone(), v)))
            .collect(),
    }
}

/// Reads the key's record and applies `on_request`, writing any change with CAS.
fn admit(
    shared: &Shared,
    b: &BreakerConfig,
    slot: u32,
    now: u64,
    metrics: &BreakerMetrics,
) -> Decision {
    let key = state_key(b, slot);
    for _ in 0..CAS_ATTEMPTS {
        let Some((record, cas)) = read_record(&key) else {
            break;
        };
        let jitter = jitter_unit(shared);
        let step = state::on_request(&record, now, b, jitter);
        let Some(next) = step.write else {
            return step.decision;
        };
        match host::set_shared_data(&key, &next.encode(), cas) {
            SharedWrite::Written => {
                transitioned(b, slot, &record, &next, metrics, None);
                return step.decision;
            }
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(e) => {
                log::warn!(
                    "{FILTER}: breaker {} could not write its state: {e}",
                    b.name
                );
                break;
            }
        }
    }
    // Fail open: a breaker that cannot read or write its state must not take traffic down. Generation 0
    // matches no record, so the call is counted in metrics but decides nothing.
    Decision::Admit { gen: 0 }
}

fn read_record(key: &str) -> Option<(Record, u32)> {
    match host::shared_data(key) {
        Ok(Some((bytes, cas))) => Some((Record::decode(&bytes).unwrap_or_default(), cas)),
        Ok(None) => Some((Record::default(), 0)),
        Err(_) => None,
    }
}

fn jitter_unit(shared: &Shared) -> f64 {
    let mut ids = shared.ids.borrow_mut();
    (ids.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Classifies the finished call and records it: a probe decides the half-open breaker; another call goes
/// into this worker's stripe of the closed window it was admitted in.
fn record_call(shared: &Shared, call: &AdmittedCall) {
    let Selected { breaker, slot } = call.selected;
    let (Some(b), Some(metrics)) = (
        shared.config.breakers.get(breaker),
        shared.metrics.get(breaker),
    ) else {
        return;
    };
    let status = host::property_u64(&["response", "code"])
        .filter(|c| *c != 0)
        .and_then(|c| u16::try_from(c).ok());
    let finished = Call {
        status,
        grpc_status: if call.grpc {
            host::property_u64(&["response", "grpc_status"]).and_then(|g| u32::try_from(g).ok())
        } else {
            None
        },
        response_flags: host::property_u64(&["response", "flags"]).unwrap_or(0),
    };
    let outcome = classify(&b.classify, &finished);
    let slow = b.slow_call_duration.is_some_and(|limit| {
        host::property_u64(&["request", "duration"]).is_some_and(|d| d > limit.as_nanos_u64())
    });
    match outcome {
        Outcome::Success => metrics.success.inc(),
        Outcome::Failure => metrics.failure.inc(),
        Outcome::Ignore => metrics.ignored.inc(),
    }
    if slow && outcome != Outcome::Ignore {
        metrics.slow.inc();
    }
    let now = host::now_nanos();
    let key = state_key(b, slot);
    if call.probe {
        let probe = match outcome {
            Outcome::Success if !slow => ProbeOutcome::Success,
            Outcome::Ignore => ProbeOutcome::Ignored,
            _ => ProbeOutcome::Failure,
        };
        update_state(shared, b, slot, &key, metrics, None, |rec, jitter| {
            state::on_probe_result(rec, call.gen, probe, now, b, jitter)
        });
        return;
    }
    if outcome == Outcome::Ignore {
        return;
    }
    let Some((record, _)) = read_record(&key) else {
        return;
    };
    if record.state != State::Closed || record.gen != call.gen {
        // Admitted before a state change: it counted in the metrics above, not in today's window.
        return;
    }
    let mine = {
        let mut local = shared.local.borrow_mut();
        let stripe = local
            .entry((breaker, slot))
            .or_insert_with(|| Stripe::new(call.gen, b));
        if stripe.gen != call.gen {
            *stripe = Stripe::new(call.gen, b);
        }
        stripe.record(now, outcome == Outcome::Failure, slow, b);
        stripe.clone()
    };
    // Only this worker writes its stripe: no CAS needed, no contention with other workers.
    let _ = host::set_shared_data(&stripe_key(b, slot, shared.stripe), &mine.encode(), 0);
    let stripes_in_use = host::shared_data(STRIPES_KEY)
        .ok()
        .flatten()
        .map_or(1, |(v, _)| read_u32(&v).clamp(1, MAX_STRIPES));
    let mut all = Vec::with_capacity(stripes_in_use as usize);
    for i in (0..stripes_in_use).filter(|i| *i != shared.stripe) {
        if let Ok(Some((bytes, _))) = host::shared_data(&stripe_key(b, slot, i)) {
            if let Some(s) = Stripe::decode(&bytes) {
                all.push(s);
            }
        }
    }
    all.push(mine);
    let Some(trip) = evaluate(&totals(&all, call.gen, now, b), b) else {
        return;
    };
    update_state(shared, b, slot, &key, metrics, Some(trip), |rec, jitter| {
        state::on_trip(rec, call.gen, now, b, jitter)
    });
}

/// A CAS loop applying `change` to the key's record; the worker whose write lands logs the transition.
fn update_state(
    shared: &Shared,
    b: &BreakerConfig,
    slot: u32,
    key: &str,
    metrics: &BreakerMetrics,
    trip: Option<Trip>,
    change: impl Fn(&Record, f64) -> Option<Record>,
) {
    for _ in 0..CAS_ATTEMPTS {
        let Some((record, cas)) = read_record(key) else {
            return;
        };
        let Some(next) = change(&record, jitter_unit(shared)) else {
            return;
        };
        match host::set_shared_data(key, &next.encode(), cas) {
            SharedWrite::Written => {
                transitioned(b, slot, &record, &next, metrics, trip);
                return;
            }
            SharedWrite::CasMismatch => continue,
            SharedWrite::Failed(e) => {
                log::warn!(
                    "{FILTER}: breaker {} could not write its state: {e}",
                    b.name
                );
                return;
            }
        }
    }
}

/// Logs and counts a state change, once per sidecar (only the writer that won the CAS calls this).
fn transitioned(
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
        State::Open => metrics.to_open.inc(),
        State::HalfOpen => metrics.to_half_open.inc(),
        State::Closed => metrics.to_closed.inc(),
    }
    if from.state == State::Closed {
        metrics.open_keys.add(1);
    } else if to.state == State::Closed {
        metrics.open_keys.add(-1);
    }
    let why = trip.map(|t| format!(": {t}")).unwrap_or_default();
    let key = if b.key_by.is_some() {
        format!(" (key slot {slot})")
    } else {
        String::new()
    };
    log::info!(
        "{FILTER}: breaker {}{key} {} -> {}{why}",
        b.name,
        from.state.label(),
        to.state.label()
    );
}

/// Per-breaker metrics with Istio-style tags (bounded: breaker names come from configuration).
struct BreakerMetrics {
    success: Counter,
    failure: Counter,
    slow: Counter,
    rejected: Counter,
    would_reject: Counter,
    ignored: Counter,
    probe: Counter,
    to_open: Counter,
    to_half_open: Counter,
    to_closed: Counter,
    open_keys: Gauge,
}

impl BreakerMetrics {
    fn define(breaker: &str) -> Self {
        let calls = |outcome: &str| {
            Counter::define(&tagged_name(
                "circuit_breaker_calls",
                &[("breaker", breaker), ("outcome", outcome)],
            ))
        };
        let transitions = |state: &str| {
            Counter::define(&tagged_name(
                "circuit_breaker_transitions",
                &[("breaker", breaker), ("state", state)],
            ))
        };
        BreakerMetrics {
            success: calls("success"),
            failure: calls("failure"),
            slow: calls("slow"),
            rejected: calls("rejected"),
            would_reject: calls("would_reject"),
            ignored: calls("ignored"),
            probe: calls("probe"),
            to_open: transitions("open"),
            to_half_open: transitions("half_open"),
            to_closed: transitions("closed"),
            open_keys: Gauge::define(&tagged_name(
                "circuit_breaker_open",
                &[("breaker", breaker)],
            )),
        }
    }
}
