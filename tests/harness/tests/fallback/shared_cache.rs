//! The rules a shared cache owes its callers and origins (issue 16 item 6, RFC 9111 / RFC 5861): a
//! caller's own `Cache-Control` (no-store, no-cache, max-stale, stale-if-error), a later response that
//! may not be stored removing the older entry, and cache slots a caller cannot aim at.

use std::time::{Duration, Instant};

use e2e_harness::serde_json::{json, Value};
use e2e_harness::*;

use crate::support::*;

/// A stale rule for every path, with 4096 slots of 1 KiB (the few entries of a test never share one).
fn config() -> Value {
    json!({
        "rules": [stale_rule("shared", "/", json!({"maxBodyBytes": 1024}))],
        "cache": {"maxBytes": 4_194_304, "maxBodyBytes": 1024}
    })
}

/// The upstream adds this response header.
fn set(header: &'static str) -> (&'static str, &'static str) {
    ("x-upstream-set-header", header)
}

/// A failing request carrying the caller's `Cache-Control` lines.
async fn fail_with(envoy: &Envoy, path: &str, cache_control: &[&str]) -> Response {
    let mut headers: Vec<(&str, &str)> = cache_control
        .iter()
        .map(|v| ("cache-control", *v))
        .collect();
    headers.extend_from_slice(FAIL_503);
    get(envoy, path, &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item6_a_caller_s_no_store_or_no_cache_is_never_served_a_stored_answer() {
    let (_upstream, envoy) = setup(Some(config())).await;
    let page = get(&envoy, "/page", OK).await;
    assert_eq!(page.status, 200, "{}", page.describe());
    // The response to a request that says no-store is not stored (RFC 9111 §5.2.1.5)...
    let secret = get(&envoy, "/secret", &[("cache-control", "no-store")]).await;
    assert_eq!(secret.status, 200, "{}", secret.describe());
    // ...while the same request without it is.
    let control = get(&envoy, "/control", OK).await;
    wait_stores(&envoy, 2).await;

    for lines in [
        &["no-cache"][..],
        &["no-store"],
        &["No-Cache"],
        &["max-age=60, no-cache"],
        &["no-store, max-stale"],
        &["max-stale", "no-cache"],
        &["no-cache=\"x-a\""],
    ] {
        let r = fail_with(&envoy, "/page", lines).await;
        assert_nothing_cached(&r, &format!("/page to a caller sending {lines:?}"));
    }
    // A freshness preference is no refusal: serving on error disregards freshness (RFC 5861 §4), and a
    // browser's reload sends max-age=0.
    let r = fail_with(&envoy, "/page", &["max-age=0"]).await;
    assert_stale(&r, &page, "shared");
    assert_stale(&fail_with(&envoy, "/page", &[]).await, &page, "shared");
    assert_nothing_cached(
        &fail_with(&envoy, "/secret", &[]).await,
        "a no-store request's response",
    );
    assert_stale(
        &fail_with(&envoy, "/control", &[]).await,
        &control,
        "shared",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item6_a_caller_s_max_stale_and_stale_if_error_bound_the_staleness_it_accepts() {
    let (_upstream, envoy) = setup(Some(config())).await;
    // 15 s stale when stored: 20 s old, fresh for 5.
    let old = get(
        &envoy,
        "/old",
        &[set("cache-control: max-age=5"), set("age: 20")],
    )
    .await;
    let fresh = get(&envoy, "/fresh", &[set("cache-control: max-age=600")]).await;
    // The response's own stale-if-error: 20 s stale on arrival, servable up to 100 s stale.
    let own = get(
        &envoy,
        "/own",
        &[
            set("cache-control: max-age=0, stale-if-error=100"),
            set("age: 20"),
        ],
    )
    .await;
    // ...and one servable for 5 s more only.
    let short = get(
        &envoy,
        "/short",
        &[
            set("cache-control: max-age=0, stale-if-error=25"),
            set("age: 20"),
        ],
    )
    .await;
    wait_stores(&envoy, 4).await;
    let stored = Instant::now();

    let cases: &[(&str, &[&str], bool)] = &[
        ("/old", &[], true),
        ("/old", &["max-stale=10"], false),
        ("/old", &["max-stale=0"], false),
        ("/old", &["Max-Stale=60"], true),
        // No value: any staleness.
        ("/old", &["max-stale"], true),
        // A malformed value reads as the strictest.
        ("/old", &["max-stale=soon"], false),
        ("/old", &["stale-if-error=10"], false),
        ("/old", &["stale-if-error=60"], true),
        // On error the caller accepts what either directive accepts.
        ("/old", &["max-stale=10, stale-if-error=60"], true),
        ("/old", &["max-stale=60", "stale-if-error=10"], true),
        ("/old", &["max-stale=5", "stale-if-error=10"], false),
        // Not stale at all.
        ("/fresh", &["max-stale=0"], true),
        ("/fresh", &["stale-if-error=0"], true),
        // The caller's bound narrows the response's own stale-if-error...
        ("/own", &["max-stale=10"], false),
        ("/own", &["stale-if-error=10"], false),
        ("/own", &["stale-if-error=300"], true),
        ("/own", &[], true),
    ];
    let mut failures = Vec::new();
    let mut answers = Vec::new();
    for (path, lines, served) in cases {
        let r = fail_with(&envoy, path, lines).await;
        let was_served = r
            .header("x-fallback")
            .is_some_and(|m| m.starts_with("stale"));
        if was_served != *served {
            failures.push(format!(
                "{path} with {lines:?}: served {was_served}, expected {served}: {}",
                r.describe()
            ));
        }
        answers.push((path, lines, r));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (path, lines, r) in &answers {
        match **path {
            "/old" | "/fresh" | "/own"
                if r.header("x-fallback")
                    .is_some_and(|m| m.starts_with("stale")) =>
            {
                let cached = match **path {
                    "/old" => &old,
                    "/fresh" => &fresh,
                    _ => &own,
                };
                assert_stale(r, cached, "shared");
            }
            _ => assert_nothing_cached(r, &format!("{path} with {lines:?}")),
        }
    }
    assert!(
        stored.elapsed() < Duration::from_secs(40),
        "too slow for /old's margins: {:?}",
        stored.elapsed()
    );
    // ...and cannot widen it: past the response's own window, a caller's larger stale-if-error or an
    // unbounded max-stale does not bring it back.
    assert_stale(&fail_with(&envoy, "/short", &[]).await, &short, "shared");
    tokio::time::sleep((stored + Duration::from_secs(6)).saturating_duration_since(Instant::now()))
        .await;
    for lines in [&["stale-if-error=300"][..], &["max-stale"]] {
        let r = fail_with(&envoy, "/short", lines).await;
        assert_nothing_cached(&r, &format!("/short past its own window with {lines:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item6_a_later_response_that_may_not_be_stored_removes_the_stored_entry() {
    let (_upstream, envoy) = setup(Some(config())).await;
    let paths = [
        "/private",
        "/no-store",
        "/no-cache",
        "/credentials",
        "/encoded",
    ];
    let mut cached = Vec::new();
    for p in paths {
        cached.push(get(&envoy, p, OK).await);
    }
    wait_stores(&envoy, 5).await;
    let bytes = wait_prom(&envoy, "fallback_cache_bytes", &[], |v| v > 0).await;

    // Later good responses for the same keys.
    for (path, headers) in [
        ("/private", vec![set("cache-control: private, max-age=60")]),
        ("/no-store", vec![set("cache-control: no-store")]),
        (
            "/no-cache",
            vec![
                set("cache-control: max-age=60"),
                set("cache-control: no-cache"),
            ],
        ),
        // A response to a caller with credentials is that caller's own: its `private` says nothing of
        // the shared entry.
        (
            "/credentials",
            vec![
                ("authorization", "Bearer alice"),
                set("cache-control: private"),
            ],
        ),
        // Not stored for a reason of this cache's own (an encoding is not part of the key): the older
        // entry still holds.
        ("/encoded", vec![set("content-encoding: gzip")]),
    ] {
        let r = get(&envoy, path, &headers).await;
        assert_eq!(r.status, 200, "{}", r.describe());
        assert_untouched(&r);
    }
    for path in ["/private", "/no-store", "/no-cache"] {
        let r = get(&envoy, path, FAIL_503).await;
        assert_nothing_cached(
            &r,
            &format!("{path} after a response that may not be stored"),
        );
    }
    assert_stale(
        &get(&envoy, "/credentials", FAIL_503).await,
        &cached[3],
        "shared",
    );
    assert_stale(
        &get(&envoy, "/encoded", FAIL_503).await,
        &cached[4],
        "shared",
    );
    // The removed entries' bytes are no longer counted.
    wait_prom(&envoy, "fallback_cache_bytes", &[], |v| v < bytes).await;
    // A later storable response is stored again.
    let again = get(&envoy, "/private", OK).await;
    wait_stores(&envoy, 6).await;
    assert_stale(&get(&envoy, "/private", FAIL_503).await, &again, "shared");
}

/// The slot an unkeyed mapping gives a key: what a caller can compute offline from the source (the
/// cache key's high 64 bits modulo the slot count).
fn unkeyed_slot(authority: &str, path: &str, slots: u64) -> u64 {
    let key = fallback::cache::key(authority.as_bytes(), path.as_bytes(), &[]);
    ((key >> 64) as u64) % slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_item6_cache_slots_are_chosen_by_a_keyed_hash() {
    const SLOTS: u64 = 65_536;
    let (_upstream, envoy) = setup(Some(json!({
        "rules": [stale_rule("shared", "/", json!({"maxBodyBytes": 1024}))],
        "cache": {"maxBytes": SLOTS * 1024, "maxBodyBytes": 1024},
        "maxSharedMemory": "256Mi"
    })))
    .await;
    let host = "shop.example";
    let victim_slot = unkeyed_slot(host, "/victim", SLOTS);
    // An attacker's path for the victim's slot, found offline (about 65 536 tries).
    let attack = (0u64..10_000_000)
        .map(|i| format!("/attack/{i}"))
        .find(|p| unkeyed_slot(host, p, SLOTS) == victim_slot)
        .expect("a colliding path");
    let victim = get(&envoy, "/victim", &[("host", host)]).await;
    assert_eq!(victim.status, 200, "{}", victim.describe());
    wait_stores(&envoy, 1).await;
    let r = get(&envoy, &attack, &[("host", host)]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    wait_stores(&envoy, 2).await;
    // With a per-sidecar secret seed the attacker's path lands in the victim's slot with probability
    // 1/65 536 only.
    let r = get(&envoy, "/victim", &[("host", host), FAIL_503[0]]).await;
    assert_stale(&r, &victim, "shared");
    assert_prom(&envoy, &[("fallback_cache_evictions", &[], 0)]).await;
}
