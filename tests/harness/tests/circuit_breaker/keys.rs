//! Keys within one breaker (by header, by route): each keeps its own state, never shares a slot, and
//! those beyond `maxKeys` pass unprotected (issue 7 item 2).

use std::time::{Duration, Instant};

use e2e_harness::serde_json::json;
use e2e_harness::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_keep_their_own_state() {
    let (upstream, envoy) = setup(one(json!({
        "name": "tenants",
        "keyBy": "header:x-tenant",
        "minimumCalls": 4, "consecutiveFailures": 0,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let a_fail = [("x-tenant", "a"), ("x-upstream-status", "500")];
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/a", &a_fail).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/a", &a_fail)).await;
    assert_rejected(&r, "tenants", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/b", &[("x-tenant", "b")]).await;
        assert_eq!(r.status, 200, "tenant b, call {i}: {}", r.describe());
    }
    assert_eq!(upstream.count_path("/b"), 6);
    let reached_a = upstream.count_path("/a");
    assert_rejected(
        &get(&envoy, "/a", &[("x-tenant", "a")]).await,
        "tenants",
        "open",
        503,
    );
    assert_eq!(upstream.count_path("/a"), reached_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_keys_keep_their_own_state() {
    let upstream = Upstream::start().await;
    let envoy = start_routed(
        Some(&one(json!({
            "name": "per-route",
            "keyBy": "route",
            "minimumCalls": 4, "consecutiveFailures": 0,
            "openDuration": "5s",
            "openJitter": 0
        }))),
        vec![
            Route::to("route-a", "/a", "upstream"),
            Route::to("route-b", "/b", "upstream"),
        ],
        vec![Cluster::new("upstream", upstream.port())],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(get(&envoy, "/a", FAIL).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/a", FAIL)).await;
    assert_rejected(&r, "per-route", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/b", OK).await;
        assert_eq!(r.status, 200, "route-b, call {i}: {}", r.describe());
    }
    assert_eq!(upstream.count_path("/b"), 6);
    let reached_a = upstream.count_path("/a");
    assert_rejected(&get(&envoy, "/a", OK).await, "per-route", "open", 503);
    assert_eq!(upstream.count_path("/a"), reached_a);
}

/// Issue 7 item 2: `evil-160` and `acme` hashed to the same slot (87 of 100) in earlier versions, so
/// one tenant's failures opened the other's breaker. Each key now owns its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_keys_never_share_state() {
    let (upstream, envoy) = setup(one(json!({
        "name": "tenants",
        "keyBy": "header:x-tenant",
        "maxKeys": 100,
        "minimumCalls": 5, "consecutiveFailures": 0,
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    let evil_fail = [("x-tenant", "evil-160"), ("x-upstream-status", "500")];
    for _ in 0..5 {
        assert_eq!(get(&envoy, "/evil", &evil_fail).await.status, 500);
    }
    let (r, _) = until_rejected(|| get(&envoy, "/evil", &evil_fail)).await;
    assert_rejected(&r, "tenants", "open", 503);
    for i in 0..6 {
        let r = get(&envoy, "/acme", &[("x-tenant", "acme")]).await;
        assert_eq!(r.status, 200, "acme, call {i}: {}", r.describe());
        assert_eq!(r.header(STATUS_HEADER), None, "{}", r.describe());
    }
    assert_eq!(upstream.count_path("/acme"), 6);
    assert_rejected(
        &get(&envoy, "/evil", &[("x-tenant", "evil-160")]).await,
        "tenants",
        "open",
        503,
    );
}

/// Issue 7 item 2: with every slot owned, a new key passes unprotected (it never shares another key's
/// state) and is counted in `circuit_breaker_keys_overflow`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_keys_beyond_max_keys_pass_unprotected_and_are_counted() {
    let (upstream, envoy) = setup(one(json!({
        "name": "few",
        "keyBy": "header:x-tenant",
        "maxKeys": 2,
        "minimumCalls": 3, "consecutiveFailures": 0,
        "window": {"duration": "1h"},
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    for t in ["a", "b"] {
        assert_eq!(get(&envoy, "/", &[("x-tenant", t)]).await.status, 200);
    }
    let c_fail = [("x-tenant", "c"), ("x-upstream-status", "500")];
    for i in 0..6 {
        let r = get(&envoy, "/c", &c_fail).await;
        assert_eq!(r.status, 500, "c, call {i}, unprotected: {}", r.describe());
    }
    tokio::time::sleep(SETTLE).await;
    let r = get(&envoy, "/c", &c_fail).await;
    assert_eq!(
        r.status,
        500,
        "c never opens anyone's breaker: {}",
        r.describe()
    );
    for t in ["a", "b"] {
        let r = get(&envoy, "/", &[("x-tenant", t)]).await;
        assert_eq!(r.status, 200, "tenant {t}: {}", r.describe());
    }
    assert_eq!(upstream.count_path("/c"), 7);
    assert_prom(
        &envoy,
        &[
            ("circuit_breaker_keys_overflow", &[("breaker", "few")], 7),
            (
                "circuit_breaker_transitions",
                &[("breaker", "few"), ("state", "open")],
                0,
            ),
        ],
    )
    .await;
}

/// Issue 7 item 2: a key's slot is freed once its breaker is closed and it had no call for a full
/// window; a new key then owns it, with a fresh window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_idle_key_slot_is_reused_by_a_new_key() {
    let (_upstream, envoy) = setup(one(json!({
        "name": "reuse",
        "keyBy": "header:x-tenant",
        "maxKeys": 1,
        "minimumCalls": 3, "consecutiveFailures": 0,
        "window": {"duration": "1s", "buckets": 1},
        "openDuration": "5s",
        "openJitter": 0
    })))
    .await;
    assert_eq!(get(&envoy, "/", &[("x-tenant", "a")]).await.status, 200);
    // b overflows while a's slot is in use, then owns it once a has been idle for a window: only then
    // can b's failures open a breaker (b's own).
    let b_fail = [("x-tenant", "b"), ("x-upstream-status", "500")];
    let deadline = Instant::now() + Duration::from_secs(6);
    let rejected = loop {
        let r = get(&envoy, "/", &b_fail).await;
        if is_rejection(&r) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "b never got a slot: {}",
            r.describe()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_rejected(&rejected, "reuse", "open", 503);
    let overflowed = prom_sum(
        &envoy.prometheus().await,
        "circuit_breaker_keys_overflow",
        &[("breaker", "reuse")],
    )
    .unwrap_or(0);
    assert!(overflowed >= 1, "b overflowed while a held the slot");
    // a is now the key without a slot: unprotected, but not in b's open state.
    let r = get(&envoy, "/", &[("x-tenant", "a")]).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_prom(
        &envoy,
        &[(
            "circuit_breaker_keys_overflow",
            &[("breaker", "reuse")],
            overflowed + 1,
        )],
    )
    .await;
}
