//! The stale cache: which good responses are copied in as they stream by, and which failures are
//! answered from it (RFC 9111 / RFC 5861, and the caller's own `Cache-Control`).

use super::*;
use crate::cache::Entry;
use filter_common::fake_host::Op;
use std::time::Duration;

/// 1024 slots of 1 KiB: the few keys of a test never share one.
const STALE: &str = r#"{"rules": [{"name": "s", "match": {"pathPrefix": "/"}, "triggers": {"status": "500-599"},
    "response": {"kind": "stale", "ttl": "30s", "maxBodyBytes": 1024, "keyHeaders": ["x-tenant"],
                 "otherwise": {"kind": "static", "status": 200, "body": "nothing cached"}}}],
    "cache": {"maxBytes": 1048576, "maxBodyBytes": 1024}}"#;

const STALE_MARK: &str = "stale; rule=s; reason=status";
const NOTHING_MARK: &str = "static; rule=s; reason=status";

/// A good response (`headers` besides `:status` 200) to a request with `req` streams by in two chunks.
fn good(host: &FakeHost, vm: &Vm, req: &[(&str, &str)], headers: &[(&str, &str)], body: &[u8]) {
    host.clear_calls();
    let mut s = request(host, vm, req);
    upstream(host, "200", headers);
    assert_eq!(s.on_response_headers(host, vm, false), Action::Continue);
    let (first, rest) = body.split_at(body.len() / 2);
    host.script_buffer(Buffer::HttpResponseBody, first);
    assert_eq!(
        s.on_response_body(host, vm, first.len(), false),
        Action::Continue
    );
    host.script_buffer(Buffer::HttpResponseBody, rest);
    assert_eq!(
        s.on_response_body(host, vm, rest.len(), true),
        Action::Continue
    );
    assert!(host.local_replies().is_empty(), "a good response passes");
}

fn text(host: &FakeHost, vm: &Vm, req: &[(&str, &str)], cache_control: &str) {
    let mut headers = vec![("content-type", "text/plain")];
    if !cache_control.is_empty() {
        headers.push(("cache-control", cache_control));
    }
    good(host, vm, req, &headers, b"hello world");
}

/// A failing request with `req`: the fallback sent.
fn fail(host: &FakeHost, vm: &Vm, req: &[(&str, &str)]) -> LocalReply {
    host.clear_calls();
    let mut s = request(host, vm, req);
    upstream(host, "503", &[]);
    assert_eq!(s.on_response_headers(host, vm, false), Action::Pause);
    the_reply(host)
}

fn assert_stale(r: &LocalReply, body_text: &str, why: &str) {
    assert_eq!(header(r, "x-fallback"), Some(STALE_MARK), "{why}");
    assert_eq!(body(r), body_text, "{why}");
}

fn assert_nothing_cached(r: &LocalReply, why: &str) {
    assert_eq!(header(r, "x-fallback"), Some(NOTHING_MARK), "{why}");
    assert_eq!(body(r), "nothing cached", "{why}");
}

fn stores(host: &FakeHost) -> i64 {
    host.metric("fallback_cache_stores").unwrap_or(0)
}

#[test]
fn a_stale_configuration_creates_its_slots_and_every_vm_shares_one_seed() {
    let host = FakeHost::new();
    let a = vm(&host, Some(STALE));
    assert_eq!(host.shared().len(), 1024 + 1, "the slots and the seed");
    assert!(host.shared().value("fallback/fb/seed").is_some());
    let b = vm(&host, Some(STALE));
    assert_eq!(a.slot_key(7), b.slot_key(7));
    assert!(a.slot_key(7).starts_with("fallback/fb/cache/"));
    // Without a stale rule nothing is created.
    let host = FakeHost::new();
    vm(&host, None);
    assert!(host.shared().is_empty());
}

#[test]
fn a_good_answer_is_copied_as_it_streams_and_served_with_its_age_when_the_upstream_fails() {
    let host = FakeHost::new();
    host.set_clock(1_000 * SEC);
    let vm = vm(&host, Some(STALE));
    text(&host, &vm, &[], "");
    assert_eq!(stores(&host), 1);
    let bytes = host.metric("fallback_cache_bytes").unwrap();
    assert!(bytes > 11, "{bytes}");
    host.advance_clock(Duration::from_secs(5));
    let r = fail(&host, &vm, &[("traceparent", TP)]);
    assert_eq!(r.status, 200);
    assert_stale(&r, "hello world", "a fresh copy");
    assert_eq!(header(&r, "content-type"), Some("text/plain"));
    assert_eq!(header(&r, "age"), Some("5"));
    assert_eq!(header(&r, "traceresponse"), Some(TP));
    assert_eq!(header(&r, "warning"), None, "RFC 9111 obsoletes Warning");
    assert_eq!(host.metric("fallback_cache_hits"), Some(1));
    assert_eq!(served(&host, "s", "status", "stale"), Some(1));
    // HEAD gets the headers only.
    let r = fail(&host, &vm, &[(":method", "HEAD")]);
    assert_stale(&r, "", "HEAD");
    // A POST to the same resource is never answered with the GET's copy (RFC 9111 §4).
    let r = fail(&host, &vm, &[(":method", "POST")]);
    assert_nothing_cached(&r, "POST");
}

/// Envoy's HTTP/1 codec ends a chunked body with an empty chunk marked end of stream (as HTTP/2 may,
/// with an empty DATA frame): the capture completes on it, reading no body for it.
#[test]
fn an_empty_last_body_chunk_completes_the_capture() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    let mut s = request(&host, &vm, &[]);
    upstream(&host, "200", &[("content-type", "text/plain")]);
    assert_eq!(s.on_response_headers(&host, &vm, false), Action::Continue);
    host.script_buffer(Buffer::HttpResponseBody, b"hello world");
    s.on_response_body(&host, &vm, 11, false);
    host.script_buffer(Buffer::HttpResponseBody, b"");
    host.clear_calls();
    s.on_response_body(&host, &vm, 0, true);
    assert_eq!(host.count(Op::Buffer), 0, "{:?}", host.calls());
    assert_eq!(stores(&host), 1);
    assert_stale(&fail(&host, &vm, &[]), "hello world", "stored");
}

#[test]
fn a_body_of_exactly_max_body_bytes_is_stored() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    let full = [b'x'; 1024];
    good(
        &host,
        &vm,
        &[(":path", "/full")],
        &[("content-type", "text/plain")],
        &full,
    );
    assert_eq!(stores(&host), 1);
    let r = fail(&host, &vm, &[(":path", "/full")]);
    assert_eq!(header(&r, "x-fallback"), Some(STALE_MARK));
    assert_eq!(r.body, full);
}

#[test]
fn past_the_rule_s_ttl_the_otherwise_answers() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    text(&host, &vm, &[], "");
    host.advance_clock(Duration::from_secs(29));
    assert_stale(&fail(&host, &vm, &[]), "hello world", "within the ttl");
    host.advance_clock(Duration::from_secs(2));
    assert_nothing_cached(&fail(&host, &vm, &[]), "past the ttl");
    assert_eq!(host.metric("fallback_cache_misses"), Some(1));
    assert_eq!(served(&host, "s", "status", "static"), Some(1));
}

#[test]
fn the_key_is_authority_path_and_key_headers() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    text(&host, &vm, &[("x-tenant", "acme")], "");
    assert_stale(
        &fail(&host, &vm, &[("x-tenant", "acme")]),
        "hello world",
        "same key",
    );
    for other in [
        &[("x-tenant", "evil")][..],
        &[],
        &[("x-tenant", "acme"), (":authority", "other")],
        &[("x-tenant", "acme"), (":path", "/b")],
    ] {
        assert_nothing_cached(&fail(&host, &vm, other), &format!("{other:?}"));
    }
}

#[test]
fn a_caller_s_no_store_or_no_cache_is_never_stored_nor_served_a_stored_answer() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    host.clear_calls();
    text(&host, &vm, &[("cache-control", "no-store")], "");
    assert_eq!(
        host.count(Op::SetSharedData),
        0,
        "a no-store request's answer"
    );
    text(&host, &vm, &[], "");
    for refusal in ["no-cache", "no-store", "No-Cache", "max-age=60, no-cache"] {
        assert_nothing_cached(&fail(&host, &vm, &[("cache-control", refusal)]), refusal);
    }
    // A freshness preference is no refusal (RFC 5861 §4; a browser's reload sends max-age=0).
    assert_stale(
        &fail(&host, &vm, &[("cache-control", "max-age=0")]),
        "hello world",
        "max-age=0",
    );
}

#[test]
fn a_caller_s_max_stale_and_stale_if_error_bound_the_staleness_it_accepts() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    // Fresh for 10 s; 15 s stale when the upstream fails (within the rule's ttl of 30 s).
    text(&host, &vm, &[], "max-age=10");
    host.advance_clock(Duration::from_secs(25));
    for (directive, accepted) in [
        ("", true),
        ("max-stale", true),
        ("max-stale=15", true),
        ("max-stale=14", false),
        ("stale-if-error=5", false),
        ("stale-if-error=20", true),
        ("max-stale=5, stale-if-error=20", true),
    ] {
        let req: &[(&str, &str)] = if directive.is_empty() {
            &[]
        } else {
            &[("cache-control", directive)]
        };
        let r = fail(&host, &vm, req);
        if accepted {
            assert_stale(&r, "hello world", directive);
        } else {
            assert_nothing_cached(&r, directive);
        }
    }
}

#[test]
fn the_response_s_own_directives_bound_its_serving() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    // Servable on error only while fresh.
    text(
        &host,
        &vm,
        &[(":path", "/mr")],
        "max-age=10, must-revalidate",
    );
    // Never stored.
    text(&host, &vm, &[(":path", "/private")], "private");
    good(
        &host,
        &vm,
        &[(":path", "/cookie")],
        &[("set-cookie", "a=b")],
        b"mine",
    );
    host.advance_clock(Duration::from_secs(5));
    assert_stale(
        &fail(&host, &vm, &[(":path", "/mr")]),
        "hello world",
        "fresh",
    );
    assert_nothing_cached(&fail(&host, &vm, &[(":path", "/private")]), "private");
    assert_nothing_cached(&fail(&host, &vm, &[(":path", "/cookie")]), "set-cookie");
    host.advance_clock(Duration::from_secs(6));
    assert_nothing_cached(&fail(&host, &vm, &[(":path", "/mr")]), "stale");
}

#[test]
fn requests_with_credentials_are_neither_stored_nor_served() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    host.clear_calls();
    text(&host, &vm, &[("authorization", "Bearer x")], "");
    assert_eq!(host.count(Op::SetSharedData), 0);
    text(&host, &vm, &[], "");
    assert_nothing_cached(&fail(&host, &vm, &[("cookie", "s=1")]), "cookie");
    assert_stale(&fail(&host, &vm, &[]), "hello world", "no credentials");
}

#[test]
fn posts_bodies_over_the_limit_and_bodiless_answers_are_not_stored() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    text(&host, &vm, &[(":method", "POST")], "");
    good(
        &host,
        &vm,
        &[(":path", "/big")],
        &[("content-type", "text/plain")],
        &[b'x'; 1025],
    );
    good(
        &host,
        &vm,
        &[(":path", "/announced")],
        &[("content-length", "2000")],
        b"",
    );
    // Headers only (end of stream on the headers).
    let mut s = request(&host, &vm, &[(":path", "/empty")]);
    upstream(&host, "200", &[]);
    s.on_response_headers(&host, &vm, true);
    assert_eq!(stores(&host), 0);
    // Only an answer from the upstream is kept: a 200 Envoy made itself is not.
    let mut s = request(&host, &vm, &[]);
    host.script_headers(RESP, &[(":status", "200")]);
    host.script_property(&["response", "code_details"], b"direct_response");
    s.on_response_headers(&host, &vm, false);
    host.script_buffer(Buffer::HttpResponseBody, b"direct");
    s.on_response_body(&host, &vm, 6, true);
    assert_eq!(stores(&host), 0);
}

#[test]
fn a_later_answer_that_forbids_reuse_removes_the_stored_entry() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    text(&host, &vm, &[], "");
    assert!(host.metric("fallback_cache_bytes").unwrap() > 0);
    text(&host, &vm, &[], "no-store");
    assert_eq!(host.metric("fallback_cache_bytes"), Some(0));
    assert_nothing_cached(&fail(&host, &vm, &[]), "removed");
    // The caller's no-store keeps the answer out, but the origin's word still removes the entry.
    text(&host, &vm, &[], "");
    text(&host, &vm, &[("cache-control", "no-store")], "no-cache");
    assert_nothing_cached(
        &fail(&host, &vm, &[]),
        "removed by a no-store caller's answer",
    );
}

#[test]
fn vary_selects_the_variant_a_request_is_served() {
    let host = FakeHost::new();
    let vm = vm(&host, Some(STALE));
    good(
        &host,
        &vm,
        &[("accept-language", "en")],
        &[("content-type", "text/plain"), ("vary", "Accept-Language")],
        b"hello",
    );
    let slot = vm.slot_key(crate::cache::key(b"svc", b"/a", &[None]));
    let entry = Entry::decode(&host.shared().value(&slot).unwrap()).unwrap();
    assert_eq!(entry.vary, "accept-language");
    assert_stale(
        &fail(&host, &vm, &[("accept-language", "en")]),
        "hello",
        "same variant",
    );
    assert_nothing_cached(
        &fail(&host, &vm, &[("accept-language", "de")]),
        "other variant",
    );
    assert_nothing_cached(&fail(&host, &vm, &[]), "no accept-language");
}
