//! Where the trace shows outside the request: Envoy's local replies, access logs, Prometheus series.

use std::time::Duration;

use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_is_on_local_replies() {
    let (upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    let r = http1(port, "GET", "/direct", &[("traceparent", TRACEPARENT)], "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-trace-id"), Some(TRACE_W3C));
    assert_eq!(r.header("traceresponse"), Some(TRACEPARENT));

    let r = http1(
        port,
        "GET",
        "/slow",
        &[("b3", B3_SINGLE), ("x-upstream-action", "hang")],
        "",
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-trace-id"), Some(TRACE_B3));

    let r = http2(port, "GET", "/", &[("x-upstream-action", "reset")], "").await;
    assert_eq!(r.status, 503);
    let id = r
        .header("x-trace-id")
        .expect("Envoy's own 503 carries a trace id");
    // The same trace the upstream was sent before it reset the stream.
    let sent = upstream.last().unwrap();
    let forwarded = sent.header("traceparent").unwrap();
    assert_eq!(w3c_trace(forwarded), id);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_is_available_to_access_logs() {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(trace_filter(None))
                    .hcm_yaml(
                        "access_log:\n- name: envoy.access_loggers.stderr\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog\n    log_format:\n      text_format_source:\n        inline_string: \"ACCESS trace_id=%FILTER_STATE(wasm.trace_id:PLAIN)%\\n\"",
                    )
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port())),
    )
    .await;
    get(&envoy, "/", &[("traceparent", TRACEPARENT)]).await;
    envoy
        .wait_log(
            &format!("ACCESS trace_id={TRACE_W3C}"),
            Duration::from_secs(10),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_render_as_labelled_prometheus_series() {
    let (_upstream, envoy) = setup(None).await;
    get(&envoy, "/", &[("b3", B3_SINGLE)]).await;
    let prom = envoy.prometheus().await;
    assert!(
        prom.lines()
            .any(|l| l.starts_with("trace_context_extracted{format=\"b3\"} 1")),
        "{}",
        prom.lines()
            .filter(|l| l.contains("trace_context"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
