//! Hostile requests through the real Envoy with all three filters chained as shipped (trace-context with
//! correlation and baggage, fallback with a stale cache, circuit-breaker keyed by a header): huge and
//! duplicated headers, non-UTF-8 values, thousands of baggage members, a gigantic `tracestate`,
//! malformed gRPC frames, requests cut off mid-body, HTTP/2 streams reset and connections dropped
//! mid-stream. Each is answered or forwarded sensibly, and afterwards every VM is the one that started
//! (no VM failed and was re-created), none logged a failure, and the filters still work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use e2e_harness::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn chain(upstream: &Upstream) -> EnvoyConfig {
    let trace = json!({"correlation": {"enabled": true}, "direction": "inbound"});
    let fallback = json!({"rules": [
        {"name": "stale", "match": {"pathPrefix": "/cached"}, "triggers": {"status": "500-599", "envoy": ["reset", "timeout"]},
         "response": {"kind": "stale"}},
        {"name": "rest", "triggers": {"envoy": ["connectionFailure", "reset", "timeout", "localReply"], "circuitBreaker": true},
         "response": {"kind": "problem"}}
    ]});
    let breaker = json!({"breakers": [
        {"name": "tenants", "keyBy": "header:x-tenant", "maxKeys": 50, "minimumCalls": 5}
    ]});
    EnvoyConfig::simple(INGRESS, upstream.port())
        .filter_all(WasmFilter::project("trace-context").config_json(&trace))
        .filter_all(WasmFilter::project("fallback").config_json(&fallback))
        .filter_all(WasmFilter::project("circuit-breaker").config_json(&breaker))
}

/// Log lines in which Envoy reports a filter failing: a trap, a failed callback, a failed VM.
fn failures(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains("panicked")
                || l.contains("Wasm VM failed")
                || (l.contains("wasm") && l.contains(" failed: "))
                || l.contains("Uncaught")
                || l.contains("unreachable")
        })
        .collect()
}

/// The VMs Envoy created so far: a VM that failed and was re-created (FAIL_RELOAD) or any new VM
/// shows up here.
async fn vms_created(envoy: &Envoy) -> u64 {
    envoy
        .stat("wasm.envoy.wasm.runtime.v8.created")
        .await
        .expect("Envoy reports the VMs it created")
}

/// A normal request through the chain: traced, counted, answered by the upstream.
async fn still_working(envoy: &Envoy) {
    let r = get(
        envoy,
        "/after",
        &[("traceparent", TRACEPARENT), ("x-tenant", "acme")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        r.header("x-trace-id"),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
}

fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:.200}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_answered_and_leave_every_vm_healthy() {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(chain(&upstream)).await;
    let port = envoy.port(INGRESS);
    still_working(&envoy).await;
    let created = vms_created(&envoy).await;

    // Huge values, just under Envoy's 60 KiB header limit together: forwarded, each filter bounding
    // what it keeps (tracestate to 512 characters, baggage to 8192 bytes).
    let huge_tracestate = (0..2000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let r = get(
        &envoy,
        "/huge",
        &[
            ("traceparent", TRACEPARENT),
            ("tracestate", &huge_tracestate),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let forwarded = r.echo_header("tracestate").unwrap_or_default();
    assert!(
        forwarded.len() <= 512,
        "tracestate cut to 512: {}",
        forwarded.len()
    );
    let many_members = (0..3000)
        .map(|i| format!("m{i}=1"))
        .collect::<Vec<_>>()
        .join(",");
    let r = get(&envoy, "/baggage", &[("baggage", &many_members)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let baggage = r.echo_header("baggage").unwrap_or_default();
    assert!(
        baggage.len() <= 8192 && baggage.split(',').count() <= 64,
        "{}",
        baggage.len()
    );
    let r = get(&envoy, "/tenant", &[("x-tenant", &"t".repeat(50_000))]).await;
    assert_eq!(r.status, 200, "{}", r.describe());

    // Over Envoy's header limit: Envoy answers 431 before any filter runs.
    let r = raw_http1(
        port,
        format!(
            "GET / HTTP/1.1\r\nhost: x\r\nbaggage: {}\r\nconnection: close\r\n\r\n",
            "b".repeat(70_000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&r), 431, "{r:.300}");

    // Duplicated headers: 15 of each trace and key header (Envoy refuses more than 100 headers).
    let mut request = b"GET /dup HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
    for i in 0..15 {
        for line in [
            format!("traceparent: 00-{i:032x}-b7ad6b7169203331-01"),
            format!("tracestate: k{i}=v"),
            format!("baggage: m{i}=1"),
            format!("b3: {i:032x}-b7ad6b7169203331-1"),
            format!("x-tenant: t{i}"),
            format!("x-request-id: id{i}"),
        ] {
            request.extend_from_slice(line.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
    }
    request.extend_from_slice(b"\r\n");
    let r = raw_http1(port, &request).await;
    assert_eq!(status_of(&r), 200, "{r:.300}");
    assert!(r.contains("x-trace-id: "), "still traced: {r:.500}");

    // Non-UTF-8 bytes in every header a filter reads.
    let mut request = b"GET /bytes HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
    for name in [
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "uber-trace-id",
        "x-tenant",
        "x-request-id",
        "accept",
    ] {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": \x80\xfe\xff\xc3\x28-\xe2\x82\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let r = raw_http1(port, &request).await;
    assert_eq!(status_of(&r), 200, "{r:.300}");

    // A body announced longer than sent, then the connection closed: nothing to answer, and the
    // filters must not wait for it.
    for _ in 0..5 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        conn.write_all(b"POST /cut HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\nx-tenant: cut\r\n\r\npartial")
            .await
            .unwrap();
        drop(conn);
    }

    // Malformed gRPC: a length prefix far beyond the body, and a body that is no frame at all. Envoy
    // forwards bytes; the upstream answers, the gRPC caller gets a status.
    for body in [
        Bytes::from_static(b"\x00\xff\xff\xff\xffshort"),
        Bytes::from_static(b"not a grpc frame"),
    ] {
        let r = try_http2(
            port,
            "POST",
            "/svc.Echo/Call",
            &[
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-tenant", "grpc"),
            ],
            body,
        )
        .await;
        let r = r.expect("a malformed gRPC call is answered");
        assert!(r.status == 200 || r.status >= 400, "{}", r.describe());
    }

    // HTTP/2 streams reset by the caller and connections dropped with streams in flight.
    for _ in 0..10 {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let driver = tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri(format!("http://localhost:{port}/slow"))
            .header("x-upstream-delay-ms", "300")
            .header("x-tenant", "reset")
            .header("traceparent", TRACEPARENT)
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        // Dropping the response future resets the stream; aborting the driver drops the connection.
        let _ = tokio::time::timeout(Duration::from_millis(20), sender.send_request(req)).await;
        driver.abort();
    }

    // Every Envoy worker settles; then the same VMs still serve, and none reported a failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_working(&envoy).await;
    assert_eq!(vms_created(&envoy).await, created, "no VM was re-created");
    let log = envoy.log();
    let failed = failures(&log);
    assert!(
        failed.is_empty(),
        "filters reported failures:\n{}",
        failed.join("\n")
    );
}
