//! The half-open state: exactly the allowed probes pass across workers, a failing probe reopens for
//! longer, stuck probes reopen after `maxHalfOpenDuration`.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admits_exactly_the_probes_across_workers_then_closes() {
    let (upstream, envoy) = setup(one(json!({
        "name": "flaky",
        "minimumCalls": 4, "consecutiveFailures": 0,
        "failureRateThreshold": 60,
        "openDuration": "300ms",
        // A loaded machine may stall past the open time while the trip is polled for: the poll then
        // becomes a failing probe and reopens. Without growth the open time stays under the wait below.
        "openDurationMultiplier": 1.0,
        "openJitter": 0,
        "halfOpenProbes": 3,
        "maxHalfOpenDuration": "5s"
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "flaky", "open", 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    upstream.clear();

    // 20 requests at once over both workers; the probes are slow enough for all of them to overlap.
    let responses = concurrently(
        envoy.port("ingress"),
        20,
        "/probe",
        &[("x-upstream-delay-ms", "300")],
    )
    .await;
    let passed: Vec<&Response> = responses.iter().filter(|r| !is_rejection(r)).collect();
    assert_eq!(
        passed.len(),
        3,
        "exactly halfOpenProbes pass, sidecar-wide: {:?}",
        responses.iter().map(Response::describe).collect::<Vec<_>>()
    );
    for r in &passed {
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    for r in responses.iter().filter(|r| is_rejection(r)) {
        assert_rejected(r, "flaky", "half-open", 503);
    }
    assert_eq!(upstream.count(), 3, "only the probes reach the upstream");

    // All probes succeeded: closed again.
    let (r, before) = until(|| get(&envoy, "/", OK), |r| r.status == 200).await;
    let rejected_while_closing = before.iter().filter(|r| is_rejection(r)).count() as u64;
    assert_eq!(r.header(STATUS_HEADER), None);
    // With a fresh window: the four old failures are gone, two new ones do not open it.
    for _ in 0..2 {
        let r = get(&envoy, "/", FAIL).await;
        assert_eq!(r.status, 500, "{}", r.describe());
    }
    tokio::time::sleep(SETTLE).await;
    for i in 0..10 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 200, "call {i} after recovery: {}", r.describe());
    }
    // One cycle, counted once per sidecar although both workers saw it.
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "flaky"), ("outcome", "probe")],
                3,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "flaky"), ("outcome", "rejected")],
                1 + 17 + rejected_while_closing,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "open")],
                1,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "half_open")],
                1,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "closed")],
                1,
            ),
            ("circuit_breaker_open", &[("breaker", "flaky")], 0),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_probe_reopens_for_longer() {
    let (upstream, envoy) = setup(one(json!({
        "name": "relapse",
        "minimumCalls": 4, "consecutiveFailures": 0,
        "openDuration": "400ms",
        "openDurationMultiplier": 3.0,
        "maxOpenDuration": "10s",
        "openJitter": 0,
        "halfOpenProbes": 2
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "relapse", "open", 503);
    tokio::time::sleep(Duration::from_millis(550)).await;

    let before = upstream.count();
    let probe = get(&envoy, "/", FAIL).await;
    let t0 = Instant::now();
    assert_eq!(
        probe.status,
        500,
        "the probe reaches the upstream: {}",
        probe.describe()
    );
    assert_eq!(upstream.count(), before + 1);

    // One failed probe re-opens at once, though the second probe was never used.
    tokio::time::sleep(SETTLE).await;
    for _ in 0..3 {
        assert_rejected(&get(&envoy, "/", OK).await, "relapse", "open", 503);
    }
    assert_eq!(upstream.count(), before + 1);
    // Longer than the first 400 ms: 1200 ms.
    tokio::time::sleep(Duration::from_millis(700).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "relapse", "open", 503);
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(t0.elapsed())).await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 200, "a new probe after 1.2 s: {}", r.describe());
    assert_eq!(upstream.count(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_probes_reopen_after_max_half_open_duration() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "stuck-probe",
            "minimumCalls": 2, "consecutiveFailures": 0,
            "failureRateThreshold": 50,
            "openDuration": "500ms",
            "openDurationMultiplier": 1.0,
            "openJitter": 0,
            "halfOpenProbes": 1,
            "maxHalfOpenDuration": "400ms"
        }))),
        vec![Route::to("default", "/", "upstream").timeout(Duration::from_millis(2000))],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    let port = envoy.port("ingress");
    for _ in 0..2 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "stuck-probe", "open", 503);
    tokio::time::sleep(Duration::from_millis(650)).await;

    // The only probe hangs until the route timeout (2 s).
    let before = upstream.count();
    let t0 = Instant::now();
    let stuck = tokio::spawn(async move { http1(port, "GET", "/stuck", HANG, "").await });
    assert!(
        upstream
            .wait_count(before + 1, Duration::from_secs(1))
            .await,
        "the probe reached the upstream"
    );
    tokio::time::sleep(Duration::from_millis(150).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "stuck-probe", "half-open", 503);
    // Past maxHalfOpenDuration: open again.
    tokio::time::sleep(Duration::from_millis(650).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "stuck-probe", "open", 503);
    // After that open time, a new probe goes through and closes the breaker.
    tokio::time::sleep(Duration::from_millis(1400).saturating_sub(t0.elapsed())).await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 200, "new probe: {}", r.describe());
    assert!(
        t0.elapsed() < Duration::from_millis(1900),
        "the test must get here before the stuck probe ends; took {:?}",
        t0.elapsed()
    );
    // The stuck probe ends in a 504 after the close: it belongs to the old half-open state, so it
    // does not count in the new closed window (where one failure and one success would be 50 %).
    let stuck = stuck.await.unwrap();
    assert_eq!(stuck.status, 504, "{}", stuck.describe());
    tokio::time::sleep(SETTLE).await;
    for i in 0..5 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 200, "call {i} after the close: {}", r.describe());
    }
}
