//! The stage driven callback by callback over `FakeHost`: what the end-to-end suite proves of the filter
//! in Envoy (tests/harness/tests/trace_context), natively, plus every host failure.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::formats::Format;
use crate::memory;
use filter_common::fake_host::{FakeHost, Op};
use filter_common::metrics::tagged_name;
use std::time::Duration;

const REQ: MapType = MapType::HttpRequestHeaders;
const RESP: MapType = MapType::HttpResponseHeaders;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const OTHER_TRACEPARENT: &str = "00-11111111111111111111111111111111-2222222222222222-01";
const CORRELATION: &str = r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}}"#;
const XDS_DIRECTION: &[&str] = &["xds", "listener_direction"];

fn new_vm(host: &FakeHost, json: &str) -> Vm {
    let config = memory::load(Some(json.as_bytes())).unwrap();
    Vm::with_ids(host, config, IdGenerator::from_seed(7))
}

/// A fresh stream whose request carries `headers`, after its request callback.
fn request(host: &FakeHost, vm: &Vm, headers: &[(&str, &str)]) -> Stream {
    host.script_headers(REQ, headers);
    let mut stream = Stream::default();
    assert_eq!(stream.on_request_headers(host, vm), Action::Continue);
    stream
}

/// The response callback over an upstream 200.
fn respond(host: &FakeHost, vm: &Vm, stream: &mut Stream) {
    host.script_headers(RESP, &[(":status", "200")]);
    assert_eq!(stream.on_response_headers(host, vm), Action::Continue);
}

fn forwarded(host: &FakeHost, name: &str) -> Option<String> {
    let values = host.header_values(REQ, name);
    assert!(values.len() <= 1, "{name} forwarded {} times", values.len());
    values
        .first()
        .map(|v| String::from_utf8(v.clone()).unwrap())
}

fn response_header(host: &FakeHost, name: &str) -> Option<String> {
    host.header_values(RESP, name)
        .first()
        .map(|v| String::from_utf8(v.clone()).unwrap())
}

fn filter_state(host: &FakeHost) -> Option<String> {
    host.property_value(&["trace_id"])
        .map(|v| String::from_utf8(v).unwrap())
}

fn per_format(base: &str, format: &str) -> String {
    tagged_name(base, &[("format", format)])
}

/// A listener of `direction` (Envoy's attribute: 1 inbound, 2 outbound).
fn listener(host: &FakeHost, direction: u64) {
    host.script_property_u64(XDS_DIRECTION, direction);
}

// ---- Request headers: extract, translate, inject ----

#[test]
fn each_format_is_extracted_and_forwarded_as_traceparent() {
    // (format, request headers, trace id, span id)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        ("tracecontext", &[("traceparent", TRACEPARENT)], TRACE, SPAN),
        (
            "b3",
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            "80f198ee56343ba864fe8b2a57d3eff7",
            "e457b5a2e4d86bd1",
        ),
        (
            "b3multi",
            &[
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ],
            "80f198ee56343ba864fe8b2a57d3eff7",
            "e457b5a2e4d86bd1",
        ),
        (
            "jaeger",
            &[(
                "uber-trace-id",
                "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
            )],
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
        (
            "ottrace",
            &[
                ("ot-tracer-traceid", "a1ce929d0e0e4736a3ce929d0e0e4736"),
                ("ot-tracer-spanid", "00f067aa0ba902b7"),
                ("ot-tracer-sampled", "true"),
            ],
            "a1ce929d0e0e4736a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
        (
            "datadog",
            &[
                ("x-datadog-trace-id", "123"),
                ("x-datadog-parent-id", "456"),
                ("x-datadog-sampling-priority", "1"),
            ],
            "0000000000000000000000000000007b",
            "00000000000001c8",
        ),
        (
            "xray",
            &[(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )],
            "5759e988bd862e3fe1be46a994272793",
            "53995c3f42cd8ad8",
        ),
        (
            "cloudtrace",
            &[(
                "x-cloud-trace-context",
                "d36a105d7002f0dee73c0dfb9553764a/139592093;o=1",
            )],
            "d36a105d7002f0dee73c0dfb9553764a",
            "000000000852019d",
        ),
        (
            "grpc-trace-bin",
            &[("grpc-trace-bin", "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=")],
            "4bf92f3577b34da6a3ce929d000e4736",
            "34f067aa0ba902b7",
        ),
    ];
    for (format, headers, trace, span) in cases {
        let host = FakeHost::new();
        let vm = new_vm(&host, "{}");
        let stream = request(&host, &vm, headers);
        assert_eq!(
            forwarded(&host, "traceparent").as_deref(),
            Some(format!("00-{trace}-{span}-01").as_str()),
            "{format}"
        );
        assert_eq!(
            host.metric(&per_format("trace_context_extracted", format)),
            Some(1),
            "{format}"
        );
        assert_eq!(host.metric("trace_context_started"), Some(0), "{format}");
        assert_eq!(filter_state(&host).as_deref(), Some(*trace), "{format}");
        assert_eq!(stream.context().unwrap().trace_id_hex(), *trace, "{format}");
    }
}

#[test]
fn a_w3c_caller_is_translated_into_every_injected_format() {
    let host = FakeHost::new();
    let inject = r#"{"inject": ["tracecontext", "b3", "b3multi", "jaeger", "ottrace", "datadog",
        "xray", "cloudtrace", "grpc-trace-bin"]}"#;
    let vm = new_vm(&host, inject);
    request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    assert_eq!(
        forwarded(&host, "b3").as_deref(),
        Some(format!("{TRACE}-{SPAN}-1").as_str())
    );
    assert_eq!(forwarded(&host, "x-b3-traceid").as_deref(), Some(TRACE));
    assert_eq!(forwarded(&host, "x-b3-spanid").as_deref(), Some(SPAN));
    assert_eq!(
        forwarded(&host, "uber-trace-id").as_deref(),
        Some(format!("{TRACE}:{SPAN}:0:1").as_str())
    );
    // Every format written tells the same trace: each, alone, read by a next hop, continues it.
    let written = host.headers(REQ).unwrap();
    for format in Format::ALL.iter().filter(|f| **f != Format::TraceContext) {
        let own: Vec<(&str, &str)> = written
            .iter()
            .filter(|(n, _)| Format::owning(n) == Some(*format))
            .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).unwrap()))
            .collect();
        assert!(!own.is_empty(), "{format:?} not written");
        let next = FakeHost::new();
        let next_vm = new_vm(&next, "{}");
        let stream = request(&next, &next_vm, &own);
        assert_eq!(
            stream.context().unwrap().trace_id_hex(),
            TRACE,
            "{format:?}: {own:?}"
        );
    }
}

#[test]
fn a_received_format_of_another_trace_is_repaired_or_removed() {
    let b3_other = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
    let host = FakeHost::new();
    let vm1 = new_vm(&host, "{}");
    request(
        &host,
        &vm1,
        &[("traceparent", TRACEPARENT), ("b3", b3_other)],
    );
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(
        forwarded(&host, "b3").as_deref(),
        Some(format!("{TRACE}-{SPAN}-1").as_str())
    );
    assert_eq!(
        host.metric(&per_format("trace_context_conflicts", "b3")),
        Some(1)
    );

    let host = FakeHost::new();
    let vm2 = new_vm(&host, r#"{"keepReceivedFormats": false}"#);
    request(
        &host,
        &vm2,
        &[("traceparent", TRACEPARENT), ("b3", b3_other)],
    );
    assert_eq!(forwarded(&host, "b3"), None, "removed");
    assert!(host
        .calls()
        .contains(&filter_common::fake_host::Call::RemoveHeader(
            REQ,
            "b3".into()
        )));
}

// ---- Request headers: a new trace ----

#[test]
fn a_request_without_a_context_starts_a_trace() {
    let host = FakeHost::new();
    let vm = new_vm(&host, "{}");
    let mut stream = request(&host, &vm, &[(":path", "/")]);
    let traceparent = forwarded(&host, "traceparent").unwrap();
    let started = w3c::parse_traceparent(traceparent.as_bytes()).unwrap();
    assert_eq!(stream.context(), Some(&started));
    assert_eq!(host.metric("trace_context_started"), Some(1));
    respond(&host, &vm, &mut stream);
    assert_eq!(
        response_header(&host, "x-trace-id"),
        Some(started.trace_id_hex())
    );
    assert_eq!(filter_state(&host), Some(started.trace_id_hex()));
}

#[test]
fn an_invalid_or_unreadable_traceparent_starts_a_new_trace() {
    let invalid: &[&[u8]] = &[
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        &[0xff, 0xfe, b'-', 0x80],
    ];
    for value in invalid {
        let host = FakeHost::new();
        let vm = new_vm(&host, "{}");
        host.script_headers(REQ, &[]);
        host.script_header_bytes(REQ, "traceparent", value);
        let mut stream = Stream::default();
        stream.on_request_headers(&host, &vm);
        let forwarded = forwarded(&host, "traceparent").unwrap();
        let ctx = w3c::parse_traceparent(forwarded.as_bytes()).unwrap();
        assert_ne!(ctx.trace_id_hex(), TRACE);
        assert_eq!(
            host.metric(&per_format("trace_context_invalid", "tracecontext")),
            Some(1),
            "{value:?}"
        );
        assert_eq!(host.metric("trace_context_started"), Some(1));
    }
}

#[test]
fn duplicated_traceparent_is_refused() {
    let host = FakeHost::new();
    let vm = new_vm(&host, "{}");
    request(
        &host,
        &vm,
        &[
            ("traceparent", TRACEPARENT),
            ("traceparent", OTHER_TRACEPARENT),
        ],
    );
    let forwarded = host.header_values(REQ, "traceparent");
    assert_eq!(forwarded.len(), 1, "one traceparent forwarded");
    let ctx = w3c::parse_traceparent(&forwarded[0]).unwrap();
    assert_ne!(ctx.trace_id_hex(), TRACE);
    assert_ne!(ctx.trace_id_hex(), "11111111111111111111111111111111");
}

// ---- Response headers ----

#[test]
fn the_response_carries_the_trace_id_and_traceresponse() {
    let host = FakeHost::new();
    let vm = new_vm(&host, "{}");
    let mut stream = request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    // Request headers are gone once the request continued.
    host.withdraw(REQ);
    respond(&host, &vm, &mut stream);
    assert_eq!(response_header(&host, "x-trace-id").as_deref(), Some(TRACE));
    assert_eq!(
        response_header(&host, "traceresponse").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(host.count(Op::HeaderMap), 1, "headers are read once");
}

#[test]
fn response_headers_and_filter_state_can_be_turned_off() {
    let host = FakeHost::new();
    let vm = new_vm(
        &host,
        r#"{"responseHeader": "", "traceResponse": false, "filterStateName": ""}"#,
    );
    let mut stream = request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    respond(&host, &vm, &mut stream);
    assert_eq!(
        host.headers(RESP).unwrap(),
        vec![(":status".into(), b"200".to_vec())]
    );
    assert_eq!(host.count(Op::SetProperty), 0);

    let host = FakeHost::new();
    let vm = new_vm(
        &host,
        r#"{"responseHeader": "x-b3-trace", "filterStateName": "tid"}"#,
    );
    let mut stream = request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    respond(&host, &vm, &mut stream);
    assert_eq!(response_header(&host, "x-b3-trace").as_deref(), Some(TRACE));
    assert_eq!(response_header(&host, "x-trace-id"), None);
    assert_eq!(
        host.property_value(&["tid"]),
        Some(TRACE.as_bytes().to_vec())
    );
}

#[test]
fn a_local_reply_before_the_request_callback_gets_a_new_trace() {
    let host = FakeHost::new();
    let vm = new_vm(&host, "{}");
    host.set_clock(1_700_000_000 * NANOS_PER_SEC);
    let mut stream = Stream::default();
    host.script_headers(RESP, &[(":status", "403")]);
    stream.on_response_headers(&host, &vm);
    let id = response_header(&host, "x-trace-id").unwrap();
    assert_eq!(id.len(), 32);
    let traceresponse = response_header(&host, "traceresponse").unwrap();
    let ctx = w3c::parse_traceparent(traceresponse.as_bytes()).unwrap();
    assert_eq!(ctx.trace_id_hex(), id);
    assert_eq!(ctx.sampled, Some(true), "sampling ratio 1");
    // The access log shows the same id.
    assert_eq!(filter_state(&host), Some(id));
    assert_eq!(host.count(Op::Now), 1, "the clock is read once");
}

#[test]
fn with_xray_injected_new_trace_ids_begin_with_the_epoch_seconds() {
    // X-Ray refuses a trace id whose first 32 bits are not the Unix time in seconds.
    let host = FakeHost::new();
    let vm = new_vm(&host, r#"{"inject": ["tracecontext", "xray"]}"#);
    host.set_clock(1_700_000_000 * NANOS_PER_SEC + 999_999_999);
    let mut stream = Stream::default();
    host.script_headers(RESP, &[(":status", "403")]);
    stream.on_response_headers(&host, &vm);
    let id = response_header(&host, "x-trace-id").unwrap();
    assert_eq!(&id[..8], format!("{:08x}", 1_700_000_000u32), "{id}");

    // So does a request's new trace.
    request(&host, &vm, &[]);
    let root = forwarded(&host, "x-amzn-trace-id").unwrap();
    assert!(root.starts_with("Root=1-6553f100-"), "{root}");
    let traceparent = forwarded(&host, "traceparent").unwrap();
    assert!(traceparent.starts_with("00-6553f100"), "{traceparent}");
}

// ---- Correlation by x-request-id ----

#[test]
fn an_inbound_context_is_restored_on_the_outbound_call_with_its_request_id() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.set_clock(1_000 * NANOS_PER_SEC);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "vendor=opaque"),
            ("x-request-id", "req-1"),
        ],
    );
    assert_eq!(host.metric("trace_context_correlation_refused"), Some(0));

    listener(&host, 2);
    host.advance_clock(Duration::from_secs(1));
    let stream = request(&host, &vm, &[("x-request-id", "req-1")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(
        forwarded(&host, "tracestate").as_deref(),
        Some("vendor=opaque")
    );
    assert_eq!(stream.context().unwrap().trace_id_hex(), TRACE);
    assert_eq!(host.metric("trace_context_restored"), Some(1));
    assert_eq!(
        host.metric("trace_context_outbound_without_context"),
        Some(1)
    );

    // Another request id, and an outbound call without one, start their own traces.
    for headers in [&[("x-request-id", "req-2")][..], &[]] {
        request(&host, &vm, headers);
        let tp = forwarded(&host, "traceparent").unwrap();
        assert!(!tp.contains(TRACE), "{headers:?}");
    }
    assert_eq!(host.metric("trace_context_restored"), Some(1));
    assert_eq!(host.metric("trace_context_started"), Some(2));
}

#[test]
fn the_listener_direction_comes_from_either_attribute_or_the_configuration() {
    // Older Envoys name the attribute `listener_direction`.
    let host = FakeHost::new();
    let vm1 = new_vm(&host, CORRELATION);
    host.script_property_u64(&["listener_direction"], 1);
    request(
        &host,
        &vm1,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    host.script_property_u64(&["listener_direction"], 2);
    request(&host, &vm1, &[("x-request-id", "r")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );

    // A configured direction wins over the attribute, and reads none.
    let host = FakeHost::new();
    let inbound = new_vm(
        &host,
        r#"{"direction": "inbound", "correlation": {"enabled": true, "slots": 64}}"#,
    );
    let outbound = new_vm(
        &host,
        r#"{"direction": "outbound", "correlation": {"enabled": true, "slots": 64}}"#,
    );
    listener(&host, 2);
    request(
        &host,
        &inbound,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    listener(&host, 1);
    request(&host, &outbound, &[("x-request-id", "r")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(host.count(Op::Property), 0);
}

#[test]
fn an_inbound_request_is_never_given_a_stored_context() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    request(&host, &vm, &[("x-request-id", "r")]);
    let tp = forwarded(&host, "traceparent").unwrap();
    assert!(!tp.contains(TRACE), "restored on an inbound listener: {tp}");
    assert_eq!(host.metric("trace_context_restored"), Some(0));
}

#[test]
fn only_an_inbound_listener_stores_a_context() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.clear_calls();
    // A gateway (no direction attribute) and an outbound listener: neither stores.
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    listener(&host, 2);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    assert_eq!(host.count(Op::SetSharedData), 0);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    assert_eq!(host.count(Op::SetSharedData), 1);
}

#[test]
fn a_live_entry_is_not_taken_over_by_another_trace() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    let retry = "00-0af7651916cd43dd8448eb211c80319c-00000000000000bb-01";
    let inbound = |tp: &str| {
        listener(&host, 1);
        request(
            &host,
            &vm,
            &[("traceparent", tp), ("x-request-id", "victim")],
        );
    };
    let restored = || {
        listener(&host, 2);
        request(&host, &vm, &[("x-request-id", "victim")]);
        forwarded(&host, "traceparent")
    };
    inbound(TRACEPARENT);
    inbound(OTHER_TRACEPARENT);
    assert_eq!(restored().as_deref(), Some(TRACEPARENT), "hijacked");
    // A retry of the same trace refreshes the entry.
    inbound(retry);
    assert_eq!(restored().as_deref(), Some(retry));
    inbound(OTHER_TRACEPARENT);
    assert_eq!(restored().as_deref(), Some(retry), "hijacked");
    assert_eq!(host.metric("trace_context_correlation_refused"), Some(2));
    assert_eq!(host.metric("trace_context_restored"), Some(3));
}

#[test]
fn another_request_id_in_a_live_slot_evicts_it_and_is_counted() {
    let host = FakeHost::new();
    let vm = new_vm(&host, r#"{"correlation": {"enabled": true, "slots": 1}}"#);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "a")],
    );
    request(
        &host,
        &vm,
        &[("traceparent", OTHER_TRACEPARENT), ("x-request-id", "b")],
    );
    assert_eq!(host.metric("trace_context_correlation_evicted"), Some(1));
    listener(&host, 2);
    request(&host, &vm, &[("x-request-id", "a")]);
    let tp = forwarded(&host, "traceparent").unwrap();
    assert!(!tp.contains(TRACE) && !tp.contains("1111111111"), "{tp}");
    request(&host, &vm, &[("x-request-id", "b")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(OTHER_TRACEPARENT)
    );
}

#[test]
fn a_stored_context_expires_after_its_ttl_on_the_hosts_clock() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.set_clock(1_000 * NANOS_PER_SEC);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    listener(&host, 2);
    host.advance_clock(Duration::from_secs(29));
    request(&host, &vm, &[("x-request-id", "r")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    host.advance_clock(Duration::from_secs(2));
    request(&host, &vm, &[("x-request-id", "r")]);
    let tp = forwarded(&host, "traceparent").unwrap();
    assert!(!tp.contains(TRACE), "expired entry restored: {tp}");
}

#[test]
fn configure_creates_the_slots_and_the_seed_only_with_correlation() {
    let host = FakeHost::new();
    Vm::configure(&host, memory::load(None).unwrap());
    assert_eq!(host.shared().len(), 0);
    assert_eq!(host.count(Op::GetSharedData), 0);

    let host = FakeHost::new();
    Vm::configure(&host, memory::load(Some(CORRELATION.as_bytes())).unwrap());
    assert_eq!(host.shared().len(), 64 + 1, "64 slots and the seed");
}

// ---- Cost ----

#[test]
fn a_healthy_request_reads_its_headers_once_and_the_clock_only_when_needed() {
    let host = FakeHost::new();
    let vm = new_vm(&host, "{}");
    host.clear_calls();
    listener(&host, 1);
    let mut stream = request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    respond(&host, &vm, &mut stream);
    assert_eq!(host.count(Op::HeaderMap), 1);
    assert_eq!(host.count(Op::Header), 0);
    assert_eq!(
        host.count(Op::Now),
        0,
        "no clock without correlation or X-Ray"
    );
    assert_eq!(host.count(Op::Property), 1, "the listener direction");
    assert_eq!(host.count(Op::SetHeader), 2, "x-trace-id and traceresponse");
    assert_eq!(host.count(Op::SetProperty), 1, "filter state");
    assert_eq!(host.count(Op::GetSharedData), 0);

    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.clear_calls();
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    assert_eq!(host.count(Op::Now), 1, "the clock once per callback");
}

// ---- Host failures ----

#[test]
fn refused_header_and_property_writes_cost_only_those_writes() {
    let host = FakeHost::new();
    let vm = new_vm(&host, r#"{"inject": ["tracecontext", "b3"]}"#);
    host.fail_always(Op::SetHeader);
    host.fail_always(Op::RemoveHeader);
    host.fail_always(Op::SetProperty);
    let mut stream = request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    respond(&host, &vm, &mut stream);
    assert_eq!(stream.context().unwrap().trace_id_hex(), TRACE);
    assert_eq!(forwarded(&host, "b3"), None);
    assert_eq!(response_header(&host, "x-trace-id"), None);
    // Every write was still attempted, and counting went on.
    assert_eq!(host.count(Op::SetHeader), 3);
    assert_eq!(
        host.metric(&per_format("trace_context_extracted", "tracecontext")),
        Some(1)
    );
}

#[test]
fn unreadable_headers_direction_and_clock_start_a_trace_without_correlation() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.clear_calls();
    host.fail_always(Op::HeaderMap);
    host.fail_always(Op::Property);
    host.fail_always(Op::Now);
    let stream = request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    assert_ne!(stream.context().unwrap().trace_id_hex(), TRACE);
    assert_eq!(host.metric("trace_context_started"), Some(1));
    // An unknown direction is neither side: nothing stored, nothing restored.
    assert_eq!(host.count(Op::GetSharedData), 0);
}

#[test]
fn shared_data_failures_cost_only_correlation() {
    let host = FakeHost::new();
    let vm = new_vm(&host, CORRELATION);
    host.fail_always(Op::GetSharedData);
    host.fail_always(Op::SetSharedData);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(host.metric("trace_context_correlation_refused"), Some(0));
    listener(&host, 2);
    let stream = request(&host, &vm, &[("x-request-id", "r")]);
    assert_ne!(stream.context().unwrap().trace_id_hex(), TRACE);
    assert_eq!(host.metric("trace_context_started"), Some(1));

    // Written slots stay unreadable only while the host fails.
    host.recover(Op::GetSharedData);
    host.recover(Op::SetSharedData);
    listener(&host, 1);
    request(
        &host,
        &vm,
        &[("traceparent", TRACEPARENT), ("x-request-id", "r")],
    );
    listener(&host, 2);
    request(&host, &vm, &[("x-request-id", "r")]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
}

#[test]
fn refused_metrics_leave_the_counters_inert() {
    let host = FakeHost::new();
    host.fail_always(Op::DefineMetric);
    let vm = new_vm(&host, "{}");
    host.recover(Op::DefineMetric);
    request(&host, &vm, &[("traceparent", TRACEPARENT)]);
    assert_eq!(
        forwarded(&host, "traceparent").as_deref(),
        Some(TRACEPARENT)
    );
    assert_eq!(host.metric_calls(), 0);
}
