//! The trace-context filter in the real Envoy (`--concurrency 2`), with real HTTP/1.1, HTTP/2 and gRPC
//! traffic to a real upstream that echoes what Envoy forwarded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use e2e_harness::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TRACE_W3C: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_B3: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SINGLE: &str = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";

fn trace_filter(config: Option<&str>) -> WasmFilter {
    let f = WasmFilter::new("trace-context", dist("trace_context.wasm")).vm_id("trace-context");
    match config {
        Some(c) => f.configuration(c),
        None => f,
    }
}

/// One listener `ingress` with the filter, routes: `/direct` (local 503), `/slow` (500 ms timeout),
/// `/h2` (HTTP/2 upstream), `/` (HTTP/1.1 upstream).
async fn setup(config: Option<&str>) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(trace_filter(config))
                    .route(Route::direct("direct", "/direct", 503, Some("no")))
                    .route(
                        Route::to("slow", "/slow", "upstream").timeout(Duration::from_millis(500)),
                    )
                    .route(Route::to("h2", "/h2", "upstream_h2"))
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port()))
            .cluster(Cluster::new("upstream_h2", upstream.port()).http2(true)),
    )
    .await;
    (upstream, envoy)
}

/// The trace id in a forwarded `traceparent`.
fn w3c_trace(tp: &str) -> &str {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    tp.split('-').nth(1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_client_and_w3c_upstream_share_one_trace() {
    let (_upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    for use_h2 in [false, true] {
        let headers = [("b3", B3_SINGLE)];
        let r = if use_h2 {
            http2(port, "GET", "/", &headers, "").await
        } else {
            http1(port, "GET", "/", &headers, "").await
        };
        assert_eq!(r.status, 200);
        let tp = r
            .echo_header("traceparent")
            .expect("upstream got a traceparent");
        assert_eq!(tp, format!("00-{TRACE_B3}-e457b5a2e4d86bd1-01"));
        // The b3 header was already in step and is forwarded untouched.
        assert_eq!(r.echo_header("b3").as_deref(), Some(B3_SINGLE));
        assert_eq!(r.header("x-trace-id"), Some(TRACE_B3));
        assert_eq!(r.header("traceresponse"), Some(tp.as_str()));
    }
    assert_eq!(
        tagged(&envoy)
            .await
            .get("format.b3.trace_context_extracted")
            .copied(),
        Some(2),
        "{:?}",
        tagged(&envoy).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_client_and_b3_upstream_share_one_trace() {
    let (_upstream, envoy) = setup(Some(r#"{"inject": ["b3multi"]}"#)).await;
    let r = get(&envoy, "/h2", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.echo_header("x-b3-traceid").as_deref(), Some(TRACE_W3C));
    assert_eq!(
        r.echo_header("x-b3-spanid").as_deref(),
        Some("b7ad6b7169203331")
    );
    assert_eq!(r.echo_header("x-b3-sampled").as_deref(), Some("1"));
    // The received W3C header stays in step (keepReceivedFormats).
    assert_eq!(r.echo_header("traceparent").as_deref(), Some(TRACEPARENT));
    assert_eq!(r.header("x-trace-id"), Some(TRACE_W3C));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_formats_are_repaired_to_one_trace() {
    let (_upstream, envoy) = setup(None).await;
    let r = get(
        &envoy,
        "/",
        &[
            ("traceparent", TRACEPARENT),
            ("b3", B3_SINGLE),
            ("uber-trace-id", "abc:def:0:1"),
        ],
    )
    .await;
    assert_eq!(r.echo_header("traceparent").as_deref(), Some(TRACEPARENT));
    assert_eq!(
        r.echo_header("b3").as_deref(),
        Some(format!("{TRACE_W3C}-b7ad6b7169203331-1").as_str())
    );
    assert_eq!(
        r.echo_header("uber-trace-id").as_deref(),
        Some(format!("{TRACE_W3C}:b7ad6b7169203331:0:1").as_str())
    );
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("format.b3.trace_context_conflicts"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("format.jaeger.trace_context_conflicts"),
        Some(&1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_traceparent_starts_a_new_trace() {
    let (_upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    for bad in [
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
    ] {
        let r = http1(
            port,
            "GET",
            "/",
            &[("traceparent", bad), ("tracestate", "vendor=x")],
            "",
        )
        .await;
        let tp = r.echo_header("traceparent").unwrap();
        let trace = w3c_trace(&tp);
        assert_ne!(trace, TRACE_W3C, "{bad} must not be continued");
        assert!(
            tp.ends_with("-03"),
            "new traces are sampled and random: {tp}"
        );
        assert_eq!(
            r.echo_header("tracestate"),
            None,
            "tracestate of an invalid parent is dropped"
        );
        assert_eq!(r.header("x-trace-id"), Some(trace));
    }
    assert_eq!(
        tagged(&envoy)
            .await
            .get("format.tracecontext.trace_context_invalid")
            .copied(),
        Some(4)
    );
    assert_eq!(
        tagged(&envoy).await.get("trace_context_started").copied(),
        Some(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_do_not_sample_header_alone_is_honoured() {
    let (_upstream, envoy) = setup(None).await;
    let r = get(&envoy, "/", &[("b3", "0")]).await;
    let tp = r.echo_header("traceparent").unwrap();
    assert!(tp.ends_with("-02"), "not sampled, random: {tp}");
    let b3 = r.echo_header("b3").unwrap();
    assert_eq!(
        b3,
        format!("{}-{}-0", w3c_trace(&tp), tp.split('-').nth(2).unwrap())
    );
    assert_eq!(
        tagged(&envoy).await.get("format.b3.trace_context_invalid"),
        Some(&0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participating_hop_mints_a_span_and_keeps_tracestate_rules() {
    let config =
        r#"{"participate": true, "tracestateKey": "mesh", "inject": ["tracecontext", "b3multi"]}"#;
    let (_upstream, envoy) = setup(Some(config)).await;
    let r = get(
        &envoy,
        "/",
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", "vendor=a,mesh=old"),
        ],
    )
    .await;
    let tp = r.echo_header("traceparent").unwrap();
    let span = tp.split('-').nth(2).unwrap().to_string();
    assert_eq!(w3c_trace(&tp), TRACE_W3C);
    assert_ne!(span, "b7ad6b7169203331", "a new parent id");
    assert_eq!(
        r.echo_header("tracestate").unwrap(),
        format!("mesh={span},vendor=a")
    );
    assert_eq!(r.echo_header("x-b3-spanid").unwrap(), span);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_traceparent_version_is_continued_as_version_00() {
    let (_upstream, envoy) = setup(None).await;
    let future = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-holds";
    let r = get(&envoy, "/", &[("traceparent", future)]).await;
    assert_eq!(r.echo_header("traceparent").as_deref(), Some(TRACEPARENT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_traceparent_is_rejected() {
    let (_upstream, envoy) = setup(None).await;
    let r = get(
        &envoy,
        "/",
        &[("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)],
    )
    .await;
    let forwarded = r.echo_headers("traceparent");
    assert_eq!(
        forwarded.len(),
        1,
        "one traceparent reaches the upstream: {forwarded:?}"
    );
    assert_ne!(w3c_trace(&forwarded[0]), TRACE_W3C);
    assert_eq!(
        tagged(&envoy)
            .await
            .get("format.tracecontext.trace_context_invalid")
            .copied(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_header_values_do_not_break_the_filter() {
    let (_upstream, envoy) = setup(None).await;
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", envoy.port("ingress")))
        .await
        .unwrap();
    let request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntraceparent: 00-\xff\xfe-\x80\r\nb3: \xc3\x28\r\nbaggage: k=\xff\r\n\r\n".to_vec();
    conn.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("x-trace-id: "), "{text}");
    // The invalid headers were replaced, not passed on.
    assert!(text.contains("[\"traceparent\",\"00-"), "{text}");
    assert_eq!(
        tagged(&envoy)
            .await
            .get("format.b3.trace_context_invalid")
            .copied(),
        Some(1)
    );
    // The VM is still alive: the next request is served by the filter.
    let r = get(&envoy, "/", &[("traceparent", TRACEPARENT)]).await;
    assert_eq!(r.header("x-trace-id"), Some(TRACE_W3C));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baggage_limits_hold() {
    let (_upstream, envoy) = setup(Some(r#"{"baggage": {"denyKeys": ["secret"]}}"#)).await;
    let port = envoy.port("ingress");
    let many: Vec<String> = (0..70).map(|i| format!("key{i}=value{i}")).collect();
    let r = http1(port, "GET", "/", &[("baggage", &many.join(","))], "").await;
    let forwarded = r.echo_header("baggage").unwrap();
    let members: Vec<&str> = forwarded.split(',').collect();
    assert_eq!(members.len(), 64);
    assert_eq!(members[0], "key0=value0");
    assert_eq!(members[63], "key63=value63");

    let big = format!("a={},b=small", "x".repeat(8191));
    let r = http1(port, "GET", "/", &[("baggage", &big)], "").await;
    assert_eq!(
        r.echo_header("baggage").as_deref(),
        Some("b=small"),
        "never a partial member"
    );

    let r = http1(
        port,
        "GET",
        "/",
        &[
            ("baggage", "tenant=acme;ttl=5,secret=hunter2"),
            ("uberctx-user", "42"),
        ],
        "",
    )
    .await;
    assert_eq!(
        r.echo_header("baggage").as_deref(),
        Some("tenant=acme;ttl=5,user=42")
    );
    assert_eq!(
        tagged(&envoy)
            .await
            .get("trace_context_baggage_dropped")
            .copied(),
        Some(6 + 1 + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_is_on_local_replies() {
    let (upstream, envoy) = setup(None).await;
    let port = envoy.port("ingress");
    let r = http1(port, "GET", "/direct", &[("traceparent", TRACEPARENT)], "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-trace-id"), Some(TRACE_W3C));
    assert_eq!(r.header("traceresponse"), Some(TRACEPARENT));

    let r = http1(
        port,
        "GET",
        "/slow",
        &[("b3", B3_SINGLE), ("x-upstream-action", "hang")],
        "",
    )
    .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-trace-id"), Some(TRACE_B3));

    let r = http2(port, "GET", "/", &[("x-upstream-action", "reset")], "").await;
    assert_eq!(r.status, 503);
    let id = r
        .header("x-trace-id")
        .expect("Envoy's own 503 carries a trace id");
    // The same trace the upstream was sent before it reset the stream.
    let sent = upstream.last().unwrap();
    let forwarded = sent.header("traceparent").unwrap();
    assert_eq!(w3c_trace(forwarded), id);
    assert_eq!(upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_are_traced_from_grpc_trace_bin() {
    let (_upstream, envoy) = setup(None).await;
    // OpenCensus binary context: trace 0af7...319c, span b7ad...3331, sampled.
    let bin = "AAAK92UZFs1D3YRI6yEcgDGcAbeta3FpIDMxAgE=";
    let r = grpc_unary(
        envoy.port("ingress"),
        "/h2.Echo/Call",
        &[("grpc-trace-bin", bin)],
        b"hi",
    )
    .await;
    assert_eq!(r.grpc_status, Some(0));
    assert_eq!(r.header("x-trace-id"), Some(TRACE_W3C));
    let echo = r.message_json();
    let tp = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "traceparent")
        .map(|h| h[1].as_str().unwrap().to_string())
        .expect("traceparent forwarded to the gRPC upstream");
    assert_eq!(tp, TRACEPARENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_id_is_available_to_access_logs() {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("ingress")
                    .filter(trace_filter(None))
                    .hcm_yaml(
                        "access_log:\n- name: envoy.access_loggers.stderr\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog\n    log_format:\n      text_format_source:\n        inline_string: \"ACCESS trace_id=%FILTER_STATE(wasm.trace_id:PLAIN)%\\n\"",
                    )
                    .route(Route::to("default", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port())),
    )
    .await;
    get(&envoy, "/", &[("traceparent", TRACEPARENT)]).await;
    envoy
        .wait_log(
            &format!("ACCESS trace_id={TRACE_W3C}"),
            Duration::from_secs(10),
        )
        .await;
}

/// An outbound call (`GET /out`, HTTP/1.1) that carries only `x-request-id`: what correlation restores.
async fn outbound_with_request_id(outbound: u16, request_id: &str) -> Response {
    http1(outbound, "GET", "/out", &[("x-request-id", request_id)], "").await
}

/// Inbound and outbound listeners of one Envoy (`--concurrency 2`), like a sidecar, both with `config`.
async fn sidecar(config: &str) -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(
        EnvoyConfig::new()
            .listener(
                Listener::new("inbound")
                    .inbound()
                    .filter(trace_filter(Some(config)))
                    .route(Route::to("in", "/", "upstream")),
            )
            .listener(
                Listener::new("outbound")
                    .outbound()
                    .filter(trace_filter(Some(config)))
                    .route(Route::to("out", "/", "upstream")),
            )
            .cluster(Cluster::new("upstream", upstream.port()))
            .concurrency(2),
    )
    .await;
    (upstream, envoy)
}

/// Inbound and outbound listeners of one Envoy, like a sidecar: the outbound call that carries only the
/// inbound request's `x-request-id` gets the inbound trace back, whichever worker handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_correlation_restores_context_across_listeners() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let rounds = 20;
    for i in 0..rounds {
        let request_id = format!("corr-{i}-{}", std::process::id());
        let trace = format!("{:032x}", 0x1000 + i);
        let tp = format!("00-{trace}-00000000000000aa-01");
        // Each call opens its own connection, so the two workers share the work.
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[("traceparent", &tp), ("x-request-id", &request_id)],
            "",
        )
        .await;
        assert_eq!(
            r.echo_header("x-request-id").as_deref(),
            Some(request_id.as_str())
        );
        let r = http2(
            outbound,
            "GET",
            "/out",
            &[("x-request-id", &request_id)],
            "",
        )
        .await;
        let restored = r
            .echo_header("traceparent")
            .expect("outbound call got a traceparent");
        assert_eq!(w3c_trace(&restored), trace, "round {i}");
        assert_eq!(r.header("x-trace-id"), Some(trace.as_str()));
    }
    // An unknown request id is not restored: it starts a trace and is reported as broken propagation.
    let r = outbound_with_request_id(outbound, "never-seen").await;
    assert!(r.echo_header("traceparent").is_some());
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_restored"),
        Some(&rounds),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("trace_context_outbound_without_context"),
        Some(&(rounds + 1)),
        "{stats:?}"
    );
}

/// Item 8: W3C Trace Context Level 2 `tracestate` keys (`@` anywhere after the first character, up to 256
/// characters, no tenant/system limits) are inherited, and a duplicated key drops the later member, not
/// the header. A participating hop rebuilds `tracestate`, so every member is parsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_level2_tracestate_keys_and_duplicates_are_inherited() {
    let (_upstream, envoy) = setup(Some(r#"{"participate": true, "tracestateKey": "mesh"}"#)).await;
    let long_tenant = format!("{}@v", "t".repeat(242));
    let at_anywhere = format!("{}@{}", "a".repeat(200), "b@c".repeat(18));
    assert_eq!(at_anywhere.len(), 255);
    // (sent, what follows our own member once forwarded; "" for a list the Level 2 grammar still
    // rejects: upper case, a leading '@', a 257-character key).
    for (sent, inherited) in [
        ("foo@=1,bar=2".to_string(), "foo@=1,bar=2".to_string()),
        (format!("{long_tenant}=1"), format!("{long_tenant}=1")),
        (
            format!("{at_anywhere}=x,z=1"),
            format!("{at_anywhere}=x,z=1"),
        ),
        ("foo=1,foo=1".to_string(), "foo=1".to_string()),
        ("foo=1,bar=2,foo=3".to_string(), "foo=1,bar=2".to_string()),
        ("Foo=1,bar=2".to_string(), String::new()),
        ("@foo=1,bar=2".to_string(), String::new()),
        (format!("{}=1,bar=2", "k".repeat(257)), String::new()),
    ] {
        let r = get(
            &envoy,
            "/",
            &[("traceparent", TRACEPARENT), ("tracestate", &sent)],
        )
        .await;
        let tp = r.echo_header("traceparent").unwrap();
        let span = tp.split('-').nth(2).unwrap().to_string();
        assert_eq!(w3c_trace(&tp), TRACE_W3C);
        let expected = match inherited.as_str() {
            "" => format!("mesh={span}"),
            list => format!("mesh={span},{list}"),
        };
        assert_eq!(r.echo_header("tracestate"), Some(expected), "sent {sent:?}");
    }
}

/// Item 9: a context restored by `x-request-id` carries the inbound `tracestate` too, kept within 512
/// characters by the spec's truncation rules (whole members, those over 128 characters first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item9_correlation_restores_tracestate() {
    let (_upstream, envoy) = sidecar(
        r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}, "tracestateMaxLength": 2048}"#,
    )
    .await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let small = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let large = format!("big={}", "x".repeat(196));
    let many: Vec<String> = (0..20)
        .map(|i| format!("k{i:02}={}", "y".repeat(16)))
        .collect();
    // 200 + 20 * 20 + 20 commas = 620 characters: over 512, so the 200-character member goes first.
    let long = format!("{large},{}", many.join(","));
    assert_eq!(long.len(), 620);
    for (i, (sent, restored)) in [(small, small.to_string()), (long.as_str(), many.join(","))]
        .into_iter()
        .enumerate()
    {
        let request_id = format!("item9-{i}-{}", std::process::id());
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[
                ("traceparent", TRACEPARENT),
                ("tracestate", sent),
                ("x-request-id", &request_id),
            ],
            "",
        )
        .await;
        assert_eq!(r.echo_header("tracestate").as_deref(), Some(sent));
        let r = outbound_with_request_id(outbound, &request_id).await;
        assert_eq!(r.echo_header("traceparent").as_deref(), Some(TRACEPARENT));
        assert_eq!(r.echo_header("tracestate"), Some(restored), "round {i}");
    }
    assert_eq!(tagged(&envoy).await.get("trace_context_restored"), Some(&2));
}

/// Item 10: an inbound request that reuses a live request's `x-request-id` with another trace does not
/// take over its correlation entry (first writer wins until the TTL ends); a retry with the same trace
/// does, and the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_live_correlation_entry_cannot_be_hijacked() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 64, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let request_id = format!("item10-{}", std::process::id());
    let victim = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let retry = "00-0af7651916cd43dd8448eb211c80319c-00000000000000bb-01";
    let attacker = "00-11111111111111111111111111111111-2222222222222222-01";
    let inbound_call = |tp: &'static str| {
        let request_id = request_id.clone();
        async move {
            let r = http1(
                inbound,
                "GET",
                "/in",
                &[("traceparent", tp), ("x-request-id", &request_id)],
                "",
            )
            .await;
            assert_eq!(r.status, 200);
        }
    };
    let restored = || {
        let request_id = request_id.clone();
        async move {
            outbound_with_request_id(outbound, &request_id)
                .await
                .echo_header("traceparent")
        }
    };
    inbound_call(victim).await;
    inbound_call(attacker).await;
    assert_eq!(restored().await.as_deref(), Some(victim), "hijacked");
    // A retry of the same trace refreshes the entry (its new span id is restored).
    inbound_call(retry).await;
    assert_eq!(restored().await.as_deref(), Some(retry));
    inbound_call(attacker).await;
    assert_eq!(restored().await.as_deref(), Some(retry), "hijacked");
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_correlation_refused"),
        Some(&2),
        "{stats:?}"
    );
    assert_eq!(stats.get("trace_context_restored"), Some(&3), "{stats:?}");
}

/// Item 10, collisions: with one slot every request id shares it. Another id replaces a live entry (newest
/// wins, counted), and the evicted id is then not restored at all, never into the other request's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_another_request_id_in_a_live_slot_is_never_restored_into_its_trace() {
    let (_upstream, envoy) =
        sidecar(r#"{"correlation": {"enabled": true, "slots": 1, "ttl": "30s"}}"#).await;
    let (inbound, outbound) = (envoy.port("inbound"), envoy.port("outbound"));
    let first = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let second = "00-11111111111111111111111111111111-2222222222222222-01";
    for (tp, id) in [(first, "item10-a"), (second, "item10-b")] {
        let r = http1(
            inbound,
            "GET",
            "/in",
            &[("traceparent", tp), ("x-request-id", id)],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = outbound_with_request_id(outbound, "item10-a").await;
    let tp = r.echo_header("traceparent").unwrap();
    assert_ne!(w3c_trace(&tp), w3c_trace(first));
    assert_ne!(w3c_trace(&tp), w3c_trace(second));
    let r = outbound_with_request_id(outbound, "item10-b").await;
    assert_eq!(r.echo_header("traceparent").as_deref(), Some(second));
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("trace_context_correlation_evicted"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("trace_context_correlation_refused"),
        Some(&0),
        "{stats:?}"
    );
    assert_eq!(stats.get("trace_context_restored"), Some(&1), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_render_as_labelled_prometheus_series() {
    let (_upstream, envoy) = setup(None).await;
    get(&envoy, "/", &[("b3", B3_SINGLE)]).await;
    let prom = envoy.prometheus().await;
    assert!(
        prom.lines()
            .any(|l| l.starts_with("trace_context_extracted{format=\"b3\"} 1")),
        "{}",
        prom.lines()
            .filter(|l| l.contains("trace_context"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_rejected_naming_the_field() {
    // Only validated: no upstream is needed.
    let yaml = EnvoyConfig::simple(INGRESS, 1)
        .filter_all(trace_filter(Some(r#"{"samplingRatio": 2}"#)))
        .render();
    let err = validate_yaml(&yaml).expect_err("Envoy must refuse the configuration");
    assert!(
        err.contains("trace-context: invalid configuration: field `samplingRatio`: must be between 0.0 and 1.0"),
        "{err}"
    );
}

/// Stats with the `wasmcustom.` prefix removed and tags rendered Envoy's way (`format.b3.name`).
async fn tagged(envoy: &Envoy) -> std::collections::HashMap<String, u64> {
    envoy
        .stats()
        .await
        .into_iter()
        .filter(|(k, _)| k.contains("trace_context"))
        .map(|(k, v)| {
            let k = k
                .trim_start_matches("wasmcustom.")
                .replace("=.=", ".")
                .replace(";.;", ".");
            (k, v)
        })
        .collect()
}
