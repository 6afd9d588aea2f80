//! How a finished call counts: gRPC status from trailers, callers that give up, Envoy's own replies and
//! failure flags, slow calls.

use super::*;
use filter_common::response_flags::{DOWNSTREAM_REMOTE_RESET, UPSTREAM_CONNECTION_FAILURE};

/// A gRPC call whose response headers say 200 and whose trailers carry `grpc-status`.
fn grpc_call(host: &FakeHost, plugin: &Plugin, trailer_status: &str) {
    let (mut stream, action) = grpc_request(host, plugin);
    assert_eq!(action, Action::Continue);
    respond(
        host,
        plugin,
        &mut stream,
        &[(":status", "200"), ("content-type", "application/grpc")],
    );
    host.script_headers(TRAILERS, &[("grpc-status", trailer_status)]);
    assert_eq!(stream.on_response_trailers(host, plugin), Action::Continue);
    end(host, plugin, stream);
}

#[test]
fn a_grpc_status_in_the_trailers_decides_the_outcome() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3"#));
    grpc_call(&host, &plugin, "0");
    assert_eq!(calls(&host, "pay", "success"), 1);
    for _ in 0..3 {
        grpc_call(&host, &plugin, "14");
    }
    assert_eq!(calls(&host, "pay", "failure"), 3);
    assert_eq!(transitions(&host, "pay", "open"), 1);
}

#[test]
fn a_trailers_only_grpc_failure_counts_from_the_headers() {
    let (host, plugin) = configure(&breaker(""));
    let (mut stream, _) = grpc_request(&host, &plugin);
    respond(
        &host,
        &plugin,
        &mut stream,
        &[(":status", "200"), ("grpc-status", "13")],
    );
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "failure"), 1);
}

#[test]
fn an_http_call_s_trailers_are_not_read() {
    let (host, plugin) = configure(&breaker(""));
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    host.script_headers(TRAILERS, &[("grpc-status", "14")]);
    host.clear_calls();
    stream.on_response_trailers(&host, &plugin);
    assert_eq!(host.call_count(), 0);
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "success"), 1);
}

#[test]
fn a_caller_that_gives_up_is_cancelled_not_failed() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 1"#));
    // No response reached the filter; Envoy says the caller reset its stream.
    host.script_property_u64(&["response", "flags"], DOWNSTREAM_REMOTE_RESET);
    let (stream, _) = request(&host, &plugin, &[]);
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "cancelled"), 1);
    assert_eq!(calls(&host, "pay", "failure"), 0);
    assert_eq!(transitions(&host, "pay", "open"), 0);
}

#[test]
fn no_response_after_an_upstream_failure_is_a_failure() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 1"#));
    host.script_property_u64(&["response", "flags"], UPSTREAM_CONNECTION_FAILURE);
    host.script_property_u64(&["response", "code"], 503);
    host.script_property(
        &["response", "code_details"],
        b"upstream_reset_before_response_started",
    );
    let (stream, _) = request(&host, &plugin, &[]);
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "failure"), 1);
    assert_eq!(transitions(&host, "pay", "open"), 1);
}

/// Whatever its status, 400 included (only a plain answer below 400 is taken as the upstream's without
/// asking who made it), and also when its headers never reached this filter (the stream's end reads
/// the status Envoy answered with).
#[test]
fn envoy_s_own_reply_without_an_upstream_failure_is_ignored() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 1"#));
    for (status, details) in [
        ("503", "rate_limited"),
        ("400", "request_headers_failed_strict_check"),
    ] {
        host.script_property(&["response", "code_details"], details.as_bytes());
        let (mut stream, _) = request(&host, &plugin, &[]);
        respond(&host, &plugin, &mut stream, &[(":status", status)]);
        assert_eq!(stream.call().unwrap().local_reply, Some(true), "{status}");
        end(&host, &plugin, stream);
    }
    host.script_property(&["response", "code_details"], b"rate_limited");
    host.script_property_u64(&["response", "code"], 429);
    let (stream, _) = request(&host, &plugin, &[]);
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "ignored"), 3);
    assert_eq!(
        calls(&host, "pay", "success") + calls(&host, "pay", "failure"),
        0
    );
    assert_eq!(transitions(&host, "pay", "open"), 0);
}

#[test]
fn the_upstream_s_answer_is_noted_before_an_earlier_filter_rewrites_it() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 1"#));
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(&host, &plugin, &mut stream, &[(":status", "503")]);
    // A fallback before this filter answers 200 instead; the access log then sees its reply.
    host.script_property_u64(&["response", "code"], 200);
    host.script_property(&["response", "code_details"], b"fallback");
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "failure"), 1);
}

#[test]
fn a_slow_answer_counts_as_slow_by_its_time_to_headers() {
    let (host, plugin) = configure(&breaker(r#""slowCallDuration": "100ms""#));
    let (mut stream, _) = request(&host, &plugin, &[]);
    host.advance_clock(std::time::Duration::from_millis(150));
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    // The download afterwards is not the dependency's latency.
    host.advance_clock(std::time::Duration::from_secs(10));
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "slow"), 1);
    let (mut quick, _) = request(&host, &plugin, &[]);
    host.advance_clock(std::time::Duration::from_millis(50));
    respond(&host, &plugin, &mut quick, &[(":status", "200")]);
    end(&host, &plugin, quick);
    assert_eq!(calls(&host, "pay", "slow"), 1);
    assert_eq!(calls(&host, "pay", "success"), 2);
}

#[test]
fn a_cancelled_probe_gives_its_permit_back() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3, "halfOpenProbes": 1"#));
    trip(&host, &plugin);
    host.advance_clock(std::time::Duration::from_secs(5));
    let (probe, _) = request(&host, &plugin, &[]);
    assert!(probe.call().unwrap().probe);
    host.script_property_u64(&["response", "flags"], DOWNSTREAM_REMOTE_RESET);
    end(&host, &plugin, probe);
    assert_eq!(calls(&host, "pay", "cancelled"), 1);
    assert_eq!(transitions(&host, "pay", "open"), 1, "not reopened");
    // The next caller probes at once.
    let (next, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(next.call().unwrap().probe);
}
