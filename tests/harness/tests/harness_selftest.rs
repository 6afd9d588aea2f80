//! Proves the harness itself against the real Envoy, with no Wasm filter (router only).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use e2e_harness::*;

/// Listener `ingress`: `/h2*` goes to the upstream over HTTP/2, `/slow*` has a 500 ms timeout,
/// `/direct` answers locally, `/added` adds a request header, the rest goes over HTTP/1.1.
fn config(upstream_port: u16) -> EnvoyConfig {
    EnvoyConfig::new()
        .listener(
            Listener::new("ingress")
                .inbound()
                .route(Route::direct("direct", "/direct", 418, Some("teapot")))
                .route(Route::to("added", "/added", "upstream").extra_yaml(
                    "request_headers_to_add:\n- header: {key: x-added, value: \"yes\"}",
                ))
                .route(Route::to("slow", "/slow", "upstream").timeout(Duration::from_millis(500)))
                .route(Route::to("h2", "/h2", "upstream_h2"))
                .route(Route::to("default", "/", "upstream")),
        )
        .cluster(Cluster::new("upstream", upstream_port))
        .cluster(Cluster::new("upstream_h2", upstream_port).http2(true))
}

async fn setup() -> (Upstream, Envoy) {
    let upstream = Upstream::start().await;
    let envoy = Envoy::start(config(upstream.port())).await;
    (upstream, envoy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_headers_over_h1_and_h2() {
    let (upstream, envoy) = setup().await;
    let port = envoy.port("ingress");
    let headers = [("x-test", "a"), ("x-dup", "1"), ("x-dup", "2")];

    let r1 = http1(port, "GET", "/echo?q=1", &headers, "").await;
    assert_eq!(r1.status, 200, "{}", r1.text());
    assert_eq!(r1.version, "HTTP/1.1");
    assert_eq!(r1.header("content-type"), Some("application/json"));
    assert_eq!(r1.echo_header("x-test").as_deref(), Some("a"));
    assert_eq!(r1.echo_headers("x-dup"), ["1", "2"]);
    assert!(
        r1.echo_header("x-request-id").is_some(),
        "Envoy adds x-request-id"
    );
    let echo = r1.json();
    assert_eq!(echo["path"], "/echo?q=1");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["version"], "HTTP/1.1");

    let r2 = http2(port, "POST", "/echo", &headers, "hello").await;
    assert_eq!(r2.status, 200, "{}", r2.text());
    assert_eq!(r2.version, "HTTP/2.0");
    assert_eq!(r2.echo_headers("x-dup"), ["1", "2"]);
    assert_eq!(r2.json()["body_size"], 5);
    assert_eq!(r2.json()["method"], "POST");

    // Upstream side over HTTP/2 too.
    let r3 = http1(port, "GET", "/h2/x", &headers, "").await;
    assert_eq!(r3.json()["version"], "HTTP/2.0");
    assert_eq!(r3.echo_header("x-test").as_deref(), Some("a"));

    assert_eq!(upstream.count(), 3);
    assert_eq!(upstream.count_path("/echo"), 2);
    let first = &upstream.requests()[0];
    assert_eq!(first.path, "/echo?q=1");
    assert_eq!(first.header_all("x-dup"), ["1", "2"]);
    upstream.clear();
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_direct_response_and_route_yaml() {
    let (upstream, envoy) = setup().await;
    let port = envoy.port("ingress");

    let r = http1(port, "GET", "/", &[("x-upstream-status", "503")], "").await;
    assert_eq!(r.status, 503);
    assert_eq!(upstream.count(), 1, "no retry policy, so no retry");

    let r = http2(
        port,
        "GET",
        "/",
        &[("x-upstream-set-header", "x-from-upstream: hi")],
        "",
    )
    .await;
    assert_eq!(r.header("x-from-upstream"), Some("hi"));

    let r = http1(port, "GET", "/direct", &[], "").await;
    assert_eq!((r.status, r.text().as_str()), (418, "teapot"));

    let r = http1(port, "GET", "/added", &[], "").await;
    assert_eq!(r.echo_header("x-added").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_cuts_a_hanging_upstream() {
    let (upstream, envoy) = setup().await;
    let started = Instant::now();
    let r = get(&envoy, "/slow", &[("x-upstream-action", "hang")]).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(upstream.count(), 1, "recorded on arrival");
    envoy
        .wait_stat(
            "cluster.upstream.upstream_rq_timeout",
            |v| v == 1,
            Duration::from_secs(5),
        )
        .await;

    // Same with a delay longer than the timeout.
    let r = get_h2(&envoy, "/slow", &[("x-upstream-delay-ms", "2000")]).await;
    assert_eq!(r.status, 504);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_gives_503() {
    let (upstream, envoy) = setup().await;
    let port = envoy.port("ingress");
    for path in ["/", "/h2/"] {
        let r = http1(port, "GET", path, &[("x-upstream-action", "reset")], "").await;
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(r.text().contains("reset"), "{path}: {}", r.text());
    }
    assert_eq!(upstream.count(), 2);

    // `close` aborts after the headers: the client sees a 200 whose body never completes.
    let err = try_http1(port, "GET", "/", &[("x-upstream-action", "close")], "").await;
    assert!(err.is_err(), "{err:?}");
    let err = try_http2(port, "GET", "/h2/", &[("x-upstream-action", "close")], "").await;
    if envoy_version() < (1, 37, 0) {
        // Envoy 1.36 ends an HTTP/2 downstream stream cleanly when the upstream aborts mid-body: the
        // caller sees a complete 200 with a truncated body. 1.37 and later reset the stream.
        match &err {
            Err(_) => {}
            Ok(r) => assert_eq!(
                (r.status, r.body.as_ref()),
                (200, &b"partial"[..]),
                "{err:?}"
            ),
        }
    } else {
        assert!(err.is_err(), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_in_trailers_and_headers() {
    let (_upstream, envoy) = setup().await;
    let port = envoy.port("ingress");

    let ok = grpc_unary(port, "/h2/pkg.Svc/Method", &[], b"ping").await;
    assert_eq!(ok.http_status, 200);
    assert_eq!(ok.grpc_status, Some(0));
    assert_eq!(ok.header("content-type"), Some("application/grpc"));
    assert_eq!(ok.message_json()["path"], "/h2/pkg.Svc/Method");
    assert_eq!(ok.message_json()["body_size"], 9, "5-byte prefix + 4");

    let r = grpc_unary(
        port,
        "/h2/pkg.Svc/Method",
        &[("x-upstream-grpc-status", "14")],
        b"",
    )
    .await;
    assert_eq!(r.http_status, 200);
    assert_eq!(r.grpc_status, Some(14));
    assert_eq!(r.trailer("grpc-status"), Some("14"), "{r:?}");
    assert_eq!(r.messages.len(), 1);

    let r = grpc_unary(
        port,
        "/h2/pkg.Svc/Method",
        &[
            ("x-upstream-grpc-status", "14"),
            ("x-upstream-grpc-in", "headers"),
        ],
        b"",
    )
    .await;
    assert_eq!(r.grpc_status, Some(14));
    assert_eq!(r.header("grpc-status"), Some("14"), "trailers-only: {r:?}");
    assert!(r.trailers.is_empty() && r.messages.is_empty(), "{r:?}");
    assert_eq!(r.grpc_message.as_deref(), Some("upstream grpc status 14"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_bodies_stream_through() {
    let (_upstream, envoy) = setup().await;
    let port = envoy.port("ingress");
    const MIB: usize = 1 << 20;
    let expected: Vec<u8> = (0..MIB).map(|i| b'a' + (i % 26) as u8).collect();
    for path in ["/", "/h2/"] {
        let r = http1(
            port,
            "GET",
            path,
            &[("x-upstream-body-size", "1048576")],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.body[..] == expected[..], "{path}: {} bytes", r.body.len());
        let r = http2(
            port,
            "GET",
            path,
            &[("x-upstream-body-size", "1048576")],
            "",
        )
        .await;
        assert_eq!(r.body.len(), MIB);
        let up = http2(port, "POST", path, &[], vec![7u8; MIB]).await;
        assert_eq!(up.json()["body_size"], MIB);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests() {
    let (_upstream, envoy) = setup().await;
    let port = envoy.port("ingress");
    for _ in 0..3 {
        http1(port, "GET", "/", &[], "").await;
    }
    let n = envoy
        .wait_stat(
            "http.ingress.downstream_rq_completed",
            |v| v >= 3,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(n, 3);
    assert_eq!(
        envoy.stat("cluster.upstream.upstream_rq_200").await,
        Some(3)
    );
    assert_eq!(envoy.stat("no.such.stat").await, None);
    let prom = envoy.prometheus().await;
    assert!(
        prom.contains(
            r#"envoy_http_downstream_rq_completed{envoy_http_conn_manager_prefix="ingress"} 3"#
        ),
        "{prom}"
    );
    // The log file is flushed every 50 ms, so a line may land after the test gets here.
    envoy
        .wait_log("starting main dispatch loop", Duration::from_secs(5))
        .await;
    assert!(envoy.config_yaml().contains("stats_tags"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_envoys_run_in_parallel() {
    let upstream = Upstream::start().await;
    let (a, b) = tokio::join!(
        Envoy::start(config(upstream.port())),
        Envoy::start(EnvoyConfig::simple("other", upstream.port()).concurrency(1)),
    );
    assert_ne!(a.admin_port(), b.admin_port());
    assert_ne!(a.port("ingress"), b.port("other"));
    let (ra, rb) = tokio::join!(
        http1(a.port("ingress"), "GET", "/a", &[], ""),
        http2(b.port("other"), "GET", "/b", &[], ""),
    );
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(upstream.count_path("/a") + upstream.count_path("/b"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_generated_and_rejects_broken() {
    let yaml = config(8081).render();
    validate_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let broken = yaml.replace("type: STATIC", "type: NOT_A_TYPE");
    assert!(validate_yaml(&broken).is_err());
    let dangling = config(8081)
        .render()
        .replace("cluster: \"upstream_h2\"", "cluster: \"nope\"");
    assert!(
        validate_yaml(&dangling).is_err(),
        "route to an unknown cluster"
    );
}

/// Raw filter and HCM YAML go in as written; an Istio-style tag in a stat name becomes a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_yaml_and_stat_tags() {
    let upstream = Upstream::start().await;
    let mutation = r#"
        name: envoy.filters.http.header_mutation
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
          mutations:
            request_mutations:
            - append:
                header: {key: x-raw-filter, value: "1"}
    "#;
    let cfg = EnvoyConfig::new()
        .listener(
            Listener::new("tagged")
                .stat_prefix("kind=.=demo;.;tagged")
                .filter(HttpFilter::raw(mutation))
                .hcm_yaml("server_name: harness")
                .route(Route::to("r", "/", "upstream")),
        )
        .cluster(Cluster::new("upstream", upstream.port()));
    let envoy = Envoy::start(cfg).await;
    let r = http1(envoy.port("tagged"), "GET", "/", &[], "").await;
    assert_eq!(r.header("server"), Some("harness"));
    assert_eq!(r.echo_header("x-raw-filter").as_deref(), Some("1"));
    // `/stats` keeps the full name; `/stats/prometheus` turns the tag into a label.
    assert!(envoy
        .stat("http.kind=.=demo;.;tagged.downstream_rq_total")
        .await
        .is_some());
    let prom = envoy.prometheus().await;
    assert!(
        prom.contains(r#"envoy_http_tagged_downstream_rq_total{kind="demo""#),
        "{prom}"
    );
}

#[test]
fn stats_tags_follow_istio_convention() {
    assert_eq!(STAT_TAGS.len(), 9);
    let yaml = stats_tags_yaml();
    for tag in STAT_TAGS {
        assert!(yaml.contains(&format!("tag_name: \"{tag}\"")), "{yaml}");
    }
    assert!(
        yaml.contains(r#"regex: "(outcome=\\.=(.*?);\\.;)""#),
        "{yaml}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_records_before_hanging() {
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        try_http1(port, "GET", "/hang", &[("x-upstream-action", "hang")], ""),
    )
    .await;
    assert!(hung.is_err(), "hang must not answer");
    assert_eq!(upstream.count_path("/hang"), 1);
    let direct = http2(port, "GET", "/x", &[("x-upstream-status", "201")], "").await;
    assert_eq!(direct.status, 201);
    assert_eq!(direct.json()["version"], "HTTP/2.0");
    assert_eq!(direct.json()["authority"], format!("localhost:{port}"));
}
