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
