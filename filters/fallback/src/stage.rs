//! The fallback's request path over `Host`, one [`Stream`] per HTTP stream with one method per
//! proxy-wasm callback, each given the host and the VM's state ([`Vm`]). It decides everything the
//! proxy-wasm shell (`filter`) used to: which rule covers a request and what it notes for a fallback,
//! whether a response fires the rule, which kind a caller gets (gRPC callers get a stale or alternate
//! rule's `otherwise`, as a gRPC status), the marker for a gRPC failure seen only in trailers, whether a
//! good response is copied into the stale cache, and what the alternate upstream's answer becomes.
//!
//! Pieces: `vm` (per-VM state), `facts` (what the request headers leave for the response),
//! `capture` (a good response streaming into the cache), `answer` (problem, static, stale and alternate
//! answers). The clock is read at most once per callback, only by the callbacks that need it.

mod answer;
mod capture;
mod facts;
#[cfg(test)]
mod tests;
mod vm;

pub use vm::Vm;

use crate::config::{otherwise, Kind, ResponseConfig, RuleConfig};
use crate::reply::{self, Parts, MARKER};
use crate::trace;
use crate::trigger::{fire, Observed, Reason};
use answer::{Answer, Replaced};
use capture::{Capture, Fed};
use facts::RequestFacts;
use filter_common::failure::{is_circuit_breaker_rejection, is_upstream_answer};
use filter_common::host::{Action, Host, MapType};
use std::cell::OnceCell;

/// An alternate call in flight: the response headers wait for it.
struct Pending {
    token: u32,
    reason: Reason,
}

/// One HTTP stream's fallback.
#[derive(Default)]
pub struct Stream {
    /// What the matched rule may need; `None`: no rule covers the request.
    request: Option<RequestFacts>,
    /// Our own reply is passing through this filter: never wrap it again.
    own_reply: bool,
    pending: Option<Pending>,
    /// Boxed: rare (a stale rule's good GET) and large, with a 16-byte alignment (its `u128` hash)
    /// that would make every stream's context 16 bytes larger.
    capture: Option<Box<Capture>>,
    replaced: Replaced,
    /// The trace id, looked up once (it may take a property read).
    trace_id: OnceCell<String>,
}

impl Stream {
    /// Notes, for the first rule that covers the request, what a fallback may need later: one host
    /// call reads every request header.
    pub fn on_request_headers(&mut self, host: &impl Host, vm: &Vm) -> Action {
        let headers = host.header_map(MapType::HttpRequestHeaders);
        let info = filter_common::request::read_from(host, &vm.needs, &headers);
        let rules = &vm.config.rules;
        if let Some((index, rule)) = rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(&info))
        {
            self.request = Some(RequestFacts::read(index, rule, headers));
        }
        Action::Continue
    }

    /// Checks the rule's triggers and, when one fires, replaces the response before anything was sent
    /// downstream; otherwise a good response a stale rule may keep starts its capture.
    pub fn on_response_headers(
        &mut self,
        host: &impl Host,
        vm: &Vm,
        end_of_stream: bool,
    ) -> Action {
        if self.own_reply {
            return Action::Continue;
        }
        let Some((facts, rule)) = self.rule(vm) else {
            return Action::Continue;
        };
        let status = host
            .header_number::<u16>(MapType::HttpResponseHeaders, ":status")
            .unwrap_or(0);
        // A good response another caller may be served: stored, or (when it forbids reuse) removing the
        // key's older entry. A caller's `no-store` keeps it out of the cache.
        let cache_candidate = rule.response.kind == Kind::Stale
            && status == 200
            && facts.method() == b"GET"
            && !facts.private;
        let capture_candidate = cache_candidate && !end_of_stream && !facts.directives.no_store;
        // Envoy's own replies and the breaker's rejections are 4xx/5xx, or a gRPC status to a gRPC
        // caller: a plain answer below 400 that no status trigger names and that is not copied into the
        // cache cannot fire a rule, so the two attribute reads are skipped (half the filter's host calls).
        let quiet = !facts.grpc
            && status < 400
            && !cache_candidate
            && !rule
                .triggers
                .status
                .as_ref()
                .is_some_and(|s| s.contains(status));
        let details = if quiet {
            None
        } else {
            host.property(&["response", "code_details"])
        };
        let observed = Observed {
            status,
            grpc_status: if facts.grpc {
                host.header_number(MapType::HttpResponseHeaders, "grpc-status")
            } else {
                None
            },
            response_flags: if quiet {
                0
            } else {
                host.property_u64(&["response", "flags"]).unwrap_or(0)
            },
            from_upstream: is_upstream_answer(details.as_deref()),
            circuit_breaker: details.as_deref().is_some_and(is_circuit_breaker_rejection),
        };
        if let Some(reason) = fire(&rule.triggers, &observed) {
            self.replaced = Replaced {
                status,
                // One more host call, only for a response being replaced.
                retry_after: host.header(MapType::HttpResponseHeaders, "retry-after"),
                upstream_grpc_status: observed.grpc_status.filter(|g| *g != 0),
            };
            return self.serve(host, vm, rule, reason);
        }
        if cache_candidate && observed.from_upstream {
            let limit = rule.response.max_body_bytes;
            self.capture = Capture::begin(host, vm, facts, limit, capture_candidate).map(Box::new);
        }
        Action::Continue
    }

    /// Copies a captured response's body as it passes; stores it when it ends.
    pub fn on_response_body(
        &mut self,
        host: &impl Host,
        vm: &Vm,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let Some(capture) = self.capture.as_mut() else {
            return Action::Continue;
        };
        match capture.feed(host, body_size, end_of_stream) {
            Fed::Going => {}
            Fed::Dropped => self.capture = None,
            Fed::Complete => {
                if let (Some(capture), Some(facts)) = (self.capture.take(), self.request.as_ref()) {
                    let now = host.now_nanos();
                    capture.store(host, vm, facts, now);
                }
            }
        }
        Action::Continue
    }

    /// A gRPC failure that arrives only in trailers: the headers are gone, so the status stands; the
    /// marker in the trailers and the `trailers` count say the mesh saw it.
    pub fn on_response_trailers(&mut self, host: &impl Host, vm: &Vm) -> Action {
        if self.own_reply {
            return Action::Continue;
        }
        let Some((facts, rule)) = self.rule(vm) else {
            return Action::Continue;
        };
        if !facts.grpc {
            return Action::Continue;
        }
        // Every field stated: trailers follow the upstream's own gRPC response headers (HTTP 200, on
        // which the status triggers and Envoy's failure flags were judged already); a breaker's
        // rejection or a reply Envoy made has none.
        let observed = Observed {
            status: 200,
            grpc_status: host.header_number(MapType::HttpResponseTrailers, "grpc-status"),
            response_flags: 0,
            from_upstream: true,
            circuit_breaker: false,
        };
        if let Some(reason) = fire(&rule.triggers, &observed) {
            let marker = reply::marker(&rule.name, reason, rule.response.kind);
            // A refused write leaves the trailers as they are; the count still says the mesh saw it.
            if let Err(e) =
                host.set_header(MapType::HttpResponseTrailers, MARKER, marker.as_bytes())
            {
                log::debug!("could not mark the trailers: {e}");
            }
            vm.metrics.served(host, &rule.name, reason, "trailers");
        }
        Action::Continue
    }

    /// The alternate call's answer: served when it may stand in, else the rule's `otherwise`.
    pub fn on_http_call_response(
        &mut self,
        host: &impl Host,
        vm: &Vm,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let Some(pending) = self.pending.take_if(|p| p.token == token) else {
            return;
        };
        let Some((_, rule)) = self.rule(vm) else {
            // Nothing to answer with: the paused response goes on.
            let _ = host.resume_response();
            return;
        };
        match answer::from_alternate(host, num_headers, body_size, rule.response.max_body_bytes) {
            Some(answer) => self.send(host, vm, rule, pending.reason, answer),
            None => self.serve_otherwise(host, vm, rule, pending.reason),
        }
    }

    /// The facts noted on the request and the rule they are for.
    fn rule<'v>(&self, vm: &'v Vm) -> Option<(&RequestFacts, &'v RuleConfig)> {
        let facts = self.request.as_ref()?;
        Some((facts, vm.config.rules.get(facts.rule)?))
    }

    /// Answers for a fired rule: at once, or after the alternate call. gRPC callers of a stale or
    /// alternate rule get its `otherwise` (as a gRPC status): neither a cached body nor another
    /// cluster's answer is a gRPC message.
    fn serve(&mut self, host: &impl Host, vm: &Vm, rule: &RuleConfig, reason: Reason) -> Action {
        let Some(facts) = self.request.as_ref() else {
            return Action::Continue;
        };
        match rule.response.kind {
            Kind::Alternate if !facts.grpc => {
                if let Some(token) = answer::dispatch(host, facts, &rule.response) {
                    self.pending = Some(Pending { token, reason });
                    return Action::Pause;
                }
                self.serve_otherwise(host, vm, rule, reason);
            }
            Kind::Stale if !facts.grpc => {
                // The clock is read only for a lookup that can serve.
                let hit = answer::may_serve_stale(facts)
                    .then(|| host.now_nanos())
                    .and_then(|now| answer::stale(host, vm, rule, facts, now));
                match hit {
                    Some(answer) => self.send(host, vm, rule, reason, answer),
                    None => self.serve_otherwise(host, vm, rule, reason),
                }
            }
            Kind::Stale | Kind::Alternate => self.serve_otherwise(host, vm, rule, reason),
            Kind::Problem | Kind::Static => {
                self.serve_simple(host, vm, rule, &rule.response, reason);
            }
        }
        Action::Pause
    }

    /// A stale or alternate rule's last resort.
    fn serve_otherwise(&mut self, host: &impl Host, vm: &Vm, rule: &RuleConfig, reason: Reason) {
        let fallback = otherwise(&rule.response);
        self.serve_simple(host, vm, rule, &fallback, reason);
    }

    /// A problem or static response (gRPC callers: a gRPC status).
    fn serve_simple(
        &mut self,
        host: &impl Host,
        vm: &Vm,
        rule: &RuleConfig,
        response: &ResponseConfig,
        reason: Reason,
    ) {
        let Some(facts) = self.request.as_ref() else {
            return;
        };
        let trace_id = self.trace_id(host, vm);
        let answer = answer::simple(response, facts, trace_id, reason, self.replaced.status);
        self.send(host, vm, rule, reason, answer);
    }

    /// The trace id: from the forwarded `traceparent`, else from trace-context's filter state.
    fn trace_id(&self, host: &impl Host, vm: &Vm) -> &str {
        self.trace_id.get_or_init(|| {
            let forwarded = self.request.as_ref().and_then(RequestFacts::traceparent);
            if let Some(id) = forwarded.and_then(trace::trace_id) {
                return id.to_string();
            }
            let state = vm.config.trace.filter_state_name.as_str();
            if state.is_empty() {
                return String::new();
            }
            host.property(&[state])
                .and_then(|v| trace::trace_id_from_state(&v))
                .unwrap_or_default()
        })
    }

    /// Sends the fallback as a local reply, marked, counted; gRPC callers get a trailers-only status.
    fn send(
        &mut self,
        host: &impl Host,
        vm: &Vm,
        rule: &RuleConfig,
        reason: Reason,
        answer: Answer,
    ) {
        // Set first: the reply comes back through this filter's response callbacks.
        self.own_reply = true;
        vm.metrics
            .served(host, &rule.name, reason, answer.kind.label());
        let facts = self.request.as_ref();
        let reply = reply::build(Parts {
            rule: &rule.name,
            reason,
            kind: answer.kind,
            rendered: answer.rendered,
            raw_body: answer.raw_body,
            grpc: facts.is_some_and(|f| f.grpc),
            trace: &vm.config.trace,
            traceparent: facts.and_then(RequestFacts::traceparent),
            trace_id: self.trace_id(host, vm),
            replaced_retry_after: self.replaced.retry_after.as_deref(),
            original_status: self.replaced.status,
            upstream_grpc_status: self.replaced.upstream_grpc_status,
        });
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let sent = host.send_local_response(
            reply.status,
            "fallback",
            &headers,
            &reply.body,
            reply.grpc_status,
        );
        if let Err(e) = sent {
            // The stream is gone or the host refused: let the original response go on rather than hang.
            log::warn!("could not send the fallback of rule {}: {e}", rule.name);
            self.own_reply = false;
            let _ = host.resume_response();
        }
    }
}
