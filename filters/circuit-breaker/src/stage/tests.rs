//! The stage driven callback by callback over `FakeHost`, as Envoy drives the adapter: what the
//! end-to-end suite proves of the filter, here without Envoy.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod admission;
mod failures;
mod outcome;
mod overload;

use super::{Plugin, Stream, Worker};
use filter_common::fake_host::{FakeHost, LocalReply};
use filter_common::host::{Action, MapType};
use filter_common::metrics::tagged_name;
use std::cell::RefCell;
use std::rc::Rc;

pub const REQ: MapType = MapType::HttpRequestHeaders;
pub const RESP: MapType = MapType::HttpResponseHeaders;
pub const TRAILERS: MapType = MapType::HttpResponseTrailers;
pub const SEC: u64 = 1_000_000_000;
/// A wall clock in 2023: HTTP dates in `Retry-After` need one.
pub const T0: u64 = 1_700_000_000 * SEC;
pub const STATUS_HEADER: &str = "x-circuit-breaker";

/// A sidecar worker: the host and the plugin configured on it from `json`, with its own VM state;
/// the host's record of calls starts after the configuration.
pub fn configure(json: &str) -> (FakeHost<'static>, Plugin) {
    let host = FakeHost::new();
    host.set_clock(T0);
    let plugin = plugin_on(&host, json, 7);
    host.clear_calls();
    (host, plugin)
}

/// Another worker VM (`owner`) configured with `json` over the same host (its shared data).
pub fn plugin_on(host: &FakeHost, json: &str, owner: u64) -> Plugin {
    let config = crate::memory::load(Some(json.as_bytes())).unwrap();
    let worker = Rc::new(RefCell::new(Worker::with_owner(owner)));
    Plugin::configure(host, config, worker)
}

/// One breaker named `pay`, unkeyed, no jitter, with `fields` added.
pub fn breaker(fields: &str) -> String {
    let sep = if fields.is_empty() { "" } else { ", " };
    format!(r#"{{"breakers": [{{"name": "pay", "openJitter": 0{sep}{fields}}}]}}"#)
}

/// A request's headers reach the stage.
pub fn request(host: &FakeHost, plugin: &Plugin, headers: &[(&str, &str)]) -> (Stream, Action) {
    let mut all = vec![(":method", "GET"), (":path", "/pay"), (":authority", "pay")];
    all.extend_from_slice(headers);
    host.script_headers(REQ, &all);
    let mut stream = Stream::default();
    let action = stream.on_request_headers(host, plugin);
    (stream, action)
}

/// A gRPC request's headers reach the stage.
pub fn grpc_request(host: &FakeHost, plugin: &Plugin) -> (Stream, Action) {
    request(host, plugin, &[("content-type", "application/grpc")])
}

/// The upstream's response headers reach the stage.
pub fn respond(host: &FakeHost, plugin: &Plugin, stream: &mut Stream, headers: &[(&str, &str)]) {
    host.script_headers(RESP, headers);
    assert_eq!(stream.on_response_headers(host, plugin), Action::Continue);
}

/// The stream ends as Envoy ends it: the access-log callback, then the context is dropped.
pub fn end(host: &FakeHost, plugin: &Plugin, mut stream: Stream) {
    stream.on_log(host, plugin);
    stream.on_drop(host, plugin);
}

/// A whole HTTP call answered with `status` by the upstream; the request's action.
pub fn call(host: &FakeHost, plugin: &Plugin, status: &str) -> Action {
    let (mut stream, action) = request(host, plugin, &[]);
    if action == Action::Continue {
        respond(host, plugin, &mut stream, &[(":status", status)]);
    }
    end(host, plugin, stream);
    action
}

/// `circuit_breaker_calls{breaker, outcome}`; 0 when never counted.
pub fn calls(host: &FakeHost, breaker: &str, outcome: &str) -> i64 {
    let name = tagged_name(
        "circuit_breaker_calls",
        &[("breaker", breaker), ("outcome", outcome)],
    );
    host.metric(&name).unwrap()
}

/// `circuit_breaker_transitions{breaker, state}`.
pub fn transitions(host: &FakeHost, breaker: &str, state: &str) -> i64 {
    let name = tagged_name(
        "circuit_breaker_transitions",
        &[("breaker", breaker), ("state", state)],
    );
    host.metric(&name).unwrap()
}

/// A per-breaker gauge (`circuit_breaker_open`, `circuit_breaker_in_flight`).
pub fn gauge(host: &FakeHost, base: &str, breaker: &str) -> i64 {
    host.metric(&tagged_name(base, &[("breaker", breaker)]))
        .unwrap()
}

/// The one local reply sent since the calls were last cleared.
pub fn only_reply(host: &FakeHost) -> LocalReply {
    let replies = host.local_replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies[0].clone()
}

pub fn header<'r>(reply: &'r LocalReply, name: &str) -> &'r str {
    std::str::from_utf8(
        reply
            .header(name)
            .unwrap_or_else(|| panic!("no {name}: {reply:?}")),
    )
    .unwrap()
}

/// Opens breaker `pay` of a plugin configured with [`breaker`] and `consecutiveFailures` 3.
pub fn trip(host: &FakeHost, plugin: &Plugin) {
    for _ in 0..3 {
        assert_eq!(call(host, plugin, "503"), Action::Continue);
    }
    assert_eq!(transitions(host, "pay", "open"), 1, "the breaker opened");
}
