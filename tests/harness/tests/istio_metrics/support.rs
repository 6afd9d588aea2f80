//! One Envoy shaped like an Istio sidecar (inbound and outbound listeners, `--concurrency 2`, the three
//! filters with the shipped `pluginConfig`s, no `vm_id` as istiod sends them) and the traffic that
//! makes every metric of the filters move: several trace formats, invalid and conflicting headers,
//! request-id correlation, an outage that opens the breaker, stale-cache fallbacks, and a key at its
//! concurrency limit and under the dependency's pushback.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

/// The breaker of `istio/base/circuit-breaker.yaml`.
pub const BREAKER: &str = "per-cluster";
/// The rule of `istio/base/fallback.yaml`.
pub const ENVOY_RULE: &str = "envoy-failures";
/// The stale-cache rule the test adds in front of the shipped one.
pub const STALE_RULE: &str = "catalog-stale";
/// The breaker the test adds in front of the shipped one: `/bulk`, one call at a time, pushback on.
pub const BULKHEAD: &str = "bulkhead";

/// `pluginName` and `pluginConfig` (written as JSON in the manifest) of a shipped WasmPlugin.
pub fn shipped_plugin(manifest: &str) -> (String, Value) {
    let text = std::fs::read_to_string(workspace_root().join(manifest)).unwrap();
    let start =
        text.find("pluginConfig: {").expect("pluginConfig as JSON") + "pluginConfig: ".len();
    let end = text[start..].find("\n  }").expect("closing brace") + start + 4;
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("pluginName: "))
        .expect("pluginName");
    (
        name.to_string(),
        serde_json::from_str(&text[start..end]).unwrap(),
    )
}

/// A filter as istiod delivers it: root id = `pluginName`, no `vm_id`, the manifest's configuration.
fn filter(plugin: &(String, Value), module: &str) -> WasmFilter {
    WasmFilter::new(&plugin.0, dist(module))
        .vm_id("")
        .config_json(&plugin.1)
        .fail_open(true)
}

/// The sidecar: `inbound` (trace-context) to the application, `outbound` (trace-context, fallback,
/// circuit-breaker) with `/catalog` (a live dependency), `/payments` (a dependency whose connections
/// are refused: the outage) and `/` (another live one).
pub fn sidecar_config(upstream: &Upstream) -> EnvoyConfig {
    let trace = shipped_plugin("istio/base/trace-context.yaml");
    let mut breaker = shipped_plugin("istio/base/circuit-breaker.yaml");
    breaker.1["breakers"]
        .as_array_mut()
        .expect("breakers")
        .insert(
            0,
            json!({"name": BULKHEAD, "match": {"pathPrefix": "/bulk"}, "maxConcurrentCalls": 1,
               "maxPushback": "30s", "consecutiveFailures": 0}),
        );
    let mut fallback = shipped_plugin("istio/base/fallback.yaml");
    // A stale-cache rule first (first match wins), so the cache metrics move too.
    let rules = fallback.1["rules"].as_array_mut().expect("rules");
    rules.insert(
        0,
        json!({"name": STALE_RULE, "match": {"pathPrefix": "/catalog"},
               "triggers": {"status": "500-599", "circuitBreaker": true},
               "response": {"kind": "stale", "ttl": "60s"}}),
    );
    EnvoyConfig::new()
        .concurrency(2)
        .log_level("warn")
        .component_log_level("wasm:warn")
        .listener(
            Listener::new("inbound")
                .inbound()
                .filter(filter(&trace, "trace_context.wasm"))
                .route(Route::to("inbound", "/", "app")),
        )
        .listener(
            Listener::new("outbound")
                .outbound()
                .filter(filter(&trace, "trace_context.wasm"))
                .filter(filter(&fallback, "fallback.wasm"))
                .filter(filter(&breaker, "circuit_breaker.wasm"))
                .route(Route::to("catalog", "/catalog", "catalog"))
                .route(Route::to("bulk", "/bulk", "catalog"))
                .route(Route::to("payments", "/payments", "payments"))
                .route(Route::to("outbound", "/", "app")),
        )
        .cluster(Cluster::new("app", upstream.port()))
        .cluster(Cluster::new("catalog", upstream.port()))
        .cluster(Cluster::new("payments", closed_port()))
}

/// An upstream and the sidecar with `stats` as its bootstrap's `stats_config`.
pub async fn start_sidecar(stats: &SidecarStats) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let config = sidecar_config(&upstream);
    let envoy = Envoy::start_yaml(&stats.bootstrap(&config), &config).await;
    (upstream, envoy)
}

fn trace_id(n: u32) -> String {
    format!("{:032x}", 0xabc0_0000_u64 + u64::from(n))
}

/// Drives the traffic described at the top; returns once every outcome is in (the breaker is open,
/// a stale response was served).
pub async fn drive_traffic(envoy: &Envoy) {
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let span = "00f067aa0ba902b7";
    // Callers in several trace formats.
    let formats: Vec<Vec<(String, String)>> = vec![
        vec![(
            "traceparent".into(),
            format!("00-{}-{span}-01", trace_id(1)),
        )],
        vec![("b3".into(), format!("{}-{span}-1", trace_id(2)))],
        vec![(
            "uber-trace-id".into(),
            format!("{}:{span}:0:1", trace_id(3)),
        )],
        vec![
            ("x-datadog-trace-id".into(), "1234567890123".into()),
            ("x-datadog-parent-id".into(), "987654321".into()),
            ("x-datadog-sampling-priority".into(), "1".into()),
        ],
        vec![(
            "x-amzn-trace-id".into(),
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into(),
        )],
        vec![(
            "x-cloud-trace-context".into(),
            "105445aa7843bc8bf206b12000100000/1;o=1".into(),
        )],
        // Invalid: a traceparent that is not hex; a trace is started instead.
        vec![(
            "traceparent".into(),
            "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-00f067aa0ba902b7-01".into(),
        )],
        // Conflicting: B3 names another trace than traceparent.
        vec![
            (
                "traceparent".into(),
                format!("00-{}-{span}-01", trace_id(4)),
            ),
            ("b3".into(), format!("{}-{span}-1", trace_id(5))),
        ],
    ];
    for headers in &formats {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let r = http1(inbound, "GET", "/in", &h, "").await;
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    // Request-id correlation: the inbound request's context comes back on an outbound call that
    // carries only its x-request-id; a second inbound request with that id and another trace is
    // refused.
    let rid = format!("metrics-{}", std::process::id());
    let tp = format!("00-{}-{span}-01", trace_id(6));
    let r = http1(
        inbound,
        "GET",
        "/in",
        &[("traceparent", &tp), ("x-request-id", &rid)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = http1(outbound, "GET", "/out", &[("x-request-id", &rid)], "").await;
    assert_eq!(
        r.echo_header("traceparent").map(|t| t[3..35].to_string()),
        Some(trace_id(6))
    );
    let other = format!("00-{}-{span}-01", trace_id(7));
    let r = http1(
        inbound,
        "GET",
        "/in",
        &[("traceparent", &other), ("x-request-id", &rid)],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    // A service that drops the context: an outbound call with nothing.
    let r = http1(outbound, "GET", "/out", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.describe());

    // The stale cache: a good answer is stored, then served when the upstream fails; a path never
    // stored is a miss.
    let r = http1(outbound, "GET", "/catalog/item", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    wait_series(envoy, "fallback_cache", "fallback_cache_stores", &[], |v| {
        v >= 1
    })
    .await;
    let fail = [("x-upstream-status", "503")];
    let r = http1(outbound, "GET", "/catalog/item", &fail, "").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.header("x-fallback")
            .is_some_and(|m| m.starts_with("stale")),
        "{}",
        r.describe()
    );
    let r = http1(outbound, "GET", "/catalog/never-stored", &fail, "").await;
    assert_eq!(r.status, 503, "{}", r.describe());

    // The outage: refused connections answered by the fallback until the breaker opens, then its
    // rejections answered by the fallback too. The breaker decides when each stream ends, so poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http1(outbound, "GET", "/payments/charge", &[], "").await;
        assert_eq!(r.status, 503, "{}", r.describe());
        let mark = r.header("x-fallback").unwrap_or_default().to_string();
        assert!(mark.starts_with("problem"), "{}", r.describe());
        if mark.contains("reason=circuitBreaker") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker did not open; last: {}",
            r.describe()
        );
    }
    for _ in 0..3 {
        let r = http1(outbound, "GET", "/payments/charge", &[], "").await;
        assert!(
            r.header("x-fallback")
                .is_some_and(|m| m.contains("reason=circuitBreaker")),
            "{}",
            r.describe()
        );
    }
    wait_series(
        envoy,
        "circuit_breaker",
        "circuit_breaker_calls",
        &[("outcome", "rejected")],
        |v| v >= 4,
    )
    .await;

    // Overload: a second call while the bulkhead's one permit is held is rejected as full (and the
    // shipped fallback answers for it, keeping `retry-after`); then the dependency asks callers to
    // wait, and the next call is held back by the caller's sidecar.
    let held = tokio::spawn(async move {
        http1(
            outbound,
            "GET",
            "/bulk",
            &[("x-upstream-delay-ms", "500")],
            "",
        )
        .await
    });
    wait_series(
        envoy,
        "circuit_breaker",
        "circuit_breaker_in_flight",
        &[("breaker", BULKHEAD)],
        |v| v >= 1,
    )
    .await;
    let r = http1(outbound, "GET", "/bulk", &[], "").await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert!(
        r.header("x-fallback")
            .is_some_and(|m| m.contains("reason=circuitBreaker")),
        "{}",
        r.describe()
    );
    assert_eq!(r.header("retry-after"), Some("1"), "{}", r.describe());
    assert_eq!(held.await.unwrap().status, 200);
    let asks = [
        ("x-upstream-status", "503"),
        ("x-upstream-set-header", "retry-after: 1"),
    ];
    let r = http1(outbound, "GET", "/bulk", &asks, "").await;
    assert_eq!(r.status, 503, "{}", r.describe());
    let r = http1(outbound, "GET", "/bulk", &[], "").await;
    assert!(
        r.header("x-fallback")
            .is_some_and(|m| m.contains("reason=circuitBreaker")),
        "{}",
        r.describe()
    );
    for outcome in ["full", "pushback"] {
        wait_series(
            envoy,
            "circuit_breaker",
            "circuit_breaker_calls",
            &[("breaker", BULKHEAD), ("outcome", outcome)],
            |v| v >= 1,
        )
        .await;
    }
}
