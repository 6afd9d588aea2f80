//! The fallback filter in the real Envoy (`--concurrency 2`), against real upstreams whose failures,
//! delays and hangs are chosen per request. Every request opens its own connection, so the traffic of
//! each test is spread over both workers (the stale cache must be sidecar-wide).
//!
//! Every Envoy here has the same routes: `/dead...` goes to a cluster whose port nothing listens on
//! (connection refused), `/slow...` to the live upstream with a 300 ms route timeout, anything else to
//! the live upstream (over h2c, so gRPC trailers pass end to end).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// A W3C trace context and its trace id.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const FALLBACK_HEADER: &str = "x-fallback";
/// Route timeout of the `/slow` route.
const ROUTE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a test waits for something Envoy does after the client has its response (metrics, the
/// stale cache's store at the end of a stream, the breaker's decision).
const RECORD_WAIT: Duration = Duration::from_secs(2);

/// The upstream answers 500 / 503.
const FAIL_500: &[(&str, &str)] = &[("x-upstream-status", "500")];
const FAIL_503: &[(&str, &str)] = &[("x-upstream-status", "503")];
/// The upstream answers 200 at once.
const OK: &[(&str, &str)] = &[];

fn fallback_filter(config: Option<&Value>) -> WasmFilter {
    let f = WasmFilter::new("fallback", dist("fallback.wasm")).vm_id("fallback");
    match config {
        Some(c) => f.configuration(c.to_string()),
        None => f,
    }
}

fn breaker_filter(config: &Value) -> WasmFilter {
    WasmFilter::new("circuit-breaker", dist("circuit_breaker.wasm"))
        .vm_id("circuit-breaker")
        .configuration(config.to_string())
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The listener `ingress` with `filters` (in order) and the three routes described at the top; the
/// clusters `upstream` (h2c to the live upstream), `dead` (refused) and `extra`.
fn config_with(upstream: &Upstream, filters: Vec<WasmFilter>, extra: Vec<Cluster>) -> EnvoyConfig {
    let mut listener = Listener::new("ingress")
        .route(Route::to("dead", "/dead", "dead"))
        .route(Route::to("slow", "/slow", "upstream").timeout(ROUTE_TIMEOUT))
        .route(Route::to("main", "/", "upstream"));
    for f in filters {
        listener = listener.filter(f);
    }
    let mut config = EnvoyConfig::new()
        .concurrency(2)
        .listener(listener)
        .cluster(Cluster::new("upstream", upstream.port()).http2(true))
        .cluster(Cluster::new("dead", closed_port()).http2(true));
    for c in extra {
        config = config.cluster(c);
    }
    config
}

/// An upstream and an Envoy with only the fallback filter.
async fn setup(config: Option<Value>) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(config.as_ref())],
        Vec::new(),
    ))
    .await;
    (upstream, envoy)
}

fn describe(r: &Response) -> String {
    format!(
        "status {} headers {:?} body {:?}",
        r.status,
        r.headers,
        r.text()
    )
}

/// `x-fallback: <kind>; rule=<name>; reason=<trigger>`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FallbackMark {
    kind: String,
    rule: String,
    reason: String,
}

fn parse_mark(value: &str) -> FallbackMark {
    let mut parts = value.split(';').map(str::trim);
    let kind = parts.next().unwrap_or("").to_string();
    let mut rule = String::new();
    let mut reason = String::new();
    for p in parts {
        if let Some(v) = p.strip_prefix("rule=") {
            rule = v.to_string();
        } else if let Some(v) = p.strip_prefix("reason=") {
            reason = v.to_string();
        }
    }
    FallbackMark { kind, rule, reason }
}

/// The `x-fallback` mark of a response; panics when there is none.
fn mark(r: &Response) -> FallbackMark {
    let v = r
        .header(FALLBACK_HEADER)
        .unwrap_or_else(|| panic!("no {FALLBACK_HEADER} header: {}", describe(r)));
    parse_mark(v)
}

fn grpc_mark(r: &GrpcResponse) -> FallbackMark {
    let v = r
        .header(FALLBACK_HEADER)
        .unwrap_or_else(|| panic!("no {FALLBACK_HEADER} header: {r:?}"));
    parse_mark(v)
}

/// Asserts the mark's kind and rule, and that it names a reason; returns the reason.
fn assert_mark(r: &Response, kind: &str, rule: &str) -> String {
    let m = mark(r);
    assert_eq!(m.kind, kind, "x-fallback kind: {}", describe(r));
    assert_eq!(m.rule, rule, "x-fallback rule: {}", describe(r));
    assert!(!m.reason.is_empty(), "x-fallback reason: {}", describe(r));
    m.reason
}

fn assert_untouched(r: &Response) {
    assert_eq!(
        r.header(FALLBACK_HEADER),
        None,
        "no fallback expected: {}",
        describe(r)
    );
}

/// Asserts an RFC 9457 problem response with `status` and returns its JSON (`traceId` is checked by
/// the callers that send a trace context).
fn assert_problem_json(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", describe(r));
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}: {}",
        describe(r)
    );
    let j = r.json();
    assert_eq!(j["status"], json!(status), "{j}");
    assert_eq!(j["type"], json!("about:blank"), "default type: {j}");
    for field in ["title", "detail", "requestId"] {
        assert!(
            j[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} is a non-empty string: {j}"
        );
    }
    j
}

/// Byte `i` of an `x-upstream-body-size` body.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Polls `/stats/prometheus` until the series sum satisfies `pred`, for at most [`RECORD_WAIT`];
/// returns the value (panics with the fallback series otherwise).
async fn wait_prom(
    envoy: &Envoy,
    metric: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let v = prom_sum(&text, metric, labels);
        if let Some(v) = v.filter(|v| pred(*v)) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "{metric}{labels:?} = {v:?}: condition not met after {RECORD_WAIT:?}; series:\n{}",
                prom_lines(&text, "fallback")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Prometheus series and its expected value: metric name, labels it must carry, value.
type Series<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

/// Polls until every series has its value (for at most [`RECORD_WAIT`]), then asserts them.
async fn assert_prom(envoy: &Envoy, expected: &[Series<'_>]) {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let all = expected
            .iter()
            .all(|(m, l, v)| prom_sum(&text, m, l).unwrap_or(0) == *v);
        if all || Instant::now() >= deadline {
            for (m, l, v) in expected {
                assert_eq!(
                    prom_sum(&text, m, l).unwrap_or(0),
                    *v,
                    "{m}{l:?}; series:\n{}",
                    prom_lines(&text, "fallback")
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the stale cache has stored `n` responses in all (the store happens as the stream ends).
async fn wait_stores(envoy: &Envoy, n: u64) {
    wait_prom(envoy, "fallback_cache_stores", &[], |v| v >= n).await;
}

/// Downstream connections accepted so far, per worker (`listener.<addr>.worker_<n>.downstream_cx_total`).
async fn connections_per_worker(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .stats()
        .await
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with("listener.")
                && !name.starts_with("listener.admin.")
                && name.contains(".worker_")
                && name.ends_with(".downstream_cx_total")
        })
        .filter_map(|(name, v)| {
            let worker = name.split('.').find(|s| s.starts_with("worker_"))?;
            Some((worker.to_string(), v))
        })
        .collect()
}

/// One HTTP/1.1 request written by hand (for header bytes the clients refuse to send); returns the
/// whole response as text.
async fn raw_http1(port: u16, request: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    conn.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(CLIENT_TIMEOUT, conn.read_to_end(&mut response))
        .await
        .expect("raw response within the client timeout")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

// ---------------------------------------------------------------------------------------------------
// Default configuration: Envoy's own failures become problem responses
// ---------------------------------------------------------------------------------------------------

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
    assert_eq!(reason, "connectionFailure", "{}", describe(&r));

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
        assert_eq!(r.status, status, "{}", describe(&r));
        assert_untouched(&r);
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The upstream's own echo body, unchanged.
        assert_eq!(r.json()["path"], json!("/orders/7"), "{}", describe(&r));
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
        assert_eq!(r.status, 503, "{}", describe(&r));
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
    assert_eq!(r.status, 503, "{}", describe(&r));
    let ct = r.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/plain"), "{ct:?}: {}", describe(&r));
    let body = r.text();
    assert!(body.contains("Service Unavailable"), "the title: {body}");
    assert!(body.contains(TRACE_ID), "the trace id: {body}");
    assert!(!body.contains('<'), "no markup in text: {body}");
    assert_mark(&r, "problem", "default");
    // JSON callers still get JSON on the same Envoy.
    let r = get(&envoy, "/dead", &[("accept", "application/json")]).await;
    assert_problem_json(&r, 503);
}

// ---------------------------------------------------------------------------------------------------
// gRPC callers always get a gRPC status
// ---------------------------------------------------------------------------------------------------

fn assert_grpc_trailers_only(r: &GrpcResponse, code: u32) {
    assert_eq!(r.http_status, 200, "trailers-only is HTTP 200: {r:?}");
    assert_eq!(r.grpc_status, Some(code), "{r:?}");
    assert_eq!(
        r.header("grpc-status"),
        Some(code.to_string().as_str()),
        "status in the headers: {r:?}"
    );
    assert!(r.trailers.is_empty(), "trailers-only: {r:?}");
    assert!(r.messages.is_empty(), "no body for gRPC callers: {r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/grpc")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_get_unavailable_for_connection_refused() {
    let (_upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    let r = grpc_unary(
        port,
        "/dead.v1.Svc/Call",
        &[("traceparent", TRACEPARENT), ("accept", "application/json")],
        b"hi",
    )
    .await;
    assert_grpc_trailers_only(&r, 14);
    assert!(
        r.grpc_message.as_deref().is_some_and(|m| !m.is_empty()),
        "a grpc-message: {r:?}"
    );
    let m = grpc_mark(&r);
    assert_eq!(
        (m.kind.as_str(), m.rule.as_str()),
        ("problem", "default"),
        "{r:?}"
    );
    // A good gRPC call passes untouched.
    let r = grpc_unary(port, "/pkg.v1.Svc/Call", &[], b"hi").await;
    assert_eq!(r.grpc_status, Some(0), "{r:?}");
    assert_eq!(r.message_json()["path"], json!("/pkg.v1.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
}

/// Rules for the gRPC tests: a problem and a static rule on gRPC UNAVAILABLE, a problem rule mapping
/// HTTP statuses, and a static rule (status 200) on HTTP statuses.
fn grpc_rules() -> Value {
    json!({"rules": [
        {"name": "grpc-problem", "match": {"pathPrefix": "/pkg.Svc/"},
         "triggers": {"grpcStatus": [14]}, "response": {"kind": "problem"}},
        {"name": "grpc-static", "match": {"pathPrefix": "/static.Svc/"},
         "triggers": {"grpcStatus": [14]},
         "response": {"kind": "static", "status": 200, "headers": {"content-type": "text/plain"},
                      "body": "static body"}},
        {"name": "map", "match": {"pathPrefix": "/map"}, "triggers": {"status": "400-599"},
         "response": {"kind": "problem"}},
        {"name": "smap", "match": {"pathPrefix": "/smap"}, "triggers": {"status": "400-599"},
         "response": {"kind": "static", "status": 200, "body": "not for gRPC"}}
    ]})
}

const UNAVAILABLE_IN_TRAILERS: &[(&str, &str)] = &[
    ("x-upstream-grpc-status", "14"),
    ("x-upstream-grpc-in", "trailers"),
];
const UNAVAILABLE_TRAILERS_ONLY: &[(&str, &str)] = &[
    ("x-upstream-grpc-status", "14"),
    ("x-upstream-grpc-in", "headers"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_rule_replaces_a_trailers_only_failure_and_passes_others() {
    let (upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    // A trailers-only UNAVAILABLE from the upstream: the fallback's own trailers-only UNAVAILABLE.
    let r = grpc_unary(port, "/pkg.Svc/Call", UNAVAILABLE_TRAILERS_ONLY, b"hi").await;
    assert_grpc_trailers_only(&r, 14);
    let m = grpc_mark(&r);
    assert_eq!(
        (m.kind.as_str(), m.rule.as_str(), m.reason.as_str()),
        ("problem", "grpc-problem", "grpcStatus"),
        "{r:?}"
    );
    // OK and a status the rule does not name pass through with their message and trailers.
    let r = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
    assert_eq!(r.grpc_status, Some(0), "{r:?}");
    assert_eq!(r.trailer("grpc-status"), Some("0"), "{r:?}");
    assert_eq!(r.message_json()["path"], json!("/pkg.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(r.trailer(FALLBACK_HEADER), None, "{r:?}");
    let r = grpc_unary(
        port,
        "/pkg.Svc/Call",
        &[
            ("x-upstream-grpc-status", "5"),
            ("x-upstream-grpc-in", "trailers"),
        ],
        b"hi",
    )
    .await;
    assert_eq!(r.grpc_status, Some(5), "{r:?}");
    assert_eq!(r.trailer("grpc-status"), Some("5"), "{r:?}");
    assert_eq!(r.grpc_message.as_deref(), Some("upstream grpc status 5"));
    assert_eq!(r.message_json()["path"], json!("/pkg.Svc/Call"));
    assert_eq!(r.header(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(r.trailer(FALLBACK_HEADER), None, "{r:?}");
    assert_eq!(upstream.count(), 3);
}

/// README: "a gRPC failure that arrives only in trailers is replaced only when the rule has a
/// `grpcStatus` trigger, in which case that rule's gRPC responses are held until the trailers arrive",
/// and gRPC callers get "a trailers-only gRPC status (never an HTTP body)" from every kind.
/// A gRPC failure in the trailers comes after the response headers went downstream, so it cannot be
/// replaced (README): the status stands, and the trailers say the mesh saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_is_marked_in_the_trailers() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    for (path, kind, rule) in [
        ("/pkg.Svc/Call", "problem", "grpc-problem"),
        ("/static.Svc/Call", "static", "grpc-static"),
    ] {
        let r = grpc_unary(port, path, UNAVAILABLE_IN_TRAILERS, b"hi").await;
        assert_eq!(r.grpc_status, Some(14), "{r:?}");
        assert!(
            r.header(FALLBACK_HEADER).is_none(),
            "headers were already sent: {r:?}"
        );
        let mark = r
            .trailer(FALLBACK_HEADER)
            .expect("x-fallback in the trailers");
        assert_eq!(
            mark,
            format!("{kind}; rule={rule}; reason=grpcStatus"),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_maps_to_grpc_status_for_grpc_callers() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    for (status, code) in [
        ("503", 14),
        ("502", 14),
        ("504", 14),
        ("429", 14),
        ("404", 12),
        ("403", 7),
        ("401", 16),
        ("500", 2),
    ] {
        let r = grpc_unary(
            port,
            "/map.Svc/Call",
            &[("x-upstream-status", status)],
            b"hi",
        )
        .await;
        assert_grpc_trailers_only(&r, code);
        let m = grpc_mark(&r);
        assert_eq!(
            (m.kind.as_str(), m.rule.as_str()),
            ("problem", "map"),
            "HTTP {status}: {r:?}"
        );
    }
}

/// A static rule whose HTTP answer is 200 still tells gRPC callers what failed: the upstream's HTTP
/// status mapped as gRPC does (README: "Every kind answers gRPC callers this way").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_rule_answers_grpc_callers_with_the_mapped_failure_status() {
    let (_upstream, envoy) = setup(Some(grpc_rules())).await;
    let port = envoy.port("ingress");
    // HTTP callers of the rule get the static body.
    let r = get(&envoy, "/smap", FAIL_503).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.text(), "not for gRPC");
    assert_mark(&r, "static", "smap");
    let mut wrong = Vec::new();
    for (status, code) in [("503", 14), ("404", 12)] {
        let r = grpc_unary(
            port,
            "/smap.Svc/Call",
            &[("x-upstream-status", status)],
            b"hi",
        )
        .await;
        assert_eq!(r.http_status, 200, "{r:?}");
        assert!(r.messages.is_empty(), "no body for gRPC callers: {r:?}");
        let m = grpc_mark(&r);
        assert_eq!((m.kind.as_str(), m.rule.as_str()), ("static", "smap"));
        if r.grpc_status != Some(code) {
            wrong.push(format!(
                "HTTP {status}: grpc-status {:?} (expected {code}), grpc-message {:?}",
                r.grpc_status, r.grpc_message
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------------
// Static responses: placeholders, escaping
// ---------------------------------------------------------------------------------------------------

fn static_rules() -> Value {
    json!({"rules": [
        {"name": "s", "match": {"pathPrefix": "/json"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 200,
                      "headers": {"content-type": "application/json", "x-static": "yes"},
                      "body": "{\"items\": [], \"trace\": \"{{traceId}}\", \"rid\": \"{{requestId}}\", \"was\": {{status}}, \"why\": \"{{reason}}\"}"}},
        {"name": "h", "match": {"pathPrefix": "/html"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 503,
                      "headers": {"content-type": "text/html; charset=utf-8"},
                      "body": "<p>request {{requestId}}</p>"}},
        {"name": "t", "match": {"pathPrefix": "/text"}, "triggers": {"status": "500-599"},
         "response": {"kind": "static", "status": 503, "headers": {"content-type": "text/plain"},
                      "body": "request [{{requestId}}] trace {{traceId}}"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_response_fills_placeholders() {
    let (upstream, envoy) = setup(Some(static_rules())).await;
    let r = get(
        &envoy,
        "/json/items",
        &[
            ("x-upstream-status", "502"),
            ("traceparent", TRACEPARENT),
            ("x-request-id", "req-static-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-static"), Some("yes"), "{}", describe(&r));
    let reason = assert_mark(&r, "static", "s");
    let j = r.json();
    assert_eq!(j["items"], json!([]), "{j}");
    assert_eq!(j["trace"], json!(TRACE_ID), "{j}");
    assert_eq!(j["rid"], json!("req-static-1"), "{j}");
    assert_eq!(j["was"], json!(502), "the original status: {j}");
    assert_eq!(
        j["why"],
        json!(reason),
        "{{{{reason}}}} is the trigger: {j}"
    );

    // A status the trigger does not name passes untouched.
    let r = get(&envoy, "/json/items", &[("x-upstream-status", "404")]).await;
    assert_eq!(r.status, 404, "{}", describe(&r));
    assert_untouched(&r);
    assert_eq!(r.json()["path"], json!("/json/items"));
    // A request no rule matches passes untouched, even a failing one: Envoy's own reply.
    let r = get(&envoy, "/dead", &[]).await;
    assert_eq!(r.status, 503, "{}", describe(&r));
    assert_untouched(&r);
    let r = get(&envoy, "/other", FAIL_500).await;
    assert_eq!(r.status, 500, "{}", describe(&r));
    assert_untouched(&r);
    assert_eq!(r.json()["path"], json!("/other"));
    assert_eq!(upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_placeholders_are_escaped_for_the_content_type() {
    let (_upstream, envoy) = setup(Some(static_rules())).await;
    // JSON: quotes and backslashes cannot break out of the string.
    let nasty = r#"id"</script><b>\"},"x":1"#;
    let r = get(
        &envoy,
        "/json",
        &[("x-upstream-status", "503"), ("x-request-id", nasty)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_mark(&r, "static", "s");
    let j = r.json();
    assert_eq!(j["rid"], json!(nasty), "the raw value after parsing: {j}");
    assert_eq!(j.get("x"), None, "no injected member: {j}");

    // HTML: markup in request data is escaped, the configured markup is not.
    let r = get(
        &envoy,
        "/html",
        &[
            ("x-upstream-status", "503"),
            ("x-request-id", "<script>alert(1)</script>&amp"),
        ],
    )
    .await;
    assert_eq!(r.status, 503, "{}", describe(&r));
    assert_mark(&r, "static", "h");
    let body = r.text();
    assert!(body.starts_with("<p>request "), "{body}");
    assert!(body.ends_with("</p>"), "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("&amp;amp"), "& is escaped: {body}");

    // Text: control characters (here a tab) are removed.
    let r = get(
        &envoy,
        "/text",
        &[("x-upstream-status", "503"), ("x-request-id", "ab\tcd")],
    )
    .await;
    assert_eq!(r.status, 503, "{}", describe(&r));
    assert_mark(&r, "static", "t");
    let body = r.text();
    assert!(body.starts_with("request [ab"), "{body:?}");
    assert!(
        !body.chars().any(|c| c.is_control()),
        "no control characters: {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_with_carriage_returns_cannot_add_headers() {
    let (_upstream, envoy) = setup(Some(static_rules())).await;
    let port = envoy.port("ingress");
    // Envoy's HTTP/1.1 parser accepts a bare CR inside a header value (a bare LF or an obs-fold would
    // end or continue the header instead, which is plain request data).
    for path in ["/text", "/html", "/json"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-upstream-status: 503\r\n\
             x-request-id: evil\rx-injected: yes\r\n\r\n"
        );
        let response = raw_http1(port, request.as_bytes()).await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status_line = head.lines().next().unwrap_or("");
        if status_line.starts_with("HTTP/1.1 400") {
            // Envoy refused the request itself: nothing reached the filter.
            continue;
        }
        let header_names: Vec<String> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(n, _)| n.trim().to_ascii_lowercase())
            .collect();
        assert!(
            header_names.contains(&FALLBACK_HEADER.to_string()),
            "{path}: the fallback answered: {response:?}"
        );
        assert!(
            !header_names.iter().any(|n| n == "x-injected"),
            "{path}: a header was injected: {response:?}"
        );
        assert!(
            !head.contains("x-injected: yes"),
            "{path}: a header was injected: {response:?}"
        );
        if path != "/json" {
            assert!(
                !body.contains('\r'),
                "{path}: the CR was not removed: {body:?}"
            );
        } else {
            let j: Value = e2e_harness::serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body:?}"));
            assert!(j["rid"].is_string(), "{j}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Stale-if-error
// ---------------------------------------------------------------------------------------------------

fn assert_stale(r: &Response, cached: &Response, rule: &str) {
    assert_eq!(r.status, 200, "{}", describe(r));
    assert_eq!(r.body, cached.body, "the cached body: {}", describe(r));
    assert_eq!(
        r.header("content-type"),
        cached.header("content-type"),
        "{}",
        describe(r)
    );
    let age: u64 = r
        .header("age")
        .unwrap_or_else(|| panic!("no age: {}", describe(r)))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("age is not a number ({e}): {}", describe(r)));
    assert!(age <= 30, "age {age} within the ttl");
    assert!(
        r.header("warning")
            .is_some_and(|w| w.contains("110") && w.contains("Response is Stale")),
        "warning 110: {}",
        describe(r)
    );
    assert_mark(r, "stale", rule);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_response_is_served_from_every_worker() {
    let (upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache",
         "triggers": {"status": "500-599", "envoy": ["connectionFailure", "reset", "timeout"]},
         "response": {"kind": "stale", "ttl": "30s"}}
    ]})))
    .await;
    let cached = get(&envoy, "/item?id=1", &[("x-request-id", "first")]).await;
    assert_eq!(cached.status, 200, "{}", describe(&cached));
    assert_untouched(&cached);
    assert_eq!(cached.json()["path"], json!("/item?id=1"));
    wait_stores(&envoy, 1).await;

    // Failing calls, each on a new connection, until both workers have served some (a worker other
    // than the one that cached the response has then answered from the shared cache).
    let before = connections_per_worker(&envoy).await;
    assert_eq!(before.len(), 2, "two workers: {before:?}");
    let mut served = 0;
    loop {
        let r = get(&envoy, "/item?id=1", FAIL_503).await;
        assert_stale(&r, &cached, "cache");
        served += 1;
        let now = connections_per_worker(&envoy).await;
        let both = before
            .iter()
            .all(|(w, n)| now.get(w).is_some_and(|m| m > n));
        if served >= 6 && both {
            break;
        }
        assert!(
            served < 60,
            "connections never reached both workers: {before:?} -> {now:?}"
        );
    }
    // HTTP/2, and an upstream reset instead of a status, are served from the cache as well.
    let r = get_h2(&envoy, "/item?id=1", FAIL_503).await;
    assert_stale(&r, &cached, "cache");
    let r = get(&envoy, "/item?id=1", &[("x-upstream-action", "reset")]).await;
    assert_stale(&r, &cached, "cache");
    // The upstream was asked every time; only its failures were replaced.
    assert_eq!(upstream.count_path("/item?id=1"), 1 + served + 2);

    // Nothing cached for another path (the query is part of it): the `otherwise` problem response.
    let r = get(
        &envoy,
        "/item?id=2",
        &[("x-upstream-status", "503"), ("accept", "application/json")],
    )
    .await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_never_caches_post_or_bodies_over_max_body_bytes() {
    let (upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache", "triggers": {"status": "500-599"},
         "response": {"kind": "stale", "ttl": "30s", "maxBodyBytes": 2048,
                      "otherwise": {"kind": "static", "status": 200, "body": "nothing cached"}}}
    ]})))
    .await;
    let nothing = |r: &Response| {
        assert_eq!(r.status, 200, "{}", describe(r));
        assert_eq!(r.text(), "nothing cached", "{}", describe(r));
        assert_mark(r, "static", "cache");
    };
    // POST answered 200: passes, not cached.
    let r = http1(envoy.port("ingress"), "POST", "/p", OK, "payload").await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_untouched(&r);
    assert_eq!(r.json()["method"], json!("POST"));
    // A body larger than maxBodyBytes: streams through whole and untouched, not cached.
    let r = get(&envoy, "/big", &[("x-upstream-body-size", "4096")]).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_untouched(&r);
    assert_eq!(r.body.as_ref(), pattern(4096).as_slice());
    // A small GET: cached (the control, so the two above are known to have had their chance).
    let small = get(&envoy, "/small", OK).await;
    assert_eq!(small.status, 200);
    assert!(small.body.len() < 2048, "{}", small.body.len());
    wait_stores(&envoy, 1).await;

    nothing(&get(&envoy, "/p", FAIL_503).await);
    nothing(&get(&envoy, "/big", FAIL_503).await);
    assert_stale(&get(&envoy, "/small", FAIL_503).await, &small, "cache");
    assert_prom(&envoy, &[("fallback_cache_stores", &[], 1)]).await;
    assert_eq!(upstream.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cache_key_includes_key_headers() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "tenant-cache", "triggers": {"status": "500-599"},
         "response": {"kind": "stale", "ttl": "30s", "keyHeaders": ["x-tenant"]}}
    ]})))
    .await;
    let a = get(&envoy, "/k", &[("x-tenant", "a")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.echo_header("x-tenant").as_deref(), Some("a"));
    wait_stores(&envoy, 1).await;
    let r = get(
        &envoy,
        "/k",
        &[("x-tenant", "a"), ("x-upstream-status", "503")],
    )
    .await;
    assert_stale(&r, &a, "tenant-cache");
    for other in [vec![("x-tenant", "b")], vec![]] {
        let headers = [other.as_slice(), FAIL_503].concat();
        let r = get(&envoy, "/k", &headers).await;
        assert_problem_json(&r, 503);
        assert_mark(&r, "problem", "tenant-cache");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_good_response_streams_through_untouched_with_a_stale_rule() {
    let (upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache", "triggers": {"status": "500-599", "envoy": ["connectionFailure"]},
         "response": {"kind": "stale", "ttl": "30s"}}
    ]})))
    .await;
    let size = 1024 * 1024;
    let expected = pattern(size);
    let size_header = size.to_string();
    let headers = [("x-upstream-body-size", size_header.as_str())];
    for r in [
        get(&envoy, "/download", &headers).await,
        get_h2(&envoy, "/download", &headers).await,
    ] {
        assert_eq!(r.status, 200, "status {} headers {:?}", r.status, r.headers);
        assert_eq!(r.header(FALLBACK_HEADER), None, "{:?}", r.headers);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body.len(), size);
        assert!(r.body.as_ref() == expected.as_slice(), "body bytes differ");
    }
    assert_eq!(upstream.count(), 2);
    // Larger than the default maxBodyBytes (64 KiB): never cached.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_prom(&envoy, &[("fallback_cache_stores", &[], 0)]).await;
}

// ---------------------------------------------------------------------------------------------------
// Alternate upstream
// ---------------------------------------------------------------------------------------------------

async fn setup_alternate() -> (Upstream, Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let backup = Upstream::start().await;
    let config = json!({"rules": [
        {"name": "alt", "match": {"pathPrefix": "/dead/alt"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms",
                      "keyHeaders": ["x-tenant"]}},
        {"name": "alt-live", "match": {"pathPrefix": "/live"}, "triggers": {"status": "500-599"},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms"}},
        {"name": "alt-ctl", "match": {"pathPrefix": "/dead/ctl"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms",
                      "keyHeaders": ["x-upstream-delay-ms", "x-upstream-status"]}},
        {"name": "alt-dead", "match": {"pathPrefix": "/dead/nowhere"},
         "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "alternate", "cluster": "dead", "timeout": "500ms"}}
    ]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(Some(&config))],
        vec![Cluster::new("backup", backup.port())],
    ))
    .await;
    (upstream, backup, envoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_cluster_answers_when_the_primary_fails() {
    let (upstream, backup, envoy) = setup_alternate().await;
    let port = envoy.port("ingress");
    let authority = format!("localhost:{port}");
    let r = get(
        &envoy,
        "/dead/alt/thing?x=1",
        &[("x-tenant", "acme"), ("x-not-forwarded", "1")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_eq!(
        assert_mark(&r, "alternate", "alt"),
        "connectionFailure",
        "{}",
        describe(&r)
    );
    let echo = r.json();
    assert_eq!(echo["path"], json!("/dead/alt/thing?x=1"), "{echo}");
    assert_eq!(echo["method"], json!("GET"), "{echo}");
    assert_eq!(echo["authority"], json!(authority), "{echo}");
    assert_eq!(r.echo_header("x-tenant").as_deref(), Some("acme"));
    assert_eq!(r.echo_header("x-not-forwarded"), None, "only keyHeaders");
    assert_eq!(backup.count(), 1);

    // The same request without its body.
    let r = http1(port, "POST", "/dead/alt/post", &[], "a request body").await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_mark(&r, "alternate", "alt");
    assert_eq!(r.json()["method"], json!("POST"));
    assert_eq!(r.json()["body_size"], json!(0));

    // The primary answered 503: the backup's answer instead (the control header is not a keyHeader, so
    // the backup answers 200).
    let r = get(&envoy, "/live/x", FAIL_503).await;
    assert_eq!(r.status, 200, "{}", describe(&r));
    assert_mark(&r, "alternate", "alt-live");
    assert_eq!(r.json()["path"], json!("/live/x"));
    assert_eq!(r.echo_header("x-upstream-status"), None);
    assert_eq!(upstream.count_path("/live/x"), 1);
    assert_eq!(backup.count_path("/live/x"), 1);

    // Any answer below 500 is served.
    let r = get(&envoy, "/dead/ctl/missing", &[("x-upstream-status", "404")]).await;
    assert_eq!(r.status, 404, "{}", describe(&r));
    assert_mark(&r, "alternate", "alt-ctl");
    assert_eq!(r.json()["path"], json!("/dead/ctl/missing"));
    // A good primary answer never calls the backup.
    let before = backup.count();
    let r = get(&envoy, "/live/ok", OK).await;
    assert_eq!(r.status, 200);
    assert_untouched(&r);
    assert_eq!(backup.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_failure_or_timeout_gives_the_otherwise_response() {
    let (_upstream, backup, envoy) = setup_alternate().await;
    // The backup is slower than the alternate timeout.
    let start = Instant::now();
    let r = get(
        &envoy,
        "/dead/ctl/slow",
        &[
            ("x-upstream-delay-ms", "2000"),
            ("accept", "application/json"),
        ],
    )
    .await;
    let elapsed = start.elapsed();
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-ctl");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(1500),
        "answered about the alternate timeout (500 ms) after the start: {elapsed:?}"
    );
    assert!(
        backup.wait_count(1, RECORD_WAIT).await,
        "the backup was asked"
    );
    // The backup answers 5xx.
    let r = get(&envoy, "/dead/ctl/broken", FAIL_503).await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-ctl");
    assert_eq!(backup.count_path("/dead/ctl/broken"), 1);
    // The alternate cluster cannot be reached either.
    let r = get(&envoy, "/dead/nowhere", &[]).await;
    assert_problem_json(&r, 503);
    assert_mark(&r, "problem", "alt-dead");
}

// ---------------------------------------------------------------------------------------------------
// With the circuit breaker
// ---------------------------------------------------------------------------------------------------

/// The fallback with `config`, then the breaker `dep` (opens after 4 failing calls, for 5 s).
async fn setup_with_breaker(config: &Value) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let breaker = json!({"breakers": [
        {"name": "dep", "minimumCalls": 4, "openDuration": "5s", "openJitter": 0}
    ]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(Some(config)), breaker_filter(&breaker)],
        Vec::new(),
    ))
    .await;
    (upstream, envoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_rejections_become_the_fallback_response() {
    let (upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "cb", "triggers": {"circuitBreaker": true},
         "response": {"kind": "static", "status": 200, "body": "cached-default"}}
    ]}))
    .await;
    let port = envoy.port("ingress");
    for i in 0..4 {
        let r = get(&envoy, "/pay", FAIL_500).await;
        assert_eq!(r.status, 500, "call {i}: {}", describe(&r));
        assert_untouched(&r);
        assert_eq!(r.json()["path"], json!("/pay"));
    }
    // The breaker decides when the streams end: poll with failing calls until the fallback answers.
    let deadline = Instant::now() + RECORD_WAIT;
    let first = loop {
        let r = get(&envoy, "/pay", FAIL_500).await;
        if r.header(FALLBACK_HEADER).is_some() {
            break r;
        }
        assert_eq!(r.status, 500, "{}", describe(&r));
        assert!(
            Instant::now() < deadline,
            "no fallback answer within {RECORD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reached = upstream.count();
    let mut answers = vec![first];
    for i in 0..6 {
        answers.push(if i % 2 == 0 {
            get(&envoy, "/pay", OK).await
        } else {
            get_h2(&envoy, "/pay", FAIL_500).await
        });
    }
    for r in &answers {
        assert_eq!(r.status, 200, "{}", describe(r));
        assert_eq!(r.text(), "cached-default", "{}", describe(r));
        assert_eq!(
            assert_mark(r, "static", "cb"),
            "circuitBreaker",
            "{}",
            describe(r)
        );
    }
    // gRPC callers of the open breaker get UNAVAILABLE from the fallback.
    let g = grpc_unary(port, "/pkg.Svc/Call", &[], b"hi").await;
    assert_grpc_trailers_only(&g, 14);
    assert_eq!(grpc_mark(&g).rule, "cb", "{g:?}");
    assert_eq!(upstream.count(), reached, "the upstream is not reached");
    assert_prom(
        &envoy,
        &[(
            "fallback_served",
            &[("rule", "cb"), ("kind", "static")],
            answers.len() as u64 + 1,
        )],
    )
    .await;
}

/// The fallback sits before the breaker, so its reply replaces the upstream's failure after the
/// breaker saw it: the breaker must still count the failure and open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_counts_failures_that_the_fallback_replaced() {
    let (upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "soft", "triggers": {"status": "500", "circuitBreaker": true},
         "response": {"kind": "static", "status": 200, "body": "default"}}
    ]}))
    .await;
    for i in 0..4 {
        let r = get(&envoy, "/pay", FAIL_500).await;
        assert_eq!(r.text(), "default", "call {i}: {}", describe(&r));
        assert_eq!(
            assert_mark(&r, "static", "soft"),
            "status",
            "{}",
            describe(&r)
        );
    }
    assert_prom(
        &envoy,
        &[(
            "circuit_breaker_calls",
            &[("breaker", "dep"), ("outcome", "failure")],
            4,
        )],
    )
    .await;
    let reached = upstream.count();
    let r = get(&envoy, "/pay", OK).await;
    assert_eq!(
        assert_mark(&r, "static", "soft"),
        "circuitBreaker",
        "{}",
        describe(&r)
    );
    assert_eq!(
        upstream.count(),
        reached,
        "the open breaker keeps the upstream out"
    );
}

fn trace_filter(config: &Value) -> WasmFilter {
    WasmFilter::new("trace-context", dist("trace_context.wasm"))
        .vm_id("trace-context")
        .configuration(config.to_string())
}

/// The shipped chain (trace-context, fallback, circuit-breaker) behind one listener.
async fn setup_chain(trace: &Value, fallback: &Value) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let breaker = json!({"breakers": [
        {"name": "dep", "match": {"pathPrefix": "/pay"}, "minimumCalls": 4, "openDuration": "5s", "openJitter": 0}
    ]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![
            trace_filter(trace),
            fallback_filter(Some(fallback)),
            breaker_filter(&breaker),
        ],
        Vec::new(),
    ))
    .await;
    (upstream, envoy)
}

/// The trace id of a `traceresponse` header.
fn traceresponse_id(r: &Response) -> Option<&str> {
    r.header("traceresponse").and_then(|v| v.split('-').nth(1))
}

/// A fallback replaces a response on its way back, so Envoy sends it past trace-context: the fallback
/// must carry the trace headers itself, on every kind of reply and for gRPC callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_carry_the_trace_headers_of_trace_context() {
    let fallback = json!({"rules": [
        {"name": "app", "match": {"pathPrefix": "/app"}, "triggers": {"status": "503"}},
        {"name": "cb", "triggers": {"circuitBreaker": true, "status": "500"},
         "response": {"kind": "static", "status": 200, "body": "default"}}
    ]});
    let (upstream, envoy) = setup_chain(&json!({}), &fallback).await;

    // A B3 caller: trace-context converts, the fallback answers with the same trace id.
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    let b3 = format!("{b3_trace}-e457b5a2e4d86bd1-1");
    let r = get(&envoy, "/app", &[("b3", &b3), FAIL_503[0]]).await;
    assert_eq!(
        assert_mark(&r, "problem", "app"),
        "status",
        "{}",
        describe(&r)
    );
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["traceId"], json!(b3_trace), "{j}");
    assert_eq!(r.header("x-trace-id"), Some(b3_trace), "{}", describe(&r));
    assert_eq!(traceresponse_id(&r), Some(b3_trace), "{}", describe(&r));
    let forwarded = upstream.last().unwrap();
    assert_eq!(
        r.header("traceresponse"),
        forwarded.header("traceparent"),
        "traceresponse names the span forwarded upstream"
    );

    // No context at all: trace-context starts one, and the fallback shows it.
    let r = get(&envoy, "/app", FAIL_503).await;
    let j = assert_problem_json(&r, 503);
    let started = r.header("x-trace-id").unwrap_or_default().to_string();
    assert_eq!(started.len(), 32, "{}", describe(&r));
    assert_eq!(j["traceId"], json!(started), "{j}");
    assert_eq!(traceresponse_id(&r), Some(started.as_str()));

    // Breaker rejections answered by the fallback: trip it, then every answer carries the trace.
    let deadline = Instant::now() + RECORD_WAIT;
    let rejected = loop {
        let r = get(&envoy, "/pay", &[("traceparent", TRACEPARENT), FAIL_500[0]]).await;
        if r.header(FALLBACK_HEADER)
            .is_some_and(|m| m.contains("circuitBreaker"))
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker never opened: {}",
            describe(&r)
        );
    };
    assert_eq!(rejected.text(), "default", "{}", describe(&rejected));
    assert_eq!(
        rejected.header("x-trace-id"),
        Some(TRACE_ID),
        "{}",
        describe(&rejected)
    );
    assert_eq!(traceresponse_id(&rejected), Some(TRACE_ID));

    // gRPC callers: the trailers-only status carries the headers too.
    let g = grpc_unary(
        envoy.port("ingress"),
        "/pay.Svc/Call",
        &[("traceparent", TRACEPARENT)],
        b"hi",
    )
    .await;
    assert_grpc_trailers_only(&g, 14);
    assert_eq!(g.header("x-trace-id"), Some(TRACE_ID), "{g:?}");

    // Good responses keep getting the headers from trace-context itself.
    let ok = get(&envoy, "/app", &[("traceparent", TRACEPARENT)]).await;
    assert_untouched(&ok);
    assert_eq!(ok.header("x-trace-id"), Some(TRACE_ID));
    assert_eq!(ok.header_all("x-trace-id").len(), 1);
}

/// trace-context writing only B3: no `traceparent` to read, so the fallback takes the trace id from
/// trace-context's filter state (and has no span id for `traceresponse`); the header names follow
/// the fallback's `trace` configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_reads_the_trace_id_from_filter_state_without_w3c() {
    let trace = json!({"inject": ["b3multi"], "keepReceivedFormats": false, "responseHeader": "x-b3-trace", "traceResponse": false});
    let fallback = json!({
        "rules": [{"name": "app", "triggers": {"status": "503"}}],
        "trace": {"responseHeader": "x-b3-trace", "traceResponse": false}
    });
    let (upstream, envoy) = setup_chain(&trace, &fallback).await;
    let r = get(&envoy, "/app", &[("traceparent", TRACEPARENT), FAIL_503[0]]).await;
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["traceId"], json!(TRACE_ID), "{j}");
    assert_eq!(r.header("x-b3-trace"), Some(TRACE_ID), "{}", describe(&r));
    assert_eq!(r.header("x-trace-id"), None);
    assert_eq!(r.header("traceresponse"), None);
    let forwarded = upstream.last().unwrap();
    assert_eq!(
        forwarded.header("traceparent"),
        None,
        "trace-context wrote B3 only"
    );
    assert_eq!(forwarded.header("x-b3-traceid"), Some(TRACE_ID));
}

/// An alternate upstream's answer keeps the caller's trace: the backup's own trace headers give way,
/// and the alternate call itself carries the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_answers_carry_the_callers_trace_not_the_backups() {
    let upstream = Upstream::start().await;
    let backup = Upstream::start().await;
    let config = json!({"rules": [
        {"name": "alt", "triggers": {"status": "503"},
         "response": {"kind": "alternate", "cluster": "backup", "timeout": "500ms",
                      "keyHeaders": ["x-upstream-set-header"]}}
    ]});
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![trace_filter(&json!({})), fallback_filter(Some(&config))],
        vec![Cluster::new("backup", backup.port())],
    ))
    .await;
    let foreign = "ffffffffffffffffffffffffffffffff";
    let r = get(
        &envoy,
        "/alt",
        &[
            ("traceparent", TRACEPARENT),
            FAIL_503[0],
            ("x-upstream-set-header", &format!("x-trace-id: {foreign}")),
        ],
    )
    .await;
    assert_mark(&r, "alternate", "alt");
    assert_eq!(
        r.header_all("x-trace-id"),
        vec![TRACE_ID],
        "{}",
        describe(&r)
    );
    assert_eq!(traceresponse_id(&r), Some(TRACE_ID), "{}", describe(&r));
    let asked = backup.last().unwrap();
    assert_eq!(
        asked
            .header("traceparent")
            .and_then(|tp| tp.split('-').nth(1)),
        Some(TRACE_ID),
        "the alternate call carries the trace: {asked:?}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Configuration and metrics
// ---------------------------------------------------------------------------------------------------

/// A configuration with the filter configured as `config`, only to be validated (no upstream).
fn yaml_with(config: &Value) -> String {
    EnvoyConfig::simple(INGRESS, 1)
        .filter_all(fallback_filter(Some(config)))
        .render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_rejected_naming_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": {"kind": "bogus"}}]}),
            "rules[0].response.kind",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"}, "response": {"kind": "alternate"}}]}),
            "rules[0].response.cluster",
        ),
        (
            json!({"rules": [{"name": "bad name!", "triggers": {"status": "503"}}]}),
            "rules[0].name",
        ),
        (
            json!({"rules": [{"triggers": {"status": "503"}}]}),
            "rules[0].name",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"grpcStatus": [17]}}]}),
            "rules[0].triggers.grpcStatus",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"envoy": ["meltdown"]}}]}),
            "rules[0].triggers.envoy",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "abc"}}]}),
            "rules[0].triggers.status",
        ),
        (
            json!({"rules": [{"name": "ok", "triggers": {"status": "503"}},
                             {"name": "r", "triggers": {"status": "503"}, "response": {"kind": "stale", "ttl": "soon"}}]}),
            "rules[1].response.ttl",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "alternate", "cluster": "b", "timeout": "never"}}]}),
            "rules[0].response.timeout",
        ),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "stale", "otherwise": {"kind": "stale"}}}]}),
            "rules[0].response.otherwise",
        ),
        (json!({"cache": {"maxBytes": -1}}), "cache.maxBytes"),
        (
            json!({"rules": [{"name": "r", "triggers": {"status": "503"},
                             "response": {"kind": "stale", "privateHeaders": ["x-api-key", "x api key"]}}]}),
            "rules[0].response.privateHeaders",
        ),
    ];
    let mut set = JoinSet::new();
    for (config, field) in cases {
        let yaml = yaml_with(&config);
        set.spawn_blocking(move || (config, field, validate_yaml(&yaml)));
    }
    let mut failures = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (config, field, result) = joined.unwrap();
        let Err(err) = result else {
            failures.push(format!("{config}: accepted"));
            continue;
        };
        let Some(line) = err
            .lines()
            .find(|l| l.contains("fallback: invalid configuration: field `"))
        else {
            failures.push(format!("{config}: no line naming the field:\n{err}"));
            continue;
        };
        let rest = line.split_once("field `").map_or("", |(_, r)| r);
        let (named, reason) = rest.split_once('`').unwrap_or((rest, ""));
        // The field itself (or an element of it), or its parent with the reason naming the missing
        // member.
        let last = field.rsplit('.').next().unwrap_or(field);
        let ok = named.starts_with(field)
            || (!named.is_empty()
                && field.starts_with(named)
                && reason.contains(&format!("`{last}`")));
        if !ok {
            failures.push(format!(
                "{config}: names {named:?}, expected {field:?}: {line}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_field_is_accepted() {
    let config = json!({
        "rules": [
            {
                "name": "full_1",
                "match": {
                    "cluster": "upstream",
                    "route": "default",
                    "authority": "example.com",
                    "pathPrefix": "/api",
                    "method": "GET",
                    "header": {"name": "x-tenant", "value": "acme"}
                },
                "triggers": {
                    "status": ["503", "500-599"],
                    "grpcStatus": [0, 14, 16],
                    "envoy": ["connectionFailure", "timeout", "reset", "noHealthyUpstream", "overflow", "localReply"],
                    "circuitBreaker": true
                },
                "response": {"kind": "problem", "status": 503, "title": "Try later",
                             "type": "https://example.com/probs/later"}
            },
            {"name": "full-2", "triggers": {"status": "503"},
             "response": {"kind": "static", "status": 200, "headers": {"content-type": "application/json"},
                          "body": "{\"t\": \"{{traceId}}\", \"r\": \"{{requestId}}\", \"s\": {{status}}, \"why\": \"{{reason}}\"}"}},
            {"name": "full-3", "match": {"header": {"name": "x-canary"}}, "triggers": {"status": "500-599"},
             "response": {"kind": "stale", "ttl": "5m", "maxBodyBytes": 1024, "keyHeaders": ["x-tenant", "accept"],
                          "privateHeaders": ["Authorization", "x-session"],
                          "otherwise": {"kind": "static", "status": 200, "body": "none"}}},
            {"name": "Full4", "triggers": {"envoy": ["timeout"]},
             "response": {"kind": "alternate", "cluster": "backup", "timeout": "250ms", "keyHeaders": ["x-tenant"],
                          "otherwise": {"kind": "problem"}}}
        ],
        "cache": {"maxBytes": 1048576, "maxBodyBytes": 4096},
        "maxSharedMemory": "16Mi",
        "trace": {"responseHeader": "x-trace-id", "traceResponse": true, "filterStateName": "trace_id"}
    });
    validate_yaml(&yaml_with(&config)).unwrap();
    // An empty object is the defaults too.
    validate_yaml(&yaml_with(&json!({}))).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_served_responses_and_cache_lookups() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache", "match": {"pathPrefix": "/c"}, "triggers": {"status": "500-599"},
         "response": {"kind": "stale", "ttl": "30s"}},
        {"name": "refused", "triggers": {"envoy": ["connectionFailure"]},
         "response": {"kind": "problem"}}
    ]})))
    .await;
    let cached = get(&envoy, "/c/1", OK).await;
    assert_eq!(cached.status, 200);
    wait_stores(&envoy, 1).await;
    for _ in 0..3 {
        assert_stale(&get(&envoy, "/c/1", FAIL_503).await, &cached, "cache");
    }
    let r = get(&envoy, "/c/2", FAIL_503).await;
    assert_problem_json(&r, 503);
    for _ in 0..2 {
        let r = get(&envoy, "/dead", &[]).await;
        assert_problem_json(&r, 503);
        assert_eq!(assert_mark(&r, "problem", "refused"), "connectionFailure");
    }
    assert_prom(
        &envoy,
        &[
            (
                "fallback_served",
                &[("rule", "cache"), ("kind", "stale")],
                3,
            ),
            (
                "fallback_served",
                &[("rule", "cache"), ("kind", "problem")],
                1,
            ),
            (
                "fallback_served",
                &[
                    ("rule", "refused"),
                    ("trigger", "connectionFailure"),
                    ("kind", "problem"),
                ],
                2,
            ),
            ("fallback_cache_hits", &[], 3),
            ("fallback_cache_misses", &[], 1),
            ("fallback_cache_stores", &[], 1),
            ("fallback_cache_evictions", &[], 0),
        ],
    )
    .await;
    let prom = envoy.prometheus().await;
    let bytes = prom_sum(&prom, "fallback_cache_bytes", &[]).unwrap_or(0);
    assert!(
        bytes >= cached.body.len() as u64,
        "fallback_cache_bytes {bytes} holds the cached body ({} bytes):\n{}",
        cached.body.len(),
        prom_lines(&prom, "fallback")
    );
    // Every served series carries the three tags as labels; none is left in a name.
    for line in prom.lines().filter(|l| l.starts_with("fallback_served")) {
        for tag in ["rule=", "trigger=", "kind="] {
            assert!(line.contains(tag), "{line}");
        }
    }
    assert!(!prom.contains("=.="), "{}", prom_lines(&prom, "=.="));
}

/// A cached response is never served to another host or for another caller's credentials, and private,
/// cookie-setting or encoded responses are not cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cache_never_leaks_across_hosts_or_callers() {
    let upstream = Upstream::start().await;
    let config = r#"{"rules": [{"name": "stale", "triggers": {"status": "500-599"},
        "response": {"kind": "stale", "ttl": "30s", "otherwise": {"kind": "static", "status": 200, "body": "nothing cached"}}}]}"#;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(
                        WasmFilter::new("fallback", dist("fallback.wasm"))
                            .vm_id("fallback")
                            .configuration(config),
                    )
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port())),
    )
    .await;
    let port = envoy.port("ingress");
    let fail = ("x-upstream-status", "503");
    // Cached for a.example; b.example must not get it.
    let r = http1(port, "GET", "/me", &[("host", "a.example")], "").await;
    assert_eq!(r.status, 200);
    let r = http1(port, "GET", "/me", &[("host", "b.example"), fail], "").await;
    assert_eq!(r.text(), "nothing cached", "another host's response leaked");
    let r = http1(port, "GET", "/me", &[("host", "a.example"), fail], "").await;
    assert!(
        r.header("x-fallback").unwrap().starts_with("stale"),
        "control: same host is served"
    );
    // A request with credentials, and responses marked private or setting cookies, are not cached.
    for (path, headers) in [
        ("/auth", vec![("authorization", "Bearer alice")]),
        ("/cookie", vec![("cookie", "session=alice")]),
        (
            "/private",
            vec![(
                "x-upstream-set-header",
                "cache-control: private, max-age=60",
            )],
        ),
        (
            "/setcookie",
            vec![("x-upstream-set-header", "set-cookie: s=1")],
        ),
        (
            "/gzip",
            vec![("x-upstream-set-header", "content-encoding: gzip")],
        ),
    ] {
        let r = http1(port, "GET", path, &headers, "").await;
        assert_eq!(r.status, 200, "{path}");
        let r = http1(port, "GET", path, &[fail], "").await;
        assert_eq!(r.text(), "nothing cached", "{path} was cached");
    }
}

// ---------------------------------------------------------------------------------------------------
// Issue 7: the stale cache follows RFC 9111 / RFC 5861; retry-after survives the fallback
// ---------------------------------------------------------------------------------------------------

/// A stale rule whose `otherwise` says plainly that nothing was served from the cache.
fn stale_rule(name: &str, prefix: &str, extra: Value) -> Value {
    let mut response = json!({"kind": "stale", "ttl": "30s",
        "otherwise": {"kind": "static", "status": 200, "body": "nothing cached"}});
    if let (Some(r), Some(extra)) = (response.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    json!({"name": name, "match": {"pathPrefix": prefix}, "triggers": {"status": "500-599"},
           "response": response})
}

fn assert_nothing_cached(r: &Response, what: &str) {
    assert_eq!(
        r.text(),
        "nothing cached",
        "{what} must not be served from the cache: {}",
        describe(r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_vary_keys_stale_entries_by_the_listed_request_headers() {
    let (_upstream, envoy) =
        setup(Some(json!({"rules": [stale_rule("vary", "/", json!({}))]}))).await;
    let vary = |v: &'static str| ("x-upstream-set-header", v);
    // A French caller's response, varying on the language.
    let fr = get(
        &envoy,
        "/lang",
        &[("accept-language", "fr"), vary("vary: Accept-Language")],
    )
    .await;
    assert_eq!(fr.status, 200, "{}", describe(&fr));
    assert_eq!(fr.echo_header("accept-language").as_deref(), Some("fr"));
    // Two values of the header, and two Vary lines.
    let multi = get(
        &envoy,
        "/multi",
        &[
            ("accept-language", "fr"),
            ("accept-language", "de"),
            ("x-tenant", "a"),
            vary("vary: accept-language"),
            vary("vary: X-Tenant"),
        ],
    )
    .await;
    assert_eq!(multi.status, 200, "{}", describe(&multi));
    // `Vary: *`: never stored.
    let star = get(&envoy, "/star", &[vary("vary: *")]).await;
    assert_eq!(star.status, 200, "{}", describe(&star));
    // The control: a response without Vary is stored and served to everyone.
    let plain = get(&envoy, "/plain", &[("accept-language", "fr")]).await;
    wait_stores(&envoy, 3).await;

    // Another language, or none: not the French response.
    for headers in [
        vec![("accept-language", "en")],
        vec![("accept-language", "FR-ca")],
        vec![],
    ] {
        let r = get(&envoy, "/lang", &[headers.as_slice(), FAIL_503].concat()).await;
        assert_nothing_cached(&r, &format!("the French response for {headers:?}"));
    }
    let r = get(&envoy, "/lang", &[("accept-language", "fr"), FAIL_503[0]]).await;
    assert_stale(&r, &fr, "vary");

    // The same values as one line (whitespace around the comma is not significant) match the two
    // lines; another order, another tenant, or a missing tenant do not.
    let r = get(
        &envoy,
        "/multi",
        &[
            ("accept-language", "fr ,  de"),
            ("x-tenant", "a"),
            FAIL_503[0],
        ],
    )
    .await;
    assert_stale(&r, &multi, "vary");
    for headers in [
        vec![("accept-language", "de, fr"), ("x-tenant", "a")],
        vec![("accept-language", "fr, de"), ("x-tenant", "b")],
        vec![("accept-language", "fr, de")],
    ] {
        let r = get(&envoy, "/multi", &[headers.as_slice(), FAIL_503].concat()).await;
        assert_nothing_cached(&r, &format!("/multi for {headers:?}"));
    }
    assert_nothing_cached(&get(&envoy, "/star", FAIL_503).await, "a Vary: * response");
    let r = get(&envoy, "/plain", &[("accept-language", "en"), FAIL_503[0]]).await;
    assert_stale(&r, &plain, "vary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_revalidation_directives_forbid_serving_stale() {
    let (_upstream, envoy) =
        setup(Some(json!({"rules": [stale_rule("rfc", "/", json!({}))]}))).await;
    let cc = |v: &'static str| ("x-upstream-set-header", v);
    // Responses that may never be served on error, or not once stale (they are stale at once).
    let refused: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/no-cache", vec![cc("cache-control: no-cache")]),
        (
            "/no-cache-field",
            vec![cc("cache-control: max-age=60, no-cache=\"set-cookie\"")],
        ),
        (
            "/must-revalidate",
            vec![cc("cache-control: must-revalidate")],
        ),
        (
            "/max-age-0-must",
            vec![cc("cache-control: max-age=0, must-revalidate")],
        ),
        (
            "/proxy-revalidate",
            vec![cc("cache-control: max-age=0, Proxy-Revalidate")],
        ),
        (
            "/s-maxage-0",
            vec![cc("cache-control: s-maxage=0, max-age=60")],
        ),
        (
            "/sie-0",
            vec![cc("cache-control: max-age=0, stale-if-error=0")],
        ),
        // Already older than its freshness plus stale-if-error when it arrives.
        (
            "/aged",
            vec![
                cc("cache-control: max-age=2, stale-if-error=1"),
                cc("age: 5"),
            ],
        ),
        // Private in a second Cache-Control line.
        (
            "/private-2nd-line",
            vec![
                cc("cache-control: max-age=60"),
                cc("cache-control: private"),
            ],
        ),
    ];
    for (path, headers) in &refused {
        let r = get(&envoy, path, headers).await;
        assert_eq!(r.status, 200, "{path}: {}", describe(&r));
    }
    // Servable: fresh whatever its revalidation directives, or stale with the operator's ttl.
    let t0 = Instant::now();
    let sie = get(
        &envoy,
        "/sie",
        &[cc("cache-control: max-age=0, stale-if-error=3")],
    )
    .await;
    let fresh_must = get(
        &envoy,
        "/fresh-must",
        &[cc("cache-control: max-age=60, must-revalidate")],
    )
    .await;
    let fresh_shared = get(&envoy, "/fresh-shared", &[cc("cache-control: s-maxage=60")]).await;
    let plain = get(&envoy, "/plain", &[cc("cache-control: max-age=0")]).await;
    wait_stores(&envoy, 4).await;

    for (path, _) in &refused {
        assert_nothing_cached(&get(&envoy, path, FAIL_503).await, path);
    }
    assert_stale(
        &get(&envoy, "/fresh-must", FAIL_503).await,
        &fresh_must,
        "rfc",
    );
    assert_stale(
        &get(&envoy, "/fresh-shared", FAIL_503).await,
        &fresh_shared,
        "rfc",
    );
    assert_stale(&get(&envoy, "/plain", FAIL_503).await, &plain, "rfc");
    let r = get(&envoy, "/sie", FAIL_503).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "too slow to check stale-if-error=3 within its 3 s: {:?}",
        t0.elapsed()
    );
    assert_stale(&r, &sie, "rfc");
    // stale-if-error=3 bounds its staleness (well within the rule's 30 s ttl): stored after t0, so
    // past t0 + 3 s it is gone.
    tokio::time::sleep(
        (t0 + Duration::from_millis(3_300)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_nothing_cached(&get(&envoy, "/sie", FAIL_503).await, "past stale-if-error");
    assert_stale(&get(&envoy, "/plain", FAIL_503).await, &plain, "rfc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_private_headers_are_neither_stored_nor_served() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        stale_rule("keyed", "/keyed", json!({"keyHeaders": ["x-api-key"]})),
        stale_rule("custom", "/custom", json!({"privateHeaders": ["X-Session"]})),
        stale_rule("default", "/", json!({}))
    ]})))
    .await;
    // A response to a caller with credentials is not stored...
    let credentials = [
        ("authorization", "Bearer alice"),
        ("proxy-authorization", "Basic YWxpY2U6cw=="),
        ("cookie", "session=alice"),
        ("x-api-key", "alice-key"),
        ("x-auth-token", "alice-token"),
    ];
    for (name, value) in credentials {
        let path = format!("/own/{name}");
        let r = get(&envoy, &path, &[(name, value)]).await;
        assert_eq!(r.status, 200, "{}", describe(&r));
    }
    // ...and a stored public response is not served to a caller with credentials.
    let public = get(&envoy, "/public", OK).await;
    // A key header is not private: each key gets its own entry.
    let alice = get(&envoy, "/keyed", &[("x-api-key", "alice-key")]).await;
    // A configured list replaces the default one (names in any case).
    let _ = get(&envoy, "/custom/session", &[("x-session", "s1")]).await;
    let keyed_by_api = get(&envoy, "/custom/api", &[("x-api-key", "alice-key")]).await;
    wait_stores(&envoy, 3).await;

    for (name, _) in credentials {
        let path = format!("/own/{name}");
        let r = get(&envoy, &path, FAIL_503).await;
        assert_nothing_cached(&r, &format!("a response to a request with {name}"));
    }
    for (name, value) in credentials {
        let r = get(&envoy, "/public", &[(name, value), FAIL_503[0]]).await;
        assert_nothing_cached(&r, &format!("/public to a request with {name}"));
    }
    assert_stale(&get(&envoy, "/public", FAIL_503).await, &public, "default");
    let r = get(&envoy, "/keyed", &[("x-api-key", "alice-key"), FAIL_503[0]]).await;
    assert_stale(&r, &alice, "keyed");
    for headers in [vec![("x-api-key", "bob-key")], vec![]] {
        let r = get(&envoy, "/keyed", &[headers.as_slice(), FAIL_503].concat()).await;
        assert_nothing_cached(&r, &format!("alice's keyed response for {headers:?}"));
    }
    assert_nothing_cached(&get(&envoy, "/custom/session", FAIL_503).await, "x-session");
    assert_stale(
        &get(&envoy, "/custom/api", FAIL_503).await,
        &keyed_by_api,
        "custom",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item7_retry_after_survives_the_fallback() {
    let (_upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "own", "match": {"pathPrefix": "/own"}, "triggers": {"status": ["429", "503"]},
         "response": {"kind": "static", "status": 200, "headers": {"retry-after": "5"}, "body": "own"}},
        {"name": "static", "match": {"pathPrefix": "/static"}, "triggers": {"status": ["429", "503"]},
         "response": {"kind": "static", "status": 503, "body": "later"}},
        stale_rule("stale", "/stale", json!({})),
        {"name": "problem", "triggers": {"status": ["429", "503"]}, "response": {"kind": "problem"}}
    ]})))
    .await;
    let port = envoy.port("ingress");
    let retry = ("x-upstream-set-header", "retry-after: 17");
    for status in ["503", "429"] {
        let failing = [("x-upstream-status", status), retry];
        let r = get(&envoy, "/p", &failing).await;
        assert_eq!(r.status.to_string(), status, "{}", describe(&r));
        assert_mark(&r, "problem", "problem");
        assert_eq!(r.header("retry-after"), Some("17"), "{}", describe(&r));
        let r = get(&envoy, "/static", &failing).await;
        assert_eq!(r.text(), "later", "{}", describe(&r));
        assert_eq!(r.header("retry-after"), Some("17"), "{}", describe(&r));
        let r = get(&envoy, "/own", &failing).await;
        assert_eq!(r.text(), "own", "{}", describe(&r));
        assert_eq!(
            r.header_all("retry-after"),
            vec!["5"],
            "the rule's own wins: {}",
            describe(&r)
        );
        let r = grpc_unary(port, "/pkg.v1.Svc/Call", &failing, b"hi").await;
        assert_grpc_trailers_only(&r, 14);
        assert_eq!(r.header("retry-after"), Some("17"), "gRPC: {r:?}");
    }
    // A stale answer keeps it too; a failure without one gets none.
    let cached = get(&envoy, "/stale", OK).await;
    wait_stores(&envoy, 1).await;
    let r = get(&envoy, "/stale", &[FAIL_503[0], retry]).await;
    assert_stale(&r, &cached, "stale");
    assert_eq!(r.header("retry-after"), Some("17"), "{}", describe(&r));
    let r = get(&envoy, "/p", FAIL_503).await;
    assert_mark(&r, "problem", "problem");
    assert_eq!(r.header("retry-after"), None, "{}", describe(&r));

    // The circuit breaker's rejection carries one: the fallback that replaces it keeps it.
    let (_upstream, envoy) = setup_with_breaker(&json!({"rules": [
        {"name": "cb", "triggers": {"circuitBreaker": true}, "response": {"kind": "problem"}}
    ]}))
    .await;
    for _ in 0..4 {
        assert_untouched(&get(&envoy, "/pay", FAIL_500).await);
    }
    let deadline = Instant::now() + RECORD_WAIT;
    let r = loop {
        let r = get(&envoy, "/pay", OK).await;
        if r.header(FALLBACK_HEADER).is_some() {
            break r;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(assert_mark(&r, "problem", "cb"), "circuitBreaker");
    let secs: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {}", describe(&r)))
        .parse()
        .unwrap();
    assert!((1..=5).contains(&secs), "the breaker's open time: {secs}");
    let g = grpc_unary(envoy.port("ingress"), "/pkg.Svc/Call", &[], b"hi").await;
    assert_grpc_trailers_only(&g, 14);
    assert!(g.header("retry-after").is_some(), "gRPC: {g:?}");
}
