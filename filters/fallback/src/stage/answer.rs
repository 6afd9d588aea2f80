//! The answers a fired rule can give: a problem or static response (every rule's last resort), the
//! stale cache's copy, the alternate upstream's answer. Each is rendered here; the stream sends it.

use super::facts::{is_get_or_head, RequestFacts};
use super::vm::Vm;
use crate::alternate;
use crate::config::{Kind, ResponseConfig, RuleConfig};
use crate::render::{self, negotiate, Rendered, Vars};
use crate::reply;
use crate::store;
use crate::trigger::Reason;
use filter_common::host::{Buffer, Host, MapType};

/// The response a fallback replaces, as far as the reply keeps it.
#[derive(Debug, Default)]
pub struct Replaced {
    pub status: u16,
    /// An upstream 503/429's or a breaker's `retry-after`: still true for the caller.
    pub retry_after: Option<Vec<u8>>,
    /// The non-OK gRPC status it carried, for a gRPC caller's fallback.
    pub upstream_grpc_status: Option<u32>,
}

/// A fallback ready to send: what it is counted and marked as, and what it carries.
#[derive(Debug)]
pub struct Answer {
    pub kind: Kind,
    pub rendered: Rendered,
    /// A body given as bytes (a cached or alternate answer) instead of `rendered.body`.
    pub raw_body: Option<Vec<u8>>,
}

/// A problem or static answer for `response` (a rule's own, or its `otherwise`).
pub fn simple(
    response: &ResponseConfig,
    facts: &RequestFacts,
    trace_id: &str,
    reason: Reason,
    status: u16,
) -> Answer {
    let vars = Vars {
        trace_id: trace_id.to_string(),
        request_id: facts.request_id(),
        status,
        reason: reason.label().to_string(),
    };
    let (kind, rendered) = match response.kind {
        Kind::Static => (Kind::Static, render::static_response(response, &vars)),
        // `otherwise` is never stale or alternate (config): anything else is a problem.
        _ => (
            Kind::Problem,
            render::problem(response, &vars, negotiate(facts.accept())),
        ),
    };
    Answer {
        kind,
        rendered,
        raw_body: None,
    }
}

/// Whether the request may be answered from the stale cache at all: a GET or HEAD, without
/// credentials (another caller's response is never served to it), from a caller that takes stored
/// answers.
pub fn may_serve_stale(facts: &RequestFacts) -> bool {
    is_get_or_head(facts.method()) && !facts.private && !facts.directives.refuses_stored()
}

/// The cached good response for a request that [`may_serve_stale`], when one may be served at `now`:
/// fresh enough for the rule's `ttl` and the entry's own directives, no staler than the caller accepts,
/// and the variant the request selects. Counts the lookup as a hit or a miss.
pub fn stale(
    host: &impl Host,
    vm: &Vm,
    rule: &RuleConfig,
    facts: &RequestFacts,
    now: u64,
) -> Option<Answer> {
    let key = facts.cache_key(&rule.response.key_headers);
    let hit = store::read(host, &vm.slot_key(key))
        .and_then(|e| {
            e.servable_age(key, now, rule.response.ttl.as_nanos_u64())
                .map(|age| (e, age))
        })
        // No staler than the caller accepts (its max-stale, stale-if-error).
        .filter(|(e, age)| facts.directives.accepts(e.staleness_s(*age)))
        // The variant this request selects, or none (RFC 9111 §4.1).
        .filter(|(e, _)| facts.vary_hash(&e.vary_names()) == e.vary_hash);
    let Some((entry, age)) = hit else {
        vm.metrics.cache_misses.add_on(host, 1);
        return None;
    };
    vm.metrics.cache_hits.add_on(host, 1);
    let body = if facts.method() == b"HEAD" {
        Vec::new()
    } else {
        entry.body
    };
    Some(Answer {
        kind: Kind::Stale,
        rendered: reply::stale_answer(&entry.content_type, age),
        raw_body: Some(body),
    })
}

/// Calls the rule's alternate cluster with the caller's request line, key headers and trace; the
/// call's token, or `None` (logged) when the host refuses (an unknown cluster, bad headers).
pub fn dispatch(host: &impl Host, facts: &RequestFacts, response: &ResponseConfig) -> Option<u32> {
    let cluster = response.cluster.as_deref()?;
    let headers = alternate::request_headers(
        &String::from_utf8_lossy(facts.method()),
        &facts.path(),
        &facts.authority(),
        &facts.key_headers(&response.key_headers),
        facts.traceparent(),
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    match host.dispatch_http_call(cluster, &headers, None, response.timeout.0) {
        Ok(token) => Some(token),
        Err(e) => {
            log::warn!("could not call cluster {cluster}: {e}");
            None
        }
    }
}

/// The alternate call's answer (`num_headers` and `body_size` as the host announced them), when it may
/// stand in (`alternate::answer`); `None` for a failed or timed-out call, which arrives without headers.
pub fn from_alternate(
    host: &impl Host,
    num_headers: usize,
    body_size: usize,
    max_body: usize,
) -> Option<Answer> {
    if num_headers == 0 {
        return None;
    }
    let headers = host.header_pairs(MapType::HttpCallResponseHeaders);
    let rendered = alternate::answer(headers, body_size, max_body)?;
    let body = host
        .buffer(Buffer::HttpCallResponseBody, 0, body_size)
        .unwrap_or_default();
    Some(Answer {
        kind: Kind::Alternate,
        rendered,
        raw_body: Some(body),
    })
}
