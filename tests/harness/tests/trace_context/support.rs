//! What the trace-context tests share: known trace contexts, the filter and its Envoy, and reading
//! trace ids and stats.

use std::time::Duration;

use e2e_harness::*;

pub const TRACE_W3C: &str = "0af7651916cd43dd8448eb211c80319c";
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const TRACE_B3: &str = "80f198ee56343ba864fe8b2a57d3eff7";
pub const B3_SINGLE: &str = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";

pub fn trace_filter(config: Option<&str>) -> WasmFilter {
    let f = WasmFilter::project("trace-context");
    match config {
        Some(c) => f.configuration(c),
        None => f,
    }
}

/// One listener `ingress` with the filter, routes: `/direct` (local 503), `/slow` (500 ms timeout),
/// `/h2` (HTTP/2 upstream), `/` (HTTP/1.1 upstream).
pub async fn setup(config: Option<&str>) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(trace_filter(config))
                    .route(Route::direct("direct", "/direct", 503, Some("no")))
                    .route(
                        Route::to("slow", "/slow", "upstream").timeout(Duration::from_millis(500)),
                    )
                    .route(Route::to("h2", "/h2", "upstream_h2"))
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port()))
            .cluster(Cluster::new("upstream_h2", upstream.port()).http2(true)),
    )
    .await;
    (upstream, envoy)
}

/// The trace id in a forwarded `traceparent`.
pub fn w3c_trace(tp: &str) -> &str {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    tp.split('-').nth(1).unwrap()
}

/// Stats with the `wasmcustom.` prefix removed and tags rendered Envoy's way (`format.b3.name`).
pub async fn tagged(envoy: &Envoy) -> std::collections::HashMap<String, u64> {
    envoy
        .stats()
        .await
        .into_iter()
        .filter(|(k, _)| k.contains("trace_context"))
        .map(|(k, v)| {
            let k = k
                .trim_start_matches("wasmcustom.")
                .replace("=.=", ".")
                .replace(";.;", ".");
            (k, v)
        })
        .collect()
}
