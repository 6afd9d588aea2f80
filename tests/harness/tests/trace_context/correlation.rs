//! Request-id correlation in a sidecar: an outbound call that carries only the inbound request's
//! `x-request-id` gets its trace back (issue 7 items 9-10: with `tracestate`, never hijacked).

use e2e_harness::*;

use crate::support::*;

/// An outbound call (`GET /out`, HTTP/1.1) that carries only `x-request-id`: what correlation restores.
async fn outbound_with_request_id(outbound: u16, request_id: &str) -> Response {
    http1(outbound, "GET", "/out", &[("x-request-id", request_id)], "").await
}

/// Inbound and outbound listeners of one Envoy (`--concurrency 2`), like a sidecar, both with `config`.
async fn sidecar(config: &str) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("inbound")
                    .inbound()
                    .filter(trace_filter(Some(config)))
                    .route(Route::to("in", "/", "upstream")),
            )
            .listener(
                Listener::new("outbound")
                    .outbound()
                    .filter(trace_filter(Some(config)))
                    .route(Route::to("out", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port()))
            .concurrency(2),
    )
    .await;
    (upstream, envoy)
}

/// Inbound and outbound listeners of one Envoy, like a sidecar: the outbound call that carries only the
/// inbound request's `x-request-id` gets the inbound trace back, whichever worker handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_correlation_restores_context_across_listeners() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let rounds = 20;
    for i in 0..rounds {
        let request_id = format!("corr-{i}-{}", std::process::id());
        let trace = format!("{:032x}", 0x1000 + i);
        let tp = format!("00-{trace}-00000000000000aa-01");
        // Each call opens its own connection, so the two workers share the work.
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[("traceparent", &tp), ("x-request-id", &request_id)],
            "",
        )
        .await;
        assert_eq!(
            r.echo_header("x-request-id").as_deref(),
            Some(request_id.as_str())
        );
        let r = http2(
            outbound,
            "GET",
            "/out",
            &[("x-request-id", &request_id)],
            "",
        )
        .await;
        let restored = r
            .echo_header("traceparent")
            .expect("outbound call got a traceparent");
        assert_eq!(w3c_trace(&restored), trace, "round {i}");
        assert_eq!(r.header("x-trace-id"), Some(trace.as_str()));
    }
    // An unknown request id is not restored: it starts a trace and is reported as broken propagation.
    let r = outbound_with_request_id(outbound, "never-seen").await;
    assert!(r.echo_header("traceparent").is_some());
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_restored"),
        Some(&rounds),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("trace_context_outbound_without_context"),
        Some(&(rounds + 1)),
        "{stats:?}"
    );
}

/// Item 9: a context restored by `x-request-id` carries the inbound `tracestate` too, kept within 512
/// characters by the spec's truncation rules (whole members, those over 128 characters first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item9_correlation_restores_tracestate() {
    let (_upstream, envoy) = sidecar(
        r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}, "tracestateMaxLength": 2048}"#,
    )
    .await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let small = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let large = format!("big={}", "x".repeat(196));
    let many: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "y".repeat(16)))
        .collect();
    // 200 + 20 * 20 + 20 commas = 620 characters: over 512, so the 200-character member goes first.
    let long = format!("{large},{}", many.join(","));
    assert_eq!(long.len(), 620);
    for (i, (sent, restored)) in [(small, small.to_string()), (long.as_str(), many.join(","))]
        .into_iter()
        .enumerate()
    {
        let request_id = format!("item9-{i}-{}", std::process::id());
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", sent),
                ("x-request-id", &request_id),
            ],
            "",
        )
        .await;
        assert_eq!(r.echo_header("tracestate").as_deref(), Some(sent));
        let r = outbound_with_request_id(outbound, &request_id).await;
        assert_eq!(r.echo_header("traceparent").as_deref(), Some(TRACEPARENT));
        assert_eq!(r.echo_header("tracestate"), Some(restored), "round {i}");
    }
    assert_eq!(tagged(&envoy).await.get("trace_context_restored"), Some(&2));
}

/// Item 10: an inbound request that reuses a live request's `x-request-id` with another trace does not
/// take over its correlation entry (first writer wins until the TTL ends); a retry with the same trace
/// does, and the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_live_correlation_entry_cannot_be_hijacked() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let request_id = format!("item10-{}", std::process::id());
    let victim = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let retry = "00-0af7651916cd43dd8448eb211c80319c-00000000000000bb-01";
    let attacker = "00-11111111111111111111111111111111-2222222222222222-01";
    let inbound_call = |tp: &'static str| {
        let request_id = request_id.clone();
        async move {
            let r = http1(
                inbound,
                "GET",
                "/in",
                &[("traceparent", tp), ("x-request-id", &request_id)],
                "",
            )
            .await;
            assert_eq!(r.status, 200);
        }
    };
    let restored = || {
        let request_id = request_id.clone();
        async move {
            outbound_with_request_id(outbound, &request_id)
                .await
                .echo_header("traceparent")
        }
    };
    inbound_call(victim).await;
    inbound_call(attacker).await;
    assert_eq!(restored().await.as_deref(), Some(victim), "hijacked");
    // A retry of the same trace refreshes the entry (its new span id is restored).
    inbound_call(retry).await;
    assert_eq!(restored().await.as_deref(), Some(retry));
    inbound_call(attacker).await;
    assert_eq!(restored().await.as_deref(), Some(retry), "hijacked");
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_correlation_refused"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(stats.get("trace_context_restored"), Some(&3), "{stats:?}");
}

/// Item 10, collisions: with one slot every request id shares it. Another id replaces a live entry (newest
/// wins, counted), and the evicted id is then not restored at all, never into the other request's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_another_request_id_in_a_live_slot_is_never_restored_into_its_trace() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 1, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let second = "00-11111111111111111111111111111111-2222222222222222-01";
    for (tp, id) in [(first, "item10-a"), (second, "item10-b")] {
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[("traceparent", tp), ("x-request-id", id)],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = outbound_with_request_id(outbound, "item10-a").await;
    let tp = r.echo_header("traceparent").unwrap();
    assert_ne!(w3c_trace(&tp), w3c_trace(first));
    assert_ne!(w3c_trace(&tp), w3c_trace(second));
    let r = outbound_with_request_id(outbound, "item10-b").await;
    assert_eq!(r.echo_header("traceparent").as_deref(), Some(second));
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_correlation_evicted"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("trace_context_correlation_refused"),
        Some(&0),
        "{stats:?}"
    );
    assert_eq!(stats.get("trace_context_restored"), Some(&1), "{stats:?}");
}

/// The slot of a request id before issue 16: FNV-1a 64 of the id modulo the slots, with no key. An
/// attacker computes a colliding id offline, as this does.
fn old_unkeyed_slot(request_id: &str, slots: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in request_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % slots
}

/// Issue 16 item 1: an id computed offline to share the victim's slot under the old unkeyed hash no
/// longer evicts the victim's live entry, so the victim's id cannot then be claimed with the attacker's
/// trace: the victim's outbound call is restored into the victim's trace, the claim is refused and
/// counted, and the colliding request keeps its own entry (in another slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item1_correlation_takeover_with_a_colliding_id_fails() {
    let slots = 4096u64;
    let (_upstream, envoy) = sidecar(&format!(
        r#"{{"correlation": {{"enabled": true, "slots": {slots}, "ttl": "30s"}}}}"#
    ))
    .await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let victim_id = format!("victim-{}", std::process::id());
    let target = old_unkeyed_slot(&victim_id, slots);
    let collider = (0u64..)
        .map(|i| format!("attacker-{i}"))
        .find(|id| old_unkeyed_slot(id, slots) == target)
        .unwrap();
    let victim = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let attacker = "00-11111111111111111111111111111111-2222222222222222-01";
    for (tp, id) in [
        (victim, &victim_id),
        (attacker, &collider),
        (attacker, &victim_id),
    ] {
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[("traceparent", tp), ("x-request-id", id)],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let restored = outbound_with_request_id(outbound, &victim_id)
        .await
        .echo_header("traceparent");
    assert_eq!(restored.as_deref(), Some(victim), "taken over");
    let restored = outbound_with_request_id(outbound, &collider)
        .await
        .echo_header("traceparent");
    assert_eq!(
        restored.as_deref(),
        Some(attacker),
        "the collider's own entry"
    );
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_correlation_evicted"),
        Some(&0),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("trace_context_correlation_refused"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.get("trace_context_restored"), Some(&2), "{stats:?}");
}
