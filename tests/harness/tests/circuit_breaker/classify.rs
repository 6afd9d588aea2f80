//! Which responses count as failures: gRPC status in trailers and in trailers-only responses, `classify`
//! rules that replace the defaults, bodies cut after the headers, and replies of later filters.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

/// A gRPC (h2c) upstream behind breaker `name`: opens at 50 % failures after 6 calls, for 5 s.
async fn setup_grpc(name: &str) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": name,
            "minimumCalls": 6, "consecutiveFailures": 0,
            "failureRateThreshold": 50,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![Route::to("grpc", "/", "upstream_h2")],
        vec![Cluster::new("upstream_h2", upstream.port()).http2(true)],
    )
    .await;
    (upstream, envoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_opens_and_rejections_are_grpc() {
    let (upstream, envoy) = setup_grpc("grpc-dep").await;
    let port = envoy.port("ingress");
    let unavailable = [
        ("x-upstream-grpc-status", "14"),
        ("x-upstream-grpc-in", "trailers"),
    ];
    for _ in 0..3 {
        let r = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
        assert_eq!(r.grpc_status, Some(0), "{r:?}");
    }
    for _ in 0..3 {
        let r = grpc_unary(port, "/pkg.Svc/Call", &unavailable, b"hi").await;
        assert_eq!(r.http_status, 200);
        assert_eq!(r.grpc_status, Some(14), "{r:?}");
        assert_eq!(
            r.trailer("grpc-status"),
            Some("14"),
            "status in trailers: {r:?}"
        );
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    // 3 UNAVAILABLE of 6 = 50 %. Successful polls cannot open the breaker by themselves.
    let deadline = Instant::now() + RECORD_WAIT;
    let rejected = loop {
        let r = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
        if r.header(STATUS_HEADER).is_some() {
            break r;
        }
        assert_eq!(r.grpc_status, Some(0), "{r:?}");
        assert!(
            Instant::now() < deadline,
            "no gRPC rejection within {RECORD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reached = upstream.count();
    for r in [
        rejected,
        grpc_unary(port, "/pkg.Svc/Call", &unavailable, b"hi").await,
        grpc_unary(port, "/pkg.Svc/Other", &[], b"hi").await,
    ] {
        assert_eq!(r.http_status, 200, "{r:?}");
        assert_eq!(r.grpc_status, Some(14), "UNAVAILABLE: {r:?}");
        assert_eq!(r.header("grpc-status"), Some("14"), "trailers-only: {r:?}");
        assert!(r.trailers.is_empty(), "trailers-only: {r:?}");
        assert!(
            r.grpc_message
                .as_deref()
                .is_some_and(|m| m.contains("grpc-dep")),
            "grpc-message names the breaker: {r:?}"
        );
        assert_eq!(
            r.header(STATUS_HEADER),
            Some("grpc-dep; state=open"),
            "{r:?}"
        );
    }
    assert_eq!(
        upstream.count(),
        reached,
        "rejected calls never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_rules_replace_the_defaults() {
    let upstream = Upstream::start().await;
    let config = json!({"breakers": [
        {
            "name": "flags",
            "match": {"pathPrefix": "/flags"},
            "keyBy": "route",
            "minimumCalls": 3, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0,
            "classify": [{"envoy": ["connectionFailure", "timeout"], "outcome": "failure"}]
        },
        {
            "name": "ignoring",
            "match": {"pathPrefix": "/ign"},
            "minimumCalls": 4, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0,
            "classify": [
                {"status": "429", "outcome": "ignore"},
                {"status": ["500", "502-504"], "outcome": "failure"}
            ]
        }
    ]});
    let envoy = start_routed(
        Some(&config),
        vec![
            Route::to("flags-refused", "/flags/refused", "dead"),
            Route::to("flags-timeout", "/flags/timeout", "upstream")
                .timeout(Duration::from_millis(200)),
            Route::to("flags-status", "/flags/status", "upstream"),
            Route::to("ign", "/ign", "upstream"),
        ],
        vec![
            Cluster::new("dead", closed_port()),
            Cluster::new("upstream", upstream.port()),
        ],
    )
    .await;

    // Only Envoy's failure reasons count: 500s from the upstream are successes here.
    for _ in 0..8 {
        let r = get(&envoy, "/flags/status", FAIL).await;
        assert_eq!(r.status, 500, "{}", r.describe());
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/flags/status", FAIL).await;
    assert_eq!(r.status, 500, "a 500 is no failure here: {}", r.describe());

    for _ in 0..3 {
        assert_eq!(get(&envoy, "/flags/refused", OK).await.status, 503);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/flags/refused", OK)).await;
    assert_rejected(&r, "flags", "open", 503);

    for r in concurrently(envoy.port("ingress"), 3, "/flags/timeout", HANG).await {
        assert_eq!(r.status, 504, "{}", r.describe());
    }
    let (r, _) = until_rejected(|| get(&envoy, "/flags/timeout", HANG)).await;
    assert_rejected(&r, "flags", "open", 503);

    // Ignored calls count nowhere, not even toward minimumCalls.
    for _ in 0..3 {
        assert_eq!(get(&envoy, "/ign", FAIL).await.status, 500);
    }
    for i in 0..10 {
        let r = get(&envoy, "/ign", &[("x-upstream-status", "429")]).await;
        assert_eq!(r.status, 429, "ignored call {i} passes: {}", r.describe());
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/ign", &[("x-upstream-status", "502")]).await;
    assert_eq!(r.status, 502, "three calls so far: {}", r.describe());
    // 4 failures in 4 counted calls.
    let (r, _) = until_rejected(|| get(&envoy, "/ign", OK)).await;
    assert_rejected(&r, "ignoring", "open", 503);
}

/// Listener `ingress` with one breaker `broken` (3 calls, 50 %): `/h1` goes to the upstream over
/// HTTP/1.1, `/h2` over HTTP/2, keyed by route.
async fn setup_broken() -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "broken",
            "keyBy": "route",
            "minimumCalls": 3, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![
            Route::to("h1", "/h1", "upstream"),
            Route::to("h2", "/h2", "upstream_h2"),
        ],
        vec![
            Cluster::new("upstream", upstream.port()),
            Cluster::new("upstream_h2", upstream.port()).http2(true),
        ],
    )
    .await;
    (upstream, envoy)
}

/// Status 200, then the HTTP/2 upstream resets the stream: only Envoy's flag (`UR`) tells it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_after_headers_is_a_failure_over_h2() {
    cut_bodies_open_the_breaker("/h2").await;
}

/// Status 200, then the HTTP/1.1 upstream drops the connection mid-body. Envoy reports it as
/// `upstream_reset_after_response_started{protocol_error}` with flag `UPE`; the caller got a truncated
/// response, so it is the `reset` failure all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_abort_after_headers_is_a_failure_over_h1() {
    cut_bodies_open_the_breaker("/h1").await;
}

/// Three calls on `path` whose upstream answers 200 then closes mid-body open the breaker `broken`.
async fn cut_bodies_open_the_breaker(path: &str) {
    let (_upstream, envoy) = setup_broken().await;
    let port = envoy.port(INGRESS);
    for i in 0..3 {
        let r = try_http1(port, "GET", path, &[("x-upstream-action", "close")], "").await;
        assert!(r.is_err(), "call {i}: the body never completes: {r:?}");
    }
    let (r, _) = until_rejected(|| get(&envoy, path, OK)).await;
    assert_rejected(&r, "broken", "open", 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_only_responses_is_classified() {
    let (_upstream, envoy) = setup_grpc("grpc-headers").await;
    let port = envoy.port("ingress");
    let call = |code: &'static str| async move {
        grpc_unary(
            port,
            "/pkg.Svc/Call",
            &[
                ("x-upstream-grpc-status", code),
                ("x-upstream-grpc-in", "headers"),
            ],
            b"hi",
        )
        .await
    };
    // NOT_FOUND is no failure by default; DEADLINE_EXCEEDED is.
    for code in ["5", "5", "5", "5", "4", "4"] {
        let r = call(code).await;
        assert_eq!(r.grpc_status, Some(code.parse().unwrap()), "{r:?}");
        assert!(
            r.trailers.is_empty(),
            "trailers-only from the upstream: {r:?}"
        );
        assert_eq!(r.header(STATUS_HEADER), None, "{r:?}");
    }
    // 2 of 6, then 3 of 7: closed.
    tokio::time::sleep(SETTLE).await;
    let r = call("4").await;
    assert_eq!(r.header(STATUS_HEADER), None, "33 % does not open: {r:?}");
    tokio::time::sleep(SETTLE).await;
    let r = call("4").await;
    assert_eq!(r.header(STATUS_HEADER), None, "43 % does not open: {r:?}");
    // 4 of 8 = 50 %: open. OK calls only lower the rate.
    let deadline = Instant::now() + RECORD_WAIT;
    let rejected = loop {
        let r = call("0").await;
        if r.header(STATUS_HEADER).is_some() {
            break r;
        }
        assert!(Instant::now() < deadline, "no gRPC rejection: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(rejected.grpc_status, Some(14), "{rejected:?}");
    assert_eq!(
        rejected.header(STATUS_HEADER),
        Some("grpc-headers; state=open")
    );
}

/// A rejection by a filter after the breaker (here Envoy's fault filter) never reached the dependency: it
/// neither opens the breaker nor counts as a failure, while real upstream failures still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_later_filters_do_not_count_against_the_dependency() {
    let upstream = Upstream::start().await;
    let fault = "name: envoy.filters.http.fault\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n  abort:\n    header_abort: {}\n    percentage: {numerator: 100, denominator: HUNDRED}";
    let config = one(
        json!({"name": "dep", "minimumCalls": 4, "consecutiveFailures": 0, "failureRateThreshold": 50, "openJitter": 0}),
    );
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(cb_filter(Some(&config)))
                    .filter(HttpFilter::raw(fault))
                    .route(Route::to("ingress", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port())),
    )
    .await;
    let port = envoy.port("ingress");
    for _ in 0..10 {
        let r = http1(
            port,
            "GET",
            "/",
            &[("x-envoy-fault-abort-request", "503")],
            "",
        )
        .await;
        assert_eq!(r.status, 503);
        assert_eq!(
            r.header("x-circuit-breaker"),
            None,
            "the breaker must not open on the fault filter's replies"
        );
    }
    assert_eq!(upstream.count(), 0);
    tokio::time::sleep(SETTLE).await;
    let prom = envoy.prometheus().await;
    assert_eq!(
        prom_sum(
            &prom,
            "circuit_breaker_calls",
            &[("breaker", "dep"), ("outcome", "ignored")]
        ),
        Some(10),
        "{}",
        prom_lines(&prom, "circuit_breaker")
    );
    assert_eq!(
        prom_sum(
            &prom,
            "circuit_breaker_calls",
            &[("breaker", "dep"), ("outcome", "failure")]
        ),
        Some(0)
    );
    // Control: the upstream's own 503s still open it.
    for _ in 0..4 {
        http1(port, "GET", "/", &[("x-upstream-status", "503")], "").await;
    }
    tokio::time::sleep(SETTLE).await;
    let r = http1(port, "GET", "/", &[], "").await;
    assert_eq!(r.header("x-circuit-breaker"), Some("dep; state=open"));
}
