//! The circuit-breaker filter in the real Envoy (`--concurrency 2`), against a real upstream whose
//! failures, delays and hangs are chosen per request. Every request opens its own connection, so the
//! traffic of each test is spread over both workers and the breaker state must be sidecar-wide.
//!
//! Outcomes are recorded when a stream ends, a few milliseconds after the client has the response, so
//! after the calls that trip a breaker the tests poll for the first rejection ([`until_rejected`])
//! with requests that cannot trip it by themselves, and only then assert exact counts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::time::{Duration, Instant};

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinSet;

const STATUS_HEADER: &str = "x-circuit-breaker";
/// Request headers as the harness clients take them.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// The upstream answers 500.
const FAIL: &[(&str, &str)] = &[("x-upstream-status", "500")];
/// The upstream answers 200 at once.
const OK: &[(&str, &str)] = &[];
/// The upstream never answers (the route timeout cuts the call).
const HANG: &[(&str, &str)] = &[("x-upstream-action", "hang")];
/// How long a test waits for Envoy to record streams that already ended.
const RECORD_WAIT: Duration = Duration::from_secs(2);
/// A pause after which the streams that just ended are surely recorded. Used where a test must know
/// the state before its next request, because a polling request would change the outcome.
const SETTLE: Duration = Duration::from_millis(150);

fn cb_filter(config: Option<&Value>) -> WasmFilter {
    let f =
        WasmFilter::new("circuit-breaker", dist("circuit_breaker.wasm")).vm_id("circuit-breaker");
    match config {
        Some(c) => f.configuration(c.to_string()),
        None => f,
    }
}

/// `{"breakers": [breaker]}`.
fn one(breaker: Value) -> Value {
    json!({ "breakers": [breaker] })
}

/// Listener `ingress` with the filter, whose one route `ingress` sends `/` to the cluster `upstream`.
async fn setup(config: Value) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::simple("ingress", upstream.port()).filter_all(cb_filter(Some(&config))),
    )
    .await;
    (upstream, envoy)
}

/// Listener `ingress` with the filter (`config`) in front of `routes`, and `clusters`.
async fn start_routed(config: Option<&Value>, routes: Vec<Route>, clusters: Vec<Cluster>) -> Envoy {
    let mut listener = Listener::new(INGRESS).filter(cb_filter(config));
    for route in routes {
        listener = listener.route(route);
    }
    let mut envoy_config = EnvoyConfig::new().listener(listener);
    for cluster in clusters {
        envoy_config = envoy_config.cluster(cluster);
    }
    Envoy::start(envoy_config).await
}

/// A rejection by the breaker (dry-run marks are not rejections).
fn is_rejection(r: &Response) -> bool {
    r.header(STATUS_HEADER)
        .is_some_and(|v| !v.trim_end().ends_with("dry-run"))
}

fn describe(r: &Response) -> String {
    format!(
        "status {} headers {:?} body {:?}",
        r.status,
        r.headers,
        r.text()
    )
}

/// Sends `send()` every 20 ms until `done` holds for a response, for at most [`RECORD_WAIT`];
/// returns that response and the ones before it.
async fn until<F, Fut>(mut send: F, done: impl Fn(&Response) -> bool) -> (Response, Vec<Response>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Response>,
{
    let deadline = Instant::now() + RECORD_WAIT;
    let mut before = Vec::new();
    loop {
        let r = send().await;
        if done(&r) {
            return (r, before);
        }
        if Instant::now() >= deadline {
            panic!(
                "condition not met within {RECORD_WAIT:?} ({} responses before); last: {}",
                before.len() + 1,
                describe(&r)
            );
        }
        before.push(r);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`until`] the breaker rejects; returns the rejection and the responses that passed before it.
async fn until_rejected<F, Fut>(send: F) -> (Response, Vec<Response>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Response>,
{
    until(send, is_rejection).await
}

/// Asserts a rejection of the breaker `name` in state `state` with status `status`.
fn assert_rejected(r: &Response, name: &str, state: &str, status: u16) {
    assert_eq!(r.status, status, "{}", describe(r));
    assert_eq!(
        r.header(STATUS_HEADER),
        Some(format!("{name}; state={state}").as_str()),
        "{}",
        describe(r)
    );
    assert!(
        r.text().contains(name),
        "the rejection body names the breaker: {}",
        describe(r)
    );
}

/// `retry-after` as whole seconds; panics when absent or not a number.
fn retry_after(r: &Response) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {}", describe(r)));
    v.trim()
        .parse()
        .unwrap_or_else(|e| panic!("retry-after {v:?} is not whole seconds ({e})"))
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Sends `n` requests at once (each on its own connection) and returns the responses in order.
async fn concurrently(port: u16, n: usize, path: &str, headers: &[(&str, &str)]) -> Vec<Response> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let path = path.to_string();
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        set.spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (i, http1(port, "GET", &path, &h, "").await)
        });
    }
    let mut out: Vec<(usize, Response)> = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// A Prometheus series and its expected value: metric name, labels it must carry, value.
type Series<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

/// Polls `/stats/prometheus` until every `(metric, labels, value)` holds, for at most [`RECORD_WAIT`],
/// then asserts them (so a mismatch shows the series).
async fn assert_prom(envoy: &Envoy, expected: &[Series<'_>]) {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let all = expected
            .iter()
            .all(|(m, l, v)| prom_sum(&text, m, l) == Some(*v));
        if all || Instant::now() >= deadline {
            for (m, l, v) in expected {
                assert_eq!(
                    prom_sum(&text, m, l),
                    Some(*v),
                    "{m}{l:?}; series:\n{}",
                    prom_lines(&text, "circuit_breaker")
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Tripping
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_failure_rate_and_rejects_without_reaching_the_upstream() {
    let (upstream, envoy) = setup(one(json!({
        "name": "payments",
        "minimumCalls": 10,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for i in 0..10 {
        let r = get(&envoy, "/pay", FAIL).await;
        assert_eq!(
            r.status,
            500,
            "call {i} reaches the upstream: {}",
            describe(&r)
        );
        assert_eq!(r.header(STATUS_HEADER), None, "call {i}: {}", describe(&r));
    }
    let (rejected, _passed) = until_rejected(|| get(&envoy, "/pay", FAIL)).await;
    assert_rejected(&rejected, "payments", "open", 503);
    let secs = retry_after(&rejected);
    assert!(
        (1..=5).contains(&secs),
        "retry-after {secs}: the next probe is at most 5 s away"
    );
    assert_eq!(
        rejected.header("x-envoy-overloaded"),
        None,
        "envoyOverloaded is off by default"
    );

    // Open: nothing reaches the upstream any more, whatever the request, HTTP/1.1 or HTTP/2.
    let reached = upstream.count();
    for i in 0..10 {
        let r = if i % 2 == 0 {
            get(&envoy, "/pay", FAIL).await
        } else {
            get_h2(&envoy, "/pay", OK).await
        };
        assert_rejected(&r, "payments", "open", 503);
        assert!(retry_after(&r) <= 5);
    }
    assert_eq!(
        upstream.count(),
        reached,
        "rejected requests never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_exactly_at_the_failure_rate_threshold() {
    let (upstream, envoy) = setup(one(json!({
        "name": "edge",
        "minimumCalls": 10,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    // 5 failures in 10 calls = 50 %. The polling requests succeed, so they only lower the rate: a
    // rejection can only come from the decision at the 10th call.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "edge", "open", 503);
    assert!(passed.iter().all(|r| r.status == 200));
    assert_eq!(upstream.count(), 10 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_closed_below_the_failure_rate_threshold() {
    let (upstream, envoy) = setup(one(json!({
        "name": "edge",
        "minimumCalls": 10,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..6 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    // 4 of 10 = 40 %: still closed, the 11th call is admitted.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "40 % does not open: {}", describe(&r));
    // 5 of 11 = 45 %: still closed.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "45 % does not open: {}", describe(&r));
    // 6 of 12 = 50 %: opens.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "edge", "open", 503);
    assert_eq!(upstream.count(), 12 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_connection_refused() {
    let envoy = start_routed(
        Some(&one(json!({
            "name": "refused",
            "minimumCalls": 5,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![Route::to("dead", "/", "dead")],
        vec![Cluster::new("dead", closed_port())],
    )
    .await;
    for i in 0..5 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 503, "call {i}: Envoy's own 503: {}", describe(&r));
        assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
    }
    let (rejected, _) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "refused", "open", 503);
    // Rejected requests make no connection attempt.
    let attempts = envoy.stat("cluster.dead.upstream_cx_total").await;
    for _ in 0..5 {
        assert_rejected(&get(&envoy, "/", OK).await, "refused", "open", 503);
    }
    assert_eq!(envoy.stat("cluster.dead.upstream_cx_total").await, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_route_timeouts() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "stuck",
            "minimumCalls": 4,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![Route::to("slow", "/", "upstream").timeout(Duration::from_millis(200))],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    for r in concurrently(envoy.port("ingress"), 4, "/", HANG).await {
        assert_eq!(r.status, 504, "{}", describe(&r));
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    let (rejected, _) = until_rejected(|| get(&envoy, "/", HANG)).await;
    assert_rejected(&rejected, "stuck", "open", 503);
    let reached = upstream.count();
    for _ in 0..5 {
        let start = Instant::now();
        let r = get(&envoy, "/", HANG).await;
        assert_rejected(&r, "stuck", "open", 503);
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "answered at once, not after the route timeout: {:?}",
            start.elapsed()
        );
    }
    assert_eq!(upstream.count(), reached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_on_slow_call_rate() {
    let (upstream, envoy) = setup(one(json!({
        "name": "slowpoke",
        "minimumCalls": 8,
        "slowCallDuration": "100ms",
        "slowCallRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", OK).await.status, 200);
    }
    // Four slow successes: 4 of 8 calls slow = 50 %.
    for r in concurrently(
        envoy.port("ingress"),
        4,
        "/",
        &[("x-upstream-delay-ms", "250")],
    )
    .await
    {
        assert_eq!(r.status, 200, "{}", describe(&r));
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    // Fast polls only lower the slow-call rate.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "slowpoke", "open", 503);
    let reached = upstream.count();
    assert_eq!(reached, 8 + passed.len());
    assert_rejected(&get(&envoy, "/", OK).await, "slowpoke", "open", 503);
    assert_eq!(upstream.count(), reached);
}

/// A gRPC (h2c) upstream behind breaker `name`: opens at 50 % failures after 6 calls, for 5 s.
async fn setup_grpc(name: &str) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": name,
            "minimumCalls": 6,
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

/// Failures in a row are counted sidecar-wide: the streak after a success is the same whichever
/// worker handled each call (a run of failures that one worker began before another worker's success
/// still contributes the failures that came after that success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_open_without_a_rate_decision() {
    let (upstream, envoy) = setup(one(json!({
        "name": "streak",
        "consecutiveFailures": 8,
        "minimumCalls": 1000,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    // Seven failures, a success that breaks the streak, seven failures: never eight in a row.
    let sequence: Vec<&[(&str, &str)]> = [vec![FAIL; 7], vec![OK], vec![FAIL; 7]].concat();
    for (i, h) in sequence.iter().enumerate() {
        let r = get(&envoy, "/", h).await;
        assert_eq!(r.header(STATUS_HEADER), None, "call {i}: {}", describe(&r));
        assert_eq!(r.status, if h.is_empty() { 200 } else { 500 }, "call {i}");
    }
    tokio::time::sleep(SETTLE).await;
    // Seven in a row so far: the eighth failure is still admitted...
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "{}", describe(&r));
    // ...and opens the breaker; successes would only break the streak.
    let (rejected, passed) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&rejected, "streak", "open", 503);
    assert_eq!(upstream.count(), 16 + passed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_window_forgets_old_calls() {
    let (_upstream, envoy) = setup(one(json!({
        "name": "ring",
        "window": {"type": "count", "size": 4},
        "minimumCalls": 4,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    // F S S S | S S S S | F: the last four calls hold one failure (25 %); a time window would hold 2/9.
    for h in [FAIL, OK, OK, OK, OK, OK, OK, OK, FAIL] {
        let r = get(&envoy, "/", h).await;
        assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
    }
    tokio::time::sleep(SETTLE).await;
    // S S F F: 50 % of the last four opens; over all ten calls it would be 30 %.
    let r = get(&envoy, "/", FAIL).await;
    assert_eq!(r.status, 500, "{}", describe(&r));
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/", OK).await;
    assert_rejected(&r, "ring", "open", 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_rules_replace_the_defaults() {
    let upstream = Upstream::start().await;
    let config = json!({"breakers": [
        {
            "name": "flags",
            "match": {"pathPrefix": "/flags"},
            "keyBy": "route",
            "minimumCalls": 3,
            "openDuration": "5s",
            "openJitter": 0,
            "classify": [{"envoy": ["connectionFailure", "timeout"], "outcome": "failure"}]
        },
        {
            "name": "ignoring",
            "match": {"pathPrefix": "/ign"},
            "minimumCalls": 4,
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
        assert_eq!(r.status, 500, "{}", describe(&r));
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/flags/status", FAIL).await;
    assert_eq!(r.status, 500, "a 500 is no failure here: {}", describe(&r));

    for _ in 0..3 {
        assert_eq!(get(&envoy, "/flags/refused", OK).await.status, 503);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/flags/refused", OK)).await;
    assert_rejected(&r, "flags", "open", 503);

    for r in concurrently(envoy.port("ingress"), 3, "/flags/timeout", HANG).await {
        assert_eq!(r.status, 504, "{}", describe(&r));
    }
    let (r, _) = until_rejected(|| get(&envoy, "/flags/timeout", HANG)).await;
    assert_rejected(&r, "flags", "open", 503);

    // Ignored calls count nowhere, not even toward minimumCalls.
    for _ in 0..3 {
        assert_eq!(get(&envoy, "/ign", FAIL).await.status, 500);
    }
    for i in 0..10 {
        let r = get(&envoy, "/ign", &[("x-upstream-status", "429")]).await;
        assert_eq!(r.status, 429, "ignored call {i} passes: {}", describe(&r));
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/ign", &[("x-upstream-status", "502")]).await;
    assert_eq!(r.status, 502, "three calls so far: {}", describe(&r));
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
            "minimumCalls": 3,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_matching_breaker_handles_the_request() {
    let upstream = Upstream::start().await;
    let forced = |name: &str, m: Value| json!({"name": name, "match": m, "mode": "forcedOpen"});
    let config = json!({"breakers": [
        forced("by-header", json!({"header": {"name": "x-tenant", "value": "acme"}})),
        forced("by-presence", json!({"header": {"name": "x-canary"}})),
        forced("by-method", json!({"method": "DELETE"})),
        forced("by-authority", json!({"authority": "Blocked.Example"})),
        forced("by-cluster", json!({"cluster": "backend-b"})),
        forced("by-route", json!({"route": "to-c"})),
        forced("combined", json!({"pathPrefix": "/a/admin", "method": "POST"})),
    ]});
    let envoy = start_routed(
        Some(&config),
        vec![
            Route::to("to-b", "/b", "backend-b"),
            Route::to("to-c", "/c", "backend-a"),
            Route::to("to-a", "/", "backend-a"),
        ],
        vec![
            Cluster::new("backend-a", upstream.port()),
            Cluster::new("backend-b", upstream.port()),
        ],
    )
    .await;
    let port = envoy.port("ingress");
    let cases: &[(&str, &str, Headers<'_>, Option<&str>)] = &[
        ("GET", "/a", &[("x-tenant", "acme")], Some("by-header")),
        ("GET", "/a", &[("x-tenant", "other")], None),
        ("GET", "/a", &[("x-canary", "1")], Some("by-presence")),
        ("DELETE", "/a", &[], Some("by-method")),
        (
            "GET",
            "/a",
            &[("host", "blocked.example")],
            Some("by-authority"),
        ),
        ("GET", "/a", &[("host", "blocked.example.org")], None),
        ("GET", "/b", &[], Some("by-cluster")),
        ("GET", "/c", &[], Some("by-route")),
        ("POST", "/a/admin/x", &[], Some("combined")),
        ("GET", "/a/admin/x", &[], None),
        ("POST", "/a/other", &[], None),
        // First match wins.
        ("GET", "/b", &[("x-tenant", "acme")], Some("by-header")),
        ("DELETE", "/c", &[("x-canary", "1")], Some("by-presence")),
    ];
    let mut passed = 0;
    for (method, path, headers, expected) in cases {
        let r = http1(port, method, path, headers, "").await;
        match expected {
            Some(name) => assert_rejected(&r, name, "forced-open", 503),
            None => {
                assert_eq!(
                    r.status,
                    200,
                    "{method} {path} {headers:?}: {}",
                    describe(&r)
                );
                assert_eq!(r.header(STATUS_HEADER), None);
                passed += 1;
            }
        }
    }
    assert_eq!(upstream.count(), passed);
}

/// `match.header` without a value matches on presence, and a header with an empty value is present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_presence_match_includes_empty_values() {
    let (upstream, envoy) = setup(one(json!({
        "name": "canary",
        "match": {"header": {"name": "x-canary"}},
        "mode": "forcedOpen"
    })))
    .await;
    assert_eq!(get(&envoy, "/", OK).await.status, 200, "absent: no match");
    assert_rejected(
        &get(&envoy, "/", &[("x-canary", "yes")]).await,
        "canary",
        "forced-open",
        503,
    );
    let r = get(&envoy, "/", &[("x-canary", "")]).await;
    assert_rejected(&r, "canary", "forced-open", 503);
    assert_eq!(upstream.count(), 1);
}

// ---------------------------------------------------------------------------------------------------
// Half-open
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_admits_exactly_the_probes_across_workers_then_closes() {
    let (upstream, envoy) = setup(one(json!({
        "name": "flaky",
        "minimumCalls": 4,
        "failureRateThreshold": 60,
        "openDuration": "300ms",
        "openJitter": 0,
        "halfOpenProbes": 3,
        "maxHalfOpenDuration": "5s"
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "flaky", "open", 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    upstream.clear();

    // 20 requests at once over both workers; the probes are slow enough for all of them to overlap.
    let responses = concurrently(
        envoy.port("ingress"),
        20,
        "/probe",
        &[("x-upstream-delay-ms", "300")],
    )
    .await;
    let passed: Vec<&Response> = responses.iter().filter(|r| !is_rejection(r)).collect();
    assert_eq!(
        passed.len(),
        3,
        "exactly halfOpenProbes pass, sidecar-wide: {:?}",
        responses.iter().map(describe).collect::<Vec<_>>()
    );
    for r in &passed {
        assert_eq!(r.status, 200, "{}", describe(r));
    }
    for r in responses.iter().filter(|r| is_rejection(r)) {
        assert_rejected(r, "flaky", "half-open", 503);
    }
    assert_eq!(upstream.count(), 3, "only the probes reach the upstream");

    // All probes succeeded: closed again.
    let (r, before) = until(|| get(&envoy, "/", OK), |r| r.status == 200).await;
    let rejected_while_closing = before.iter().filter(|r| is_rejection(r)).count() as u64;
    assert_eq!(r.header(STATUS_HEADER), None);
    // With a fresh window: the four old failures are gone, two new ones do not open it.
    for _ in 0..2 {
        let r = get(&envoy, "/", FAIL).await;
        assert_eq!(r.status, 500, "{}", describe(&r));
    }
    tokio::time::sleep(SETTLE).await;
    for i in 0..10 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 200, "call {i} after recovery: {}", describe(&r));
    }
    // One cycle, counted once per sidecar although both workers saw it.
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "flaky"), ("outcome", "probe")],
                3,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "flaky"), ("outcome", "rejected")],
                1 + 17 + rejected_while_closing,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "open")],
                1,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "half_open")],
                1,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "flaky"), ("state", "closed")],
                1,
            ),
            ("circuit_breaker_open", &[("breaker", "flaky")], 0),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_probe_reopens_for_longer() {
    let (upstream, envoy) = setup(one(json!({
        "name": "relapse",
        "minimumCalls": 4,
        "openDuration": "400ms",
        "openDurationMultiplier": 3.0,
        "maxOpenDuration": "10s",
        "openJitter": 0,
        "halfOpenProbes": 2
    })))
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "relapse", "open", 503);
    tokio::time::sleep(Duration::from_millis(550)).await;

    let before = upstream.count();
    let probe = get(&envoy, "/", FAIL).await;
    let t0 = Instant::now();
    assert_eq!(
        probe.status,
        500,
        "the probe reaches the upstream: {}",
        describe(&probe)
    );
    assert_eq!(upstream.count(), before + 1);

    // One failed probe re-opens at once, though the second probe was never used.
    tokio::time::sleep(SETTLE).await;
    for _ in 0..3 {
        assert_rejected(&get(&envoy, "/", OK).await, "relapse", "open", 503);
    }
    assert_eq!(upstream.count(), before + 1);
    // Longer than the first 400 ms: 1200 ms.
    tokio::time::sleep(Duration::from_millis(700).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "relapse", "open", 503);
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(t0.elapsed())).await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 200, "a new probe after 1.2 s: {}", describe(&r));
    assert_eq!(upstream.count(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_probes_reopen_after_max_half_open_duration() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "stuck-probe",
            "minimumCalls": 2,
            "failureRateThreshold": 50,
            "openDuration": "500ms",
            "openDurationMultiplier": 1.0,
            "openJitter": 0,
            "halfOpenProbes": 1,
            "maxHalfOpenDuration": "400ms"
        }))),
        vec![Route::to("default", "/", "upstream").timeout(Duration::from_millis(2000))],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    let port = envoy.port("ingress");
    for _ in 0..2 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "stuck-probe", "open", 503);
    tokio::time::sleep(Duration::from_millis(650)).await;

    // The only probe hangs until the route timeout (2 s).
    let before = upstream.count();
    let t0 = Instant::now();
    let stuck = tokio::spawn(async move { http1(port, "GET", "/stuck", HANG, "").await });
    assert!(
        upstream
            .wait_count(before + 1, Duration::from_secs(1))
            .await,
        "the probe reached the upstream"
    );
    tokio::time::sleep(Duration::from_millis(150).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "stuck-probe", "half-open", 503);
    // Past maxHalfOpenDuration: open again.
    tokio::time::sleep(Duration::from_millis(650).saturating_sub(t0.elapsed())).await;
    assert_rejected(&get(&envoy, "/", OK).await, "stuck-probe", "open", 503);
    // After that open time, a new probe goes through and closes the breaker.
    tokio::time::sleep(Duration::from_millis(1400).saturating_sub(t0.elapsed())).await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 200, "new probe: {}", describe(&r));
    assert!(
        t0.elapsed() < Duration::from_millis(1900),
        "the test must get here before the stuck probe ends; took {:?}",
        t0.elapsed()
    );
    // The stuck probe ends in a 504 after the close: it belongs to the old half-open state, so it
    // does not count in the new closed window (where one failure and one success would be 50 %).
    let stuck = stuck.await.unwrap();
    assert_eq!(stuck.status, 504, "{}", describe(&stuck));
    tokio::time::sleep(SETTLE).await;
    for i in 0..5 {
        let r = get(&envoy, "/", OK).await;
        assert_eq!(r.status, 200, "call {i} after the close: {}", describe(&r));
    }
}

// ---------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_keep_their_own_state() {
    let (upstream, envoy) = setup(one(json!({
        "name": "tenants",
        "keyBy": "header:x-tenant",
        "minimumCalls": 4,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let a_fail = [("x-tenant", "a"), ("x-upstream-status", "500")];
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/a", &a_fail).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/a", &a_fail)).await;
    assert_rejected(&r, "tenants", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/b", &[("x-tenant", "b")]).await;
        assert_eq!(r.status, 200, "tenant b, call {i}: {}", describe(&r));
    }
    assert_eq!(upstream.count_path("/b"), 6);
    let reached_a = upstream.count_path("/a");
    assert_rejected(
        &get(&envoy, "/a", &[("x-tenant", "a")]).await,
        "tenants",
        "open",
        503,
    );
    assert_eq!(upstream.count_path("/a"), reached_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_keys_keep_their_own_state() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "per-route",
            "keyBy": "route",
            "minimumCalls": 4,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![
            Route::to("route-a", "/a", "upstream"),
            Route::to("route-b", "/b", "upstream"),
        ],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/a", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/a", FAIL)).await;
    assert_rejected(&r, "per-route", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/b", OK).await;
        assert_eq!(r.status, 200, "route-b, call {i}: {}", describe(&r));
    }
    assert_eq!(upstream.count_path("/b"), 6);
    let reached_a = upstream.count_path("/a");
    assert_rejected(&get(&envoy, "/a", OK).await, "per-route", "open", 503);
    assert_eq!(upstream.count_path("/a"), reached_a);
}

// ---------------------------------------------------------------------------------------------------
// Modes and rejection options
// ---------------------------------------------------------------------------------------------------

/// Two circuit-breaker plugins (Istio: two WasmPlugins) share one VM per worker and name their
/// breakers alike: each keeps its own windows and state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_sharing_a_vm_keep_their_own_breakers() {
    let upstream = Upstream::start().await;
    let plugin = |root: &str, path: &str| {
        let config = one(
            json!({"name": "dep", "match": {"pathPrefix": path}, "minimumCalls": 6,
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
        "minimumCalls": 4,
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
            describe(&r)
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
        assert_eq!(r.status, 500, "reached the upstream: {}", describe(r));
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
            describe(&r)
        );
        assert_eq!(
            r.header(STATUS_HEADER),
            Some("shadow; state=open; dry-run"),
            "{}",
            describe(&r)
        );
        assert_eq!(r.header("retry-after"), None, "{}", describe(&r));
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
        {"name": "off", "match": {"pathPrefix": "/off"}, "mode": "disabled", "minimumCalls": 2}
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
        assert_eq!(r.status, 500, "disabled, call {i}: {}", describe(&r));
        assert_eq!(r.header(STATUS_HEADER), None);
    }
    assert_eq!(upstream.count_path("/off"), 20);
    // No breaker matches /other: untouched.
    for i in 0..20 {
        let r = get(&envoy, "/other", FAIL).await;
        assert_eq!(r.status, 500, "unmatched, call {i}: {}", describe(&r));
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
        "minimumCalls": 4,
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
            describe(&r)
        );
        assert_eq!(
            r.header("retry-after"),
            None,
            "retryAfter is off: {}",
            describe(&r)
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
    assert_eq!(r.status, 503, "{}", describe(&r));
    assert_eq!(
        r.header("x-breaker-state"),
        Some("closed-door; state=forced-open"),
        "{}",
        describe(&r)
    );
    assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
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
    for i in 0..19 {
        let r = get(&envoy, "/a", FAIL).await;
        assert_eq!(r.status, 500, "call {i}: {}", describe(&r));
    }
    // 19 calls: below the default minimumCalls (20), so no decision yet.
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/a", FAIL).await;
    assert_eq!(r.status, 500, "the 20th call is admitted: {}", describe(&r));
    let (r, _) = until_rejected(|| get(&envoy, "/a", FAIL)).await;
    assert_rejected(&r, "default", "open", 503);
    // Default openDuration 5 s with 10 % jitter.
    let secs = retry_after(&r);
    assert!((4..=6).contains(&secs), "retry-after {secs}");
    // The other cluster has its own breaker.
    for i in 0..5 {
        let r = get(&envoy, "/b", OK).await;
        assert_eq!(r.status, 200, "backend-b, call {i}: {}", describe(&r));
    }
    assert_eq!(upstream.count_path("/b"), 5);
    let reached_a = upstream.count_path("/a");
    assert_rejected(&get(&envoy, "/a", OK).await, "default", "open", 503);
    assert_eq!(upstream.count_path("/a"), reached_a);
}

// ---------------------------------------------------------------------------------------------------
// Metrics and configuration
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_rejections_and_one_transition_per_sidecar() {
    let (upstream, envoy) = setup(one(json!({
        "name": "payments",
        "minimumCalls": 10,
        "failureRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for _ in 0..10 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (_, passed) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    let mut rejected = 1;
    for i in 0..9 {
        let r = if i % 2 == 0 {
            get(&envoy, "/", FAIL).await
        } else {
            get_h2(&envoy, "/", OK).await
        };
        assert!(is_rejection(&r), "{}", describe(&r));
        rejected += 1;
    }
    let failures = upstream.count() as u64;
    assert_eq!(failures, 10 + passed.len() as u64);
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "payments"), ("outcome", "failure")],
                failures,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "payments"), ("outcome", "rejected")],
                rejected,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "payments"), ("state", "open")],
                1,
            ),
            ("circuit_breaker_open", &[("breaker", "payments")], 1),
        ],
    )
    .await;
    let prom = envoy.prometheus().await;
    assert_eq!(
        prom_sum(
            &prom,
            "circuit_breaker_calls",
            &[("breaker", "payments"), ("outcome", "success")]
        )
        .unwrap_or(0),
        0,
        "{}",
        prom_lines(&prom, "circuit_breaker")
    );
    // The tags were lifted into labels: no raw `breaker=.=` names reach Prometheus.
    assert!(!prom.contains("=.="), "{}", prom_lines(&prom, "=.="));
}

/// A configuration with the filter configured as `config`, only to be validated (no upstream).
fn yaml_with(config: &Value) -> String {
    EnvoyConfig::simple(INGRESS, 1)
        .filter_all(cb_filter(Some(config)))
        .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_rejected_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"breakers": [{"name": "x", "failureRateThreshold": 150}]}),
            "failureRateThreshold",
        ),
        (json!({"breakers": [{"name": "bad name!"}]}), "name"),
        (
            json!({"breakers": [{"name": "x", "window": {"type": "sliding"}}]}),
            "type",
        ),
        (
            json!({"breakers": [{"name": "x", "openDuration": "soon"}]}),
            "openDuration",
        ),
        (
            json!({"breakers": [{"name": "x", "keyBy": "tenant"}]}),
            "keyBy",
        ),
        (
            json!({"breakers": [{"name": "x", "rejectStatus": 200}]}),
            "rejectStatus",
        ),
        (
            json!({"breakers": [{"name": "x", "openJitter": 0.9}]}),
            "openJitter",
        ),
        (
            json!({"breakers": [{"name": "x", "halfOpenProbes": 0}]}),
            "halfOpenProbes",
        ),
        (
            json!({"breakers": [{"name": "x", "mode": "sometimes"}]}),
            "mode",
        ),
    ];
    let mut set = JoinSet::new();
    for (config, field) in cases {
        let yaml = yaml_with(&config);
        set.spawn_blocking(move || (config, field, validate_yaml(&yaml)));
    }
    while let Some(joined) = set.join_next().await {
        let (config, field, result) = joined.unwrap();
        let err = result.expect_err(&format!("Envoy must refuse {config}"));
        let line = err
            .lines()
            .find(|l| l.contains("circuit-breaker: invalid configuration: field `"))
            .unwrap_or_else(|| panic!("{config}: no line naming the field:\n{err}"));
        let named = line
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("");
        assert!(
            named.contains(field),
            "{config}: the error names field {named:?}, expected {field:?}:\n{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_accepted() {
    let config = json!({
        "statusHeader": "x-breaker",
        // The first breaker (10000 keys, a 60-bucket window) needs about 920 MiB in the worst case.
        "maxSharedMemory": "1Gi",
        "breakers": [
            {
                "name": "full_1",
                "match": {
                    "cluster": "upstream",
                    "route": "default",
                    "authority": "Example.com",
                    "pathPrefix": "/api",
                    "method": "GET",
                    "header": {"name": "x-tenant", "value": "acme"}
                },
                "keyBy": "header:x-tenant",
                "maxKeys": 10000,
                "mode": "dryRun",
                "window": {"type": "time", "duration": "1h", "buckets": 60},
                "minimumCalls": 5,
                "failureRateThreshold": 100,
                "slowCallDuration": "2s",
                "slowCallRateThreshold": 1,
                "consecutiveFailures": 5,
                "classify": [
                    {"envoy": ["overflow"], "outcome": "ignore"},
                    {"envoy": ["connectionFailure", "timeout", "reset", "noHealthyUpstream", "noResponse"], "outcome": "failure"},
                    {"envoy": ["downstreamCancel"], "outcome": "failure"},
                    {"status": "404", "outcome": "success"},
                    {"status": ["500", "502-504"], "outcome": "failure"},
                    {"grpcStatus": [4, 13, 14], "outcome": "failure"}
                ],
                "openDuration": "1s",
                "openDurationMultiplier": 10.0,
                "maxOpenDuration": "30s",
                "openJitter": 0.5,
                "halfOpenProbes": 1000,
                "maxHalfOpenDuration": "10s",
                "rejectStatus": 599,
                "retryAfter": false,
                "envoyOverloaded": true
            },
            {"name": "full-2", "match": {"header": {"name": "x-canary"}}, "keyBy": "authority",
             "window": {"type": "count", "size": 1000}, "maxKeys": 1, "mode": "forcedOpen"},
            {"name": "full-3", "keyBy": "route", "mode": "disabled", "window": {"type": "time", "duration": "1s", "buckets": 1}},
            {"name": "Full4", "keyBy": "cluster", "mode": "normal", "window": {"type": "count", "size": 1},
             "failureRateThreshold": 1, "openDurationMultiplier": 1.0, "openJitter": 0.0, "rejectStatus": 400}
        ]
    });
    validate_yaml(&yaml_with(&config)).unwrap();
    // An empty configuration object is the defaults too.
    validate_yaml(&yaml_with(&json!({}))).unwrap();
}

/// A rejection by a filter after the breaker (here Envoy's fault filter) never reached the dependency: it
/// neither opens the breaker nor counts as a failure, while real upstream failures still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_of_later_filters_do_not_count_against_the_dependency() {
    let upstream = Upstream::start().await;
    let fault = "name: envoy.filters.http.fault\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n  abort:\n    header_abort: {}\n    percentage: {numerator: 100, denominator: HUNDRED}";
    let config =
        one(json!({"name": "dep", "minimumCalls": 4, "failureRateThreshold": 50, "openJitter": 0}));
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

// ---------------------------------------------------------------------------------------------------
// Issue 7: callers that give up, keys that collide
// ---------------------------------------------------------------------------------------------------

/// An HTTP/1.1 caller that gives up after `after` (as `curl --max-time`): it closes its connection.
/// `None` when it gave up, the response when one came in time (a rejection, say).
async fn h1_cancelled(port: u16, headers: Headers<'_>, after: Duration) -> Option<Response> {
    match tokio::time::timeout(after, try_http1(port, "GET", "/", headers, "")).await {
        Err(_) => None,
        Ok(r) => Some(r.unwrap_or_else(|e| panic!("HTTP/1.1 call failed before {after:?}: {e}"))),
    }
}

/// An h2c connection whose stream [`h2_cancelled`] reset; the connection closes when this drops.
struct OpenH2(#[allow(dead_code)] hyper::client::conn::http2::SendRequest<Full<Bytes>>);

/// An h2c caller that cancels its call after `after` (as a gRPC client's cancel or deadline): the
/// stream is reset (RST_STREAM CANCEL) while the connection stays open, so Envoy sees a stream reset,
/// not a disconnect. Panics when a response came in time.
async fn h2_cancelled(port: u16, headers: Headers<'_>, after: Duration) -> OpenH2 {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .uri(format!("http://localhost:{port}/"))
        .version(hyper::Version::HTTP_2);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    // Dropping the response future resets the stream; `sender` keeps the connection.
    if let Ok(r) = tokio::time::timeout(after, sender.send_request(req)).await {
        panic!("the h2 call was answered before {after:?}: {r:?}");
    }
    OpenH2(sender)
}

/// Polls until the breaker `name` has finished `n` calls (whatever their outcome).
async fn until_finished(envoy: &Envoy, name: &str, n: u64) {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let finished: u64 = ["success", "failure", "ignored", "cancelled"]
            .iter()
            .filter_map(|o| {
                prom_sum(
                    &text,
                    "circuit_breaker_calls",
                    &[("breaker", name), ("outcome", o)],
                )
            })
            .sum();
        if finished >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{finished} of {n} calls finished:\n{}",
            prom_lines(&text, "circuit_breaker")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 7 item 1: callers that give up (an HTTP/1.1 client timeout, an HTTP/2 stream reset) say
/// nothing about the dependency: they are counted as `cancelled` and never open the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_downstream_cancel_does_not_open_breaker() {
    let (upstream, envoy) = setup(one(json!({
        "name": "patient",
        "minimumCalls": 5,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let port = envoy.port(INGRESS);
    let slow: Headers = &[("x-upstream-delay-ms", "300")];
    for i in 0..8 {
        if let Some(r) = h1_cancelled(port, slow, Duration::from_millis(50)).await {
            panic!(
                "HTTP/1.1 call {i} must reach the slow upstream: {}",
                describe(&r)
            );
        }
    }
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(h2_cancelled(port, slow, Duration::from_millis(50)).await);
    }
    until_finished(&envoy, "patient", 16).await;
    assert!(upstream.count() >= 1, "the calls reached the upstream");
    let r = get(&envoy, "/", OK).await;
    assert_eq!(r.status, 200, "the next caller is served: {}", describe(&r));
    assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "patient"), ("outcome", "cancelled")],
                16,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "patient"), ("outcome", "failure")],
                0,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "patient"), ("state", "open")],
                0,
            ),
        ],
    )
    .await;
    drop(open);
}

/// Issue 7 item 1: a caller that gives up on a call already slower than `slowCallDuration` has seen a
/// slow dependency: that call counts as slow (not as a failure); one that gives up sooner counts for
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_cancel_after_slow_call_duration_counts_as_slow() {
    let (_upstream, envoy) = setup(one(json!({
        "name": "sluggish",
        "minimumCalls": 4,
        "slowCallDuration": "400ms",
        "slowCallRateThreshold": 50,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let port = envoy.port(INGRESS);
    let slow: Headers = &[("x-upstream-delay-ms", "3000")];
    // Four callers give up after 100 ms, before the call was slow.
    for i in 0..4 {
        if let Some(r) = h1_cancelled(port, slow, Duration::from_millis(100)).await {
            panic!("call {i} must reach the upstream: {}", describe(&r));
        }
    }
    until_finished(&envoy, "sluggish", 4).await;
    let r = get(&envoy, "/", OK).await;
    assert_eq!(
        r.status,
        200,
        "quick cancels count for nothing: {}",
        describe(&r)
    );
    until_finished(&envoy, "sluggish", 5).await;
    // Three callers give up after 700 ms: 3 slow calls of 4 in the window = 75 %.
    let mut set = JoinSet::new();
    for _ in 0..3 {
        set.spawn(async move { h1_cancelled(port, slow, Duration::from_millis(700)).await });
    }
    while let Some(r) = set.join_next().await {
        if let Some(r) = r.unwrap() {
            panic!("the slow call must reach the upstream: {}", describe(&r));
        }
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", OK)).await;
    assert_rejected(&r, "sluggish", "open", 503);
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_calls",
                &[("breaker", "sluggish"), ("outcome", "cancelled")],
                7,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "sluggish"), ("outcome", "slow")],
                3,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "sluggish"), ("outcome", "failure")],
                0,
            ),
        ],
    )
    .await;
}

/// Issue 7 item 1: a half-open probe whose caller gives up decides nothing and gives its permit back:
/// the next caller probes at once instead of the breaker re-opening for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_cancelled_probe_gives_its_permit_back() {
    let (upstream, envoy) = setup(one(json!({
        "name": "probing",
        "minimumCalls": 2,
        "openDuration": "500ms",
        "openDurationMultiplier": 2.0,
        "openJitter": 0,
        "halfOpenProbes": 1,
        "maxHalfOpenDuration": "10s"
    })))
    .await;
    let port = envoy.port(INGRESS);
    for _ in 0..2 {
        assert_eq!(get(&envoy, "/", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/", FAIL)).await;
    assert_rejected(&r, "probing", "open", 503);
    let slow: Headers = &[("x-upstream-delay-ms", "2000")];
    // Three probes in a row, each abandoned by its caller. Before the first, the breaker is open;
    // after it, a caller may only wait for the permit to come back (half-open), never find it open.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cancelled = 0;
    let mut seen_open_after_a_probe = Vec::new();
    while cancelled < 3 {
        let before = upstream.count();
        match h1_cancelled(port, slow, Duration::from_millis(150)).await {
            None => {
                assert!(
                    upstream.wait_count(before + 1, RECORD_WAIT).await,
                    "the probe reached the upstream"
                );
                cancelled += 1;
            }
            Some(r) => {
                assert!(is_rejection(&r), "{}", describe(&r));
                if cancelled > 0 && r.header(STATUS_HEADER) == Some("probing; state=open") {
                    seen_open_after_a_probe.push(describe(&r));
                }
            }
        }
        assert!(
            seen_open_after_a_probe.is_empty(),
            "a cancelled probe re-opened the breaker: {seen_open_after_a_probe:?}"
        );
        assert!(
            Instant::now() < deadline,
            "only {cancelled} probes admitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The permit comes back once more: a probe that succeeds closes the breaker.
    let (r, _) = until(|| get(&envoy, "/", OK), |r| r.status == 200).await;
    assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
    assert_prom(
        &envoy,
        &[
            (
                "circuit_breaker_transitions",
                &[("breaker", "probing"), ("state", "open")],
                1,
            ),
            (
                "circuit_breaker_transitions",
                &[("breaker", "probing"), ("state", "closed")],
                1,
            ),
            (
                "circuit_breaker_calls",
                &[("breaker", "probing"), ("outcome", "cancelled")],
                3,
            ),
        ],
    )
    .await;
}

/// Issue 7 item 2: `evil-160` and `acme` hashed to the same slot (87 of 100) in earlier versions, so
/// one tenant's failures opened the other's breaker. Each key now owns its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_keys_never_share_state() {
    let (upstream, envoy) = setup(one(json!({
        "name": "tenants",
        "keyBy": "header:x-tenant",
        "maxKeys": 100,
        "minimumCalls": 5,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let evil_fail = [("x-tenant", "evil-160"), ("x-upstream-status", "500")];
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/evil", &evil_fail).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/evil", &evil_fail)).await;
    assert_rejected(&r, "tenants", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/acme", &[("x-tenant", "acme")]).await;
        assert_eq!(r.status, 200, "acme, call {i}: {}", describe(&r));
        assert_eq!(r.header(STATUS_HEADER), None, "{}", describe(&r));
    }
    assert_eq!(upstream.count_path("/acme"), 6);
    assert_rejected(
        &get(&envoy, "/evil", &[("x-tenant", "evil-160")]).await,
        "tenants",
        "open",
        503,
    );
}

/// Issue 7 item 2: with every slot owned, a new key passes unprotected (it never shares another key's
/// state) and is counted in `circuit_breaker_keys_overflow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_keys_beyond_max_keys_pass_unprotected_and_are_counted() {
    let (upstream, envoy) = setup(one(json!({
        "name": "few",
        "keyBy": "header:x-tenant",
        "maxKeys": 2,
        "minimumCalls": 3,
        "window": {"duration": "1h"},
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for t in ["a", "b"] {
        assert_eq!(get(&envoy, "/", &[("x-tenant", t)]).await.status, 200);
    }
    let c_fail = [("x-tenant", "c"), ("x-upstream-status", "500")];
    for i in 0..6 {
        let r = get(&envoy, "/c", &c_fail).await;
        assert_eq!(r.status, 500, "c, call {i}, unprotected: {}", describe(&r));
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/c", &c_fail).await;
    assert_eq!(
        r.status,
        500,
        "c never opens anyone's breaker: {}",
        describe(&r)
    );
    for t in ["a", "b"] {
        let r = get(&envoy, "/", &[("x-tenant", t)]).await;
        assert_eq!(r.status, 200, "tenant {t}: {}", describe(&r));
    }
    assert_eq!(upstream.count_path("/c"), 7);
    assert_prom(
        &envoy,
        &[
            ("circuit_breaker_keys_overflow", &[("breaker", "few")], 7),
            (
                "circuit_breaker_transitions",
                &[("breaker", "few"), ("state", "open")],
                0,
            ),
        ],
    )
    .await;
}

/// Issue 7 item 2: a key's slot is freed once its breaker is closed and it had no call for a full
/// window; a new key then owns it, with a fresh window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_idle_key_slot_is_reused_by_a_new_key() {
    let (_upstream, envoy) = setup(one(json!({
        "name": "reuse",
        "keyBy": "header:x-tenant",
        "maxKeys": 1,
        "minimumCalls": 3,
        "window": {"duration": "1s", "buckets": 1},
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    assert_eq!(get(&envoy, "/", &[("x-tenant", "a")]).await.status, 200);
    // b overflows while a's slot is in use, then owns it once a has been idle for a window: only then
    // can b's failures open a breaker (b's own).
    let b_fail = [("x-tenant", "b"), ("x-upstream-status", "500")];
    let deadline = Instant::now() + Duration::from_secs(6);
    let rejected = loop {
        let r = get(&envoy, "/", &b_fail).await;
        if is_rejection(&r) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "b never got a slot: {}",
            describe(&r)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_rejected(&rejected, "reuse", "open", 503);
    let overflowed = prom_sum(
        &envoy.prometheus().await,
        "circuit_breaker_keys_overflow",
        &[("breaker", "reuse")],
    )
    .unwrap_or(0);
    assert!(overflowed >= 1, "b overflowed while a held the slot");
    // a is now the key without a slot: unprotected, but not in b's open state.
    let r = get(&envoy, "/", &[("x-tenant", "a")]).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_prom(
        &envoy,
        &[(
            "circuit_breaker_keys_overflow",
            &[("breaker", "reuse")],
            overflowed + 1,
        )],
    )
    .await;
}
