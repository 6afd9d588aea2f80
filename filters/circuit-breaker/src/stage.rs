//! The breaker's request path over the host seam: what the filter does in each stream callback, as
//! plain Rust over `host: &impl Host`, so it runs natively over `FakeHost` (unit tests,
//! `examples/request_path.rs`) exactly as it runs in Envoy over `ProxyHost`.
//!
//! Request headers: select the breaker and key, admit, probe or reject (`admission`), then take a
//! permit and check the dependency's pushback when the breaker has them. Response headers and
//! trailers: note what the upstream said before any earlier filter can rewrite it, and its pushback
//! (`outcome`). Stream end (`on_log`, or the drop when the host skipped it): give the permit back,
//! classify the call and record it in this worker's stripe, opening the breaker when the window says
//! so. State changes are logged and counted by the one worker whose compare-and-swap landed
//! (`transitions`). The clock is read at most once per callback ([`Clock`]) and passed down.
//!
//! Per-configuration state is a [`Plugin`]; per-VM state (stripes, leases, permits) a [`Worker`] the
//! plugin holds. Every host failure is tolerated: a refused read is a value absent, a refused write
//! costs only that write, a refused rejection resumes the request.

mod admission;
mod outcome;
mod plugin;
mod transitions;

#[cfg(test)]
mod tests;

use crate::config::Mode;
use crate::matching::select;
use crate::overload::{self, Permit};
use crate::slots::Admission;
use crate::state::Decision;
use filter_common::host::{Action, Host, MapType};
use filter_common::matching::is_grpc_content_type;
pub use outcome::AdmittedCall;
pub use plugin::{Clock, Plugin, Worker, LEASE_TICK_MS};

/// One stream's state.
#[derive(Debug, Default)]
pub struct Stream {
    call: Option<AdmittedCall>,
    /// Dry-run: the header value marking a response the breaker would have rejected.
    dry_run_mark: Option<String>,
    /// This stream was answered by our own rejection.
    rejected: bool,
    /// The call's permit (`maxConcurrentCalls`), given back when the stream ends.
    permit: Option<Permit>,
}

impl Stream {
    pub fn on_request_headers(&mut self, host: &impl Host, plugin: &Plugin) -> Action {
        let info = filter_common::request::read(host, &plugin.needs);
        let Some(selected) = select(&plugin.config, &info, &plugin.seed) else {
            return Action::Continue;
        };
        let breaker = selected.breaker;
        let (Some(b), Some(metrics)) = (
            plugin.config.breakers.get(breaker),
            plugin.metrics.get(breaker),
        ) else {
            return Action::Continue;
        };
        if b.mode == Mode::Disabled {
            return Action::Continue;
        }
        let grpc = host
            .header(MapType::HttpRequestHeaders, "content-type")
            .is_some_and(|ct| is_grpc_content_type(&ct));
        let now = host.now_nanos();
        if b.mode == Mode::ForcedOpen {
            metrics.rejected.add_on(host, 1);
            self.rejected = admission::reject(host, plugin, b, grpc, "forced-open", None, now);
            return Action::Pause;
        }
        let (admission, state_key) = admission::admit(host, plugin, b, selected, now, metrics);
        let (slot, decision) = match admission {
            Admission::Slot(slot, decision) => (slot, decision),
            Admission::Overflow => {
                admission::overflowed(host, b, metrics);
                return Action::Continue;
            }
        };
        let (gen, probe) = match decision {
            Decision::Admit { gen } => (gen, false),
            Decision::Probe { gen } => {
                metrics.probe.add_on(host, 1);
                (gen, true)
            }
            Decision::Reject { state, retry_at_ns } => {
                let label = state.header_label();
                if b.mode == Mode::DryRun {
                    metrics.would_reject.add_on(host, 1);
                    self.dry_run_mark = Some(admission::dry_run_mark(b, label));
                    // Not recorded: only calls admitted by a closed breaker (or probes) decide.
                    return Action::Continue;
                }
                metrics.rejected.add_on(host, 1);
                self.rejected =
                    admission::reject(host, plugin, b, grpc, label, Some(retry_at_ns), now);
                return Action::Pause;
            }
        };
        let call = AdmittedCall::new(breaker, slot, state_key, gen, probe, grpc, now);
        let call = self.call.insert(call);
        if !overload::enabled(b) {
            return Action::Continue;
        }
        let checked =
            admission::check_overload(host, plugin, b, breaker, &call.state_key, now, metrics);
        let refusal = match checked {
            Ok(permit) => {
                self.permit = permit;
                return Action::Continue;
            }
            Err(refusal) => refusal,
        };
        if b.mode == Mode::DryRun {
            metrics.would_reject.add_on(host, 1);
            self.dry_run_mark = Some(admission::dry_run_mark(b, refusal.label));
            return Action::Continue;
        }
        // The call does not go: not recorded, and a probe permit it took is given back.
        if let Some(probe) = self.call.take().filter(|c| c.probe) {
            admission::return_probe(host, plugin, b, &probe, now, metrics);
        }
        admission::count_refusal(host, &refusal, metrics);
        self.rejected = admission::reject(
            host,
            plugin,
            b,
            grpc,
            refusal.label,
            Some(refusal.retry_at_ns),
            now,
        );
        Action::Pause
    }

    pub fn on_response_headers(&mut self, host: &impl Host, plugin: &Plugin) -> Action {
        let clock = Clock::new(host);
        if let Some(call) = self.call.as_mut() {
            call.note_response(host, clock.now());
            outcome::note_pushback(host, plugin, call, MapType::HttpResponseHeaders, &clock);
        }
        if let Some(mark) = &self.dry_run_mark {
            let header = &plugin.config.status_header;
            // A refused mark costs only the mark.
            let _ = host.set_header(MapType::HttpResponseHeaders, header, mark.as_bytes());
        }
        Action::Continue
    }

    pub fn on_response_trailers(&mut self, host: &impl Host, plugin: &Plugin) -> Action {
        if let Some(call) = self.call.as_mut().filter(|c| c.grpc) {
            call.note_trailers(host);
            let clock = Clock::new(host);
            outcome::note_pushback(host, plugin, call, MapType::HttpResponseTrailers, &clock);
        }
        Action::Continue
    }

    /// The stream's end (Envoy's access-log callback): the permit goes back, the call is recorded.
    pub fn on_log(&mut self, host: &impl Host, plugin: &Plugin) {
        let clock = Clock::new(host);
        self.release_permit(host, plugin, &clock);
        if self.rejected {
            return;
        }
        if let Some(call) = self.call.take() {
            // The response headers' time when they came (one host call fewer).
            let now = match call.elapsed_ns {
                Some(elapsed) => call.started_ns.saturating_add(elapsed),
                None => clock.now(),
            };
            outcome::record_call(host, plugin, &call, now);
        }
    }

    /// A stream that ends without `on_log` (the host skipped it) still gives its permit back.
    pub fn on_drop(&mut self, host: &impl Host, plugin: &Plugin) {
        self.release_permit(host, plugin, &Clock::new(host));
    }

    /// The call this stream admitted, until the stream ends.
    pub fn call(&self) -> Option<&AdmittedCall> {
        self.call.as_ref()
    }

    /// Whether this stream was answered by the breaker's own rejection.
    pub fn rejected(&self) -> bool {
        self.rejected
    }

    /// Gives the call's permit back, once: from `on_log` or the drop, whichever comes first.
    fn release_permit(&mut self, host: &impl Host, plugin: &Plugin, clock: &Clock<'_, impl Host>) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let Ok(mut worker) = plugin.worker.try_borrow_mut() else {
            return;
        };
        let owner = worker.owner;
        overload::release(
            host,
            &mut worker.ledger,
            permit,
            owner,
            clock.now(),
            &plugin.metrics,
        );
    }
}
