//! What `/stats/prometheus` of an Istio sidecar shows of the filters' metrics: with the `extraStatTags`
//! of `istio/README.md`, every metric with its labels; with Istio's defaults, the tags left inside the
//! metric names; and the bootstrap's required `wasm` inclusion prefix is what keeps them at all.

use e2e_harness::*;

use crate::support::*;

/// The metric families the filters define (their READMEs' metrics tables).
const FAMILIES: &[&str] = &["trace_context_", "circuit_breaker_", "fallback_"];

/// The series of the filters' own metrics (Envoy's native Wasm stats, such as
/// `envoy_wasm_circuit_breaker_vm_reload`, start with `envoy_`).
fn filter_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("envoy_"))
        .filter(|l| FAMILIES.iter().any(|f| l.contains(f)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_documented_extra_stat_tags_every_metric_carries_its_labels() {
    let (_upstream, envoy) = start_sidecar(&SidecarStats::with_filter_tags()).await;
    drive_traffic(&envoy).await;
    let b = ("breaker", BREAKER);
    let at_least_one: &[(&str, &[(&str, &str)])] = &[
        ("trace_context_extracted", &[("format", "tracecontext")]),
        ("trace_context_extracted", &[("format", "b3")]),
        ("trace_context_extracted", &[("format", "jaeger")]),
        ("trace_context_extracted", &[("format", "datadog")]),
        ("trace_context_extracted", &[("format", "xray")]),
        ("trace_context_extracted", &[("format", "cloudtrace")]),
        ("trace_context_invalid", &[("format", "tracecontext")]),
        ("trace_context_conflicts", &[("format", "b3")]),
        ("trace_context_started", &[]),
        ("trace_context_restored", &[]),
        ("trace_context_outbound_without_context", &[]),
        ("trace_context_correlation_refused", &[]),
        ("circuit_breaker_calls", &[b, ("outcome", "success")]),
        ("circuit_breaker_calls", &[b, ("outcome", "failure")]),
        ("circuit_breaker_calls", &[b, ("outcome", "rejected")]),
        ("circuit_breaker_transitions", &[b, ("state", "open")]),
        ("circuit_breaker_open", &[b]),
        (
            "circuit_breaker_calls",
            &[("breaker", BULKHEAD), ("outcome", "full")],
        ),
        (
            "circuit_breaker_calls",
            &[("breaker", BULKHEAD), ("outcome", "pushback")],
        ),
        (
            "fallback_served",
            &[
                ("rule", ENVOY_RULE),
                ("trigger", "connectionFailure"),
                ("kind", "problem"),
            ],
        ),
        (
            "fallback_served",
            &[
                ("rule", ENVOY_RULE),
                ("trigger", "circuitBreaker"),
                ("kind", "problem"),
            ],
        ),
        (
            "fallback_served",
            &[
                ("rule", STALE_RULE),
                ("trigger", "status"),
                ("kind", "stale"),
            ],
        ),
        (
            "fallback_served",
            &[
                ("rule", STALE_RULE),
                ("trigger", "status"),
                ("kind", "problem"),
            ],
        ),
        ("fallback_cache_hits", &[]),
        ("fallback_cache_misses", &[]),
        ("fallback_cache_stores", &[]),
    ];
    for (metric, labels) in at_least_one {
        wait_series(&envoy, metric, metric, labels, |v| v >= 1).await;
    }
    let text = envoy.prometheus().await;
    // Every tag was lifted into a label: no series of the filters still has one in its name.
    for line in filter_lines(&text) {
        assert!(
            FAMILIES.iter().any(|f| line.starts_with(f)),
            "a tag left in the metric name: {line}"
        );
    }
    // Counters and the gauges keep their types; Envoy adds no `_total` to counters.
    for (metric, kind) in [
        ("circuit_breaker_calls", "counter"),
        ("circuit_breaker_open", "gauge"),
        ("circuit_breaker_in_flight", "gauge"),
        ("fallback_served", "counter"),
        ("fallback_cache_bytes", "gauge"),
        ("trace_context_extracted", "counter"),
    ] {
        let line = format!("# TYPE {metric} {kind}");
        assert!(
            text.contains(&line),
            "no `{line}`:\n{}",
            prom_lines(&text, metric)
        );
    }
    // The inclusion list is in force: an HCM stat it does not name is not even created, while the
    // `server` prefix's stats are.
    assert!(
        prom_sum(&text, "envoy_server_live", &[]).is_some(),
        "server.live kept"
    );
    assert_eq!(
        prom_sum(&text, "envoy_http_downstream_rq_total", &[]),
        None,
        "{}",
        prom_lines(&text, "downstream_rq_total")
    );
}

/// Without `extraStatTags` (Istio's default) the series are there, but each tag stays in its
/// metric's name: `format=.=b3;.;trace_context_extracted` becomes `format___b3___trace_context_extracted`
/// without labels, which no dashboard can aggregate. Hence the lines in `istio/README.md`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_istio_defaults_the_tags_stay_in_the_names() {
    let (_upstream, envoy) = start_sidecar(&SidecarStats::defaults()).await;
    let text = envoy.prometheus().await;
    // Untagged metrics are fine as they are.
    assert!(
        prom_sum(&text, "trace_context_started", &[]).is_some(),
        "{text}"
    );
    assert!(
        prom_sum(&text, "fallback_cache_hits", &[]).is_some(),
        "{text}"
    );
    // Tagged ones have no labelled series and show up under mangled names instead.
    for metric in [
        "trace_context_extracted",
        "circuit_breaker_calls",
        "circuit_breaker_open",
    ] {
        assert_eq!(
            prom_sum(&text, metric, &[]),
            None,
            "{}",
            prom_lines(&text, metric)
        );
    }
    assert!(
        prom_sum(&text, "format___b3___trace_context_extracted", &[]).is_some(),
        "{}",
        prom_lines(&text, "trace_context_extracted")
    );
    assert!(
        prom_sum(
            &text,
            &format!(
                "breaker___{}___outcome___failure___circuit_breaker_calls",
                BREAKER.replace('-', "_")
            ),
            &[]
        )
        .is_some(),
        "{}",
        prom_lines(&text, "circuit_breaker_calls")
    );
    // The annotation form (`sidecar.istio.io/extraStatTags`) adds the same tags as meshConfig.
    let by_annotation = SidecarStats {
        extra_stat_tags_annotation: FILTER_STAT_TAGS.iter().map(|t| t.to_string()).collect(),
        ..SidecarStats::defaults()
    };
    assert_eq!(
        by_annotation.tags(),
        SidecarStats::with_filter_tags().tags()
    );
}

/// Envoy names every Wasm metric `wasmcustom.<name>`; of the sidecar's inclusion list only the
/// required `wasm` prefix matches that, so it alone keeps the filters' metrics. Istio always appends
/// the required prefixes, even to a user's `statsInclusionPrefixes`; this shows what a stats matcher
/// without it (a hand-written bootstrap, Istio before 1.6) would do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_required_wasm_prefix_is_what_keeps_the_metrics() {
    let without = SidecarStats {
        without_wasm_prefix: true,
        ..SidecarStats::with_filter_tags()
    };
    // A user's own inclusion prefixes (`proxyStatsMatcher` or `sidecar.istio.io/statsInclusionPrefixes`)
    // come on top of the required ones, never instead of them.
    let user = SidecarStats {
        inclusion_prefixes: vec!["http.outbound.".to_string()],
        ..SidecarStats::with_filter_tags()
    };
    let ((_u1, without), (_u2, user)) = tokio::join!(start_sidecar(&without), start_sidecar(&user));

    let text = without.prometheus().await;
    assert!(
        filter_lines(&text).is_empty(),
        "{}",
        filter_lines(&text).join("\n")
    );
    assert!(prom_sum(&text, "envoy_server_live", &[]).is_some());

    let text = user.prometheus().await;
    assert!(
        prom_sum(&text, "trace_context_started", &[]).is_some(),
        "{text}"
    );
    // Istio's `http_conn_manager_prefix` tag only lifts IP-and-port prefixes, so this one stays in the
    // name.
    assert!(
        prom_sum(&text, "envoy_http_outbound_downstream_rq_total", &[]).is_some(),
        "{}",
        prom_lines(&text, "downstream_rq_total")
    );
}
