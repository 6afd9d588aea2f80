//! Stale-if-error: the sidecar-wide cache serves from every worker, stores only what it may, keys by
//! host, caller and key headers, and lets large good responses stream through.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

/// Byte `i` of an `x-upstream-body-size` body.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_response_is_served_from_every_worker() {
    let (upstream, envoy) = setup(Some(json!({"rules": [
        {"name": "cache",
         "triggers": {"status": "500-599", "envoy": ["connectionFailure", "reset", "timeout"]},
         "response": {"kind": "stale", "ttl": "30s"}}
    ]})))
    .await;
    let cached = get(&envoy, "/item?id=1", &[("x-request-id", "first")]).await;
    assert_eq!(cached.status, 200, "{}", cached.describe());
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
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.text(), "nothing cached", "{}", r.describe());
        assert_mark(r, "static", "cache");
    };
    // POST answered 200: passes, not cached.
    let r = http1(envoy.port("ingress"), "POST", "/p", OK, "payload").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_untouched(&r);
    assert_eq!(r.json()["method"], json!("POST"));
    // A body larger than maxBodyBytes: streams through whole and untouched, not cached.
    let r = get(&envoy, "/big", &[("x-upstream-body-size", "4096")]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
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
                    .filter(WasmFilter::project("fallback").configuration(config))
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

/// Issue 16 item 5: RFC 9111 obsoletes the `Warning` header, so a stale answer no longer sends
/// `warning: 110`; its `age` and the `x-fallback` mark say that it is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item5_stale_answers_send_no_warning_header() {
    let (_upstream, envoy) = setup(Some(
        json!({"rules": [stale_rule("cache", "/", json!({}))]}),
    ))
    .await;
    let cached = get(&envoy, "/item", &[("x-upstream-set-header", "age: 7")]).await;
    assert_eq!(cached.status, 200, "{}", cached.describe());
    wait_stores(&envoy, 1).await;
    for r in [
        get(&envoy, "/item", FAIL_503).await,
        get_h2(&envoy, "/item", FAIL_503).await,
    ] {
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_eq!(r.body, cached.body, "{}", r.describe());
        assert_eq!(
            r.header("warning"),
            None,
            "no warning header: {}",
            r.describe()
        );
        let age: u64 = r.header("age").unwrap_or("").trim().parse().unwrap_or(0);
        assert!(
            (7..=30).contains(&age),
            "age from the stored Age on: {}",
            r.describe()
        );
        assert_eq!(mark(&r).kind, "stale", "{}", r.describe());
    }
}
