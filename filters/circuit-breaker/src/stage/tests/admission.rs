//! Admission: a healthy call and what it costs, rejections by an open breaker (HTTP and gRPC), the
//! half-open probes, and the modes.

use super::*;
use filter_common::fake_host::Op;

#[test]
fn a_healthy_call_is_admitted_recorded_and_costs_few_host_calls() {
    // The default configuration: one breaker keyed by the upstream cluster.
    let (host, plugin) = configure("{}");
    host.script_property(&["xds", "cluster_name"], b"outbound|80||pay");
    assert_eq!(call(&host, &plugin, "200"), Action::Continue);
    assert!(host.local_replies().is_empty());
    assert_eq!(calls(&host, "default", "success"), 1);

    // Once the key has its slot and the worker its stripe number, a healthy call costs: the cluster,
    // the content type, the clock and the key's record on the request; the clock and the status on
    // the response; the response flags, this worker's stripe and the success count at the end.
    host.clear_calls();
    let (mut stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        (
            host.count(Op::Property),
            host.count(Op::Header),
            host.count(Op::Now),
            host.count(Op::GetSharedData),
            host.call_count()
        ),
        (1, 1, 1, 1, 4),
        "{:?}",
        host.calls()
    );
    host.clear_calls();
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    assert_eq!(host.call_count(), 2, "{:?}", host.calls());
    host.clear_calls();
    end(&host, &plugin, stream);
    assert_eq!(
        (
            host.count(Op::Property),
            host.count(Op::SetSharedData),
            host.count(Op::IncrementMetric),
            host.call_count()
        ),
        (1, 1, 1, 3),
        "{:?}",
        host.calls()
    );
    assert_eq!(calls(&host, "default", "success"), 2);
}

#[test]
fn failures_in_a_row_open_the_breaker_and_rejections_say_when_to_retry() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3"#));
    trip(&host, &plugin);
    assert_eq!(calls(&host, "pay", "failure"), 3);
    assert_eq!(gauge(&host, "circuit_breaker_open", "pay"), 1);

    host.clear_calls();
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    assert!(stream.rejected());
    let reply = only_reply(&host);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.grpc_status, -1);
    assert_eq!(reply.details, "circuit_breaker_open");
    assert_eq!(header(&reply, STATUS_HEADER), "pay; state=open");
    assert_eq!(header(&reply, "retry-after"), "5", "openDuration 5s");
    assert_eq!(header(&reply, "content-type"), "text/plain");
    assert_eq!(reply.header("grpc-retry-pushback-ms"), None);
    assert_eq!(reply.body, b"circuit breaker 'pay' is open\n");
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "rejected"), 1);
    assert_eq!(
        calls(&host, "pay", "failure"),
        3,
        "a rejection is not recorded"
    );

    // Later, the time left.
    host.advance_clock(std::time::Duration::from_millis(2_500));
    host.clear_calls();
    let (stream, _) = request(&host, &plugin, &[]);
    assert_eq!(header(&only_reply(&host), "retry-after"), "3");
    end(&host, &plugin, stream);
}

#[test]
fn a_grpc_caller_is_rejected_with_unavailable_and_pushback_ms() {
    let (host, plugin) = configure(&breaker(
        r#""consecutiveFailures": 3, "envoyOverloaded": true"#,
    ));
    trip(&host, &plugin);
    host.clear_calls();
    let (stream, action) = grpc_request(&host, &plugin);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!((reply.status, reply.grpc_status), (200, 14));
    assert_eq!(header(&reply, "grpc-retry-pushback-ms"), "5000");
    assert_eq!(header(&reply, "retry-after"), "5");
    assert_eq!(header(&reply, "x-envoy-overloaded"), "true");
    assert_eq!(reply.header("content-type"), None, "Envoy sets gRPC's own");
    end(&host, &plugin, stream);
}

#[test]
fn half_open_admits_its_probes_only_and_closes_when_they_succeed() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3, "halfOpenProbes": 2"#));
    trip(&host, &plugin);
    host.advance_clock(std::time::Duration::from_secs(5));

    let (mut first, a1) = request(&host, &plugin, &[]);
    let (mut second, a2) = request(&host, &plugin, &[]);
    assert_eq!((a1, a2), (Action::Continue, Action::Continue));
    assert!(first.call().unwrap().probe && second.call().unwrap().probe);
    assert_eq!(calls(&host, "pay", "probe"), 2);
    assert_eq!(transitions(&host, "pay", "half_open"), 1);
    assert_eq!(
        gauge(&host, "circuit_breaker_open", "pay"),
        1,
        "a half-open key is not closed"
    );

    // Beyond the probes: rejected as half-open while they run.
    host.clear_calls();
    let (third, a3) = request(&host, &plugin, &[]);
    assert_eq!(a3, Action::Pause);
    assert_eq!(
        header(&only_reply(&host), STATUS_HEADER),
        "pay; state=half-open"
    );
    end(&host, &plugin, third);

    respond(&host, &plugin, &mut first, &[(":status", "200")]);
    end(&host, &plugin, first);
    assert_eq!(transitions(&host, "pay", "closed"), 0, "one probe of two");
    respond(&host, &plugin, &mut second, &[(":status", "200")]);
    end(&host, &plugin, second);
    assert_eq!(transitions(&host, "pay", "closed"), 1);
    assert_eq!(gauge(&host, "circuit_breaker_open", "pay"), 0);
    let (next, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(!next.call().unwrap().probe);
}

#[test]
fn a_failed_probe_opens_the_breaker_again_for_longer() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3"#));
    trip(&host, &plugin);
    host.advance_clock(std::time::Duration::from_secs(5));
    let (mut probe, _) = request(&host, &plugin, &[]);
    assert!(probe.call().unwrap().probe);
    respond(&host, &plugin, &mut probe, &[(":status", "500")]);
    end(&host, &plugin, probe);
    assert_eq!(transitions(&host, "pay", "open"), 2);
    assert_eq!(gauge(&host, "circuit_breaker_open", "pay"), 1, "one key");
    host.clear_calls();
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    // The second trip: openDuration times openDurationMultiplier (2).
    assert_eq!(header(&only_reply(&host), "retry-after"), "10");
    end(&host, &plugin, stream);
}

#[test]
fn forced_open_rejects_every_call_without_a_time_to_retry() {
    let (host, plugin) = configure(&breaker(r#""mode": "forcedOpen""#));
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(header(&reply, STATUS_HEADER), "pay; state=forced-open");
    assert_eq!(reply.header("retry-after"), None);
    end(&host, &plugin, stream);
    assert_eq!(calls(&host, "pay", "rejected"), 1);
    assert_eq!(host.count(Op::GetSharedData), 0, "no record is read");
}

#[test]
fn dry_run_marks_the_response_it_would_have_rejected() {
    let (host, plugin) = configure(&breaker(r#""consecutiveFailures": 3, "mode": "dryRun""#));
    trip(&host, &plugin);
    let (mut stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(stream.call().is_none(), "not recorded");
    respond(&host, &plugin, &mut stream, &[(":status", "200")]);
    assert_eq!(
        host.header_values(RESP, STATUS_HEADER),
        vec![b"pay; state=open; dry-run".to_vec()]
    );
    end(&host, &plugin, stream);
    assert!(host.local_replies().is_empty());
    assert_eq!(calls(&host, "pay", "would_reject"), 1);
    assert_eq!(calls(&host, "pay", "success"), 0);
}

#[test]
fn a_disabled_breaker_or_an_unmatched_request_decides_nothing() {
    let (host, plugin) = configure(&breaker(r#""mode": "disabled""#));
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(stream.call().is_none());
    end(&host, &plugin, stream);
    assert_eq!(host.count(Op::GetSharedData), 0);

    let (host, plugin) = configure(&breaker(r#""match": {"pathPrefix": "/other"}"#));
    let (stream, action) = request(&host, &plugin, &[]);
    assert_eq!(action, Action::Continue);
    assert!(stream.call().is_none());
    end(&host, &plugin, stream);
    assert_eq!(host.count(Op::Now), 0, "not even the clock");
}

#[test]
fn a_key_without_a_free_slot_passes_unprotected_and_is_counted() {
    let (host, plugin) = configure(&breaker(r#""keyBy": "header:x-tenant", "maxKeys": 1"#));
    let (a, action) = request(&host, &plugin, &[("x-tenant", "a")]);
    assert_eq!(action, Action::Continue);
    assert!(a.call().is_some());
    let (b, action) = request(&host, &plugin, &[("x-tenant", "b")]);
    assert_eq!(action, Action::Continue);
    assert!(b.call().is_none(), "no slot: nothing to record in");
    assert_eq!(
        host.metric(&tagged_name(
            "circuit_breaker_keys_overflow",
            &[("breaker", "pay")]
        )),
        Some(1)
    );
    end(&host, &plugin, a);
    end(&host, &plugin, b);
}

#[test]
fn two_workers_share_one_breaker_and_one_window() {
    let (host, first) = configure(&breaker(
        r#""consecutiveFailures": 0, "minimumCalls": 4, "failureRateThreshold": 50"#,
    ));
    let second = plugin_on(
        &host,
        &breaker(r#""consecutiveFailures": 0, "minimumCalls": 4, "failureRateThreshold": 50"#),
        9,
    );
    // Two failures on each worker: neither stripe alone reaches minimumCalls; together they do.
    call(&host, &first, "503");
    call(&host, &first, "503");
    call(&host, &second, "503");
    assert_eq!(transitions(&host, "pay", "open"), 0);
    call(&host, &second, "503");
    assert_eq!(transitions(&host, "pay", "open"), 1);
    // The other worker sees it open.
    host.clear_calls();
    assert_eq!(call(&host, &first, "200"), Action::Pause);
    assert_eq!(header(&only_reply(&host), STATUS_HEADER), "pay; state=open");
}
