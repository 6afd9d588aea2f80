//! The stale cache follows RFC 9111 / RFC 5861 (issue 7 items 4-6): `Vary`, revalidation directives,
//! private headers.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_vary_keys_stale_entries_by_the_listed_request_headers() {
    let (_upstream, envoy) = setup(Some(roomy_cache(
        json!({"rules": [stale_rule("vary", "/", json!({}))]}),
    )))
    .await;
    let vary = |v: &'static str| ("x-upstream-set-header", v);
    // A French caller's response, varying on the language.
    let fr = get(
        &envoy,
        "/lang",
        &[("accept-language", "fr"), vary("vary: Accept-Language")],
    )
    .await;
    assert_eq!(fr.status, 200, "{}", fr.describe());
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
    assert_eq!(multi.status, 200, "{}", multi.describe());
    // `Vary: *`: never stored.
    let star = get(&envoy, "/star", &[vary("vary: *")]).await;
    assert_eq!(star.status, 200, "{}", star.describe());
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
        // 4096 slots of 1 KiB: the few entries here must not evict each other (with the default 128
        // slots, some of the test's random ports put two of its paths in one slot).
        setup(Some(json!({
            "rules": [stale_rule("rfc", "/", json!({"maxBodyBytes": 1024}))],
            "cache": {"maxBytes": 4_194_304, "maxBodyBytes": 1024}
        })))
        .await;
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
        assert_eq!(r.status, 200, "{path}: {}", r.describe());
    }
    // Servable: fresh whatever its revalidation directives, or stale with the operator's ttl.
    let t0 = Instant::now();
    let sie = get(
        &envoy,
        "/sie",
        &[cc("cache-control: max-age=0, stale-if-error=8")],
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
    // Checked first, while well within its window (margins for a loaded machine).
    let r = get(&envoy, "/sie", FAIL_503).await;
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "too slow to check stale-if-error=8 within its 8 s: {:?}",
        t0.elapsed()
    );
    assert_stale(&r, &sie, "rfc");

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
    // stale-if-error=8 bounds its staleness (well within the rule's 30 s ttl): stored after t0, so
    // past t0 + 8 s it is gone.
    tokio::time::sleep(
        (t0 + Duration::from_millis(8_300)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_nothing_cached(&get(&envoy, "/sie", FAIL_503).await, "past stale-if-error");
    assert_stale(&get(&envoy, "/plain", FAIL_503).await, &plain, "rfc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_private_headers_are_neither_stored_nor_served() {
    let (_upstream, envoy) = setup(Some(roomy_cache(json!({"rules": [
        stale_rule("keyed", "/keyed", json!({"keyHeaders": ["x-api-key"]})),
        stale_rule("custom", "/custom", json!({"privateHeaders": ["X-Session"]})),
        stale_rule("default", "/", json!({}))
    ]}))))
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
        assert_eq!(r.status, 200, "{}", r.describe());
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
