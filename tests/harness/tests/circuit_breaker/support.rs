//! What the breaker's tests share: the filter and its Envoy, the upstream's behaviours, and reading
//! rejections and series.

use std::future::Future;
use std::time::{Duration, Instant};

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;
use tokio::task::JoinSet;

pub const STATUS_HEADER: &str = "x-circuit-breaker";
/// Request headers as the harness clients take them.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// The upstream answers 500.
pub const FAIL: &[(&str, &str)] = &[("x-upstream-status", "500")];
/// The upstream answers 200 at once.
pub const OK: &[(&str, &str)] = &[];
/// The upstream never answers (the route timeout cuts the call).
pub const HANG: &[(&str, &str)] = &[("x-upstream-action", "hang")];

/// A pause after which the streams that just ended are surely recorded. Used where a test must know
/// the state before its next request, because a polling request would change the outcome.
pub const SETTLE: Duration = Duration::from_millis(150);

pub fn cb_filter(config: Option<&Value>) -> WasmFilter {
    let f = WasmFilter::project("circuit-breaker");
    match config {
        Some(c) => f.configuration(c.to_string()),
        None => f,
    }
}

/// `{"breakers": [breaker]}`.
pub fn one(breaker: Value) -> Value {
    json!({ "breakers": [breaker] })
}

/// Listener `ingress` with the filter, whose one route `ingress` sends `/` to the cluster `upstream`.
pub async fn setup(config: Value) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::simple("ingress", upstream.port()).filter_all(cb_filter(Some(&config))),
    )
    .await;
    (upstream, envoy)
}

/// Listener `ingress` with the filter (`config`) in front of `routes`, and `clusters`.
pub async fn start_routed(
    config: Option<&Value>,
    routes: Vec<Route>,
    clusters: Vec<Cluster>,
) -> Envoy {
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
pub fn is_rejection(r: &Response) -> bool {
    r.header(STATUS_HEADER)
        .is_some_and(|v| !v.trim_end().ends_with("dry-run"))
}

/// Sends `send()` every 20 ms until `done` holds for a response, for at most [`RECORD_WAIT`];
/// returns that response and the ones before it.
pub async fn until<F, Fut>(
    mut send: F,
    done: impl Fn(&Response) -> bool,
) -> (Response, Vec<Response>)
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
                r.describe()
            );
        }
        before.push(r);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`until`] the breaker rejects; returns the rejection and the responses that passed before it.
pub async fn until_rejected<F, Fut>(send: F) -> (Response, Vec<Response>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Response>,
{
    until(send, is_rejection).await
}

/// Asserts a rejection of the breaker `name` in state `state` with status `status`.
pub fn assert_rejected(r: &Response, name: &str, state: &str, status: u16) {
    assert_eq!(r.status, status, "{}", r.describe());
    assert_eq!(
        r.header(STATUS_HEADER),
        Some(format!("{name}; state={state}").as_str()),
        "{}",
        r.describe()
    );
    assert!(
        r.text().contains(name),
        "the rejection body names the breaker: {}",
        r.describe()
    );
}

/// `retry-after` as whole seconds; panics when absent or not a number.
pub fn retry_after(r: &Response) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no retry-after: {}", r.describe()));
    v.trim()
        .parse()
        .unwrap_or_else(|e| panic!("retry-after {v:?} is not whole seconds ({e})"))
}

/// Sends `n` requests at once (each on its own connection) and returns the responses in order.
pub async fn concurrently(
    port: u16,
    n: usize,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<Response> {
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

/// Asserts the breaker's series (polling, see [`assert_series`]); a series Envoy does not render fails.
pub async fn assert_prom(envoy: &Envoy, expected: &[Series<'_>]) {
    assert_series(envoy, "circuit_breaker", Absent::Fails, expected).await;
}
