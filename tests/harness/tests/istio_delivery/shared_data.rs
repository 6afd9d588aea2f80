//! Istio sets no vm_id, so the three plugins share one shared-data namespace: their key families
//! (filter_common::keys) must not collide.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_filters_share_one_namespace_without_colliding() {
    let s = Sidecar::start().await;
    let (inbound, outbound) = (s.port("inbound"), s.port("outbound"));
    // trace-context's correlation table: an inbound request's trace is given back to the outbound
    // call carrying the same x-request-id.
    let correlate = |id: &'static str| async move {
        let r = call(
            inbound,
            "/in",
            &[("traceparent", TRACEPARENT), ("x-request-id", id)],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.describe());
        let out = call(outbound, "/out", &[("x-request-id", id)]).await;
        assert_eq!(out.status, 200, "{}", out.describe());
        let forwarded = out.json();
        let traceparent = forwarded["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "traceparent")
            .map(|h| h[1].as_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            traceparent.contains(TRACE_ID),
            "{id}: outbound call lost the inbound trace: {}",
            out.describe()
        );
    };
    correlate("corr-1").await;
    // The breaker's records: one cluster's breaker opens.
    open_breaker(&s, "/dead", 3 * MINIMUM_CALLS).await;
    // Correlation writes after the breaker's do not disturb it, nor it them.
    correlate("corr-2").await;
    correlate("corr-1").await;
    assert_breaker_open(&s, "/dead").await;
    // Another key of the same breaker is still closed: its first failure is a connection failure.
    let r = call(outbound, "/dead2", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(
        mark(&r).map(|m| m.2),
        Some("connectionFailure".into()),
        "{}",
        r.describe()
    );
}
