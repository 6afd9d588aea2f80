//! `istio/dashboards/mesh-filters.json` against a real Prometheus scraping the Istio-shaped sidecar:
//! every query of every panel returns series after traffic, and names only metrics the filters
//! define.

use std::collections::BTreeSet;
use std::time::Duration;

use e2e_harness::serde_json::Value;
use e2e_harness::*;

use crate::support::*;

/// The metric names the filters define (their READMEs' metrics tables).
const METRICS: &[&str] = &[
    "trace_context_extracted",
    "trace_context_started",
    "trace_context_restored",
    "trace_context_invalid",
    "trace_context_conflicts",
    "trace_context_outbound_without_context",
    "trace_context_baggage_dropped",
    "trace_context_correlation_refused",
    "trace_context_correlation_evicted",
    "circuit_breaker_calls",
    "circuit_breaker_transitions",
    "circuit_breaker_open",
    "circuit_breaker_keys_overflow",
    "circuit_breaker_in_flight",
    "fallback_served",
    "fallback_cache_hits",
    "fallback_cache_misses",
    "fallback_cache_stores",
    "fallback_cache_evictions",
    "fallback_cache_bytes",
];

/// The labels Istio's sample Prometheus (`samples/addons/prometheus.yaml`, job `kubernetes-pods`)
/// gives every series of a scraped sidecar; panels group by them.
const POD_LABELS: &[(&str, &str)] = &[("namespace", "shop"), ("pod", "checkout-7d9f")];

fn dashboard() -> Value {
    let path = workspace_root().join("istio/dashboards/mesh-filters.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included (a collapsed row holds its panels).
fn panels(dash: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
        if p["type"] != "row" {
            out.push(p.clone());
        }
    }
    out
}

/// A panel query with Grafana's variables replaced as Grafana would for the whole mesh: the rate
/// interval, and "All" (its `allValue`) for the breaker selector.
fn substitute(expr: &str) -> String {
    expr.replace("${__rate_interval}", "1m")
        .replace("$__rate_interval", "1m")
        .replace("${__interval}", "30s")
        .replace("$__interval", "30s")
        .replace("${__range}", "5m")
        .replace("$__range", "5m")
        .replace("${breaker}", ".*")
        .replace("$breaker", ".*")
}

/// The filter metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        let word = &expr[start..i];
        if ["trace_context_", "circuit_breaker_", "fallback_"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            names.insert(word.to_string());
        }
        if i == start {
            i += 1;
        }
    }
    names
}

/// What the test can tell about the dashboard without Prometheus: a Prometheus data-source variable
/// that every panel and query uses, unique panel ids, and only metrics the filters define.
#[test]
fn dashboard_is_well_formed_and_names_only_the_filters_metrics() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 39,
        "schemaVersion"
    );
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data-source variable");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = format!("${{{}}}", ds["name"].as_str().unwrap());
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in panels(&dash) {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate panel id {}",
            p["id"]
        );
        assert_eq!(p["datasource"]["uid"], ds_ref.as_str(), "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], ds_ref.as_str(), "{}", p["title"]);
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{}: {expr} reads no filter metric",
                p["title"]
            );
            for n in &names {
                assert!(
                    METRICS.contains(&n.as_str()),
                    "{}: unknown metric {n}",
                    p["title"]
                );
            }
            used.extend(names);
        }
    }
    // Every metric the filters define is on the dashboard.
    let missing: Vec<_> = METRICS.iter().filter(|m| !used.contains(**m)).collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

/// The real thing: Prometheus scrapes the sidecar (Istio's stats configuration with the documented
/// `extraStatTags`) while the traffic runs; then every query of every panel returns at least one
/// series with a number, and the breaker selector's query finds the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_series_from_a_real_prometheus() {
    let (_upstream, envoy) = start_sidecar(&SidecarStats::with_filter_tags()).await;
    let prom = Prometheus::start(
        &[envoy.admin_port()],
        POD_LABELS,
        Duration::from_millis(500),
    )
    .await;
    let wait = Duration::from_secs(20);
    // A first scrape before the traffic, so rates have a starting point.
    prom.wait_query("fallback_cache_hits", wait, |r| !r.is_empty())
        .await;
    drive_traffic(&envoy).await;
    // A call holding the bulkhead's permit while Prometheus scrapes (once the dependency's 1 s
    // pushback is over): the in-flight panels draw it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let outbound = envoy.port("outbound");
    let held = tokio::spawn(async move {
        http1(
            outbound,
            "GET",
            "/bulk/held",
            &[("x-upstream-delay-ms", "3000")],
            "",
        )
        .await
    });
    prom.wait_query(
        &format!("sum(circuit_breaker_in_flight{{breaker=\"{BULKHEAD}\"}})"),
        wait,
        |r| r.iter().any(|s| s["value"][1] == "1"),
    )
    .await;
    let dash = dashboard();
    for p in panels(&dash) {
        for t in p["targets"].as_array().unwrap() {
            let expr = substitute(t["expr"].as_str().unwrap());
            assert!(!expr.contains('$'), "unsubstituted variable in {expr}");
            // Polled: rates need the scrapes that follow the traffic.
            let result = prom
                .wait_query(&expr, wait, |r| {
                    r.iter().any(|s| {
                        s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(f64::is_finite)
                    })
                })
                .await;
            // Panels grouped by pod see the scrape's pod label.
            if expr.contains("by (namespace, pod") {
                assert!(
                    result.iter().all(|s| s["metric"]["pod"] == POD_LABELS[1].1),
                    "{}: {expr}: {result:?}",
                    p["title"]
                );
            }
        }
    }
    // What the traffic did shows up as Grafana would draw it.
    let expect_positive = [
        "sum(circuit_breaker_open{breaker=\"per-cluster\"})",
        "sum(increase(circuit_breaker_transitions{state=\"open\"}[1m]))",
        "sum(rate(circuit_breaker_calls{outcome=\"rejected\"}[1m]))",
        "sum(rate(circuit_breaker_calls{outcome=\"full\"}[1m]))",
        "sum(rate(circuit_breaker_calls{outcome=\"pushback\"}[1m]))",
        "sum(rate(fallback_cache_hits[1m])) / (sum(rate(fallback_cache_hits[1m])) + sum(rate(fallback_cache_misses[1m])))",
        "sum(rate(trace_context_restored[1m]))",
        "sum(rate(trace_context_correlation_refused[1m]))",
    ];
    for expr in expect_positive {
        prom.wait_query(expr, wait, |r| {
            r.iter().any(|s| {
                s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
            })
        })
        .await;
    }
    // The `breaker` variable: Grafana's label_values(circuit_breaker_calls, breaker).
    let vars = dash["templating"]["list"].as_array().unwrap();
    let breaker = vars
        .iter()
        .find(|v| v["name"] == "breaker")
        .expect("breaker variable");
    assert_eq!(
        breaker["definition"],
        "label_values(circuit_breaker_calls, breaker)"
    );
    let r = prom
        .wait_query("count by (breaker) (circuit_breaker_calls)", wait, |r| {
            !r.is_empty()
        })
        .await;
    assert!(r.iter().any(|s| s["metric"]["breaker"] == BREAKER), "{r:?}");
    held.abort();
}
