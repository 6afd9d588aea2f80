//! What a fallback reply carries, decided from what the filter noted: the `x-fallback` marker, the
//! trace headers, a kept `retry-after`, and for a gRPC caller the gRPC status that says what failed.
//! The adapter only sends what [`build`] returns.

use crate::config::{Kind, TraceConfig};
use crate::render::{grpc_status_for, reason_phrase, Rendered};
use crate::trigger::Reason;

/// The response header marking every fallback reply (and gRPC trailers the fallback saw).
pub const MARKER: &str = "x-fallback";

/// `<kind>; rule=<name>; reason=<trigger>`.
pub fn marker(rule: &str, reason: Reason, kind: Kind) -> String {
    format!("{}; rule={rule}; reason={}", kind.label(), reason.label())
}

/// A cached response served on error: its content type and how old it is. No `Warning: 110`: RFC 9111
/// obsoletes the header; `age` and the `x-fallback` mark say the answer is stale.
pub fn stale_answer(content_type: &str, age_s: u64) -> Rendered {
    Rendered {
        status: 200,
        headers: vec![
            ("content-type".to_string(), content_type.to_string()),
            ("age".to_string(), age_s.to_string()),
        ],
        body: String::new(),
    }
}

/// Everything a reply is built from.
pub struct Parts<'a> {
    pub rule: &'a str,
    pub reason: Reason,
    pub kind: Kind,
    pub rendered: Rendered,
    /// A body given as bytes (a cached or alternate answer) instead of `rendered.body`.
    pub raw_body: Option<Vec<u8>>,
    pub grpc: bool,
    pub trace: &'a TraceConfig,
    /// The `traceparent` forwarded upstream, when well formed.
    pub traceparent: Option<&'a str>,
    pub trace_id: &'a str,
    /// The `retry-after` of the response being replaced.
    pub replaced_retry_after: Option<&'a [u8]>,
    /// The status of the response being replaced.
    pub original_status: u16,
    /// The non-OK gRPC status the replaced response carried.
    pub upstream_grpc_status: Option<u32>,
}

/// A reply ready to send: HTTP status, headers, body, and the gRPC status (`-1`: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub grpc_status: i32,
}

pub fn build(p: Parts<'_>) -> Reply {
    let marker = marker(p.rule, p.reason, p.kind);
    // A static rule's own headers win; an alternate upstream's trace headers speak of another trace (or
    // its own hop) and give way to the caller's.
    let rule_headers_win = p.kind == Kind::Static;
    let trace_headers =
        crate::trace::response_headers(p.trace, p.traceparent, p.trace_id, |name| {
            rule_headers_win && p.rendered.headers.iter().any(|(n, _)| n == name)
        });
    // The replaced response's `retry-after` still holds for the caller; a static rule's own (or an
    // alternate upstream's own) wins.
    let own_retry_after = p
        .rendered
        .headers
        .iter()
        .find(|(n, _)| n == "retry-after")
        .map(|(_, v)| v.as_bytes().to_vec());
    let retry_after = own_retry_after
        .clone()
        .or_else(|| p.replaced_retry_after.map(<[u8]>::to_vec));
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    if p.grpc {
        headers.push((MARKER.to_string(), marker.into_bytes()));
        headers.extend(trace_headers.into_iter().map(|(n, v)| (n, v.into_bytes())));
        if let Some(v) = retry_after {
            headers.push(("retry-after".to_string(), v));
        }
        // What failed, not what the HTTP fallback says: a static 200 still tells a gRPC caller the call
        // failed, with the upstream's gRPC status or its HTTP status mapped as gRPC does.
        let failed = match (u32::from(p.original_status), p.rendered.status) {
            (original, _) if original >= 400 => original,
            (_, configured) if configured >= 400 => configured,
            _ => 503,
        };
        let message = format!(
            "{} (fallback rule {}, {})",
            reason_phrase(failed),
            p.rule,
            p.reason.label()
        );
        let code = p
            .upstream_grpc_status
            .and_then(|g| i32::try_from(g).ok())
            .unwrap_or_else(|| grpc_status_for(failed));
        return Reply {
            status: 200,
            headers,
            body: message.into_bytes(),
            grpc_status: code,
        };
    }
    let replaced = |name: &str| trace_headers.iter().any(|(t, _)| t == name);
    headers.extend(
        p.rendered
            .headers
            .iter()
            .filter(|(n, _)| !replaced(n))
            .map(|(n, v)| (n.clone(), v.clone().into_bytes())),
    );
    headers.push((MARKER.to_string(), marker.into_bytes()));
    headers.extend(trace_headers.into_iter().map(|(n, v)| (n, v.into_bytes())));
    if let (None, Some(v)) = (own_retry_after, retry_after) {
        headers.push(("retry-after".to_string(), v));
    }
    Reply {
        status: p.rendered.status,
        headers,
        body: p.raw_body.unwrap_or_else(|| p.rendered.body.into_bytes()),
        grpc_status: -1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::trigger::EnvoyReason;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn parts<'a>(trace: &'a TraceConfig, kind: Kind, rendered: Rendered, grpc: bool) -> Parts<'a> {
        Parts {
            rule: "r",
            reason: Reason::Envoy(EnvoyReason::LocalReply),
            kind,
            rendered,
            raw_body: None,
            grpc,
            trace,
            traceparent: Some(TP),
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            replaced_retry_after: Some(b"7"),
            original_status: 503,
            upstream_grpc_status: None,
        }
    }

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a [u8]> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn a_static_rule_s_own_headers_win_and_the_replaced_retry_after_is_kept_otherwise() {
        let trace = TraceConfig::default();
        let own = Rendered {
            status: 200,
            headers: vec![
                ("x-trace-id".into(), "mine".into()),
                ("retry-after".into(), "1".into()),
            ],
            body: "b".into(),
        };
        let r = build(parts(&trace, Kind::Static, own.clone(), false));
        assert_eq!(header(&r, "x-trace-id"), Some(&b"mine"[..]));
        assert_eq!(header(&r, "retry-after"), Some(&b"1"[..]));
        assert_eq!(header(&r, "traceresponse"), Some(TP.as_bytes()));
        assert_eq!(
            header(&r, MARKER),
            Some(&b"static; rule=r; reason=localReply"[..])
        );
        // An alternate answer's trace headers give way to the caller's.
        let r = build(parts(&trace, Kind::Alternate, own, false));
        assert_eq!(
            header(&r, "x-trace-id"),
            Some(&b"0af7651916cd43dd8448eb211c80319c"[..])
        );
        let plain = Rendered {
            status: 503,
            headers: vec![],
            body: "p".into(),
        };
        let r = build(parts(&trace, Kind::Problem, plain, false));
        assert_eq!(header(&r, "retry-after"), Some(&b"7"[..]));
        assert_eq!(
            (r.status, r.body.as_slice(), r.grpc_status),
            (503, &b"p"[..], -1)
        );
    }

    #[test]
    fn a_stale_answer_says_its_age_and_mark_and_no_warning() {
        let trace = TraceConfig::default();
        let mut p = parts(&trace, Kind::Stale, stale_answer("text/plain", 42), false);
        p.raw_body = Some(b"cached".to_vec());
        let r = build(p);
        assert_eq!(header(&r, "age"), Some(&b"42"[..]));
        assert_eq!(header(&r, "content-type"), Some(&b"text/plain"[..]));
        assert!(header(&r, MARKER).is_some_and(|m| m.starts_with(b"stale;")));
        assert_eq!(header(&r, "warning"), None, "RFC 9111 obsoletes Warning");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"cached"[..]));
    }

    #[test]
    fn a_grpc_caller_learns_what_failed() {
        let trace = TraceConfig::default();
        let ok = Rendered {
            status: 200,
            headers: vec![],
            body: String::new(),
        };
        let r = build(parts(&trace, Kind::Static, ok.clone(), true));
        assert_eq!((r.status, r.grpc_status), (200, grpc_status_for(503)));
        assert!(String::from_utf8_lossy(&r.body).contains("fallback rule r, localReply"));
        let mut p = parts(&trace, Kind::Static, ok.clone(), true);
        p.upstream_grpc_status = Some(4);
        assert_eq!(build(p).grpc_status, 4);
        // The failure is the replaced response's status when it was one, else the configured reply's,
        // else 503 (a gRPC status trigger on an HTTP 200 answered by a static 200).
        let message = |original: u16, configured: u32| {
            let mut p = parts(
                &trace,
                Kind::Static,
                Rendered {
                    status: configured,
                    ..ok.clone()
                },
                true,
            );
            p.original_status = original;
            let r = build(p);
            (String::from_utf8_lossy(&r.body).into_owned(), r.grpc_status)
        };
        assert_eq!(
            message(404, 200),
            ("Not Found (fallback rule r, localReply)".into(), 12)
        );
        assert_eq!(
            message(400, 502),
            ("Bad Request (fallback rule r, localReply)".into(), 13)
        );
        assert_eq!(
            message(200, 502),
            ("Bad Gateway (fallback rule r, localReply)".into(), 14)
        );
        assert_eq!(
            message(200, 400),
            ("Bad Request (fallback rule r, localReply)".into(), 13)
        );
        assert_eq!(
            message(200, 399),
            (
                "Service Unavailable (fallback rule r, localReply)".into(),
                14
            )
        );
        assert_eq!(
            message(399, 200),
            (
                "Service Unavailable (fallback rule r, localReply)".into(),
                14
            )
        );
    }

    #[test]
    fn a_grpc_reply_carries_the_marker_trace_headers_and_retry_after_but_no_body_headers() {
        let trace = TraceConfig::default();
        let own = Rendered {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{}".into(),
        };
        let r = build(parts(&trace, Kind::Static, own, true));
        assert_eq!(
            header(&r, MARKER),
            Some(&b"static; rule=r; reason=localReply"[..])
        );
        assert_eq!(header(&r, "traceresponse"), Some(TP.as_bytes()));
        assert_eq!(header(&r, "retry-after"), Some(&b"7"[..]));
        assert_eq!(header(&r, "content-type"), None, "gRPC's own framing");
    }

    #[test]
    fn trace_headers_replace_an_alternate_answer_s_own_once() {
        let trace = TraceConfig::default();
        let answer = Rendered {
            status: 200,
            headers: vec![
                ("x-trace-id".into(), "theirs".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            body: "b".into(),
        };
        let r = build(parts(&trace, Kind::Alternate, answer, false));
        let trace_ids: Vec<&[u8]> = r
            .headers
            .iter()
            .filter(|(n, _)| n == "x-trace-id")
            .map(|(_, v)| v.as_slice())
            .collect();
        assert_eq!(trace_ids, vec![&b"0af7651916cd43dd8448eb211c80319c"[..]]);
        assert_eq!(header(&r, "content-type"), Some(&b"text/plain"[..]));
        assert_eq!(
            header(&r, MARKER),
            Some(&b"alternate; rule=r; reason=localReply"[..])
        );
    }
}
