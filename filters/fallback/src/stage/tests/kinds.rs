//! Problem and static fallbacks, what fires them and what they carry.

use super::*;
use filter_common::fake_host::Op;
use filter_common::w3c::DEFAULT_FILTER_STATE_NAME;

#[test]
fn a_healthy_answer_passes_at_the_cost_of_two_header_reads() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = request(&host, &vm, &[("traceparent", TP)]);
    upstream(&host, "200", &[("content-type", "text/plain")]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    assert_eq!(s.on_response_body(&host, &vm, 5, true), Action::Continue);
    assert!(host.local_replies().is_empty());
    // One read of every request header, one of `:status`: no attribute read for a plain good answer.
    assert_eq!(host.count(Op::HeaderMap), 1);
    assert_eq!(host.count(Op::Header), 1);
    assert_eq!(host.call_count(), 2, "{:?}", host.calls());
}

#[test]
fn envoy_s_own_failure_becomes_a_problem_document_with_the_trace() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = request(
        &host,
        &vm,
        &[("traceparent", TP), ("x-request-id", "req-1")],
    );
    connection_refused(&host, &[]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Pause);
    let r = the_reply(&host);
    assert_eq!((r.status, r.grpc_status), (503, -1));
    assert_eq!(r.details, "fallback");
    assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
    assert_eq!(
        header(&r, "x-fallback"),
        Some("problem; rule=default; reason=connectionFailure")
    );
    assert_eq!(header(&r, "x-trace-id"), Some(TRACE_ID));
    assert_eq!(header(&r, "traceresponse"), Some(TP));
    let doc = body(&r);
    assert!(doc.contains(r#""status":503"#), "{doc}");
    assert!(doc.contains(&format!(r#""traceId":"{TRACE_ID}""#)), "{doc}");
    assert!(doc.contains(r#""requestId":"req-1""#), "{doc}");
    assert_eq!(
        served(&host, "default", "connectionFailure", "problem"),
        Some(1)
    );
    own_reply_passes(&host, &vm, &mut s, &r);
}

#[test]
fn an_application_error_from_the_upstream_passes_under_the_default_rule() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "503", &[]);
    assert_eq!(s.on_response_headers(&host, &vm, true), Action::Continue);
    assert!(host.local_replies().is_empty());
    // Another local reply of Envoy's (no upstream flag) is a `localReply`.
    let mut s = request(&host, &vm, &[]);
    host.script_headers(RESP, &[(":status", "504")]);
    host.script_property(&["response", "code_details"], b"route_not_found");
    host.script_property_u64(&["response", "flags"], 0);
    assert_eq!(s.on_response_headers(&host, &vm, true), Action::Pause);
    assert_eq!(
        header(&the_reply(&host), "x-fallback"),
        Some("problem; rule=default; reason=localReply")
    );
}

#[test]
fn the_problem_follows_the_caller_s_accept() {
    for (accept, content_type) in [
        ("text/html", "text/html; charset=utf-8"),
        ("text/plain", "text/plain; charset=utf-8"),
        ("application/json", "application/problem+json"),
    ] {
        let host = FakeHost::new();
        let vm = vm(&host, None);
        let mut s = request(&host, &vm, &[("accept", accept)]);
        connection_refused(&host, &[]);
        s.on_response_headers(&host, &vm, false);
        assert_eq!(
            header(&the_reply(&host), "content-type"),
            Some(content_type),
            "{accept}"
        );
    }
}

const STATIC: &str = r#"{"rules": [{"name": "st", "match": {"pathPrefix": "/a"},
    "triggers": {"status": "500-599", "circuitBreaker": true},
    "response": {"kind": "static", "status": 200, "headers": {"content-type": "application/json"},
                 "body": "{\"trace\": \"{{traceId}}\", \"was\": {{status}}, \"why\": \"{{reason}}\", \"id\": \"{{requestId}}\"}"}}]}"#;

#[test]
fn a_static_rule_fills_its_placeholders_escaped_and_keeps_the_retry_after() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STATIC));
    let mut s = request(&host, &vm, &[("traceparent", TP), ("x-request-id", "a\"b")]);
    upstream(&host, "503", &[("retry-after", "7")]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Pause);
    let r = the_reply(&host);
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r),
        format!(r#"{{"trace": "{TRACE_ID}", "was": 503, "why": "status", "id": "a\"b"}}"#)
    );
    assert_eq!(header(&r, "content-type"), Some("application/json"));
    assert_eq!(header(&r, "retry-after"), Some("7"));
    assert_eq!(
        header(&r, "x-fallback"),
        Some("static; rule=st; reason=status")
    );
    assert_eq!(served(&host, "st", "status", "static"), Some(1));
}

#[test]
fn only_requests_the_rule_matches_are_covered() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STATIC));
    let mut s = request(&host, &vm, &[(":path", "/b")]);
    upstream(&host, "503", &[]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    assert!(host.local_replies().is_empty());
    // A good answer to a covered request is not a failure either.
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "200", &[]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    assert!(host.local_replies().is_empty());
}

/// Whatever status the breaker rejects with (its `rejectStatus`, 400 to 599; 400 is the lowest).
#[test]
fn a_breaker_rejection_fires_the_circuit_breaker_trigger_and_keeps_its_retry_after() {
    for status in ["503", "429", "400"] {
        let host = FakeHost::new();
        let vm = vm(&host, Some(STATIC));
        let mut s = request(&host, &vm, &[]);
        host.script_headers(RESP, &[(":status", status), ("retry-after", "30")]);
        host.script_property(&["response", "code_details"], b"circuit_breaker_open");
        host.script_property_u64(&["response", "flags"], 0);
        assert_eq!(
            s.on_response_headers(&host, &vm, false),
            Action::Pause,
            "{status}"
        );
        let r = the_reply(&host);
        assert_eq!(
            header(&r, "x-fallback"),
            Some("static; rule=st; reason=circuitBreaker")
        );
        assert_eq!(header(&r, "retry-after"), Some("30"));
        assert_eq!(
            body(&r),
            format!(r#"{{"trace": "", "was": {status}, "why": "circuitBreaker", "id": ""}}"#)
        );
    }
}

#[test]
fn without_a_traceparent_the_trace_id_comes_from_trace_context_s_filter_state() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    host.script_property(&[DEFAULT_FILTER_STATE_NAME], TRACE_ID.as_bytes());
    let mut s = request(&host, &vm, &[]);
    connection_refused(&host, &[]);
    s.on_response_headers(&host, &vm, false);
    let r = the_reply(&host);
    assert_eq!(header(&r, "x-trace-id"), Some(TRACE_ID));
    assert_eq!(header(&r, "traceresponse"), None, "no W3C header to echo");
    assert_eq!(
        host.count(Op::Property),
        3,
        "details, flags, and the filter state once"
    );
}
