//! With trace-context in front: fallbacks carry its trace headers, read the trace id from filter state,
//! and alternate answers carry the caller's trace.

use std::time::Instant;

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;

fn trace_filter(config: &Value) -> WasmFilter {
    WasmFilter::project("trace-context").config_json(config)
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
        r.describe()
    );
    let j = assert_problem_json(&r, 503);
    assert_eq!(j["traceId"], json!(b3_trace), "{j}");
    assert_eq!(r.header("x-trace-id"), Some(b3_trace), "{}", r.describe());
    assert_eq!(traceresponse_id(&r), Some(b3_trace), "{}", r.describe());
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
    assert_eq!(started.len(), 32, "{}", r.describe());
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
            r.describe()
        );
    };
    assert_eq!(rejected.text(), "default", "{}", rejected.describe());
    assert_eq!(
        rejected.header("x-trace-id"),
        Some(TRACE_ID),
        "{}",
        rejected.describe()
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
    assert_eq!(r.header("x-b3-trace"), Some(TRACE_ID), "{}", r.describe());
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
        r.describe()
    );
    assert_eq!(traceresponse_id(&r), Some(TRACE_ID), "{}", r.describe());
    let asked = backup.last().unwrap();
    assert_eq!(
        asked
            .header("traceparent")
            .and_then(|tp| tp.split('-').nth(1)),
        Some(TRACE_ID),
        "the alternate call carries the trace: {asked:?}"
    );
}
