//! An outage behind the outbound listener, with the three filters from the manifests.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_opens_the_breaker_and_callers_get_the_fallback_with_the_trace_id() {
    let s = Sidecar::start().await;
    let port = s.port("outbound");
    // Before the breaker opens: each refused connection becomes the fallback's problem response.
    let r = call(port, "/dead", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(
        mark(&r),
        Some((
            "problem".into(),
            "envoy-failures".into(),
            "connectionFailure".into()
        ))
    );
    let opened_after = open_breaker(&s, "/dead", 3 * MINIMUM_CALLS).await;
    assert!(
        opened_after > MINIMUM_CALLS - 1,
        "opened after {opened_after} calls"
    );
    // Open: answered at once by the fallback, with the caller's trace id in header and body.
    let r = call(port, "/dead/x", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("x-trace-id"), Some(TRACE_ID), "{}", r.describe());
    assert_eq!(r.json()["traceId"], TRACE_ID, "{}", r.describe());
    assert!(r.header("retry-after").is_some(), "{}", r.describe());
    // The breaker is per cluster: the healthy upstream still answers, with the trace id.
    let ok = call(port, "/ok", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert_eq!(ok.header("x-trace-id"), Some(TRACE_ID));
    // The inbound listener carries trace-context only (the other two are CLIENT plugins).
    let inbound = call(s.port("inbound"), "/dead", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(inbound.status, 503, "{}", inbound.describe());
    assert!(mark(&inbound).is_none(), "{}", inbound.describe());
    assert_eq!(inbound.header("x-trace-id"), Some(TRACE_ID));
}
