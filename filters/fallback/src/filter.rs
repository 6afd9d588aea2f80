//! The proxy-wasm adapter. On the request it notes what a fallback may need (the rule, the caller's
//! `Accept`, ids, the cache key); on the response headers it checks the rule's triggers and, when one
//! fires, replaces the response before anything was sent downstream. Good responses pass untouched; a
//! `stale` rule copies them into the cache as they stream by. Every host call goes through
//! `filter_common::host`, which never panics.
//!
//! Decisions are made elsewhere (`trigger`, `policy`, `render`, `reply`, `alternate`; shared-data I/O in
//! `store`). This file is longer than the other adapters because a fallback spans five callbacks
//! (request headers, response headers, body, trailers, the alternate call's answer) and keeps, between
//! them, the request facts a reply needs after the request headers are gone.

use crate::alternate;
use crate::cache::{self, Entry};
use crate::config::{otherwise, Config, Kind, ResponseConfig, RuleConfig};
use crate::metrics::Metrics;
use crate::policy::{self, CacheControl, NotStored};
use crate::render::{self, negotiate, Rendered, Vars};
use crate::reply::{self, Parts, MARKER};
use crate::store;
use crate::trace::{self, well_formed_traceparent};
use crate::trigger::{fire, Observed, Reason};
use filter_common::failure::{is_circuit_breaker_rejection, is_upstream_answer};
use filter_common::headers::HeaderMap;
use filter_common::host::{self, Buffer, Host, MapType, ProxyHost};
use filter_common::ids::IdGenerator;
use filter_common::keyed_hash::Seed;
use filter_common::matching::Needs;
use filter_common::plugin::load_config;
use filter_common::shared::HostSharedData;
use filter_common::slots;
use filter_common::w3c::TRACEPARENT;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::OnceCell;
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FallbackRoot::default()) });
}}

struct VmState {
    config: Config,
    needs: Needs,
    cache_prefix: String,
    /// The cache slots' hash seed (shared by every worker of the sidecar).
    seed: Seed,
    metrics: Metrics,
}

#[derive(Default)]
struct FallbackRoot {
    vm: Option<Rc<VmState>>,
}

impl Context for FallbackRoot {}

impl RootContext for FallbackRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config(crate::memory::load) else {
            return false;
        };
        let mut needs = Needs::default();
        for r in &config.rules {
            needs.add_match(&r.matcher);
        }
        let root_id = host::plugin_root_id();
        let cache_prefix = filter_common::keys::fallback_cache_prefix(&root_id);
        store::create_slots(&HostSharedData, &cache_prefix, &config);
        let seed = if config.serves_stale() {
            let key = filter_common::keys::fallback_seed(&root_id);
            let fresh = Seed::random(&mut IdGenerator::from_entropy(host::now_nanos()));
            slots::shared_seed(&HostSharedData, &key, fresh).unwrap_or_else(|| {
                log::warn!("no shared cache-slot seed; slots are chosen with a fixed one");
                Seed::default()
            })
        } else {
            Seed::default()
        };
        self.vm = Some(Rc::new(VmState {
            needs,
            cache_prefix,
            seed,
            metrics: Metrics::define(&config),
            config,
        }));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FallbackStream {
            vm: self.vm.clone(),
            request: None,
            own_reply: false,
            pending: None,
            capture: None,
            upstream_grpc_status: None,
            original_status: 0,
            retry_after: None,
            trace_id: OnceCell::new(),
        }))
    }
}

/// What a fallback may need, copied on the request (request headers are unreadable later).
struct RequestFacts {
    rule: usize,
    method: String,
    path: String,
    authority: String,
    grpc: bool,
    accept: Option<Vec<u8>>,
    /// The W3C `traceparent` forwarded upstream (as trace-context wrote it), when well formed.
    traceparent: Option<String>,
    request_id: String,
    key_headers: Vec<(String, Option<Vec<u8>>)>,
    /// The request carries one of the rule's private headers: nothing is stored for it or served to it.
    private: bool,
    /// A stale rule's GET or HEAD: the caller's own `Cache-Control` (parsed in place, only when sent).
    directives: CacheControl,
    /// A stale rule's GET or HEAD: the request headers, kept (not copied: the buffer of the one host
    /// read) so that the response's `Vary` can select on them later.
    vary_source: Option<HeaderMap>,
}

/// An alternate call in flight: the response headers wait for it.
struct Pending {
    token: u32,
    reason: Reason,
    status: u16,
}

/// A good response being copied into the stale cache as it streams by.
struct Capture {
    content_type: String,
    body: Vec<u8>,
    limit: usize,
    initial_age_s: u32,
    lifetime_s: u32,
    serve_for_ns: u64,
    vary: Vec<String>,
    vary_hash: u128,
}

struct FallbackStream {
    vm: Option<Rc<VmState>>,
    request: Option<RequestFacts>,
    /// Our own reply is passing through this filter: never wrap it again.
    own_reply: bool,
    pending: Option<Pending>,
    capture: Option<Capture>,
    /// The gRPC status the response carried, kept for a gRPC caller's fallback.
    upstream_grpc_status: Option<u32>,
    /// The status of the response the fallback replaces.
    original_status: u16,
    /// The `retry-after` of the response the fallback replaces (an upstream 503/429, a breaker's
    /// rejection): the fallback keeps it.
    retry_after: Option<Vec<u8>>,
    /// The trace id, looked up once (it may take a property read).
    trace_id: OnceCell<String>,
}

impl Context for FallbackStream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.pending.as_ref().is_none_or(|p| p.token != token) {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let (Some(vm), Some(facts)) = (self.vm.clone(), self.request.as_ref()) else {
            host::resume_response();
            return;
        };
        let Some(rule) = vm.config.rules.get(facts.rule) else {
            host::resume_response();
            return;
        };
        // A failed or timed-out call arrives without headers.
        let headers = if num_headers == 0 {
            Vec::new()
        } else {
            host::header_pairs(MapType::HttpCallResponseHeaders)
        };
        match alternate::answer(headers, body_size, rule.response.max_body_bytes) {
            Some(answer) => {
                let body =
                    host::buffer(Buffer::HttpCallResponseBody, 0, body_size).unwrap_or_default();
                self.send(
                    &vm,
                    rule,
                    pending.reason,
                    Kind::Alternate,
                    answer,
                    Some(body),
                );
            }
            None => {
                let fallback = otherwise(&rule.response);
                self.serve_simple(&vm, rule, &fallback, pending.reason, pending.status);
            }
        }
    }
}

impl HttpContext for FallbackStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            return Action::Continue;
        };
        // One host call for every header this filter may need, looked up in place.
        let headers =
            HeaderMap::from_encoded(host::header_map_encoded(MapType::HttpRequestHeaders));
        let info = filter_common::request::load_from(&vm.needs, &headers);
        let Some(rule_index) = vm
            .config
            .rules
            .iter()
            .position(|r| r.matcher.matches(&info))
        else {
            return Action::Continue;
        };
        let Some(rule) = vm.config.rules.get(rule_index) else {
            return Action::Continue;
        };
        let req = |name: &str| headers.get_first(name);
        let text = |name: &str| {
            req(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let key_names = &rule.response.key_headers;
        let method = text(":method");
        let stale = rule.response.kind == Kind::Stale && matches!(method.as_str(), "GET" | "HEAD");
        self.request = Some(RequestFacts {
            rule: rule_index,
            method,
            path: text(":path"),
            authority: text(":authority"),
            grpc: req("content-type").is_some_and(filter_common::matching::is_grpc_content_type),
            accept: req("accept").map(<[u8]>::to_vec),
            traceparent: req(TRACEPARENT).and_then(well_formed_traceparent),
            request_id: text("x-request-id"),
            key_headers: key_names
                .iter()
                .map(|n| (n.clone(), req(n).map(<[u8]>::to_vec)))
                .collect(),
            // A response to a request with credentials is that caller's own, unless the credentials are
            // part of the key.
            private: stale
                && policy::is_private(&headers, &rule.response.private_headers, key_names),
            directives: if stale {
                CacheControl::parse(headers.get_all("cache-control"))
            } else {
                CacheControl::default()
            },
            vary_source: None,
        });
        if stale {
            if let Some(facts) = self.request.as_mut() {
                facts.vary_source = Some(headers);
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.own_reply {
            return Action::Continue;
        }
        let (Some(vm), Some(facts)) = (self.vm.clone(), self.request.as_ref()) else {
            return Action::Continue;
        };
        let Some(rule) = vm.config.rules.get(facts.rule) else {
            return Action::Continue;
        };
        let status =
            host::header_number::<u16>(MapType::HttpResponseHeaders, ":status").unwrap_or(0);
        // A good response another caller may be served: stored, or (when it forbids reuse) removing the
        // key's older entry. A caller's `no-store` keeps it out of the cache.
        let cache_candidate = rule.response.kind == Kind::Stale
            && status == 200
            && facts.method == "GET"
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
            host::property(&["response", "code_details"])
        };
        let observed = Observed {
            status,
            grpc_status: if facts.grpc {
                host::header_number(MapType::HttpResponseHeaders, "grpc-status")
            } else {
                None
            },
            response_flags: if quiet {
                0
            } else {
                host::property_u64(&["response", "flags"]).unwrap_or(0)
            },
            from_upstream: is_upstream_answer(details.as_deref()),
            circuit_breaker: details.as_deref().is_some_and(is_circuit_breaker_rejection),
        };
        if let Some(reason) = fire(&rule.triggers, &observed) {
            self.upstream_grpc_status = observed.grpc_status.filter(|g| *g != 0);
            self.original_status = status;
            // One more host call, only for a response being replaced.
            self.retry_after = host::header(MapType::HttpResponseHeaders, "retry-after");
            return self.serve(&vm, rule, reason, status);
        }
        if cache_candidate && observed.from_upstream {
            self.capture = capture_for(&vm, facts, rule.response.max_body_bytes, capture_candidate);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(capture) = self.capture.as_mut() else {
            return Action::Continue;
        };
        // Copied as it passes: the filter never holds a good response back.
        if capture.body.len() + body_size > capture.limit {
            self.capture = None;
            return Action::Continue;
        }
        if body_size > 0 {
            match host::buffer(Buffer::HttpResponseBody, 0, body_size) {
                Some(chunk) => capture.body.extend_from_slice(&chunk),
                None => {
                    self.capture = None;
                    return Action::Continue;
                }
            }
        }
        if end_of_stream {
            if let (Some(vm), Some(capture), Some(facts)) =
                (self.vm.clone(), self.capture.take(), self.request.as_ref())
            {
                store_capture(&vm, facts, capture);
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // A gRPC failure that arrives only in trailers: the headers are gone, so the status stands; the
        // message and marker say the mesh saw it.
        let (Some(vm), Some(facts)) = (self.vm.clone(), self.request.as_ref()) else {
            return Action::Continue;
        };
        if self.own_reply || !facts.grpc {
            return Action::Continue;
        }
        let Some(rule) = vm.config.rules.get(facts.rule) else {
            return Action::Continue;
        };
        let observed = Observed {
            status: 200,
            grpc_status: host::header_number(MapType::HttpResponseTrailers, "grpc-status"),
            from_upstream: true,
            ..Observed::default()
        };
        if let Some(reason) = fire(&rule.triggers, &observed) {
            let marker = reply::marker(&rule.name, reason, rule.response.kind);
            host::set_header(MapType::HttpResponseTrailers, MARKER, marker.as_bytes());
            vm.metrics.served(&rule.name, reason, "trailers");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        filter_common::host::stream_end();
    }
}

impl FallbackStream {
    /// Answers for a fired rule: at once, or after the alternate call.
    fn serve(&mut self, vm: &VmState, rule: &RuleConfig, reason: Reason, status: u16) -> Action {
        let facts_grpc = self.request.as_ref().is_some_and(|f| f.grpc);
        match rule.response.kind {
            Kind::Alternate if !facts_grpc => {
                if let Some(token) = self.dispatch_alternate(&rule.response) {
                    self.pending = Some(Pending {
                        token,
                        reason,
                        status,
                    });
                    return Action::Pause;
                }
                let fallback = otherwise(&rule.response);
                self.serve_simple(vm, rule, &fallback, reason, status);
            }
            Kind::Stale if !facts_grpc => {
                if !self.serve_stale(vm, rule, reason) {
                    let fallback = otherwise(&rule.response);
                    self.serve_simple(vm, rule, &fallback, reason, status);
                }
            }
            // gRPC callers of a stale or alternate rule get its `otherwise` (as a gRPC status).
            Kind::Stale | Kind::Alternate => {
                let fallback = otherwise(&rule.response);
                self.serve_simple(vm, rule, &fallback, reason, status);
            }
            Kind::Problem | Kind::Static => {
                let response = rule.response.clone();
                self.serve_simple(vm, rule, &response, reason, status);
            }
        }
        Action::Pause
    }

    /// The trace id: from the forwarded `traceparent`, else from trace-context's filter state.
    fn trace_id(&self, vm: &VmState) -> &str {
        self.trace_id.get_or_init(|| {
            let facts = self.request.as_ref();
            if let Some(id) = facts
                .and_then(|f| f.traceparent.as_deref())
                .and_then(trace::trace_id)
            {
                return id.to_string();
            }
            let state = vm.config.trace.filter_state_name.as_str();
            if state.is_empty() {
                return String::new();
            }
            host::property(&[state])
                .and_then(|v| trace::trace_id_from_state(&v))
                .unwrap_or_default()
        })
    }

    fn vars(&self, vm: &VmState, reason: Reason, status: u16) -> Vars {
        let facts = self.request.as_ref();
        Vars {
            trace_id: self.trace_id(vm).to_string(),
            request_id: facts.map(|f| f.request_id.clone()).unwrap_or_default(),
            status,
            reason: reason.label().to_string(),
        }
    }

    /// A problem or static response (gRPC callers: a gRPC status).
    fn serve_simple(
        &mut self,
        vm: &VmState,
        rule: &RuleConfig,
        response: &ResponseConfig,
        reason: Reason,
        status: u16,
    ) {
        let vars = self.vars(vm, reason, status);
        let accept = self.request.as_ref().and_then(|f| f.accept.clone());
        let rendered = match response.kind {
            Kind::Static => render::static_response(response, &vars),
            _ => render::problem(response, &vars, negotiate(accept.as_deref())),
        };
        let kind = if response.kind == Kind::Static {
            Kind::Static
        } else {
            Kind::Problem
        };
        self.send(vm, rule, reason, kind, rendered, None);
    }

    /// The cached good response, if one is fresh.
    fn serve_stale(&mut self, vm: &VmState, rule: &RuleConfig, reason: Reason) -> bool {
        let Some(facts) = self.request.as_ref() else {
            return false;
        };
        if facts.method != "GET" && facts.method != "HEAD" {
            return false;
        }
        // Another caller's response is never served to a request with credentials, nor to a caller
        // that refuses stored answers.
        if facts.private || facts.directives.refuses_stored() {
            return false;
        }
        let key = cache_key(facts);
        let slot_key = store::slot_key(&vm.cache_prefix, &vm.seed, key, &vm.config);
        let now = host::now_nanos();
        let empty = HeaderMap::default();
        let request = facts.vary_source.as_ref().unwrap_or(&empty);
        let hit = store::read(&HostSharedData, &slot_key)
            .and_then(|e| {
                e.servable_age(key, now, rule.response.ttl.as_nanos_u64())
                    .map(|age| (e, age))
            })
            // No staler than the caller accepts (its max-stale, stale-if-error).
            .filter(|(e, age)| facts.directives.accepts(e.staleness_s(*age)))
            // The variant this request selects, or none (RFC 9111 §4.1).
            .filter(|(e, _)| policy::vary_hash(&e.vary_names(), request) == e.vary_hash);
        let Some((entry, age)) = hit else {
            vm.metrics.cache_misses.inc();
            return false;
        };
        vm.metrics.cache_hits.inc();
        let answer = reply::stale_answer(&entry.content_type, age);
        let body = if facts.method == "HEAD" {
            Vec::new()
        } else {
            entry.body
        };
        self.send(vm, rule, reason, Kind::Stale, answer, Some(body));
        true
    }

    fn dispatch_alternate(&self, r: &ResponseConfig) -> Option<u32> {
        let facts = self.request.as_ref()?;
        let cluster = r.cluster.as_deref()?;
        let headers = alternate::request_headers(
            &facts.method,
            &facts.path,
            &facts.authority,
            &facts.key_headers,
            facts.traceparent.as_deref(),
        );
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        // An error for an unknown cluster or bad headers: the caller serves the rule's `otherwise`.
        match ProxyHost.dispatch_http_call(cluster, &headers, None, r.timeout.0) {
            Ok(token) => Some(token),
            Err(e) => {
                log::warn!("could not call cluster {cluster}: {e}");
                None
            }
        }
    }

    /// Sends the fallback as a local reply, marked, counted; gRPC callers get a trailers-only status.
    fn send(
        &mut self,
        vm: &VmState,
        rule: &RuleConfig,
        reason: Reason,
        kind: Kind,
        rendered: Rendered,
        raw_body: Option<Vec<u8>>,
    ) {
        self.own_reply = true;
        vm.metrics.served(&rule.name, reason, kind.label());
        let facts = self.request.as_ref();
        let reply = reply::build(Parts {
            rule: &rule.name,
            reason,
            kind,
            rendered,
            raw_body,
            grpc: facts.is_some_and(|f| f.grpc),
            trace: &vm.config.trace,
            traceparent: facts.and_then(|f| f.traceparent.as_deref()),
            trace_id: self.trace_id(vm),
            replaced_retry_after: self.retry_after.as_deref(),
            original_status: self.original_status,
            upstream_grpc_status: self.upstream_grpc_status,
        });
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let sent = host::send_local_response(
            reply.status,
            "fallback",
            &headers,
            &reply.body,
            reply.grpc_status,
        );
        if !sent {
            // The stream is gone or the host refused: let the original response go on rather than hang.
            log::warn!("could not send the fallback of rule {}", rule.name);
            self.own_reply = false;
            host::resume_response();
        }
    }
}

fn cache_key(facts: &RequestFacts) -> u128 {
    let values: Vec<Option<&[u8]>> = facts
        .key_headers
        .iter()
        .map(|(_, v)| v.as_deref())
        .collect();
    cache::key(facts.authority.as_bytes(), facts.path.as_bytes(), &values)
}

/// The capture of a good response another caller may be served (`policy::storable`) when `may_store`,
/// reading the response headers in one host call (every `Cache-Control`, `Vary` and `Age` line counts).
/// A response that forbids reuse removes the key's older entry instead.
fn capture_for(
    vm: &VmState,
    facts: &RequestFacts,
    limit: usize,
    may_store: bool,
) -> Option<Capture> {
    let response = HeaderMap::from_encoded(host::header_map_encoded(MapType::HttpResponseHeaders));
    let storable = match policy::storable(&response, limit) {
        Ok(s) if may_store => s,
        Ok(_) | Err(NotStored::Unsuitable) => return None,
        Err(NotStored::ForbidsReuse) => {
            let key = cache_key(facts);
            let slot_key = store::slot_key(&vm.cache_prefix, &vm.seed, key, &vm.config);
            if let Some(freed) = store::remove(&HostSharedData, &slot_key, key) {
                vm.metrics
                    .cache_bytes
                    .add(-i64::try_from(freed).unwrap_or(i64::MAX));
            }
            return None;
        }
    };
    let empty = HeaderMap::default();
    let vary_hash = policy::vary_hash(&storable.vary, facts.vary_source.as_ref().unwrap_or(&empty));
    Some(Capture {
        content_type: storable.content_type,
        body: Vec::new(),
        limit,
        initial_age_s: storable.initial_age_s,
        lifetime_s: storable.lifetime_s,
        serve_for_ns: storable.serve_for_ns,
        vary: storable.vary,
        vary_hash,
    })
}

/// Stores a completed capture, counting stores, evictions and the bytes held across workers.
fn store_capture(vm: &VmState, facts: &RequestFacts, capture: Capture) {
    let key = cache_key(facts);
    let entry = Entry {
        key,
        stored_at_ns: host::now_nanos(),
        initial_age_s: capture.initial_age_s,
        lifetime_s: capture.lifetime_s,
        serve_for_ns: capture.serve_for_ns,
        vary: filter_common::text::join(&capture.vary, ","),
        vary_hash: capture.vary_hash,
        content_type: capture.content_type,
        body: capture.body,
    };
    let slot_key = store::slot_key(&vm.cache_prefix, &vm.seed, key, &vm.config);
    if let Some(written) = store::write(&HostSharedData, &slot_key, &entry) {
        vm.metrics.cache_stores.inc();
        if written.evicted {
            vm.metrics.cache_evictions.inc();
        }
        vm.metrics.cache_bytes.add(written.bytes_delta);
    }
}
