//! The fallback's Prometheus series: served responses and cache lookups.

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_served_responses_and_cache_lookups() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache", "match": {"pathPrefix": "/c"}, "triggers": {"status": "500-599"},
         "response": {"kind": "stale", "ttl": "30s"}},
        {"name": "refused", "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "problem"}}
    ]})))
    .await;
    let cached = get(&envoy, "/c/1", OK).await;
    assert_eq!(cached.status, 200);
    wait_stores(&envoy, 1).await;
    for _ in 0..3 {
        assert_stale(&get(&envoy, "/c/1", FAIL_503).await, &cached, "cache");
    }
    let r = get(&envoy, "/c/2", FAIL_503).await;
    assert_problem_json(&r, 503);
    for _ in 0..2 {
        let r = get(&envoy, "/dead", &[]).await;
        assert_problem_json(&r, 503);
        assert_eq!(assert_mark(&r, "problem", "refused"), "connectionFailure");
    }
    assert_prom(
        &envoy,
        &[
            (
                "fallback_served",
                &[("rule", "cache"), ("kind", "stale")],
                3,
            ),
            (
                "fallback_served",
                &[("rule", "cache"), ("kind", "problem")],
                1,
            ),
            (
                "fallback_served",
                &[
                    ("rule", "refused"),
                    ("trigger", "connectionFailure"),
                    ("kind", "problem"),
                ],
                2,
            ),
            ("fallback_cache_hits", &[], 3),
            ("fallback_cache_misses", &[], 1),
            ("fallback_cache_stores", &[], 1),
            ("fallback_cache_evictions", &[], 0),
        ],
    )
    .await;
    let prom = envoy.prometheus().await;
    let bytes = prom_sum(&prom, "fallback_cache_bytes", &[]).unwrap_or(0);
    assert!(
        bytes >= cached.body.len() as u64,
        "fallback_cache_bytes {bytes} holds the cached body ({} bytes):\n{}",
        cached.body.len(),
        prom_lines(&prom, "fallback")
    );
    // Every served series carries the three tags as labels; none is left in a name.
    for line in prom.lines().filter(|l| l.starts_with("fallback_served")) {
        for tag in ["rule=", "trigger=", "kind="] {
            assert!(line.contains(tag), "{line}");
        }
    }
    assert!(!prom.contains("=.="), "{}", prom_lines(&prom, "=.="));
}
