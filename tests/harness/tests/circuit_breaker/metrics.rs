//! The breaker's Prometheus series: outcomes, rejections and one state transition per sidecar.

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_rejections_and_one_transition_per_sidecar() {
    let (upstream, envoy) = setup(one(json!({
        "name": "payments",
        "minimumCalls": 10, "consecutiveFailures": 0,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..10 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (_, passed) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    let mut rejected = 1;
    for i in 0..9 {
        let r = if i % 2 == 0 {
            get(&envoy, "/", FAIL).await
        } else {
            get_h2(&envoy, "/", OK).await
        };
        assert!(is_rejection(&r), "{}", r.describe());
        rejected += 1;
    }
    let failures = upstream.count() as u64;
    assert_eq!(failures, 10 + passed.len() as u64);
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "payments"), ("outcome", "failure")],
                failures,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "payments"), ("outcome", "rejected")],
                rejected,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "payments"), ("state", "open")],
                1,
            ),
            ("circuit_breaker_open", &[("breaker", "payments")], 1),
        ],
    )
    .await;
    let prom = envoy.prometheus().await;
    assert_eq!(
        prom_sum(
            &prom,
            "circuit_breaker_calls",
            &[("breaker", "payments"), ("outcome", "success")]
        )
        .unwrap_or(0),
        0,
        "{}",
        prom_lines(&prom, "circuit_breaker")
    );
    // The tags were lifted into labels: no raw `breaker=.=` names reach Prometheus.
    assert!(!prom.contains("=.="), "{}", prom_lines(&prom, "=.="));
}
