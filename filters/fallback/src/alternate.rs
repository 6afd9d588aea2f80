//! The alternate call: the request sent to the configured cluster, and which of its answers may stand
//! in for the failed response.

use crate::render::Rendered;
use filter_common::w3c::TRACEPARENT;

/// The caller's request as the alternate cluster sees it: method, path and authority, the rule's key
/// headers, and the caller's `traceparent` (the alternate call is part of the caller's trace).
pub fn request_headers(
    method: &str,
    path: &str,
    authority: &str,
    key_headers: &[(String, Option<Vec<u8>>)],
    traceparent: Option<&str>,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), authority.to_string()),
    ];
    for (name, value) in key_headers {
        if let Some(v) = value {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    if let Some(tp) = traceparent {
        if !headers.iter().any(|(n, _)| n == TRACEPARENT) {
            headers.push((TRACEPARENT.to_string(), tp.to_string()));
        }
    }
    headers
}

/// The alternate's answer, when it may be served: a status below 500 and a body of at most `max_body`
/// bytes (it is copied into the VM's memory). Pseudo-headers, hop-by-hop headers and another fallback's
/// marker are dropped.
pub fn answer(
    headers: Vec<(String, Vec<u8>)>,
    body_size: usize,
    max_body: usize,
) -> Option<Rendered> {
    let status = headers
        .iter()
        .find(|(n, _)| n == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u32>().ok())?;
    if status >= 500 || body_size > max_body {
        return None;
    }
    let kept = headers
        .into_iter()
        .filter(|(n, _)| !n.starts_with(':') && !is_hop_by_hop(n) && n != crate::reply::MARKER)
        .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    Some(Rendered {
        status,
        headers: kept,
        body: String::new(),
    })
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "proxy-connection"
            | "te"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_call_carries_the_key_headers_and_the_trace() {
        let h = request_headers(
            "GET",
            "/a",
            "svc",
            &[
                ("x-tenant".into(), Some(b"acme".to_vec())),
                ("x-none".into(), None),
            ],
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        let names: Vec<&str> = h.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [":method", ":path", ":authority", "x-tenant", "traceparent"]
        );
    }

    #[test]
    fn the_call_carries_the_values_and_one_traceparent() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let h = request_headers(
            "POST",
            "/b?q=1",
            "svc.ns",
            &[("x-tenant".into(), Some(b"acme".to_vec()))],
            Some(tp),
        );
        let pairs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                (":method", "POST"),
                (":path", "/b?q=1"),
                (":authority", "svc.ns"),
                ("x-tenant", "acme"),
                ("traceparent", tp)
            ]
        );
        // A rule keyed on traceparent already carries one: never two.
        let keyed = request_headers(
            "GET",
            "/",
            "svc",
            &[("traceparent".into(), Some(tp.as_bytes().to_vec()))],
            Some(tp),
        );
        assert_eq!(keyed.iter().filter(|(n, _)| n == "traceparent").count(), 1);
        // No trace: no traceparent.
        let untraced = request_headers("GET", "/", "svc", &[], None);
        assert!(untraced.iter().all(|(n, _)| n != "traceparent"));
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        for name in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "content-length",
            "upgrade",
            "proxy-connection",
            "te",
        ] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["content-type", "cache-control", "x-kept", "trailer-x"] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
        let a = answer(
            vec![
                (":status".into(), b"499".to_vec()),
                ("transfer-encoding".into(), b"chunked".to_vec()),
                ("content-type".into(), b"text/plain".to_vec()),
            ],
            0,
            0,
        )
        .unwrap();
        assert_eq!(a.status, 499);
        assert_eq!(
            a.headers,
            vec![("content-type".to_string(), "text/plain".to_string())]
        );
    }

    #[test]
    fn only_bounded_non_5xx_answers_stand_in() {
        let headers = |status: &str| {
            vec![
                (":status".to_string(), status.as_bytes().to_vec()),
                ("connection".to_string(), b"close".to_vec()),
                ("x-fallback".to_string(), b"other".to_vec()),
                ("x-kept".to_string(), b"1".to_vec()),
            ]
        };
        let a = answer(headers("200"), 10, 10).unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers, vec![("x-kept".to_string(), "1".to_string())]);
        assert_eq!(answer(headers("503"), 10, 10), None);
        assert_eq!(answer(headers("200"), 11, 10), None);
        assert_eq!(answer(Vec::new(), 0, 10), None);
    }
}
