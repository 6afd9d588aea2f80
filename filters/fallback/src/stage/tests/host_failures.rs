//! Host calls that fail: the stream goes on, nothing panics, and nothing is left paused.

use super::*;
use filter_common::fake_host::Op;

const STALE: &str = r#"{"rules": [{"name": "s", "triggers": {"status": "503"},
    "response": {"kind": "stale", "maxBodyBytes": 1024}}],
    "cache": {"maxBytes": 1048576, "maxBodyBytes": 1024}}"#;

#[test]
fn a_refused_local_reply_lets_the_original_response_go_on() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = request(&host, &vm, &[]);
    connection_refused(&host, &[]);
    host.fail_next(Op::SendLocalResponse);
    s.on_response_headers(&host, &vm, false);
    assert_eq!(host.count(Op::ResumeResponse), 1, "{:?}", host.calls());
    // Not our reply passing: the trailers are still the upstream's.
    host.script_headers(MapType::HttpResponseTrailers, &[]);
    s.on_response_trailers(&host, &vm);
    // A resume the host refuses too is only logged.
    let mut s = request(&host, &vm, &[]);
    connection_refused(&host, &[]);
    host.fail_next(Op::SendLocalResponse);
    host.fail_next(Op::ResumeResponse);
    s.on_response_headers(&host, &vm, false);
}

#[test]
fn unreadable_headers_and_attributes_never_fire_a_rule_by_mistake() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    // No request headers: the default rule covers every request all the same.
    host.fail_next(Op::HeaderMap);
    let mut s = request(&host, &vm, &[]);
    // Unreadable details count as an upstream answer: an application's 503 is never taken for Envoy's.
    connection_refused(&host, &[]);
    host.fail_always(Op::Property);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    assert!(host.local_replies().is_empty());
    host.recover(Op::Property);
    // An unreadable status reads as no failure: the response passes as it is.
    let mut s = request(&host, &vm, &[]);
    host.fail_always(Op::Header);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    assert!(host.local_replies().is_empty());
}

#[test]
fn failing_shared_data_is_a_cache_miss_and_no_store() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    host.fail_always(Op::GetSharedData);
    host.fail_always(Op::SetSharedData);
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "200", &[("content-type", "text/plain")]);
    s.on_response_headers(&host, &vm, false);
    host.script_buffer(Buffer::HttpResponseBody, b"hi");
    s.on_response_body(&host, &vm, 2, true);
    assert_eq!(host.metric("fallback_cache_stores"), Some(0));
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "503", &[]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Pause);
    assert_eq!(
        header(&the_reply(&host), "x-fallback"),
        Some("problem; rule=s; reason=status")
    );
    assert_eq!(host.metric("fallback_cache_misses"), Some(1));
}

#[test]
fn a_body_chunk_that_cannot_be_read_drops_the_capture() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "200", &[]);
    s.on_response_headers(&host, &vm, false);
    host.fail_next(Op::Buffer);
    assert_eq!(s.on_response_body(&host, &vm, 2, false), Action::Continue);
    host.script_buffer(Buffer::HttpResponseBody, b"hi");
    assert_eq!(s.on_response_body(&host, &vm, 2, true), Action::Continue);
    assert_eq!(
        host.metric("fallback_cache_stores"),
        Some(0),
        "half a body is never stored"
    );
    assert_eq!(host.count(Op::Buffer), 1, "nothing read once dropped");
}

#[test]
fn a_trailer_mark_the_host_refuses_is_still_counted() {
    let host = FakeHost::new();
    let vm = vm(
        &host,
        Some(r#"{"rules": [{"name": "g", "triggers": {"grpcStatus": [14]}}]}"#),
    );
    let mut s = request(&host, &vm, &[("content-type", "application/grpc")]);
    host.script_headers(MapType::HttpResponseTrailers, &[("grpc-status", "14")]);
    host.fail_next(Op::SetHeader);
    assert_eq!(s.on_response_trailers(&host, &vm), Action::Continue);
    assert_eq!(served(&host, "g", "grpcStatus", "trailers"), Some(1));
}

#[test]
fn an_invalid_configuration_is_refused() {
    let host = FakeHost::new();
    host.script_buffer(
        Buffer::PluginConfiguration,
        br#"{"rules": [{"name": "bad name!"}]}"#,
    );
    assert!(Vm::load(&host).is_none());
}
