//! Headers the filter refuses, repairs or trims: invalid, future and duplicated `traceparent`,
//! non-UTF-8 values, `tracestate` keys (issue 7 item 8) and baggage limits.

use e2e_harness::*;

use crate::support::*;

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
    let request = b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntraceparent: 00-\xff\xfe-\x80\r\nb3: \xc3\x28\r\nbaggage: k=\xff\r\n\r\n";
    let text = raw_http1(envoy.port("ingress"), request).await;
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
