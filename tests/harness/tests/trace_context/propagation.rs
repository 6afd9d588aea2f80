//! One trace across formats: B3, W3C, Jaeger and `grpc-trace-bin` callers and upstreams, conflicts
//! repaired, the sampling decision kept, and a participating hop's own span.

use e2e_harness::*;

use crate::support::*;

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

/// Issue 16 item 2: OpenTelemetry's `ot-trace` propagator writes ids as hex without leading zeros. They
/// continue the trace (not counted invalid), and are written back zero-padded; an all-zero id is still
/// invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item2_ottrace_ids_without_zero_padding_continue_the_trace() {
    let (_upstream, envoy) = setup(None).await;
    for (trace, span, want_trace, want_span) in [
        (
            "a3ce929d0e0e4736",
            "f067aa0ba902b7",
            "0000000000000000a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
        (
            "3ce929d0e0e4736",
            "7",
            "000000000000000003ce929d0e0e4736",
            "0000000000000007",
        ),
        (
            "1a3ce929d0e0e4736",
            "f067aa0ba902b7",
            "0000000000000001a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ),
    ] {
        let r = get(
            &envoy,
            "/",
            &[
                ("ot-tracer-traceid", trace),
                ("ot-tracer-spanid", span),
                ("ot-tracer-sampled", "true"),
            ],
        )
        .await;
        assert_eq!(
            r.echo_header("traceparent"),
            Some(format!("00-{want_trace}-{want_span}-01")),
            "{trace} {span}"
        );
        // A 64-bit trace id is written in 16 digits, a 128-bit one in 32.
        let padded_trace = want_trace
            .strip_prefix("0000000000000000")
            .unwrap_or(want_trace);
        assert_eq!(
            r.echo_header("ot-tracer-traceid").as_deref(),
            Some(padded_trace)
        );
        assert_eq!(
            r.echo_header("ot-tracer-spanid").as_deref(),
            Some(want_span)
        );
    }
    // All-zero stays invalid, however short.
    let r = get(
        &envoy,
        "/",
        &[("ot-tracer-traceid", "0"), ("ot-tracer-spanid", "7")],
    )
    .await;
    let tp = r.echo_header("traceparent").unwrap();
    assert_ne!(w3c_trace(&tp), "00000000000000000000000000000000");
    let stats = tagged(&envoy).await;
    assert_eq!(
        stats.get("format.ottrace.trace_context_extracted"),
        Some(&3),
        "{stats:?}"
    );
    assert_eq!(
        stats.get("format.ottrace.trace_context_invalid"),
        Some(&1),
        "{stats:?}"
    );
}

/// Issue 16 item 3: a Datadog context that arrives as W3C only (ddtrace in `tracecontext` style, or an
/// OpenTelemetry hop forwarding `tracestate`) keeps its sampling priority, origin and propagated tags in
/// the Datadog headers written from it, by Datadog's own rules for the `dd` member; and Datadog headers
/// translated to W3C carry them in a `dd` member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item3_datadog_decisions_travel_through_tracestate_dd() {
    let (_upstream, envoy) = setup(Some(r#"{"inject": ["tracecontext", "datadog"]}"#)).await;
    let trace_low = u64::from_str_radix("e3ce929d0e0e4736", 16)
        .unwrap()
        .to_string();
    let span = u64::from_str_radix("f067aa0ba902b7e1", 16)
        .unwrap()
        .to_string();
    // (flags, dd member, priority, origin, tags)
    for (flags, dd, priority, origin, tags) in [
        (
            "01",
            "dd=s:2;o:synthetics;t.dm:-4",
            "2",
            Some("synthetics"),
            "_dd.p.dm=-4,_dd.p.tid=6a0b1c2d00000000",
        ),
        // User reject travels as -1 with an unsampled traceparent.
        (
            "00",
            "dd=s:-1;t.dm:-3",
            "-1",
            None,
            "_dd.p.dm=-3,_dd.p.tid=6a0b1c2d00000000",
        ),
        // The traceparent's flag wins over a `s` that contradicts it (an OpenTelemetry hop decided):
        // priority 1 and decision maker -0, as Datadog's tracers do; `~` in the origin is `=`.
        (
            "01",
            "dd=s:-1;o:a~b;t.dm:-3;t.usr.id:baz64~~",
            "1",
            Some("a=b"),
            "_dd.p.dm=-0,_dd.p.usr.id=baz64==,_dd.p.tid=6a0b1c2d00000000",
        ),
    ] {
        let tp = format!("00-6a0b1c2d00000000e3ce929d0e0e4736-f067aa0ba902b7e1-{flags}");
        let r = get(&envoy, "/", &[("traceparent", &tp), ("tracestate", dd)]).await;
        assert_eq!(r.echo_header("traceparent"), Some(tp.clone()));
        assert_eq!(r.echo_header("tracestate").as_deref(), Some(dd));
        assert_eq!(
            r.echo_header("x-datadog-trace-id").as_deref(),
            Some(trace_low.as_str())
        );
        assert_eq!(
            r.echo_header("x-datadog-parent-id").as_deref(),
            Some(span.as_str())
        );
        assert_eq!(
            r.echo_header("x-datadog-sampling-priority").as_deref(),
            Some(priority),
            "{dd}"
        );
        assert_eq!(r.echo_header("x-datadog-origin").as_deref(), origin, "{dd}");
        assert_eq!(
            r.echo_header("x-datadog-tags").as_deref(),
            Some(tags),
            "{dd}"
        );
    }
    // The other way: Datadog headers in, W3C out with the `dd` member (`p`: the Datadog parent).
    let r = get(
        &envoy,
        "/",
        &[
            ("x-datadog-trace-id", &trace_low),
            ("x-datadog-parent-id", &span),
            ("x-datadog-sampling-priority", "2"),
            ("x-datadog-origin", "synthetics"),
            ("x-datadog-tags", "_dd.p.dm=-4,_dd.p.tid=6a0b1c2d00000000"),
        ],
    )
    .await;
    assert_eq!(
        r.echo_header("traceparent").as_deref(),
        Some("00-6a0b1c2d00000000e3ce929d0e0e4736-f067aa0ba902b7e1-01")
    );
    assert_eq!(
        r.echo_header("tracestate").as_deref(),
        Some("dd=s:2;o:synthetics;p:f067aa0ba902b7e1;t.dm:-4")
    );
}
