//! The overload checks: a key's permits (`maxConcurrentCalls`), returned on every way a stream ends,
//! and the dependency's pushback (`maxPushback`).

use super::*;
use filter_common::fake_host::{Call, Op};
use std::time::Duration;

fn in_flight(host: &FakeHost) -> i64 {
    gauge(host, "circuit_breaker_in_flight", "pay")
}

#[test]
fn a_full_key_rejects_with_state_full_and_a_second_to_wait() {
    let (host, plugin) = configure(&breaker(r#""maxConcurrentCalls": 1"#));
    let (first, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert_eq!(in_flight(&host), 1);

    host.clear_calls();
    let (second, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.details, "circuit_breaker_full");
    assert_eq!(header(&reply, STATUS_HEADER), "pay; state=full");
    assert_eq!(header(&reply, "retry-after"), "1");
    end(&host, &plugin, second);
    assert_eq!(calls(&host, "pay", "full"), 1);
    assert_eq!(in_flight(&host), 1, "the rejected call held no permit");
    assert_eq!(
        calls(&host, "pay", "success") + calls(&host, "pay", "failure"),
        0
    );

    end(&host, &plugin, first);
    assert_eq!(in_flight(&host), 0);
    let (third, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue, "the permit came back");
    end(&host, &plugin, third);
}

#[test]
fn a_grpc_caller_of_a_full_key_gets_unavailable() {
    let (host, plugin) = configure(&breaker(r#""maxConcurrentCalls": 1"#));
    let (first, _) = request(&host, &plugin, &[]);
    host.clear_calls();
    let (second, action) = grpc_request(&host, &plugin);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!((reply.status, reply.grpc_status), (200, 14));
    assert_eq!(header(&reply, "grpc-retry-pushback-ms"), "1000");
    end(&host, &plugin, second);
    end(&host, &plugin, first);
}

/// Each way a stream can end gives its permit back exactly once: after a response, without one (the
/// caller left), from the drop alone (the host skipped the access-log callback), and `on_log` followed
/// by the drop.
#[test]
fn permits_come_back_on_every_way_a_stream_ends() {
    let (host, plugin) = configure(&breaker(r#""maxConcurrentCalls": 1"#));
    let admitted = |host: &FakeHost| {
        let (stream, action) = request(host, &plugin, &[]);
        assert_eq!(action, Action::Continue, "the last permit came back");
        assert_eq!(in_flight(host), 1);
        assert!(plugin.worker.borrow().holds_permits());
        stream
    };
    // A response, then on_log and the drop.
    let mut s = admitted(&host);
    respond(&host, &plugin, &mut s, &[(":status", "200")]);
    end(&host, &plugin, s);
    assert_eq!(in_flight(&host), 0);
    // No response: the caller gave up.
    let s = admitted(&host);
    host.script_property_u64(
        &["response", "flags"],
        filter_common::response_flags::DOWNSTREAM_REMOTE_RESET,
    );
    end(&host, &plugin, s);
    assert_eq!(in_flight(&host), 0);
    assert_eq!(calls(&host, "pay", "cancelled"), 1);
    assert_eq!(calls(&host, "pay", "failure"), 0);
    // The drop alone: given back, nothing recorded.
    let mut s = admitted(&host);
    s.on_drop(&host, &plugin);
    assert_eq!(in_flight(&host), 0);
    // on_log gives it back at once (the context may live on), then later ends: given back once.
    let mut s = admitted(&host);
    s.on_log(&host, &plugin);
    assert_eq!(in_flight(&host), 0, "given back at the access log");
    s.on_log(&host, &plugin);
    s.on_drop(&host, &plugin);
    assert_eq!(in_flight(&host), 0, "given back once");
    assert_eq!(calls(&host, "pay", "success"), 1);
    // A failure answered by the upstream: given back as well.
    let mut s = admitted(&host);
    respond(&host, &plugin, &mut s, &[(":status", "503")]);
    end(&host, &plugin, s);
    assert_eq!(in_flight(&host), 0);
    assert!(!plugin.worker.borrow().holds_permits());
}

/// A half-open probe the key's permits refuse does not go: its probe permit is given back, so the
/// breaker is not left waiting for a result that never comes.
#[test]
fn a_probe_refused_by_a_full_key_gives_its_probe_permit_back() {
    let (host, plugin) = configure(&breaker(
        r#""consecutiveFailures": 3, "halfOpenProbes": 2, "maxConcurrentCalls": 1"#,
    ));
    trip(&host, &plugin);
    host.advance_clock(Duration::from_secs(5));
    let (mut first, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(first.call().unwrap().probe);
    // The second probe the breaker grants finds the key full.
    host.clear_calls();
    let (refused, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    assert_eq!(header(&only_reply(&host), STATUS_HEADER), "pay; state=full");
    assert!(refused.call().is_none(), "not recorded");
    end(&host, &plugin, refused);
    assert_eq!(calls(&host, "pay", "probe"), 2);

    respond(&host, &plugin, &mut first, &[(":status", "200")]);
    end(&host, &plugin, first);
    assert_eq!(transitions(&host, "pay", "closed"), 0, "one success of two");
    // The refused probe's permit came back: the next caller probes instead of being rejected.
    let (mut next, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(next.call().unwrap().probe);
    respond(&host, &plugin, &mut next, &[(":status", "200")]);
    end(&host, &plugin, next);
    assert_eq!(transitions(&host, "pay", "closed"), 1);
}

#[test]
fn retry_after_from_the_upstream_closes_the_key_for_the_time_asked() {
    let (host, plugin) = configure(&breaker(
        r#""maxPushback": "10s", "consecutiveFailures": 0"#,
    ));
    let (mut stream, _) = request(&host, &plugin, &[]);
    host.clear_calls();
    respond(
        &host,
        &plugin,
        &mut stream,
        &[(":status", "503"), ("retry-after", "4")],
    );
    assert_eq!(host.count(Op::Now), 1, "the clock once per callback");
    end(&host, &plugin, stream);

    host.advance_clock(Duration::from_millis(1_500));
    host.clear_calls();
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(header(&reply, STATUS_HEADER), "pay; state=pushback");
    assert_eq!(reply.details, "circuit_breaker_pushback");
    assert_eq!(
        header(&reply, "retry-after"),
        "3",
        "the time left, rounded up"
    );
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "pushback"), 1);

    host.advance_clock(Duration::from_millis(2_500));
    assert_eq!(
        call(&host, &plugin, "200"),
        Action::Continue,
        "the time asked is over"
    );
}

#[test]
fn pushback_is_capped_by_max_pushback() {
    let (host, plugin) = configure(&breaker(r#""maxPushback": "2s""#));
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(
        &host,
        &plugin,
        &mut stream,
        &[(":status", "429"), ("retry-after", "3600")],
    );
    end(&host, &plugin, stream);
    host.clear_calls();
    let (stream, _) = request(&host, &plugin, &[]);
    assert_eq!(header(&only_reply(&host), "retry-after"), "2");
    end(&host, &plugin, stream);
}

#[test]
fn grpc_pushback_in_the_trailers_closes_the_key() {
    let (host, plugin) = configure(&breaker(r#""maxPushback": "10s""#));
    let (mut stream, _) = grpc_request(&host, &plugin);
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    host.script_headers(
        TRAILERS,
        &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "1500")],
    );
    stream.on_response_trailers(&host, &plugin);
    end(&host, &plugin, stream);
    host.clear_calls();
    let (stream, action) = grpc_request(&host, &plugin);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(header(&reply, STATUS_HEADER), "pay; state=pushback");
    assert_eq!(header(&reply, "grpc-retry-pushback-ms"), "1500");
    end(&host, &plugin, stream);
}

#[test]
fn only_the_upstream_s_own_answer_asks_for_pushback() {
    let (host, plugin) = configure(&breaker(r#""maxPushback": "10s""#));
    // A 503 Envoy made (no healthy upstream) with a Retry-After some filter added.
    host.script_property(&["response", "code_details"], b"no_healthy_upstream");
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(
        &host,
        &plugin,
        &mut stream,
        &[(":status", "503"), ("retry-after", "4")],
    );
    end(&host, &plugin, stream);
    // A 200 with Retry-After asks nothing either.
    host.script_property(&["response", "code_details"], b"via_upstream");
    let (mut stream, _) = request(&host, &plugin, &[]);
    respond(
        &host,
        &plugin,
        &mut stream,
        &[(":status", "200"), ("retry-after", "4")],
    );
    end(&host, &plugin, stream);
    assert_eq!(call(&host, &plugin, "200"), Action::Continue);
    assert_eq!(calls(&host, "pay", "pushback"), 0);
}

/// With `maxPushback` on, only a 503 or 429 has its `Retry-After` read: a good answer costs what it
/// costs without pushback (its status, and the clock), and so do a gRPC call's trailers without it.
#[test]
fn pushback_reads_retry_after_only_on_a_503_or_429() {
    let (host, plugin) = configure(&breaker(r#""maxPushback": "10s""#));
    let (mut stream, _) = request(&host, &plugin, &[]);
    host.clear_calls();
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    assert_eq!(
        host.calls(),
        [Call::Now, Call::Header(RESP, ":status".to_string())]
    );
    end(&host, &plugin, stream);
    let (mut stream, _) = grpc_request(&host, &plugin);
    respond(&host, &plugin, &mut stream, &[(":status", "503")]);
    host.script_headers(TRAILERS, &[("grpc-status", "14")]);
    host.clear_calls();
    stream.on_response_trailers(&host, &plugin);
    assert_eq!(
        host.calls(),
        [
            Call::Header(TRAILERS, "grpc-status".to_string()),
            Call::Header(TRAILERS, "grpc-retry-pushback-ms".to_string())
        ]
    );
    end(&host, &plugin, stream);
}

#[test]
fn dry_run_marks_what_a_full_key_would_reject() {
    let (host, plugin) = configure(&breaker(r#""maxConcurrentCalls": 1, "mode": "dryRun""#));
    let (first, _) = request(&host, &plugin, &[]);
    let (mut second, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    respond(&host, &plugin, &mut second, &[(":status", "200")]);
    assert_eq!(
        host.header_values(RESP, STATUS_HEADER),
        vec![b"pay; state=full; dry-run".to_vec()]
    );
    end(&host, &plugin, second);
    end(&host, &plugin, first);
    assert!(host.local_replies().is_empty());
    assert_eq!(calls(&host, "pay", "would_reject"), 1);
    assert_eq!(in_flight(&host), 0);
}

#[test]
fn the_timer_keeps_this_worker_s_lease_and_permits_counted() {
    let (host, plugin) = configure(&breaker(r#""maxConcurrentCalls": 5"#));
    assert_eq!(host.tick_period(), Some(crate::permits::RENEW_EVERY_MS));
    let (held, _) = request(&host, &plugin, &[]);
    // A call recorded: the worker has a stripe lease.
    assert_eq!(call(&host, &plugin, "200"), Action::Continue);
    host.advance_clock(Duration::from_secs(120));
    host.clear_calls();
    plugin.on_tick(&host);
    assert_eq!(host.count(Op::Now), 1, "the clock, once");
    assert!(
        host.count(Op::SetSharedData) >= 2,
        "the lease and the held permit renewed: {:?}",
        host.calls()
    );
    end(&host, &plugin, held);
    assert_eq!(in_flight(&host), 0);

    let (host, plugin) = configure(&breaker(""));
    assert_eq!(host.tick_period(), Some(super::super::LEASE_TICK_MS));
    host.clear_calls();
    plugin.on_tick(&host);
    assert_eq!(host.count(Op::SetSharedData), 0, "no lease yet, no permit");
}
