//! Rendering fallback responses: content negotiation, RFC 9457 problem details, templates whose
//! placeholders are escaped for the response's content type, and the gRPC status for gRPC callers.

use crate::config::ResponseConfig;
use filter_common::text;

/// What the caller accepts, from its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    Json,
    Html,
    Text,
}

/// The kinds a fallback can be written in, in the order that breaks a tie between equal weights from
/// the same range (`*/*` means JSON, `text/*` plain text).
const PRODUCIBLE: [Negotiated; 3] = [Negotiated::Json, Negotiated::Text, Negotiated::Html];

/// How specifically `media` names `kind` (RFC 9110 §12.5.1): 3 the type itself, 2 its `type/*`, 1
/// `*/*`; `None` when it does not cover it.
fn specificity(media: &str, kind: Negotiated) -> Option<u8> {
    let is = |name: &str| media.eq_ignore_ascii_case(name);
    let exact = match kind {
        Negotiated::Json => {
            is("application/json")
                || media.len() > 5
                    && media
                        .get(media.len() - 5..)
                        .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
        }
        Negotiated::Html => is("text/html") || is("application/xhtml+xml"),
        Negotiated::Text => is("text/plain"),
    };
    let family = match kind {
        Negotiated::Json => is("application/*"),
        Negotiated::Html | Negotiated::Text => is("text/*"),
    };
    if exact {
        Some(3)
    } else if family {
        Some(2)
    } else if is("*/*") {
        Some(1)
    } else {
        None
    }
}

/// The kind the caller prefers among those a fallback can be written in: each kind weighs what the most
/// specific range covering it says (RFC 9110 §12.5.1: `application/json;q=0, */*` refuses JSON and
/// accepts the rest), the highest weight wins, then the kind whose range is listed first, then
/// [`PRODUCIBLE`]'s order. JSON with no header, nothing acceptable, or nothing we know: an error answer
/// is better sent in the default form than refused with a 406.
pub fn negotiate(accept: Option<&[u8]>) -> Negotiated {
    let Some(accept) = accept.and_then(|a| std::str::from_utf8(a).ok()) else {
        return Negotiated::Json;
    };
    // Per kind: (specificity, weight, position) of the range that decides it.
    let mut decided: [Option<(u8, u64, usize)>; 3] = [None; 3];
    for (position, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| quality(v.trim()))
                    .flatten()
            })
            .next()
            .unwrap_or(1000);
        for (kind, slot) in PRODUCIBLE.iter().zip(decided.iter_mut()) {
            let Some(rank) = specificity(media, *kind) else {
                continue;
            };
            let wins = match *slot {
                None => true,
                Some((r, w, _)) => rank > r || rank == r && q > w,
            };
            if wins {
                *slot = Some((rank, q, position));
            }
        }
    }
    let mut best: Option<(u64, usize, Negotiated)> = None;
    for (kind, slot) in PRODUCIBLE.iter().zip(decided.iter()) {
        if let Some((_, q, position)) = *slot {
            let better = best.is_none_or(|(bq, bp, _)| q > bq || q == bq && position < bp);
            if q > 0 && better {
                best = Some((q, position, *kind));
            }
        }
    }
    best.map_or(Negotiated::Json, |(_, _, kind)| kind)
}

/// A `q` weight in thousandths: digits with an optional fraction (RFC 9110's qvalue, leniently: beyond
/// three decimals and above 1 too), a negative one as 0; anything else (an exponent, words) is no weight,
/// as if absent. Hand-written, so the module carries no float parser.
fn quality(text: &str) -> Option<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    if negative {
        return Some(0);
    }
    let mut q = whole.bytes().fold(0u64, |acc, d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let mut scale = 1000;
    q = q.saturating_mul(scale);
    for d in fraction.bytes().take(3) {
        scale /= 10;
        q = q.saturating_add(u64::from(d - b'0') * scale);
    }
    Some(q)
}

/// Values the placeholders stand for. They come from the request, so they are escaped when rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    pub trace_id: String,
    pub request_id: String,
    /// The original status.
    pub status: u16,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An RFC 9457 problem (JSON), or the same facts as HTML or text.
pub fn problem(r: &ResponseConfig, vars: &Vars, format: Negotiated) -> Rendered {
    let status = r.status.unwrap_or(u32::from(vars.status)).clamp(200, 599);
    let title = r
        .title
        .clone()
        .unwrap_or_else(|| reason_phrase(status).to_string());
    let detail = format!(
        "The request failed upstream ({}); this answer comes from the mesh.",
        vars.reason
    );
    let (content_type, body) = match format {
        Negotiated::Json => {
            let mut members = vec![
                format!("\"type\":\"{}\"", escape_json(&r.problem_type)),
                format!("\"title\":\"{}\"", escape_json(&title)),
                format!("\"status\":{status}"),
                format!("\"detail\":\"{}\"", escape_json(&detail)),
            ];
            if !vars.trace_id.is_empty() {
                members.push(format!("\"traceId\":\"{}\"", escape_json(&vars.trace_id)));
            }
            if !vars.request_id.is_empty() {
                members.push(format!("\"requestId\":\"{}\"", escape_json(&vars.request_id)));
            }
            ("application/problem+json", format!("{{{}}}", text::join(&members, ",")))
        }
        Negotiated::Html => (
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html>\n<html><head><title>{status} {t}</title></head><body><h1>{status} {t}</h1><p>{d}</p><p>Trace id: <code>{tid}</code><br>Request id: <code>{rid}</code></p></body></html>\n",
                t = escape_html(&title),
                d = escape_html(&detail),
                tid = escape_html(&vars.trace_id),
                rid = escape_html(&vars.request_id),
            ),
        ),
        Negotiated::Text => (
            "text/plain; charset=utf-8",
            format!(
                "{status} {}\n{}\ntrace id: {}\nrequest id: {}\n",
                clean_text(&title),
                clean_text(&detail),
                clean_text(&vars.trace_id),
                clean_text(&vars.request_id)
            ),
        ),
    };
    Rendered {
        status,
        headers: vec![("content-type".to_string(), content_type.to_string())],
        body,
    }
}

/// A static response: configured status, headers and body, placeholders escaped for its content type.
pub fn static_response(r: &ResponseConfig, vars: &Vars) -> Rendered {
    let content_type = r
        .headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("text/plain");
    Rendered {
        status: r.status.unwrap_or(200),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: template(&r.body, vars, content_type),
    }
}

/// Replaces `{{traceId}}`, `{{requestId}}`, `{{status}}` and `{{reason}}`; unknown placeholders stay.
pub fn template(body: &str, vars: &Vars, content_type: &str) -> String {
    // Chosen by the media type, ignoring case and parameters; types we do not know (JavaScript, CSS)
    // get the JSON escaping, which keeps a value inside a quoted string.
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let escape: fn(&str) -> String =
        if text::contains(&media, "html") || text::contains(&media, "xml") {
            escape_html
        } else if media == "text/plain" {
            clean_text
        } else {
            escape_json
        };
    let status = vars.status.to_string();
    let mut out = String::with_capacity(body.len() + 64);
    let mut rest = body;
    while let Some(start) = text::find(rest, "{{") {
        // split_at_checked: split_at's panic path would bring core's Unicode tables into the module.
        let Some((before, after)) = rest.split_at_checked(start) else {
            break;
        };
        out.push_str(before);
        let Some((placeholder, tail)) =
            text::find(after, "}}").and_then(|end| after.split_at_checked(end + 2))
        else {
            rest = after;
            break;
        };
        let value = match placeholder {
            "{{traceId}}" => Some(escape(&vars.trace_id)),
            "{{requestId}}" => Some(escape(&vars.request_id)),
            "{{status}}" => Some(status.clone()),
            "{{reason}}" => Some(escape(&vars.reason)),
            _ => None,
        };
        out.push_str(value.as_deref().unwrap_or(placeholder));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// JSON string contents: quotes, backslashes and control characters escaped; `<`, `>` and `&` too, so a
/// value stays inert inside an HTML `<script>`.
pub fn escape_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    text::push_escaped(&mut out, s, |out, c| {
        let escape = matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || (c as u32) < 0x20;
        if escape {
            out.push_str(&format!("\\u{:04x}", c as u32));
        }
        escape
    });
    out
}

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Plain text: control characters (CR, LF, ...) removed, so no value can start a new line or header.
pub fn clean_text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// The gRPC status for an HTTP status, as gRPC maps them (`doc/http-grpc-status-mapping.md`).
pub fn grpc_status_for(http: u32) -> i32 {
    match http {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

pub fn reason_phrase(status: u32) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            request_id: "r\"</script><b>\r\nx-injected: 1".into(),
            status: 503,
            reason: "connectionFailure".into(),
        }
    }

    #[test]
    fn negotiation_follows_accept() {
        assert_eq!(negotiate(None), Negotiated::Json);
        assert_eq!(negotiate(Some(b"*/*")), Negotiated::Json);
        assert_eq!(
            negotiate(Some(b"text/html,application/xhtml+xml;q=0.9")),
            Negotiated::Html
        );
        assert_eq!(negotiate(Some(b"text/plain")), Negotiated::Text);
        assert_eq!(
            negotiate(Some(b"application/problem+json")),
            Negotiated::Json
        );
        assert_eq!(
            negotiate(Some(b"text/html;q=0, text/plain")),
            Negotiated::Text
        );
        assert_eq!(negotiate(Some(b"image/png")), Negotiated::Json);
        assert_eq!(negotiate(Some(&[0xff, 0xfe])), Negotiated::Json);
        assert_eq!(
            negotiate(Some(b"text/html;q=0.1, application/json")),
            Negotiated::Json
        );
        assert_eq!(
            negotiate(Some(b"text/html;Q=0, text/plain")),
            Negotiated::Text
        );
        assert_eq!(
            negotiate(Some(b"application/json;q=0.5, text/plain;q=0.5")),
            Negotiated::Json
        );
    }

    #[test]
    fn negotiation_skips_what_it_cannot_produce_and_keeps_the_first_of_equals() {
        let n = |accept: &str| negotiate(Some(accept.as_bytes()));
        // RFC 9110 §12.5.1: a range the caller lists that this filter cannot produce does not compete.
        assert_eq!(n("text/plain;q=0.5, image/png"), Negotiated::Text);
        assert_eq!(n("text/html;q=0.2, font/woff2, video/*"), Negotiated::Html);
        assert_eq!(n("application/xhtml+xml;q=0.3, audio/*"), Negotiated::Html);
        // Ranges that cover JSON.
        for json in [
            "application/json",
            "application/json;charset=utf-8",
            "application/problem+json",
            "application/*",
            "*/*",
            "Application/JSON",
        ] {
            assert_eq!(
                n(&format!("text/plain;q=0.5, {json}")),
                Negotiated::Json,
                "{json}"
            );
        }
        assert_eq!(n("text/*;q=0.5, application/xml"), Negotiated::Text);
        // q=0 is "not acceptable": alone it leaves the default.
        assert_eq!(n("text/html;q=0"), Negotiated::Json);
        assert_eq!(n("text/plain;q=0, text/html;q=0"), Negotiated::Json);
        // Equal weights: the first listed wins, whichever it is.
        assert_eq!(n("text/plain, text/html"), Negotiated::Text);
        assert_eq!(n("text/html, text/plain"), Negotiated::Html);
        assert_eq!(
            n("text/html;q=0.5, application/json;q=0.5"),
            Negotiated::Html
        );
        assert_eq!(
            n("text/plain;q=0.5, text/html;q=0.5, */*;q=0.5"),
            Negotiated::Text
        );
        // A higher weight later wins.
        assert_eq!(n("text/plain;q=0.4, text/html;q=0.5"), Negotiated::Html);
        assert_eq!(n("text/html;q=0.5, text/plain;q=0.4"), Negotiated::Html);
    }

    #[test]
    fn the_most_specific_range_decides_a_kind() {
        let n = |accept: &str| negotiate(Some(accept.as_bytes()));
        // RFC 9110 §12.5.1: a type's own range overrides `*/*` and `type/*`, either way.
        assert_eq!(n("application/json;q=0, */*"), Negotiated::Text);
        assert_eq!(n("*/*, application/json;q=0"), Negotiated::Text);
        assert_eq!(
            n("application/problem+json;q=0, text/html"),
            Negotiated::Html
        );
        assert_eq!(n("text/plain;q=0, text/*"), Negotiated::Html);
        assert_eq!(n("text/html;q=0, */*"), Negotiated::Json);
        assert_eq!(n("*/*;q=0.1, text/html"), Negotiated::Html);
        assert_eq!(
            n("text/*;q=0.9, text/html;q=0.2, */*;q=0.1"),
            Negotiated::Text
        );
        // `*/*;q=0` refuses only what no more specific range accepts.
        assert_eq!(n("*/*;q=0, text/plain;q=0.3"), Negotiated::Text);
        // Everything refused: the default form rather than a 406.
        assert_eq!(n("*/*;q=0"), Negotiated::Json);
    }

    #[test]
    fn quality_weights_are_read_without_floats() {
        assert_eq!(quality("1"), Some(1000));
        assert_eq!(quality("0.9"), Some(900));
        assert_eq!(quality("0.125"), Some(125));
        assert_eq!(quality("0.1259"), Some(125));
        assert_eq!(quality(".5"), Some(500));
        assert_eq!(quality("0"), Some(0));
        assert_eq!(quality("-1"), Some(0));
        assert_eq!(quality("2"), Some(2000));
        for bad in ["", ".", "1e-3", "abc", "0.5x", "- 1"] {
            assert_eq!(quality(bad), None, "{bad}");
        }
        assert_eq!(
            negotiate(Some(b"text/html;q=0.001, text/plain;q=0.0001")),
            Negotiated::Html
        );
    }

    #[test]
    fn problem_json_is_valid_and_carries_the_ids() {
        let r = problem(&ResponseConfig::default(), &vars(), Negotiated::Json);
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], 503);
        assert_eq!(v["title"], "Service Unavailable");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(v["requestId"], "r\"</script><b>\r\nx-injected: 1");
        assert!(!r.body.contains("</script>"));
        assert_eq!(r.headers[0].1, "application/problem+json");
    }

    #[test]
    fn html_and_text_cannot_be_injected() {
        let r = problem(&ResponseConfig::default(), &vars(), Negotiated::Html);
        assert!(r.body.contains("&lt;/script&gt;&lt;b&gt;"));
        assert!(!r.body.contains("<b>"));
        let r = problem(&ResponseConfig::default(), &vars(), Negotiated::Text);
        assert!(!r.body.contains("\r\nx-injected"));
        assert!(r.body.contains("x-injected: 1"));
    }

    #[test]
    fn json_escaping_covers_every_special_char() {
        assert_eq!(
            escape_json("a\"b\\c\nd\re\tf<g>h&i\u{2028}j\u{2029}k\u{1}l\u{1f}m\u{7f}n\u{85}o é"),
            "a\\\"b\\\\c\\nd\\re\\tf\\u003cg\\u003eh\\u0026i\\u2028j\\u2029k\\u0001l\\u001fm\u{7f}n\u{85}o é"
        );
    }

    #[test]
    fn templates_escape_for_their_content_type() {
        let v = vars();
        let json = template(
            r#"{"rid": "{{requestId}}", "was": {{status}}, "keep": "{{other}}"}"#,
            &v,
            "application/json",
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["rid"], v.request_id);
        assert_eq!(parsed["was"], 503);
        assert_eq!(parsed["keep"], "{{other}}");
        assert_eq!(
            template("<p>{{requestId}}</p>", &v, "text/html"),
            "<p>r&quot;&lt;/script&gt;&lt;b&gt;x-injected: 1</p>"
        );
        assert_eq!(
            template("id={{traceId}} {{", &v, "text/plain"),
            "id=0af7651916cd43dd8448eb211c80319c {{"
        );
        // Every documented placeholder, each once.
        assert_eq!(
            template(
                "{{reason}} {{status}} {{traceId}} {{Reason}}",
                &v,
                "text/plain"
            ),
            "connectionFailure 503 0af7651916cd43dd8448eb211c80319c {{Reason}}"
        );
    }

    #[test]
    fn grpc_mapping_follows_grpc() {
        // gRPC's doc/http-grpc-status-mapping.md, every row, and UNKNOWN for the rest.
        for (http, grpc) in [
            (400, 13), // INTERNAL
            (401, 16), // UNAUTHENTICATED
            (403, 7),  // PERMISSION_DENIED
            (404, 12), // UNIMPLEMENTED
            (429, 14), // UNAVAILABLE
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2), // UNKNOWN
            (418, 2),
            (200, 2),
        ] {
            assert_eq!(grpc_status_for(http), grpc, "{http}");
        }
    }

    #[test]
    fn reason_phrases_are_the_standard_ones() {
        for (status, phrase) in [
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (408, "Request Timeout"),
            (429, "Too Many Requests"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
            (599, "Error"),
        ] {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
    }
}
