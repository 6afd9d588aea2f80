//! What opens a breaker: the failure rate at and below its threshold, refused connections, route
//! timeouts, slow calls, consecutive failures, and a count window that forgets old calls.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_failure_rate_and_rejects_without_reaching_the_upstream() {
    let (upstream, envoy) = setup(one(json!({
        "name": "payments",
        "minimumCalls": 10, "consecutiveFailures": 0,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for i in 0..10 {
        let r = get(&envoy, "/pay", FAIL).await;
        assert_eq!(
            r.status,
            500,
            "call {i} reaches the upstream: {}",
            r.describe()
        );
        assert_eq!(r.header(STATUS_HEADER), None, "call {i}: {}", r.describe());
    }
    let (rejected, _passed) = until_rejected(|| get(&envoy, "/pay", FAIL)).await;
    assert_rejected(&rejected, "payments", "open", 503);
    let secs = retry_after(&rejected);
    assert!(
        (1..=5).contains(&secs),
        "retry-after {secs}: the next probe is at most 5 s away"
    );
    assert_eq!(
        rejected.header("x-envoy-overloaded"),
        None,
        "envoyOverloaded is off by default"
    );

    // Open: nothing reaches the upstream any more, whatever the request, HTTP/1.1 or HTTP/2.
    let reached = upstream.count();
    for i in 0..10 {
        let r = if i % 2 == 0 {
            get(&envoy, "/pay", FAIL).await
        } else {
            get_h2(&envoy, "/pay", OK).await
        };
        assert_rejected(&r, "payments", "open", 503);
        assert!(retry_after(&r) <= 5);
    }
    assert_eq!(
        upstream.count(),
        reached,
        "rejected requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_exactly_at_the_failure_rate_threshold() {
    let (upstream, envoy) = setup(one(json!({
        "name": "edge",
        "minimumCalls": 10, "consecutiveFailures": 0,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    // 5 failures in 10 calls = 50 %. The polling requests succeed, so they only lower the rate: a
    // rejection can only come from the decision at the 10th call.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "edge", "open", 503);
    assert!(passed.iter().all(|r| r.status == 200));
    assert_eq!(upstream.count(), 10 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_closed_below_the_failure_rate_threshold() {
    let (upstream, envoy) = setup(one(json!({
        "name": "edge",
        "minimumCalls": 10, "consecutiveFailures": 0,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..6 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    // 4 of 10 = 40 %: still closed, the 11th call is admitted.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "40 % does not open: {}", r.describe());
    // 5 of 11 = 45 %: still closed.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "45 % does not open: {}", r.describe());
    // 6 of 12 = 50 %: opens.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "edge", "open", 503);
    assert_eq!(upstream.count(), 12 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_connection_refused() {
    let envoy = start_routed(
        Some(&one(json!({
            "name": "refused",
            "minimumCalls": 5, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![Route::to("dead", "/", "dead")],
        vec![Cluster::new("dead", closed_port())],
    )
    .await;
    for i in 0..5 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 503, "call {i}: Envoy's own 503: {}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None, "{}", r.describe());
    }
    let (rejected, _) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "refused", "open", 503);
    // Rejected requests make no connection attempt.
    let attempts = envoy.stat("cluster.dead.upstream_cx_total").await;
    for _ in 0..5 {
        assert_rejected(&get(&envoy, "/", OK).await, "refused", "open", 503);
    }
    assert_eq!(envoy.stat("cluster.dead.upstream_cx_total").await, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_route_timeouts() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "stuck",
            "minimumCalls": 4, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![Route::to("slow", "/", "upstream").timeout(Duration::from_millis(200))],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    for r in concurrently(envoy.port("ingress"), 4, "/", HANG).await {
        assert_eq!(r.status, 504, "{}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    let (rejected, _) = until_rejected(|| get(&envoy, "/", HANG)).await;
    assert_rejected(&rejected, "stuck", "open", 503);
    let reached = upstream.count();
    for _ in 0..5 {
        let start = Instant::now();
        let r = get(&envoy, "/", HANG).await;
        assert_rejected(&r, "stuck", "open", 503);
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "answered at once, not after the route timeout: {:?}",
            start.elapsed()
        );
    }
    assert_eq!(upstream.count(), reached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_slow_call_rate() {
    let (upstream, envoy) = setup(one(json!({
        "name": "slowpoke",
        "minimumCalls": 8, "consecutiveFailures": 0,
        "slowCallDuration": "100ms",
        "slowCallRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    // Four slow successes: 4 of 8 calls slow = 50 %.
    for r in concurrently(
        envoy.port("ingress"),
        4,
        "/",
        &[("x-upstream-delay-ms", "250")],
    )
    .await
    {
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    // Fast polls only lower the slow-call rate.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "slowpoke", "open", 503);
    let reached = upstream.count();
    assert_eq!(reached, 8 + passed.len());
    assert_rejected(&get(&envoy, "/", OK).await, "slowpoke", "open", 503);
    assert_eq!(upstream.count(), reached);
}

/// Failures in a row are counted sidecar-wide: the streak after a success is the same whichever
/// worker handled each call (a run of failures that one worker began before another worker's success
/// still contributes the failures that came after that success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_open_without_a_rate_decision() {
    let (upstream, envoy) = setup(one(json!({
        "name": "streak",
        "consecutiveFailures": 8,
        "minimumCalls": 1000,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    // Seven failures, a success that breaks the streak, seven failures: never eight in a row.
    let sequence: Vec<&[(&str, &str)]> = [vec![FAIL; 7], vec![OK], vec![FAIL; 7]].concat();
    for (i, h) in sequence.iter().enumerate() {
        let r = get(&envoy, "/", h).await;
        assert_eq!(r.header(STATUS_HEADER), None, "call {i}: {}", r.describe());
        assert_eq!(r.status, if h.is_empty() { 200 } else { 500 }, "call {i}");
    }
    tokio::time::sleep(SETTLE).await;
    // Seven in a row so far: the eighth failure is still admitted...
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "{}", r.describe());
    // ...and opens the breaker; successes would only break the streak.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "streak", "open", 503);
    assert_eq!(upstream.count(), 16 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_window_forgets_old_calls() {
    let (_upstream, envoy) = setup(one(json!({
        "name": "ring",
        "window": {"type": "count", "size": 4},
        "minimumCalls": 4, "consecutiveFailures": 0,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    // F S S S | S S S S | F: the last four calls hold one failure (25 %); a time window would hold 2/9.
    for h in [FAIL, OK, OK, OK, OK, OK, OK, OK, FAIL] {
        let r = get(&envoy, "/", h).await;
        assert_eq!(r.header(STATUS_HEADER), None, "{}", r.describe());
    }
    tokio::time::sleep(SETTLE).await;
    // S S F F: 50 % of the last four opens; over all ten calls it would be 30 %.
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "{}", r.describe());
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", OK).await;
    assert_rejected(&r, "ring", "open", 503);
}
