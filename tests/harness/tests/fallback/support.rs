//! What the fallback's tests share: the filters and the routes of every Envoy here, the upstream's
//! behaviours, and reading `x-fallback` marks, problem responses, cached answers and series.

use std::time::Duration;

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

/// A W3C trace context and its trace id.
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const FALLBACK_HEADER: &str = "x-fallback";
/// Route timeout of the `/slow` route.
pub const ROUTE_TIMEOUT: Duration = Duration::from_millis(300);

/// The upstream answers 500 / 503.
pub const FAIL_500: &[(&str, &str)] = &[("x-upstream-status", "500")];
pub const FAIL_503: &[(&str, &str)] = &[("x-upstream-status", "503")];
/// The upstream answers 200 at once.
pub const OK: &[(&str, &str)] = &[];

pub fn fallback_filter(config: Option<&Value>) -> WasmFilter {
    let f = WasmFilter::project("fallback");
    match config {
        Some(c) => f.configuration(c.to_string()),
        None => f,
    }
}

pub fn breaker_filter(config: &Value) -> WasmFilter {
    WasmFilter::project("circuit-breaker").config_json(config)
}

/// The listener `ingress` with `filters` (in order) and the three routes described at the top; the
/// clusters `upstream` (h2c to the live upstream), `dead` (refused) and `extra`.
pub fn config_with(
    upstream: &Upstream,
    filters: Vec<WasmFilter>,
    extra: Vec<Cluster>,
) -> EnvoyConfig {
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
pub async fn setup(config: Option<Value>) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(config_with(
        &upstream,
        vec![fallback_filter(config.as_ref())],
        Vec::new(),
    ))
    .await;
    (upstream, envoy)
}

/// `x-fallback: <kind>; rule=<name>; reason=<trigger>`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackMark {
    pub kind: String,
    pub rule: String,
    pub reason: String,
}

pub fn parse_mark(value: &str) -> FallbackMark {
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
pub fn mark(r: &Response) -> FallbackMark {
    let v = r
        .header(FALLBACK_HEADER)
        .unwrap_or_else(|| panic!("no {FALLBACK_HEADER} header: {}", r.describe()));
    parse_mark(v)
}

pub fn grpc_mark(r: &GrpcResponse) -> FallbackMark {
    let v = r
        .header(FALLBACK_HEADER)
        .unwrap_or_else(|| panic!("no {FALLBACK_HEADER} header: {r:?}"));
    parse_mark(v)
}

/// Asserts the mark's kind and rule, and that it names a reason; returns the reason.
pub fn assert_mark(r: &Response, kind: &str, rule: &str) -> String {
    let m = mark(r);
    assert_eq!(m.kind, kind, "x-fallback kind: {}", r.describe());
    assert_eq!(m.rule, rule, "x-fallback rule: {}", r.describe());
    assert!(!m.reason.is_empty(), "x-fallback reason: {}", r.describe());
    m.reason
}

pub fn assert_untouched(r: &Response) {
    assert_eq!(
        r.header(FALLBACK_HEADER),
        None,
        "no fallback expected: {}",
        r.describe()
    );
}

/// Asserts an RFC 9457 problem response with `status` and returns its JSON (`traceId` is checked by
/// the callers that send a trace context).
pub fn assert_problem_json(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.describe());
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?}: {}",
        r.describe()
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

/// Waits until the stale cache has stored `n` responses in all (the store happens as the stream ends).
pub async fn wait_stores(envoy: &Envoy, n: u64) {
    wait_prom(envoy, "fallback_cache_stores", &[], |v| v >= n).await;
}

pub fn assert_grpc_trailers_only(r: &GrpcResponse, code: u32) {
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

pub fn assert_stale(r: &Response, cached: &Response, rule: &str) {
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.body, cached.body, "the cached body: {}", r.describe());
    assert_eq!(
        r.header("content-type"),
        cached.header("content-type"),
        "{}",
        r.describe()
    );
    let age: u64 = r
        .header("age")
        .unwrap_or_else(|| panic!("no age: {}", r.describe()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("age is not a number ({e}): {}", r.describe()));
    assert!(age <= 30, "age {age} within the ttl");
    // RFC 9111 obsoletes `Warning`: `age` and the mark say the answer is stale (issue 16 item 5).
    assert_eq!(r.header("warning"), None, "no warning: {}", r.describe());
    assert_mark(r, "stale", rule);
}

/// Asserts the `otherwise` of a [`stale_rule`]: nothing was served from the cache.
pub fn assert_nothing_cached(r: &Response, what: &str) {
    assert_eq!(
        r.text(),
        "nothing cached",
        "{what} must not be served from the cache: {}",
        r.describe()
    );
}

/// The fallback with `config`, then the breaker `dep` (opens after 4 failing calls, for 5 s).
pub async fn setup_with_breaker(config: &Value) -> (Upstream, Envoy) {
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

/// `config` with 16 384 cache slots of 1 KiB (its stale rules cache at most 1 KiB): the slot is a keyed
/// hash of the request with a fresh secret per run, so with the default 128 slots a test storing three
/// entries finds two of them in one slot (the later evicting the earlier) in about 2 % of runs.
pub fn roomy_cache(mut config: Value) -> Value {
    if let Some(rules) = config["rules"].as_array_mut() {
        for rule in rules {
            if rule["response"]["kind"] == "stale" && rule["response"].get("maxBodyBytes").is_none()
            {
                rule["response"]["maxBodyBytes"] = json!(1024);
            }
        }
    }
    config["cache"] = json!({"maxBytes": 16_777_216, "maxBodyBytes": 1024});
    config
}

/// A stale rule whose `otherwise` says plainly that nothing was served from the cache.
pub fn stale_rule(name: &str, prefix: &str, extra: Value) -> Value {
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

/// Asserts the fallback's series (polling, see [`assert_series`]); a series Envoy does not render reads
/// as 0.
pub async fn assert_prom(envoy: &Envoy, expected: &[Series<'_>]) {
    assert_series(envoy, "fallback", Absent::ReadsAsZero, expected).await;
}

/// [`wait_series`] over the fallback's series.
pub async fn wait_prom(
    envoy: &Envoy,
    metric: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(u64) -> bool,
) -> u64 {
    wait_series(envoy, "fallback", metric, labels, pred).await
}
