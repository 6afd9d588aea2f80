//! The trace headers a fallback carries. A fallback replaces a response already on its way back, so
//! Envoy sends it straight to the caller, past the encoder filters before this one: trace-context
//! never sees it. The fallback adds the same headers itself, from the `traceparent` trace-context
//! forwarded upstream (or, when trace-context writes no W3C header, the trace id it left in filter
//! state).

use crate::config::TraceConfig;
use filter_common::w3c::TRACERESPONSE;

/// The `traceparent` forwarded upstream, as `traceresponse` echoes it (version 00), when it is valid.
pub fn well_formed_traceparent(value: &[u8]) -> Option<String> {
    filter_common::w3c::parse_traceparent(value)
        .ok()
        .map(|tp| tp.render())
}

/// The trace id of a well-formed `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    traceparent.get(3..35)
}

/// A 32-hex trace id read from filter state, or `None`.
pub fn trace_id_from_state(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_string())
}

/// The headers to add to a fallback: the trace id header and `traceresponse`, each when configured
/// and known. Headers the rule's own response sets are left alone.
pub fn response_headers(
    config: &TraceConfig,
    traceparent: Option<&str>,
    trace_id: &str,
    already_set: impl Fn(&str) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let header = config.response_header.as_str();
    if !header.is_empty() && !trace_id.is_empty() && !already_set(header) {
        out.push((header.to_string(), trace_id.to_string()));
    }
    if let Some(tp) = traceparent.filter(|_| config.trace_response) {
        if !already_set(TRACERESPONSE) {
            out.push((TRACERESPONSE.to_string(), tp.to_string()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn accepts_what_trace_context_accepts_and_echoes_version_00() {
        assert_eq!(well_formed_traceparent(TP.as_bytes()).as_deref(), Some(TP));
        assert_eq!(
            well_formed_traceparent(format!(" {TP} ").as_bytes()).as_deref(),
            Some(TP)
        );
        for bad in [
            "",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            assert_eq!(well_formed_traceparent(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(well_formed_traceparent(&[0xff, b'-', 0xfe]), None);
        // A later version is read by its version-00 prefix, and answered in version 00.
        let later = format!("01{}-extra", &TP[2..]);
        assert_eq!(
            well_formed_traceparent(later.as_bytes()).as_deref(),
            Some(TP)
        );
        assert_eq!(trace_id(TP), Some("0af7651916cd43dd8448eb211c80319c"));
    }

    #[test]
    fn filter_state_ids_must_be_32_hex() {
        assert_eq!(
            trace_id_from_state(b"0af7651916cd43dd8448eb211c80319c").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id_from_state(b"0af7"), None);
        assert_eq!(
            trace_id_from_state(b"<script>alert(1)</script>........"),
            None
        );
    }

    #[test]
    fn headers_follow_the_configuration() {
        let id = "0af7651916cd43dd8448eb211c80319c";
        let all = response_headers(&TraceConfig::default(), Some(TP), id, |_| false);
        assert_eq!(
            all,
            vec![
                ("x-trace-id".to_string(), id.to_string()),
                ("traceresponse".to_string(), TP.to_string())
            ]
        );
        let none = TraceConfig {
            response_header: String::new(),
            trace_response: false,
            ..TraceConfig::default()
        };
        assert!(response_headers(&none, Some(TP), id, |_| false).is_empty());
        // Known only from filter state: no span id, so no traceresponse.
        assert_eq!(
            response_headers(&TraceConfig::default(), None, id, |_| false).len(),
            1
        );
        // Unknown trace: nothing to say.
        assert!(response_headers(&TraceConfig::default(), None, "", |_| false).is_empty());
        // The rule's own headers win.
        assert!(
            response_headers(&TraceConfig::default(), Some(TP), id, |h| h == "x-trace-id"
                || h == "traceresponse")
            .is_empty()
        );
    }
}
