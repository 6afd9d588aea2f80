//! The stage driven callback by callback over `FakeHost`: what Envoy would be asked to do (replies,
//! header writes, calls, shared data, metrics) for each kind of fallback, gRPC callers, trailers, the
//! stale cache and the alternate upstream, and host calls that fail. The end-to-end suite proves the
//! real Envoy agrees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod alternate;
mod cache;
mod grpc;
mod host_failures;
mod kinds;

use crate::stage::{Stream, Vm};
use filter_common::fake_host::{FakeHost, LocalReply};
use filter_common::host::{Action, Buffer, MapType};
use filter_common::metrics::tagged_name;
use filter_common::response_flags::UPSTREAM_CONNECTION_FAILURE;

pub const REQ: MapType = MapType::HttpRequestHeaders;
pub const RESP: MapType = MapType::HttpResponseHeaders;
pub const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
pub const SEC: u64 = 1_000_000_000;

/// The VM state for a configuration (JSON; `None`: no configuration), loaded as Envoy loads it.
pub fn vm(host: &FakeHost, config: Option<&str>) -> Vm {
    host.script_property(&["plugin_root_id"], b"fb");
    if let Some(json) = config {
        host.script_buffer(Buffer::PluginConfiguration, json.as_bytes());
    }
    let vm = Vm::load(host).expect("a valid configuration");
    host.clear_calls();
    vm
}

/// A new stream whose request headers were `headers` (`:method` GET, `:path` /a, `:authority` svc
/// unless given).
pub fn request(host: &FakeHost, vm: &Vm, headers: &[(&str, &str)]) -> Stream {
    let mut all: Vec<(&str, &str)> =
        vec![(":method", "GET"), (":path", "/a"), (":authority", "svc")];
    for (name, value) in headers {
        all.retain(|(n, _)| n != name);
        all.push((name, value));
    }
    host.script_headers(REQ, &all);
    let mut stream = Stream::default();
    assert_eq!(stream.on_request_headers(host, vm), Action::Continue);
    // The request went upstream: its headers are gone.
    host.withdraw(REQ);
    stream
}

/// The upstream answered `status` with `headers`.
pub fn upstream(host: &FakeHost, status: &str, headers: &[(&str, &str)]) {
    let mut all = vec![(":status", status)];
    all.extend_from_slice(headers);
    host.script_headers(RESP, &all);
    host.script_property(&["response", "code_details"], b"via_upstream");
    host.script_property_u64(&["response", "flags"], 0);
}

/// Envoy failed to connect and answered 503 itself.
pub fn connection_refused(host: &FakeHost, headers: &[(&str, &str)]) {
    let mut all = vec![(":status", "503")];
    all.extend_from_slice(headers);
    host.script_headers(RESP, &all);
    host.script_property(
        &["response", "code_details"],
        b"upstream_reset_before_response_started{connection_failure}",
    );
    host.script_property_u64(&["response", "flags"], UPSTREAM_CONNECTION_FAILURE);
}

/// The one local reply sent so far.
pub fn the_reply(host: &FakeHost) -> LocalReply {
    let replies = host.local_replies();
    assert_eq!(replies.len(), 1, "one reply: {replies:?}");
    replies[0].clone()
}

pub fn header<'r>(reply: &'r LocalReply, name: &str) -> Option<&'r str> {
    reply.header(name).map(|v| std::str::from_utf8(v).unwrap())
}

pub fn body(reply: &LocalReply) -> &str {
    std::str::from_utf8(&reply.body).unwrap()
}

/// The `fallback_served` count of one rule, trigger and kind.
pub fn served(host: &FakeHost, rule: &str, trigger: &str, kind: &str) -> Option<i64> {
    host.metric(&tagged_name(
        "fallback_served",
        &[("rule", rule), ("trigger", trigger), ("kind", kind)],
    ))
}

/// Our own reply comes back through the filter's response callbacks: it is let through untouched.
pub fn own_reply_passes(host: &FakeHost, vm: &Vm, stream: &mut Stream, reply: &LocalReply) {
    let replies = host.local_replies().len();
    let status = reply.status.to_string();
    host.script_headers(RESP, &[(":status", &status)]);
    assert_eq!(
        stream.on_response_headers(host, vm, false),
        Action::Continue
    );
    assert_eq!(stream.on_response_trailers(host, vm), Action::Continue);
    assert_eq!(host.local_replies().len(), replies, "never wrapped again");
}
