//! The proxy-wasm adapter. Per request: load the attributes breakers need, read the breaker key's shared
//! record, admit, probe or reject. On the response headers (and trailers, for gRPC) it notes what the
//! upstream said, before any earlier filter can rewrite it; when the stream ends (`on_log`) it classifies
//! the call, records it in this worker's stripe and opens the breaker when the window says so.
//! Every host call goes through `filter_common::host`, which never panics.
//!
//! Decisions are made elsewhere (`matching`, `slots`, `state`, `classify`, `window`, `reject`; the
//! shared-data loops in `store`). This file is longer than ~300 lines because a call's life spans four
//! callbacks and the transitions it causes are logged and counted here, by the one worker whose
//! compare-and-swap landed.

use crate::classify::{is_slow, judge, Call, Outcome};
use crate::config::{BreakerConfig, Config, Mode};
use crate::matching::{needs, select, Needs, Selected};
use crate::metrics::BreakerMetrics;
use crate::overload::{self, Permit};
use crate::reject;
use crate::slots::{self, Admission, Seed};
use crate::state::{self, Cas, Decision, ProbeOutcome, Record, State};
use crate::store::{self, Keys, ADMIT_ATTEMPTS, RESULT_ATTEMPTS};
use crate::window::{evaluate, totals, Trip};
use filter_common::failure::is_upstream_answer;
use filter_common::host::{self, MapType};
use filter_common::ids::IdGenerator;
use filter_common::plugin::load_config;
use filter_common::shared::HostSharedData;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BreakerRoot::default()) });
}}

struct VmState {
    config: Config,
    needs: Needs,
    keys: Keys,
    /// Keys every key's fingerprint (the same in every worker VM).
    seed: Seed,
    metrics: Vec<BreakerMetrics>,
    ids: RefCell<IdGenerator>,
}

#[derive(Default)]
struct BreakerRoot {
    vm: Option<Rc<VmState>>,
}

impl Context for BreakerRoot {}

/// How often the root context checks whether this VM's stripe lease is due for renewal.
const LEASE_TICK_MS: u32 = 30_000;

impl RootContext for BreakerRoot {
    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm {
            store::renew_lease(&HostSharedData, &vm.keys);
            if overload::holding() {
                let (b, m) = (&vm.config.breakers, &vm.metrics);
                overload::renew(
                    &HostSharedData,
                    store::owner_id(),
                    host::now_nanos(),
                    |k, n| overload::forget_expired(&vm.keys, b, m, k, n),
                );
            }
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config(crate::memory::load) else {
            return false;
        };
        let root_id = host::plugin_root_id();
        let keys = Keys::new(&root_id);
        store::create_tables(&HostSharedData, &keys, &config.breakers);
        let seed = store::key_seed(&HostSharedData, &keys).unwrap_or_else(|| {
            log::warn!("no shared fingerprint seed; keys are fingerprinted with a fixed one");
            Seed::default()
        });
        // Permits held by this VM must be renewed well within their time to live.
        let limited = config
            .breakers
            .iter()
            .any(|b| b.max_concurrent_calls.is_some());
        let tick = if limited {
            crate::permits::RENEW_EVERY_MS
        } else {
            LEASE_TICK_MS
        };
        if !host::set_tick_period(tick) {
            log::warn!("no timer: an idle worker's calls stop counting after 5 minutes");
        }
        self.vm = Some(Rc::new(VmState {
            needs: needs(&config),
            metrics: config
                .breakers
                .iter()
                .map(|b| BreakerMetrics::define(&b.name))
                .collect(),
            ids: RefCell::new(IdGenerator::from_entropy(host::now_nanos())),
            keys,
            seed,
            config,
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BreakerStream {
            vm: self.vm.clone(),
            call: None,
            dry_run_mark: None,
            rejected: false,
            permit: None,
        }))
    }
}

/// A call this filter admitted, remembered until the stream ends.
struct AdmittedCall {
    breaker: usize,
    /// The slot of the call's key, found at admission.
    slot: u32,
    gen: u32,
    probe: bool,
    grpc: bool,
    started_ns: u64,
    /// What the upstream answered, noted before earlier filters could rewrite it.
    status: Option<u16>,
    grpc_status: Option<u32>,
    /// Whether the response this filter saw was made in this proxy rather than by the upstream. Noted
    /// with the status: a filter before this one (fallback) may replace the upstream's answer with
    /// its own reply afterwards, and that must not hide the upstream's failure.
    local_reply: Option<bool>,
    /// Time to the response headers: what "slow" means (a long download is not a slow dependency).
    elapsed_ns: Option<u64>,
}

struct BreakerStream {
    vm: Option<Rc<VmState>>,
    call: Option<AdmittedCall>,
    /// Dry-run: the header value marking a response the breaker would have rejected.
    dry_run_mark: Option<String>,
    /// This stream was answered by our own rejection.
    rejected: bool,
    /// The call's permit (`maxConcurrentCalls`), given back when the stream ends.
    permit: Option<Permit>,
}

impl Context for BreakerStream {}

impl HttpContext for BreakerStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            return Action::Continue;
        };
        let info = filter_common::request::load(&vm.needs);
        let Some(selected) = select(&vm.config, &info, &vm.seed) else {
            return Action::Continue;
        };
        let (Some(b), Some(metrics)) = (
            vm.config.breakers.get(selected.breaker),
            vm.metrics.get(selected.breaker),
        ) else {
            return Action::Continue;
        };
        if b.mode == Mode::Disabled {
            return Action::Continue;
        }
        let grpc = host::header(MapType::HttpRequestHeaders, "content-type")
            .is_some_and(|ct| filter_common::matching::is_grpc_content_type(&ct));
        let now = host::now_nanos();
        if b.mode == Mode::ForcedOpen {
            metrics.rejected.inc();
            self.reject(&vm, b, grpc, "forced-open", None, now);
            return Action::Pause;
        }
        let (slot, decision) = match admit(&vm, b, selected, now, metrics) {
            Admission::Slot(slot, decision) => (slot, decision),
            // No slot for this key: it passes unprotected rather than share another key's state.
            Admission::Overflow => {
                metrics.keys_overflow.inc();
                if !metrics.warned_overflow.replace(true) {
                    log::warn!(
                        "breaker {}: every slot a new key may use is owned by another key; such keys pass unprotected (counted in circuit_breaker_keys_overflow, raise maxKeys)",
                        b.name
                    );
                }
                return Action::Continue;
            }
        };
        let admitted = |gen, probe| AdmittedCall {
            breaker: selected.breaker,
            slot,
            gen,
            probe,
            grpc,
            started_ns: now,
            status: None,
            grpc_status: None,
            local_reply: None,
            elapsed_ns: None,
        };
        match decision {
            Decision::Admit { gen } => self.call = Some(admitted(gen, false)),
            Decision::Probe { gen } => {
                metrics.probe.inc();
                self.call = Some(admitted(gen, true));
            }
            Decision::Reject { state, retry_at_ns } => {
                let label = state.header_label();
                if b.mode == Mode::DryRun {
                    metrics.would_reject.inc();
                    self.dry_run_mark = Some(format!("{}; state={label}; dry-run", b.name));
                    // Not recorded: only calls admitted by a closed breaker (or probes) decide.
                    return Action::Continue;
                }
                metrics.rejected.inc();
                self.reject(&vm, b, grpc, label, Some(retry_at_ns), now);
                return Action::Pause;
            }
        }
        if overload::enabled(b) {
            return self.check_overload(&vm, b, selected.breaker, slot, grpc, now, metrics);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(call) = self.call.as_mut() {
            call.elapsed_ns = Some(host::now_nanos().saturating_sub(call.started_ns));
            call.status = host::header_number(MapType::HttpResponseHeaders, ":status");
            if call.grpc {
                call.grpc_status = host::header_number(MapType::HttpResponseHeaders, "grpc-status");
            }
            // Envoy's own replies on the way to an upstream (no healthy upstream, timeouts, resets,
            // overflow, a rate limit or denial) are 4xx or 5xx, and gRPC ones a 200 with a
            // grpc-status: a plain answer below 400 is the upstream's and skips the attribute read.
            let plain_success = !call.grpc && call.status.is_some_and(|s| s < 400);
            call.local_reply = Some(!plain_success && made_in_proxy());
        }
        self.note_pushback(MapType::HttpResponseHeaders);
        if let (Some(mark), Some(vm)) = (&self.dry_run_mark, &self.vm) {
            host::set_header(
                MapType::HttpResponseHeaders,
                &vm.config.status_header,
                mark.as_bytes(),
            );
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(call) = self.call.as_mut().filter(|c| c.grpc) {
            if let Some(status) = host::header_number(MapType::HttpResponseTrailers, "grpc-status")
            {
                call.grpc_status = Some(status);
            }
        }
        if self.call.as_ref().is_some_and(|c| c.grpc) {
            self.note_pushback(MapType::HttpResponseTrailers);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.release_permit();
        if !self.rejected {
            if let (Some(vm), Some(call)) = (self.vm.clone(), self.call.take()) {
                record_call(&vm, &call);
            }
        }
        filter_common::host::stream_end();
    }
}

impl Drop for BreakerStream {
    /// A stream that ends without `on_log` (the host skipped it) still gives its permit back.
    fn drop(&mut self) {
        self.release_permit();
    }
}

impl BreakerStream {
    /// Gives the call's permit back, once: from `on_log` or the drop, whichever comes first.
    fn release_permit(&mut self) {
        if let (Some(permit), Some(vm)) = (self.permit.take(), &self.vm) {
            let now = host::now_nanos();
            overload::release(&HostSharedData, permit, store::owner_id(), now, &vm.metrics);
        }
    }

    /// The pushback and concurrency checks of a call the breaker admitted (`overload`).
    #[allow(clippy::too_many_arguments)]
    fn check_overload(
        &mut self,
        vm: &VmState,
        b: &BreakerConfig,
        breaker: usize,
        slot: u32,
        grpc: bool,
        now: u64,
        metrics: &BreakerMetrics,
    ) -> Action {
        let state_key = vm.keys.state(&b.name, slot);
        let owner = store::owner_id();
        let refusal =
            match overload::admit(&HostSharedData, b, breaker, &state_key, owner, now, metrics) {
                Ok(permit) => {
                    self.permit = permit;
                    return Action::Continue;
                }
                Err(refusal) => refusal,
            };
        let label = refusal.label;
        if b.mode == Mode::DryRun {
            metrics.would_reject.inc();
            self.dry_run_mark = Some(format!("{}; state={label}; dry-run", b.name));
            return Action::Continue;
        }
        // The call does not go: not recorded, and a probe permit it took is given back.
        if let Some(call) = self.call.take().filter(|c| c.probe) {
            update_state(vm, b, slot, &state_key, metrics, None, |rec, jitter| {
                state::on_probe_result(rec, call.gen, ProbeOutcome::Ignored, now, b, jitter)
            });
        }
        if label == reject::FULL {
            metrics.full.inc();
        } else {
            metrics.pushback.inc();
        }
        self.reject(vm, b, grpc, label, Some(refusal.retry_at_ns), now);
        Action::Pause
    }

    /// With `maxPushback` on: an upstream answer asking callers to back off (`Retry-After` on a 503 or
    /// 429, gRPC `grpc-retry-pushback-ms` in `map`) closes the call's key for the time asked, capped.
    fn note_pushback(&self, map: MapType) {
        let (Some(vm), Some(call)) = (&self.vm, &self.call) else {
            return;
        };
        let Some(b) = vm.config.breakers.get(call.breaker) else {
            return;
        };
        // Only the upstream speaks for itself: Envoy's and filters' own replies ask nothing.
        if b.max_pushback.0.is_zero() || call.local_reply != Some(false) {
            return;
        }
        let headers = map == MapType::HttpResponseHeaders;
        let retry_after = (headers && matches!(call.status, Some(503 | 429)))
            .then(|| host::header(map, "retry-after"))
            .flatten();
        let grpc_pushback = call
            .grpc
            .then(|| host::header(map, "grpc-retry-pushback-ms"))
            .flatten();
        if retry_after.is_none() && grpc_pushback.is_none() {
            return;
        }
        let now = host::now_nanos();
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
        let state_key = vm.keys.state(&b.name, call.slot);
        if overload::note_pushback(&HostSharedData, b, &state_key, asked, now) {
            log::debug!(
                "breaker {}: the upstream asked callers to wait {} ms",
                b.name,
                u64::try_from(asked.as_millis()).unwrap_or(u64::MAX)
            );
        }
    }

    /// Answers at once: the request never reaches the upstream.
    fn reject(
        &mut self,
        vm: &VmState,
        b: &BreakerConfig,
        grpc: bool,
        label: &str,
        retry_at_ns: Option<u64>,
        now: u64,
    ) {
        self.rejected = true;
        let r = reject::rejection(&vm.config.status_header, b, grpc, label, retry_at_ns, now);
        let headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let sent = host::send_local_response(
            r.status,
            r.details,
            &headers,
            r.body.as_bytes(),
            r.grpc_status,
        );
        if !sent {
            // The stream is gone or the host refused: let it continue rather than hang.
            log::warn!("could not send the rejection for breaker {}", b.name);
            self.rejected = false;
            host::resume_request();
        }
    }
}

/// Finds the key's slot (claiming one if it has none) and applies `on_request` to its record,
/// writing any change with CAS. A key in its home slot reads one record, as before slots had owners.
fn admit(
    vm: &VmState,
    b: &BreakerConfig,
    selected: Selected,
    now: u64,
    metrics: &BreakerMetrics,
) -> Admission {
    let jitter = jitter_unit(vm);
    slots::admit(selected.key, now, b, jitter, |slot, create, change| {
        let result = store::update_slot(
            &HostSharedData,
            &vm.keys,
            b,
            slot,
            ADMIT_ATTEMPTS,
            create,
            change,
        );
        if let Cas::Written(_, before, Some(after)) = &result {
            transitioned(b, slot, before, after, metrics, None);
        }
        result
    })
}

fn jitter_unit(vm: &VmState) -> f64 {
    let mut ids = vm.ids.borrow_mut();
    (ids.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// The response was made by Envoy or a filter, not received from the upstream.
fn made_in_proxy() -> bool {
    !is_upstream_answer(host::property(&["response", "code_details"]).as_deref())
}

/// Classifies the finished call and records it: a probe decides the half-open breaker; another call goes
/// into this worker's stripe of the closed window it was admitted in.
fn record_call(vm: &VmState, call: &AdmittedCall) {
    let (breaker, slot) = (call.breaker, call.slot);
    let (Some(b), Some(metrics)) = (vm.config.breakers.get(breaker), vm.metrics.get(breaker))
    else {
        return;
    };
    // The response headers' time when they came (one host call fewer): the window's clock needs no
    // more precision than that.
    let now = match call.elapsed_ns {
        Some(elapsed) => call.started_ns.saturating_add(elapsed),
        None => host::now_nanos(),
    };
    let finished = Call {
        // No response headers reached this filter: the status Envoy answered with, if any.
        status: call.status.or_else(|| {
            host::property_u64(&["response", "code"])
                .filter(|c| *c != 0)
                .and_then(|c| u16::try_from(c).ok())
        }),
        grpc_status: call.grpc_status,
        response_flags: host::property_u64(&["response", "flags"]).unwrap_or(0),
        local_reply: call.local_reply.unwrap_or_else(made_in_proxy),
    };
    let elapsed = call
        .elapsed_ns
        .unwrap_or_else(|| now.saturating_sub(call.started_ns));
    let verdict = judge(&b.classify, &finished, is_slow(b, elapsed));
    match verdict.outcome {
        _ if verdict.cancelled => metrics.cancelled.inc(),
        Outcome::Success => metrics.success.inc(),
        Outcome::Failure => metrics.failure.inc(),
        Outcome::Ignore => metrics.ignored.inc(),
    }
    if verdict.slow {
        metrics.slow.inc();
    }
    let key = vm.keys.state(&b.name, slot);
    if call.probe {
        let probe = verdict.probe();
        update_state(vm, b, slot, &key, metrics, None, |rec, jitter| {
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
    let stripes = store::record_and_collect(
        &HostSharedData,
        store::owner_id(),
        &vm.keys,
        &key,
        b,
        store::Finished {
            gen: call.gen,
            now,
            failure,
            slow: verdict.slow,
        },
        decide,
    );
    if !decide {
        return;
    }
    let Some(trip) = evaluate(&totals(&stripes, call.gen, now, b), b) else {
        return;
    };
    // Only a closed breaker of this generation opens (checked under CAS), so a late call cannot re-trip.
    update_state(vm, b, slot, &key, metrics, Some(trip), |rec, jitter| {
        state::on_trip(rec, call.gen, now, b, jitter)
    });
}

/// A CAS loop applying `change` to the key's record; the worker whose write lands logs the transition.
fn update_state(
    vm: &VmState,
    b: &BreakerConfig,
    slot: u32,
    key: &str,
    metrics: &BreakerMetrics,
    trip: Option<Trip>,
    change: impl Fn(&Record, f64) -> Option<Record>,
) {
    let result = store::update(&HostSharedData, key, RESULT_ATTEMPTS, |rec| {
        ((), change(rec, jitter_unit(vm)))
    });
    match result {
        Cas::Written((), before, Some(after)) => {
            transitioned(b, slot, &before, &after, metrics, trip)
        }
        Cas::Written((), _, None) => {}
        Cas::Exhausted(()) | Cas::Failed | Cas::Missing => {
            log::warn!("breaker {} could not record a result in its state", b.name)
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
        "breaker {}{key} {} -> {}{why}",
        b.name,
        from.state.label(),
        to.state.label()
    );
}
