//! AWS X-Ray: `X-Amzn-Trace-Id: Root=1-{8 hex}-{24 hex};Parent={16 hex};Sampled={0|1|?}`.
//!
//! - Fields are `;`-separated `Key=Value` pairs in any order, with optional white space around them; keys
//!   are case-sensitive as the X-Ray SDKs match them. `Root` and `Parent` are required (we need a span to
//!   continue, so a `Root` alone, as a load balancer sends it, is `Invalid`). Hex is lower case.
//! - The trace id is the 8 hex epoch followed by the 24 hex unique part.
//! - `Sampled=?` (the caller asks for a decision) or no `Sampled` means "defer".
//! - Other fields (`Lineage=`, ...) are not part of the context; inject keeps them from the incoming header.
//!   `Self=` is dropped: a load balancer adds it for its own segment and it is not meant to be forwarded.

use crate::context::{parse_lower_hex_u128, parse_lower_hex_u64, TraceContext};
use crate::formats::Extracted;
use crate::headers::{HeaderEdits, RequestHeaders};

pub const HEADERS: &[&str] = &[X_AMZN_TRACE_ID];

const X_AMZN_TRACE_ID: &str = "x-amzn-trace-id";

pub fn extract(h: &RequestHeaders) -> Extracted {
    let value = match h.get_single(X_AMZN_TRACE_ID) {
        Ok(Some(v)) => v,
        Ok(None) => return Extracted::Absent,
        Err(_) => return Extracted::Invalid("x-amzn-trace-id: header repeated"),
    };
    match parse(value) {
        Ok(ctx) => crate::formats::from_parsed(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

fn parse(value: &[u8]) -> Result<TraceContext, &'static str> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = None;
    for field in fields(value) {
        let (key, val) = field.ok_or("x-amzn-trace-id: field without '='")?;
        match key {
            b"Root" => {
                if root.is_some() {
                    return Err("x-amzn-trace-id: Root repeated");
                }
                root = Some(parse_root(val).ok_or("x-amzn-trace-id: bad Root")?);
            }
            b"Parent" => {
                if parent.is_some() {
                    return Err("x-amzn-trace-id: Parent repeated");
                }
                let id = parse_lower_hex_u64(val, 16).filter(|&v| v != 0);
                parent = Some(id.ok_or("x-amzn-trace-id: bad Parent")?);
            }
            b"Sampled" => {
                if sampled.is_some() {
                    return Err("x-amzn-trace-id: Sampled repeated");
                }
                sampled = Some(match val {
                    b"1" => Some(true),
                    b"0" => Some(false),
                    b"?" => None,
                    _ => return Err("x-amzn-trace-id: bad Sampled"),
                });
            }
            _ => {}
        }
    }
    Ok(TraceContext {
        trace_id: root.ok_or("x-amzn-trace-id: no Root")?,
        // A Root alone (what an AWS load balancer sends) is continued with a new span id.
        span_id: parent.unwrap_or(0),
        sampled: sampled.flatten(),
        debug: false,
        random: false,
    })
}

/// The non-empty `;`-separated fields, trimmed, as `Some((key, value))`, or `None` for a field without `=`.
fn fields(value: &[u8]) -> impl Iterator<Item = Option<(&[u8], &[u8])>> {
    value
        .split(|&c| c == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|f| !f.is_empty())
        .map(|f| {
            let eq = f.iter().position(|&c| c == b'=')?;
            let (key, rest) = f.split_at_checked(eq)?;
            Some((key.trim_ascii(), rest.get(1..)?.trim_ascii()))
        })
}

/// `1-{8 hex}-{24 hex}`, not zero.
fn parse_root(v: &[u8]) -> Option<u128> {
    let rest = v.strip_prefix(b"1-")?;
    let (epoch, rest) = rest.split_at_checked(8)?;
    let unique = rest.strip_prefix(b"-")?;
    let epoch = parse_lower_hex_u128(epoch, 8)?;
    let unique = parse_lower_hex_u128(unique, 24)?;
    Some((epoch << 96) | unique).filter(|&v| v != 0)
}

/// Writes `Root=1-{8}-{24};Parent={16}[;Sampled=1|0]` (no `Sampled` for a deferred decision; debug counts
/// as sampled), then the extra fields of the incoming header (except `Self`) in their order.
pub fn inject(ctx: &TraceContext, incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce a header every reader rejects.
        return;
    }
    let epoch = (ctx.trace_id >> 96) as u32;
    let unique = ctx.trace_id & ((1u128 << 96) - 1);
    let mut out = format!(
        "Root=1-{epoch:08x}-{unique:024x};Parent={:016x}",
        ctx.span_id
    );
    match if ctx.debug { Some(true) } else { ctx.sampled } {
        Some(true) => out.push_str(";Sampled=1"),
        Some(false) => out.push_str(";Sampled=0"),
        None => {}
    }
    // A repeated header is ambiguous: keep nothing from it.
    if let Ok(Some(value)) = incoming.get_single(X_AMZN_TRACE_ID) {
        for field in value.split(|&c| c == b';').map(<[u8]>::trim_ascii) {
            if let Some(text) = extra_field(field) {
                out.push(';');
                out.push_str(text);
            }
        }
    }
    edits.set(X_AMZN_TRACE_ID, out);
}

/// A field to carry over: `key=value` in printable ASCII whose key the context does not replace.
fn extra_field(field: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(field).ok()?;
    if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return None;
    }
    let (key, _) = text.split_once('=')?;
    match key.trim_ascii_end() {
        "" | "Root" | "Parent" | "Sampled" | "Self" => None,
        _ => Some(text),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{ctx, injected_value, round_trip};
    use crate::formats::Format;

    // opentelemetry-go-contrib propagators/aws/xray/propagator_test.go
    const XRAY_TRACE: &str = "1-8a3c60f7-d188f8fa79d48a391a778fa6";
    const TRACE_VAL: u128 = 0x8a3c60f7d188f8fa79d48a391a778fa6;
    const PARENT: &str = "53995c3f42cd8ad8";
    const PARENT_VAL: u64 = 0x53995c3f42cd8ad8;

    fn ex(value: &str) -> Extracted {
        extract(&RequestHeaders::from_strs(&[("X-Amzn-Trace-Id", value)]))
    }

    fn injected(c: &TraceContext, incoming: &RequestHeaders) -> Option<String> {
        injected_value(Format::XRay, c, incoming, X_AMZN_TRACE_ID)
    }

    #[test]
    fn absent() {
        assert_eq!(extract(&RequestHeaders::default()), Extracted::Absent);
    }

    #[test]
    fn otel_vectors() {
        assert_eq!(
            ex(&format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=0")),
            Extracted::Valid(ctx(TRACE_VAL, PARENT_VAL, Some(false)))
        );
        assert_eq!(
            ex(&format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=1")),
            Extracted::Valid(ctx(TRACE_VAL, PARENT_VAL, Some(true)))
        );
        for bad in [
            format!("Root={XRAY_TRACE};Parent=0000000000000000;Sampled=1"),
            format!("Root=1-82138-1203123;Parent={PARENT};Sampled=1"),
            format!("Root=5b00000000b000000000000000000000000;Parent={PARENT};Sampled=1"),
        ] {
            assert!(matches!(ex(&bad), Extracted::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn order_whitespace_and_extra_fields() {
        let want = Extracted::Valid(ctx(TRACE_VAL, PARENT_VAL, Some(true)));
        for v in [
            format!("Sampled=1;Parent={PARENT};Root={XRAY_TRACE}"),
            format!(" Root={XRAY_TRACE} ; Parent={PARENT} ;\tSampled=1 "),
            format!("Self=1-67891234-12456789abcdef012345678;Root={XRAY_TRACE};Parent={PARENT};Sampled=1"),
            format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5|c512fbe3:2"),
            format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=1;"),
            format!("Root={XRAY_TRACE};;Parent={PARENT};Sampled=1;Foo=bar"),
        ] {
            assert_eq!(ex(&v), want, "{v}");
        }
    }

    #[test]
    fn sampled_values() {
        let with = |s: &str| ex(&format!("Root={XRAY_TRACE};Parent={PARENT}{s}"));
        assert_eq!(with(""), Extracted::Valid(ctx(TRACE_VAL, PARENT_VAL, None)));
        assert_eq!(
            with(";Sampled=?"),
            Extracted::Valid(ctx(TRACE_VAL, PARENT_VAL, None))
        );
        for bad in [
            ";Sampled=",
            ";Sampled=2",
            ";Sampled=true",
            ";Sampled=1;Sampled=1",
        ] {
            assert!(matches!(with(bad), Extracted::Invalid(_)), "{bad}");
        }
    }

    #[test]
    fn invalid() {
        for v in [
            String::new(),
            format!("Parent={PARENT};Sampled=1"),
            format!("Root={XRAY_TRACE};Parent={PARENT};junk"),
            format!("Root={XRAY_TRACE};Root={XRAY_TRACE};Parent={PARENT}"),
            format!("Root={XRAY_TRACE};Parent={PARENT};Parent={PARENT}"),
            format!("root={XRAY_TRACE};parent={PARENT}"),
            format!("Root=1-8A3C60F7-d188f8fa79d48a391a778fa6;Parent={PARENT}"),
            format!("Root=1-8a3c60f7-d188f8fa79d48a391a778fa;Parent={PARENT}"),
            format!("Root=1-8a3c60f7-d188f8fa79d48a391a778fa66;Parent={PARENT}"),
            format!("Root=1-8a3c60f7d188f8fa79d48a391a778fa6;Parent={PARENT}"),
            format!("Root=2-8a3c60f7-d188f8fa79d48a391a778fa6;Parent={PARENT}"),
            format!("Root=1-00000000-000000000000000000000000;Parent={PARENT}"),
            format!("Root={XRAY_TRACE};Parent=53995C3F42CD8AD8"),
            format!("Root={XRAY_TRACE};Parent=53995c3f42cd8ad"),
        ] {
            assert!(matches!(ex(&v), Extracted::Invalid(_)), "{v}");
        }
        // A load balancer's Root alone is continued with a new span id.
        assert!(matches!(
            ex(&format!("Root={XRAY_TRACE};Sampled=0")),
            Extracted::Partial(crate::formats::Partial {
                trace_id: Some(_),
                sampled: Some(false),
                ..
            })
        ));
        let v = format!("Root={XRAY_TRACE};Parent={PARENT}");
        let h = RequestHeaders::from_strs(&[("x-amzn-trace-id", &v), ("x-amzn-trace-id", &v)]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("x-amzn-trace-id: header repeated")
        );
        let h = RequestHeaders::new(vec![(
            "x-amzn-trace-id".into(),
            b"Root=\xff\xfe;Parent=\x80".to_vec(),
        )]);
        assert!(matches!(extract(&h), Extracted::Invalid(_)));
    }

    #[test]
    fn inject_values() {
        let none = RequestHeaders::default();
        assert_eq!(
            injected(&ctx(TRACE_VAL, PARENT_VAL, Some(true)), &none).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=1")
        );
        assert_eq!(
            injected(&ctx(TRACE_VAL, PARENT_VAL, Some(false)), &none).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=0")
        );
        assert_eq!(
            injected(&ctx(TRACE_VAL, PARENT_VAL, None), &none).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT}")
        );
        let mut debug = ctx(TRACE_VAL, PARENT_VAL, None);
        debug.debug = true;
        assert_eq!(
            injected(&debug, &none).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT};Sampled=1")
        );
        assert_eq!(
            injected(&ctx(1, 1, None), &none).unwrap(),
            "Root=1-00000000-000000000000000000000001;Parent=0000000000000001"
        );
        assert_eq!(injected(&ctx(0, 1, None), &none), None);
        assert_eq!(injected(&ctx(1, 0, None), &none), None);
    }

    #[test]
    fn inject_keeps_extra_fields_but_not_self() {
        let incoming = RequestHeaders::from_strs(&[(
            "x-amzn-trace-id",
            "Self=1-67891234-12456789abcdef012345678; Root=1-5759e988-bd862e3fe1be46a994272793;\
             Parent=53995c3f42cd8ad8;Sampled=?;Lineage=a87bd80c:1|68fd508a:5 ;Foo=bar;junk;=x",
        )]);
        assert_eq!(
            injected(&ctx(TRACE_VAL, 0x1111, Some(true)), &incoming).unwrap(),
            format!("Root={XRAY_TRACE};Parent=0000000000001111;Sampled=1;Lineage=a87bd80c:1|68fd508a:5;Foo=bar")
        );
        // Non-ASCII fields are dropped; a repeated header contributes nothing.
        let incoming = RequestHeaders::new(vec![(
            "x-amzn-trace-id".into(),
            b"Lineage=\xff;Foo=bar".to_vec(),
        )]);
        assert_eq!(
            injected(&ctx(TRACE_VAL, PARENT_VAL, None), &incoming).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT};Foo=bar")
        );
        let incoming = RequestHeaders::from_strs(&[
            ("x-amzn-trace-id", "Foo=bar"),
            ("x-amzn-trace-id", "Foo=baz"),
        ]);
        assert_eq!(
            injected(&ctx(TRACE_VAL, PARENT_VAL, None), &incoming).unwrap(),
            format!("Root={XRAY_TRACE};Parent={PARENT}")
        );
    }

    #[test]
    fn round_trips() {
        let with_extras = RequestHeaders::from_strs(&[(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1111111111111111;Sampled=1;Lineage=a87bd80c:1",
        )]);
        for incoming in [RequestHeaders::default(), with_extras] {
            for trace_id in [
                TRACE_VAL,
                0xa3ce929d0e0e4736,
                1,
                u128::MAX,
                1 << 64,
                1 << 96,
                u128::from(u64::MAX),
            ] {
                for span_id in [PARENT_VAL, 1, u64::MAX] {
                    for sampled in [None, Some(true), Some(false)] {
                        let c = ctx(trace_id, span_id, sampled);
                        assert_eq!(round_trip(Format::XRay, &c, &incoming), Extracted::Valid(c));
                    }
                }
            }
        }
    }
}
