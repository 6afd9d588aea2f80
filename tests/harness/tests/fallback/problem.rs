//! The default configuration: Envoy's own failures become RFC 9457 problem responses (JSON, HTML or
//! text), the upstream's application errors pass untouched.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_turns_connection_refused_into_problem_json_with_trace_id() {
    let (_upstream, envoy) = setup(None).await;
    let r = get(
        &envoy,
        "/dead/orders",
        &[
            ("traceparent", TRACEPARENT),
            ("x-request-id", "req-refused-1"),
            ("accept", "application/json"),
        ],
    )
    .await;
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["traceId"], json!(TRACE_ID), "{j}");
    assert_eq!(j["requestId"], json!("req-refused-1"), "{j}");
    assert_eq!(j["title"], json!("Service Unavailable"), "{j}");
    let reason = assert_mark(&r, "problem", "default");
    assert_eq!(reason, "connectionFailure", "{}", r.describe());

    // No Accept at all (as `*/*`), over HTTP/2, without a request id: Envoy's own id is used.
    let r = get_h2(&envoy, "/dead", &[("traceparent", TRACEPARENT)]).await;
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["traceId"], json!(TRACE_ID), "{j}");
    assert_mark(&r, "problem", "default");
    let r = get(&envoy, "/dead", &[("accept", "*/*")]).await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_passes_upstream_application_errors_untouched() {
    let (upstream, envoy) = setup(None).await;
    for (headers, status) in [(FAIL_500, 500), (FAIL_503, 503), (OK, 200)] {
        let r = get(
            &envoy,
            "/orders/7",
            &[headers, &[("accept", "application/json")]].concat(),
        )
        .await;
        assert_eq!(r.status, status, "{}", r.describe());
        assert_untouched(&r);
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The upstream's own echo body, unchanged.
        assert_eq!(r.json()["path"], json!("/orders/7"), "{}", r.describe());
    }
    assert_eq!(upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_turns_route_timeout_and_reset_into_problem() {
    let (_upstream, envoy) = setup(None).await;
    let start = Instant::now();
    let r = get(
        &envoy,
        "/slow/report",
        &[
            ("x-upstream-action", "hang"),
            ("traceparent", TRACEPARENT),
            ("x-request-id", "req-timeout"),
        ],
    )
    .await;
    assert!(
        start.elapsed() < ROUTE_TIMEOUT + Duration::from_secs(2),
        "answered after the route timeout: {:?}",
        start.elapsed()
    );
    let j = assert_problem_json(&r, 504);
    assert_eq!(j["title"], json!("Gateway Timeout"), "{j}");
    assert_eq!(j["traceId"], json!(TRACE_ID), "{j}");
    assert_eq!(j["requestId"], json!("req-timeout"), "{j}");
    assert_eq!(assert_mark(&r, "problem", "default"), "timeout");

    let r = get(&envoy, "/reset", &[("x-upstream-action", "reset")]).await;
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["status"], json!(503));
    assert_eq!(assert_mark(&r, "problem", "default"), "reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_response_negotiates_html_and_text() {
    let (_upstream, envoy) = setup(None).await;
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for accept in ["text/html", browser] {
        let r = get(
            &envoy,
            "/dead",
            &[("accept", accept), ("traceparent", TRACEPARENT)],
        )
        .await;
        assert_eq!(r.status, 503, "{}", r.describe());
        let ct = r.header("content-type").unwrap_or("");
        assert!(ct.starts_with("text/html"), "accept {accept}: {ct:?}");
        let body = r.text();
        assert!(body.contains('<'), "an HTML page: {body}");
        assert!(body.contains("Service Unavailable"), "the title: {body}");
        assert!(body.contains(TRACE_ID), "the trace id: {body}");
        assert_mark(&r, "problem", "default");
    }
    let r = get(
        &envoy,
        "/dead",
        &[("accept", "text/plain"), ("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.describe());
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{ct:?}: {}", r.describe());
    let body = r.text();
    assert!(body.contains("Service Unavailable"), "the title: {body}");
    assert!(body.contains(TRACE_ID), "the trace id: {body}");
    assert!(!body.contains('<'), "no markup in text: {body}");
    assert_mark(&r, "problem", "default");
    // JSON callers still get JSON on the same Envoy.
    let r = get(&envoy, "/dead", &[("accept", "application/json")]).await;
    assert_problem_json(&r, 503);
}
