//! Modes and rejection options: plugins sharing a VM, dry run, forced open and disabled, the rejection
//! status and header, and the default configuration.

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

/// Two circuit-breaker plugins (Istio: two WasmPlugins) share one VM per worker and name their
/// breakers alike: each keeps its own windows and state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_sharing_a_vm_keep_their_own_breakers() {
    let upstream = Upstream::start().await;
    let plugin = |root: &str, path: &str| {
        let config = one(
            json!({"name": "dep", "match": {"pathPrefix": path}, "minimumCalls": 6, "consecutiveFailures": 0,
                                "openDuration": "30s", "openJitter": 0}),
        );
        cb_filter(Some(&config)).root_id(root)
    };
    let envoy = Envoy::start(
        EnvoyConfig::simple("ingress", upstream.port())
            .filter_all(plugin("cb-a", "/a"))
            .filter_all(plugin("cb-b", "/b")),
    )
    .await;
    // /a fails on every call, /b never does; both plugins see every request.
    for i in 0..24 {
        if i % 3 == 0 {
            let r = get(&envoy, "/b", OK).await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
        get(&envoy, "/a", FAIL).await;
    }
    tokio::time::sleep(SETTLE).await;
    let a = get(&envoy, "/a", OK).await;
    assert_eq!(a.status, 503, "cb-a opened: {}", a.text());
    for _ in 0..6 {
        let b = get(&envoy, "/b", OK).await;
        assert_eq!(b.status, 200, "cb-b never saw a failure: {}", b.text());
        assert_eq!(b.header(STATUS_HEADER), None);
    }
    let log = envoy.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("cb-b") && l.contains("-> open")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_never_rejects_but_marks_what_it_would_reject() {
    let (upstream, envoy) = setup(one(json!({
        "name": "shadow",
        "mode": "dryRun",
        "minimumCalls": 4, "consecutiveFailures": 0,
        "openDuration": "10s",
        "openJitter": 0
    })))
    .await;
    let mut sent: usize = 0;
    for _ in 0..4 {
        let r = get(&envoy, "/", FAIL).await;
        sent += 1;
        assert_eq!(r.status, 500);
        assert_eq!(
            r.header(STATUS_HEADER),
            None,
            "admitted while closed: {}",
            r.describe()
        );
    }
    let marked = |r: &Response| r.header(STATUS_HEADER).is_some();
    let (first, before) = until(
        || {
            sent += 1;
            get(&envoy, "/", FAIL)
        },
        marked,
    )
    .await;
    for r in before.iter().chain([&first]) {
        assert_eq!(r.status, 500, "reached the upstream: {}", r.describe());
    }
    for i in 0..6 {
        let r = if i % 2 == 0 {
            get(&envoy, "/", FAIL).await
        } else {
            get_h2(&envoy, "/", OK).await
        };
        sent += 1;
        assert_eq!(
            r.status,
            if i % 2 == 0 { 500 } else { 200 },
            "{}",
            r.describe()
        );
        assert_eq!(
            r.header(STATUS_HEADER),
            Some("shadow; state=open; dry-run"),
            "{}",
            r.describe()
        );
        assert_eq!(r.header("retry-after"), None, "{}", r.describe());
    }
    assert_eq!(
        first.header(STATUS_HEADER),
        Some("shadow; state=open; dry-run")
    );
    assert_eq!(upstream.count(), sent, "dry-run lets every request through");
    // Every marked response is a would-be rejection; nothing is rejected.
    let marked_count = 1 + 6;
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "shadow"), ("outcome", "would_reject")],
                marked_count,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "shadow"), ("state", "open")],
                1,
            ),
        ],
    )
    .await;
    let prom = envoy.prometheus().await;
    assert_eq!(
        prom_sum(
            &prom,
            "circuit_breaker_calls",
            &[("breaker", "shadow"), ("outcome", "rejected")]
        )
        .unwrap_or(0),
        0,
        "{}",
        prom_lines(&prom, "circuit_breaker")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_open_rejects_everything_and_disabled_passes_everything() {
    let (upstream, envoy) = setup(json!({"breakers": [
        {"name": "shut", "match": {"pathPrefix": "/shut"}, "mode": "forcedOpen"},
        {"name": "off", "match": {"pathPrefix": "/off"}, "mode": "disabled", "minimumCalls": 2, "consecutiveFailures": 0}
    ]}))
    .await;
    for i in 0..6 {
        let r = if i % 2 == 0 {
            get(&envoy, "/shut", OK).await
        } else {
            get_h2(&envoy, "/shut/x", OK).await
        };
        assert_rejected(&r, "shut", "forced-open", 503);
    }
    assert_eq!(upstream.count_path("/shut"), 0);

    for i in 0..20 {
        let r = get(&envoy, "/off", FAIL).await;
        assert_eq!(r.status, 500, "disabled, call {i}: {}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    assert_eq!(upstream.count_path("/off"), 20);
    // No breaker matches /other: untouched.
    for i in 0..20 {
        let r = get(&envoy, "/other", FAIL).await;
        assert_eq!(r.status, 500, "unmatched, call {i}: {}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    assert_eq!(upstream.count_path("/other"), 20);
    // Disabled records nothing.
    tokio::time::sleep(SETTLE).await;
    let prom = envoy.prometheus().await;
    assert_eq!(
        prom_sum(&prom, "circuit_breaker_calls", &[("breaker", "off")]).unwrap_or(0),
        0,
        "{}",
        prom_lines(&prom, "circuit_breaker")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_overloaded_and_reject_status_are_honoured() {
    let (upstream, envoy) = setup(one(json!({
        "name": "shed",
        "minimumCalls": 4, "consecutiveFailures": 0,
        "openDuration": "5s",
        "openJitter": 0,
        "rejectStatus": 429,
        "envoyOverloaded": true,
        "retryAfter": false
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    let reached = upstream.count();
    for r in [r, get_h2(&envoy, "/", OK).await] {
        assert_rejected(&r, "shed", "open", 429);
        assert_eq!(
            r.header("x-envoy-overloaded"),
            Some("true"),
            "{}",
            r.describe()
        );
        assert_eq!(
            r.header("retry-after"),
            None,
            "retryAfter is off: {}",
            r.describe()
        );
    }
    assert_eq!(upstream.count(), reached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_header_name_is_configurable() {
    let (upstream, envoy) = setup(json!({
        "statusHeader": "x-breaker-state",
        "breakers": [{"name": "closed-door", "mode": "forcedOpen"}]
    }))
    .await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 503, "{}", r.describe());
    assert_eq!(
        r.header("x-breaker-state"),
        Some("closed-door; state=forced-open"),
        "{}",
        r.describe()
    );
    assert_eq!(r.header(STATUS_HEADER), None, "{}", r.describe());
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_configuration_keys_by_cluster() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        None,
        vec![
            Route::to("to-a", "/a", "backend-a"),
            Route::to("to-b", "/b", "backend-b"),
        ],
        vec![
            Cluster::new("backend-a", upstream.port()),
            Cluster::new("backend-b", upstream.port()),
        ],
    )
    .await;
    for i in 0..4 {
        let r = get(&envoy, "/a", FAIL).await;
        assert_eq!(r.status, 500, "call {i}: {}", r.describe());
    }
    // 4 failures in a row: below the default consecutiveFailures (5), so no decision yet.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/a", FAIL).await;
    assert_eq!(r.status, 500, "the 5th call is admitted: {}", r.describe());
    let (r, _) = until_rejected(|| get(&envoy, "/a", FAIL)).await;
    assert_rejected(&r, "default", "open", 503);
    // Default openDuration 5 s with 10 % jitter.
    let secs = retry_after(&r);
    assert!((4..=6).contains(&secs), "retry-after {secs}");
    // The other cluster has its own breaker.
    for i in 0..5 {
        let r = get(&envoy, "/b", OK).await;
        assert_eq!(r.status, 200, "backend-b, call {i}: {}", r.describe());
    }
    assert_eq!(upstream.count_path("/b"), 5);
    let reached_a = upstream.count_path("/a");
    assert_rejected(&get(&envoy, "/a", OK).await, "default", "open", 503);
    assert_eq!(upstream.count_path("/a"), reached_a);
}
