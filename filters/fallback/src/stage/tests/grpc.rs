//! gRPC callers: a trailers-only gRPC status from every kind, and failures seen only in trailers.

use super::*;
use filter_common::fake_host::Op;

const TRAILERS: MapType = MapType::HttpResponseTrailers;
const GRPC: (&str, &str) = ("content-type", "application/grpc");

const RULES: &str = r#"{"rules": [
    {"name": "grpc-problem", "match": {"pathPrefix": "/pkg."}, "triggers": {"grpcStatus": [8, 14], "status": "503"}},
    {"name": "grpc-static", "match": {"pathPrefix": "/static."}, "triggers": {"grpcStatus": [14]},
     "response": {"kind": "static", "status": 200, "body": "sorry"}},
    {"name": "stale", "match": {"pathPrefix": "/stale."}, "triggers": {"status": "503", "grpcStatus": [14]},
     "response": {"kind": "stale", "otherwise": {"kind": "static", "status": 503, "body": "none"}}},
    {"name": "alt", "match": {"pathPrefix": "/alt."}, "triggers": {"status": "503", "grpcStatus": [14]},
     "response": {"kind": "alternate", "cluster": "backup"}}]}"#;

fn grpc_call(host: &FakeHost, vm: &Vm, path: &str) -> Stream {
    request(host, vm, &[(":method", "POST"), (":path", path), GRPC])
}

#[test]
fn envoy_s_failure_reaches_a_grpc_caller_as_a_trailers_only_status() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    // Envoy answers a gRPC caller HTTP 200 with its gRPC status.
    connection_refused(&host, &[]);
    host.script_headers(RESP, &[(":status", "200"), ("grpc-status", "14")]);
    assert_eq!(s.on_response_headers(&host, &vm, true), Action::Pause);
    let r = the_reply(&host);
    assert_eq!((r.status, r.grpc_status), (200, 14));
    assert!(
        header(&r, "content-type").is_none(),
        "no HTTP body for gRPC"
    );
    assert_eq!(
        header(&r, "x-fallback"),
        Some("problem; rule=default; reason=connectionFailure")
    );
    own_reply_passes(&host, &vm, &mut s, &r);
}

#[test]
fn a_grpc_status_trigger_replaces_a_trailers_only_failure_keeping_its_code() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(RULES));
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    upstream(&host, "200", &[("grpc-status", "14"), GRPC]);
    assert_eq!(s.on_response_headers(&host, &vm, true), Action::Pause);
    let r = the_reply(&host);
    assert_eq!((r.status, r.grpc_status), (200, 14));
    assert_eq!(
        header(&r, "x-fallback"),
        Some("problem; rule=grpc-problem; reason=grpcStatus")
    );
    // The upstream's own code, not one mapped from an HTTP status.
    host.clear_calls();
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    upstream(&host, "200", &[("grpc-status", "8"), GRPC]);
    s.on_response_headers(&host, &vm, true);
    assert_eq!(the_reply(&host).grpc_status, 8);
    // OK and codes the rule does not name pass.
    for code in ["0", "5"] {
        host.clear_calls();
        let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
        upstream(&host, "200", &[("grpc-status", code), GRPC]);
        assert_eq!(s.on_response_headers(&host, &vm, true), Action::Continue);
        assert!(host.local_replies().is_empty(), "{code}");
    }
}

#[test]
fn an_http_failure_maps_to_the_grpc_status_grpc_gives_it() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(RULES));
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    upstream(&host, "503", &[]);
    assert_eq!(s.on_response_headers(&host, &vm, true), Action::Pause);
    let r = the_reply(&host);
    assert_eq!((r.status, r.grpc_status), (200, 14));
    assert_eq!(
        header(&r, "grpc-message"),
        None,
        "the message travels as the reply's body"
    );
    assert!(body(&r).contains("Service Unavailable"), "{}", body(&r));
}

#[test]
fn grpc_callers_of_stale_and_alternate_rules_get_the_otherwise_as_a_status() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(RULES));
    for (path, marker) in [
        ("/stale.Svc/Call", "static; rule=stale; reason=status"),
        ("/alt.Svc/Call", "problem; rule=alt; reason=status"),
    ] {
        host.clear_calls();
        let mut s = grpc_call(&host, &vm, path);
        upstream(&host, "503", &[]);
        assert_eq!(s.on_response_headers(&host, &vm, true), Action::Pause);
        let r = the_reply(&host);
        assert_eq!((r.status, r.grpc_status), (200, 14), "{path}");
        assert_eq!(header(&r, "x-fallback"), Some(marker));
        // Neither the cache nor the alternate cluster is asked: their answers are no gRPC messages.
        assert_eq!(host.count(Op::GetSharedData), 0, "{path}");
        assert_eq!(host.count(Op::DispatchHttpCall), 0, "{path}");
    }
    // Not even with a copy in the cache for a gRPC-Web GET of the same path.
    let mut s = request(&host, &vm, &[(":path", "/stale.Svc/Call")]);
    upstream(&host, "200", &[("content-type", "text/plain")]);
    s.on_response_headers(&host, &vm, false);
    host.script_buffer(Buffer::HttpResponseBody, b"cached");
    s.on_response_body(&host, &vm, 6, true);
    assert_eq!(host.metric("fallback_cache_stores"), Some(1));
    host.clear_calls();
    let mut s = request(&host, &vm, &[(":path", "/stale.Svc/Call"), GRPC]);
    upstream(&host, "503", &[]);
    s.on_response_headers(&host, &vm, true);
    let r = the_reply(&host);
    assert_eq!(r.grpc_status, 14);
    assert_eq!(
        header(&r, "x-fallback"),
        Some("static; rule=stale; reason=status")
    );
}

#[test]
fn a_failure_seen_only_in_the_trailers_is_marked_there_and_counted() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(RULES));
    for (path, marker) in [
        (
            "/pkg.Svc/Call",
            "problem; rule=grpc-problem; reason=grpcStatus",
        ),
        (
            "/static.Svc/Call",
            "static; rule=grpc-static; reason=grpcStatus",
        ),
    ] {
        let mut s = grpc_call(&host, &vm, path);
        upstream(&host, "200", &[GRPC]);
        assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
        host.script_headers(TRAILERS, &[("grpc-status", "14")]);
        assert_eq!(s.on_response_trailers(&host, &vm), Action::Continue);
        assert_eq!(
            host.header_values(TRAILERS, "x-fallback"),
            vec![marker.as_bytes().to_vec()]
        );
        assert!(host.local_replies().is_empty(), "the status stands");
    }
    assert_eq!(
        served(&host, "grpc-problem", "grpcStatus", "trailers"),
        Some(1)
    );
    assert_eq!(
        served(&host, "grpc-static", "grpcStatus", "trailers"),
        Some(1)
    );
}

#[test]
fn trailers_are_left_alone_when_nothing_fires_or_the_caller_is_not_grpc() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(RULES));
    // An OK in the trailers.
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    host.script_headers(TRAILERS, &[("grpc-status", "0")]);
    s.on_response_trailers(&host, &vm);
    // An HTTP caller's trailers.
    let mut s = request(&host, &vm, &[(":path", "/pkg.Svc/Call")]);
    host.script_headers(TRAILERS, &[("grpc-status", "14")]);
    s.on_response_trailers(&host, &vm);
    // A request no rule covers.
    let mut s = grpc_call(&host, &vm, "/other.Svc/Call");
    s.on_response_trailers(&host, &vm);
    assert_eq!(host.count(Op::SetHeader), 0, "{:?}", host.calls());
}

/// The upstream's own failure in the trailers is not one of Envoy's: the default rule (Envoy's failures
/// only) leaves it alone, as it leaves an upstream's 503.
#[test]
fn an_upstream_s_grpc_failure_in_the_trailers_is_not_envoy_s_own() {
    let host = FakeHost::new();
    let vm = vm(&host, None);
    let mut s = grpc_call(&host, &vm, "/pkg.Svc/Call");
    upstream(&host, "200", &[GRPC]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    host.script_headers(TRAILERS, &[("grpc-status", "14")]);
    assert_eq!(s.on_response_trailers(&host, &vm), Action::Continue);
    assert_eq!(host.count(Op::SetHeader), 0, "{:?}", host.calls());
    assert_eq!(served(&host, "default", "localReply", "trailers"), None);
}
