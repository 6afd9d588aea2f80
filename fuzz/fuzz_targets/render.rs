//! Fallback templates and their escaping, with arbitrary bodies and placeholder values (fields split by
//! NUL: body, content type, trace id, request id, reason, Accept; then two status bytes). Escaped values
//! must stay inert: a JSON-escaped value parses back as the same JSON string, an HTML-escaped one has
//! no markup characters, cleaned text no control characters.
#![no_main]

use fallback::config::ResponseConfig;
use fallback::render::{
    clean_text, escape_html, escape_json, negotiate, problem, static_response, template,
    Negotiated, Vars,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned();
    let (body, content_type) = (next(), next());
    let (trace_id, request_id, reason, accept) = (next(), next(), next(), next());
    let status_bytes = next();
    let status = status_bytes
        .bytes()
        .fold(0u16, |s, b| s.wrapping_mul(31).wrapping_add(u16::from(b)));
    let vars = Vars {
        trace_id,
        request_id,
        status,
        reason,
    };

    for value in [&vars.trace_id, &vars.request_id, &vars.reason, &body] {
        let json = escape_json(value);
        let quoted = format!("\"{json}\"");
        match serde_json::from_str::<String>(&quoted) {
            Ok(back) => assert_eq!(&back, value),
            Err(e) => panic!("escaped JSON does not parse: {e}: {quoted:?}"),
        }
        assert!(!json.contains(['<', '>', '&']), "{json:?}");
        let html = escape_html(value);
        assert!(!html.contains(['<', '>', '"', '\'']), "{html:?}");
        assert!(!html.chars().any(char::is_control), "{html:?}");
        let text = clean_text(value);
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    let rendered = template(&body, &vars, &content_type);
    // A body without placeholders is sent as written.
    if !body.contains("{{") {
        assert_eq!(rendered, body);
    }
    // A JSON template with a value in a string stays valid JSON whatever the value.
    let json_body = r#"{"trace": "{{traceId}}", "id": "{{requestId}}", "why": "{{reason}}", "status": {{status}}}"#;
    let out = template(json_body, &vars, "application/json");
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&out) {
        panic!("a JSON template rendered invalid JSON: {e}: {out:?}");
    }

    let negotiated = negotiate(Some(accept.as_bytes()));
    let response = ResponseConfig {
        body: body.clone(),
        headers: [("content-type".to_string(), content_type.clone())].into(),
        ..ResponseConfig::default()
    };
    for format in [
        Negotiated::Json,
        Negotiated::Html,
        Negotiated::Text,
        negotiated,
    ] {
        let p = problem(&ResponseConfig::default(), &vars, format);
        if format == Negotiated::Json {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(&p.body) {
                panic!("a problem document is not JSON: {e}: {:?}", p.body);
            }
        }
        for (name, value) in &p.headers {
            assert!(!value.contains(['\r', '\n']), "{name}: {value:?}");
        }
    }
    // Its headers are the configuration's, checked when the configuration is.
    let _ = static_response(&response, &vars);
    let _ = fallback::render::grpc_status_for(u32::from(status));
    let _ = fallback::render::reason_phrase(u32::from(status));
});
