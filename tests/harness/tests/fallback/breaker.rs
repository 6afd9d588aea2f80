//! With the circuit breaker behind the fallback: its rejections become the fallback response, and the
//! failures the fallback replaced still count.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_rejections_become_the_fallback_response() {
    let (upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "cb", "triggers": {"circuitBreaker": true},
         "response": {"kind": "static", "status": 200, "body": "cached-default"}}
    ]}))
    .await;
    let port = envoy.port("ingress");
    for i in 0..4 {
        let r = get(&envoy, "/pay", FAIL_500).await;
        assert_eq!(r.status, 500, "call {i}: {}", r.describe());
        assert_untouched(&r);
        assert_eq!(r.json()["path"], json!("/pay"));
    }
    // The breaker decides when the streams end: poll with failing calls until the fallback answers.
    let deadline = Instant::now() + RECORD_WAIT;
    let first = loop {
        let r = get(&envoy, "/pay", FAIL_500).await;
        if r.header(FALLBACK_HEADER).is_some() {
            break r;
        }
        assert_eq!(r.status, 500, "{}", r.describe());
        assert!(
            Instant::now() < deadline,
            "no fallback answer within {RECORD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reached = upstream.count();
    let mut answers = vec![first];
    for i in 0..6 {
        answers.push(if i % 2 == 0 {
            get(&envoy, "/pay", OK).await
        } else {
            get_h2(&envoy, "/pay", FAIL_500).await
        });
    }
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.text(), "cached-default", "{}", r.describe());
        assert_eq!(
            assert_mark(r, "static", "cb"),
            "circuitBreaker",
            "{}",
            r.describe()
        );
    }
    // gRPC callers of the open breaker get UNAVAILABLE from the fallback.
    let g = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
    assert_grpc_trailers_only(&g, 14);
    assert_eq!(grpc_mark(&g).rule, "cb", "{g:?}");
    assert_eq!(upstream.count(), reached, "the upstream is not reached");
    assert_prom(
        &envoy,
        &[(
            "fallback_served",
            &[("rule", "cb"), ("kind", "static")],
            answers.len() as u64 + 1,
        )],
    )
    .await;
}

/// The fallback sits before the breaker, so its reply replaces the upstream's failure after the
/// breaker saw it: the breaker must still count the failure and open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_counts_failures_that_the_fallback_replaced() {
    let (upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "soft", "triggers": {"status": "500", "circuitBreaker": true},
         "response": {"kind": "static", "status": 200, "body": "default"}}
    ]}))
    .await;
    for i in 0..4 {
        let r = get(&envoy, "/pay", FAIL_500).await;
        assert_eq!(r.text(), "default", "call {i}: {}", r.describe());
        assert_eq!(
            assert_mark(&r, "static", "soft"),
            "status",
            "{}",
            r.describe()
        );
    }
    assert_prom(
        &envoy,
        &[(
            "circuit_breaker_calls",
            &[("breaker", "dep"), ("outcome", "failure")],
            4,
        )],
    )
    .await;
    let reached = upstream.count();
    let r = get(&envoy, "/pay", OK).await;
    assert_eq!(
        assert_mark(&r, "static", "soft"),
        "circuitBreaker",
        "{}",
        r.describe()
    );
    assert_eq!(
        upstream.count(),
        reached,
        "the open breaker keeps the upstream out"
    );
}
