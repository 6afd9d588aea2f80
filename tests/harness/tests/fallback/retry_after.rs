//! `retry-after` survives the fallback (issue 7 item 7): from the upstream, from the breaker, for gRPC.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_retry_after_survives_the_fallback() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "own", "match": {"pathPrefix": "/own"}, "triggers": {"status": ["429", "503"]},
         "response": {"kind": "static", "status": 200, "headers": {"retry-after": "5"}, "body": "own"}},
        {"name": "static", "match": {"pathPrefix": "/static"}, "triggers": {"status": ["429", "503"]},
         "response": {"kind": "static", "status": 503, "body": "later"}},
        stale_rule("stale", "/stale", json!({})),
        {"name": "problem", "triggers": {"status": ["429", "503"]}, "response": {"kind": "problem"}}
    ]})))
    .await;
    let port = envoy.port("ingress");
    let retry = ("x-upstream-set-header", "retry-after: 17");
    for status in ["503", "429"] {
        let failing = [("x-upstream-status", status), retry];
        let r = get(&envoy, "/p", &failing).await;
        assert_eq!(r.status.to_string(), status, "{}", r.describe());
        assert_mark(&r, "problem", "problem");
        assert_eq!(r.header("retry-after"), Some("17"), "{}", r.describe());
        let r = get(&envoy, "/static", &failing).await;
        assert_eq!(r.text(), "later", "{}", r.describe());
        assert_eq!(r.header("retry-after"), Some("17"), "{}", r.describe());
        let r = get(&envoy, "/own", &failing).await;
        assert_eq!(r.text(), "own", "{}", r.describe());
        assert_eq!(
            r.header_all("retry-after"),
            vec!["5"],
            "the rule's own wins: {}",
            r.describe()
        );
        let r = grpc_unary(port, "/pkg.v1.Svc/Call", &failing, b"hi").await;
        assert_grpc_trailers_only(&r, 14);
        assert_eq!(r.header("retry-after"), Some("17"), "gRPC: {r:?}");
    }
    // A stale answer keeps it too; a failure without one gets none.
    let cached = get(&envoy, "/stale", OK).await;
    wait_stores(&envoy, 1).await;
    let r = get(&envoy, "/stale", &[FAIL_503[0], retry]).await;
    assert_stale(&r, &cached, "stale");
    assert_eq!(r.header("retry-after"), Some("17"), "{}", r.describe());
    let r = get(&envoy, "/p", FAIL_503).await;
    assert_mark(&r, "problem", "problem");
    assert_eq!(r.header("retry-after"), None, "{}", r.describe());

    // The circuit breaker's rejection carries one: the fallback that replaces it keeps it.
    let (_upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "cb", "triggers": {"circuitBreaker": true}, "response": {"kind": "problem"}}
    ]}))
    .await;
    for _ in 0..4 {
        assert_untouched(&get(&envoy, "/pay", FAIL_500).await);
    }
    let deadline = Instant::now() + RECORD_WAIT;
    let r = loop {
        let r = get(&envoy, "/pay", OK).await;
        if r.header(FALLBACK_HEADER).is_some() {
            break r;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(assert_mark(&r, "problem", "cb"), "circuitBreaker");
    let secs: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {}", r.describe()))
        .parse()
        .unwrap();
    assert!((1..=5).contains(&secs), "the breaker's open time: {secs}");
    let g = grpc_unary(envoy.port("ingress"), "/pkg.Svc/Call", &[], b"hi").await;
    assert_grpc_trailers_only(&g, 14);
    assert!(g.header("retry-after").is_some(), "gRPC: {g:?}");
}

/// Issue 20: a full key's rejection (`maxConcurrentCalls`) is a breaker rejection to the fallback too:
/// replaced like an open breaker's, keeping its `retry-after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_key_s_rejection_is_replaced_keeping_retry_after() {
    let upstream = Upstream::start().await;
    let fallback = json!({"rules": [
        {"name": "cb", "triggers": {"circuitBreaker": true}, "response": {"kind": "problem"}}
    ]});
    let breaker = json!({"breakers": [{"name": "dep", "maxConcurrentCalls": 1}]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(Some(&fallback)), breaker_filter(&breaker)],
        Vec::new(),
    ))
    .await;
    let port = envoy.port("ingress");
    let held = tokio::spawn(async move {
        http1(port, "GET", "/pay", &[("x-upstream-delay-ms", "1500")], "").await
    });
    let deadline = Instant::now() + RECORD_WAIT;
    while upstream.active() < 1 {
        assert!(Instant::now() < deadline, "the first call never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = get(&envoy, "/pay", OK).await;
    assert_eq!(assert_mark(&r, "problem", "cb"), "circuitBreaker");
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(r.header("retry-after"), Some("1"), "{}", r.describe());
    let g = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
    assert_grpc_trailers_only(&g, 14);
    assert_eq!(g.header("retry-after"), Some("1"), "gRPC: {g:?}");
    assert_eq!(held.await.unwrap().status, 200);
    assert_eq!(
        upstream.count(),
        1,
        "neither rejected call reached the upstream"
    );
}
