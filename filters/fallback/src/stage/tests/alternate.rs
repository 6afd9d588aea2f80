//! The alternate upstream: the call made for a failed request, and its answer served or replaced by the
//! rule's `otherwise`.

use super::*;
use filter_common::fake_host::Op;
use std::time::Duration;

const CALL: MapType = MapType::HttpCallResponseHeaders;

const ALTERNATE: &str = r#"{"rules": [{"name": "alt", "triggers": {"status": "503", "envoy": ["connectionFailure"]},
    "response": {"kind": "alternate", "cluster": "backup", "timeout": "250ms", "maxBodyBytes": 64,
                 "keyHeaders": ["x-tenant"],
                 "otherwise": {"kind": "static", "status": 200, "body": "no backup"}}}]}"#;

/// A failed request whose alternate call is in flight: the stream and the call's token.
fn call_made(host: &FakeHost, vm: &Vm) -> (Stream, u32) {
    let mut s = request(
        host,
        vm,
        &[("traceparent", TP), ("x-tenant", "acme"), ("x-other", "no")],
    );
    connection_refused(host, &[("retry-after", "3")]);
    assert_eq!(s.on_response_headers(host, vm, false), Action::Pause);
    assert!(host.local_replies().is_empty(), "the response waits");
    let calls = host.http_calls();
    assert_eq!(calls.len(), 1);
    (s, calls[0].token)
}

/// The alternate cluster answers `status` with `body`.
fn answer(host: &FakeHost, status: &str, body: &[u8]) {
    host.script_headers(
        CALL,
        &[
            (":status", status),
            ("content-type", "text/plain"),
            ("connection", "close"),
            ("x-fallback", "theirs"),
            ("x-trace-id", "theirs"),
            ("x-backup", "1"),
        ],
    );
    host.script_buffer(Buffer::HttpCallResponseBody, body);
}

#[test]
fn the_call_carries_the_request_line_the_key_headers_and_the_trace() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(ALTERNATE));
    call_made(&host, &vm);
    let call = &host.http_calls()[0];
    assert_eq!(call.cluster, "backup");
    assert_eq!(call.timeout, Duration::from_millis(250));
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            (":method", "GET"),
            (":path", "/a"),
            (":authority", "svc"),
            ("x-tenant", "acme"),
            ("traceparent", TP)
        ]
    );
}

#[test]
fn the_alternate_s_answer_stands_in_with_the_caller_s_trace() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(ALTERNATE));
    let (mut s, token) = call_made(&host, &vm);
    answer(&host, "200", b"from backup");
    s.on_http_call_response(&host, &vm, token, 6, 11);
    let r = the_reply(&host);
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), "from backup");
    assert_eq!(header(&r, "x-backup"), Some("1"));
    assert_eq!(header(&r, "content-type"), Some("text/plain"));
    assert_eq!(header(&r, "connection"), None, "hop-by-hop");
    assert_eq!(
        header(&r, "x-fallback"),
        Some("alternate; rule=alt; reason=connectionFailure")
    );
    assert_eq!(
        header(&r, "x-trace-id"),
        Some(TRACE_ID),
        "the caller's trace"
    );
    assert_eq!(header(&r, "traceresponse"), Some(TP));
    assert_eq!(header(&r, "retry-after"), Some("3"));
    assert_eq!(
        served(&host, "alt", "connectionFailure", "alternate"),
        Some(1)
    );
    own_reply_passes(&host, &vm, &mut s, &r);
}

#[test]
fn a_failed_timed_out_5xx_or_oversized_answer_gives_the_otherwise() {
    // (num_headers, status, body): a failed or timed-out call arrives without headers.
    for (num_headers, status, body_bytes) in [
        (0, "200", &b""[..]),
        (6, "503", b"down too"),
        (6, "200", &[b'x'; 65]),
    ] {
        let host = FakeHost::new();
        let vm = vm(&host, Some(ALTERNATE));
        let (mut s, token) = call_made(&host, &vm);
        answer(&host, status, body_bytes);
        s.on_http_call_response(&host, &vm, token, num_headers, body_bytes.len());
        let r = the_reply(&host);
        assert_eq!(body(&r), "no backup", "{num_headers} {status}");
        assert_eq!(
            header(&r, "x-fallback"),
            Some("static; rule=alt; reason=connectionFailure")
        );
        assert_eq!(header(&r, "retry-after"), Some("3"));
        assert_eq!(
            host.count(Op::Buffer),
            0,
            "no body read for an answer not served"
        );
    }
}

#[test]
fn an_answer_to_another_call_is_ignored() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(ALTERNATE));
    let (mut s, token) = call_made(&host, &vm);
    answer(&host, "200", b"x");
    s.on_http_call_response(&host, &vm, token + 1, 6, 1);
    assert!(host.local_replies().is_empty());
    s.on_http_call_response(&host, &vm, token, 6, 1);
    assert_eq!(host.local_replies().len(), 1);
    // The same answer twice is served once.
    s.on_http_call_response(&host, &vm, token, 6, 1);
    assert_eq!(host.local_replies().len(), 1);
}

#[test]
fn a_call_the_host_refuses_serves_the_otherwise_at_once() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(ALTERNATE));
    host.fail_next(Op::DispatchHttpCall);
    let mut s = request(&host, &vm, &[]);
    connection_refused(&host, &[]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Pause);
    assert_eq!(body(&the_reply(&host)), "no backup");
}
