//! `grpc-trace-bin`: the OpenCensus binary trace context (opencensus-specs `encodings/BinaryEncoding.md`),
//! base64 on the wire.
//!
//! Layout: version byte 0, then fields `<id><value>`: 0 = trace id (16 bytes), 1 = span id (8 bytes),
//! 2 = options (1 byte, bit 0 = sampled). Fields may come in any order; decoding stops at the first unknown
//! field id (newer fields follow the known ones). A truncated or repeated known field, another version,
//! or a missing/zero trace or span id is `Invalid`. No options field means "defer".

use crate::context::TraceContext;
use crate::formats::{base64, Extracted};
use crate::headers::{HeaderEdits, RequestHeaders};

pub const HEADERS: &[&str] = &[GRPC_TRACE_BIN];

const GRPC_TRACE_BIN: &str = "grpc-trace-bin";

const FIELD_TRACE_ID: u8 = 0;
const FIELD_SPAN_ID: u8 = 1;
const FIELD_OPTIONS: u8 = 2;

/// Version byte plus the three known fields: the longest prefix that can hold each known field once.
const ENCODED_LEN: usize = 29;

pub fn extract(h: &RequestHeaders) -> Extracted {
    let value = match h.get_single(GRPC_TRACE_BIN) {
        Ok(Some(v)) => v.trim_ascii(),
        Ok(None) => return Extracted::Absent,
        Err(_) => return Extracted::Invalid("grpc-trace-bin: header repeated"),
    };
    // Only the first 29 bytes can hold known fields (each at most once), so decode just those, on the
    // stack; the rest of the input is still validated as base64.
    let mut buf = [0u8; ENCODED_LEN];
    let Some(total) = base64::decode_prefix(value, &mut buf) else {
        return Extracted::Invalid("grpc-trace-bin: not base64");
    };
    let data = buf.get(..total.min(ENCODED_LEN)).unwrap_or_default();
    match parse(data) {
        Ok(ctx) => Extracted::Valid(ctx),
        Err(reason) => Extracted::Invalid(reason),
    }
}

fn parse(data: &[u8]) -> Result<TraceContext, &'static str> {
    let (&version, mut rest) = data.split_first().ok_or("grpc-trace-bin: empty")?;
    if version != 0 {
        return Err("grpc-trace-bin: unsupported version");
    }
    let mut trace_id = None;
    let mut span_id = None;
    let mut options = None;
    while let Some((&field, tail)) = rest.split_first() {
        let len = match field {
            FIELD_TRACE_ID => 16,
            FIELD_SPAN_ID => 8,
            FIELD_OPTIONS => 1,
            _ => break,
        };
        // Checked before the length: with each known field at most once, the 29-byte prefix always
        // holds the whole field, so a short field is truly truncated, not cut by the prefix.
        let seen = match field {
            FIELD_TRACE_ID => trace_id.is_some(),
            FIELD_SPAN_ID => span_id.is_some(),
            _ => options.is_some(),
        };
        if seen {
            return Err("grpc-trace-bin: field repeated");
        }
        let (value, tail) = tail
            .split_at_checked(len)
            .ok_or("grpc-trace-bin: truncated field")?;
        match field {
            FIELD_TRACE_ID => trace_id = Some(be_u128(value)),
            FIELD_SPAN_ID => span_id = Some(be_u64(value)),
            _ => options = value.first().copied(),
        }
        rest = tail;
    }
    Ok(TraceContext {
        trace_id: trace_id
            .filter(|&v| v != 0)
            .ok_or("grpc-trace-bin: missing or zero trace id")?,
        span_id: span_id
            .filter(|&v| v != 0)
            .ok_or("grpc-trace-bin: missing or zero span id")?,
        sampled: options.map(|o| o & 1 == 1),
        debug: false,
        random: false,
    })
}

fn be_u128(b: &[u8]) -> u128 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u128::from(x))
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

/// Writes the 29-byte form, base64 with padding. Options is 1 for sampled (or debug), else 0; a deferred
/// decision is also 0, which the OpenCensus spec defines as "the caller made no decision" (readers treat
/// it as not sampled).
pub fn inject(ctx: &TraceContext, _incoming: &RequestHeaders, edits: &mut HeaderEdits) {
    if ctx.trace_id == 0 || ctx.span_id == 0 {
        // The type forbids zero ids; writing them would produce a header every reader rejects.
        return;
    }
    let sampled = ctx.debug || ctx.sampled == Some(true);
    let mut bytes = Vec::with_capacity(ENCODED_LEN);
    bytes.extend_from_slice(&[0, FIELD_TRACE_ID]);
    bytes.extend_from_slice(&ctx.trace_id.to_be_bytes());
    bytes.push(FIELD_SPAN_ID);
    bytes.extend_from_slice(&ctx.span_id.to_be_bytes());
    bytes.extend_from_slice(&[FIELD_OPTIONS, u8::from(sampled)]);
    edits.set(GRPC_TRACE_BIN, base64::encode(&bytes));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::formats::test_support::{ctx, injected_value, round_trip};
    use crate::formats::Format;

    // opencensus-specs encodings/BinaryEncoding.md "Valid example".
    const SPEC_BYTES: [u8; 29] = [
        0, 0, 75, 249, 47, 53, 119, 179, 77, 166, 163, 206, 146, 157, 0, 14, 71, 54, 1, 52, 240,
        103, 170, 11, 169, 2, 183, 2, 1,
    ];
    const SPEC_B64: &str = "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=";
    const SPEC_TRACE: u128 = 0x4bf92f3577b34da6a3ce929d000e4736;
    const SPEC_SPAN: u64 = 0x34f067aa0ba902b7;

    fn ex_bytes(bytes: &[u8]) -> Extracted {
        ex(&base64::encode(bytes))
    }

    fn ex(value: &str) -> Extracted {
        extract(&RequestHeaders::from_strs(&[("grpc-trace-bin", value)]))
    }

    fn injected(c: &TraceContext) -> Option<String> {
        injected_value(
            Format::GrpcTraceBin,
            c,
            &RequestHeaders::default(),
            GRPC_TRACE_BIN,
        )
    }

    #[test]
    fn absent() {
        assert_eq!(extract(&RequestHeaders::default()), Extracted::Absent);
    }

    #[test]
    fn spec_example() {
        assert_eq!(base64::encode(&SPEC_BYTES), SPEC_B64);
        let want = Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(true)));
        assert_eq!(ex(SPEC_B64), want);
        // Padding is optional; OWS is trimmed.
        assert_eq!(ex(SPEC_B64.trim_end_matches('=')), want);
        assert_eq!(ex(&format!(" {SPEC_B64} ")), want);
        assert_eq!(
            injected(&ctx(SPEC_TRACE, SPEC_SPAN, Some(true))).unwrap(),
            SPEC_B64
        );
    }

    // opentelemetry-go-contrib propagators/opencensus/binary_test.go
    #[test]
    fn otel_vectors() {
        let trace = 0x0e360c00000000000000000000000000u128;
        let span = 0x02080e1400000000u64;
        let mut b = vec![0, 0];
        b.extend_from_slice(&trace.to_be_bytes());
        b.push(1);
        b.extend_from_slice(&span.to_be_bytes());
        b.extend_from_slice(&[2, 1]);
        assert_eq!(ex_bytes(&b), Extracted::Valid(ctx(trace, span, Some(true))));
        *b.last_mut().unwrap() = 0;
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(trace, span, Some(false)))
        );
        assert!(matches!(
            ex("5435j345io34t5904w3jt894j3t854w89tp95jgt9"),
            Extracted::Invalid(_)
        ));
        assert!(matches!(ex(""), Extracted::Invalid(_)));
    }

    #[test]
    fn field_order_options_and_unknown_fields() {
        let mut b = SPEC_BYTES.to_vec();
        // Options bit 0 only; other bits are undefined and ignored.
        b[28] = 0xfe;
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(false)))
        );
        b[28] = 0x03;
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(true)))
        );

        // No options field: deferred.
        assert_eq!(
            ex_bytes(&SPEC_BYTES[..27]),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, None))
        );

        // Unknown field ids end decoding, whatever follows them.
        let mut b = SPEC_BYTES.to_vec();
        b.extend_from_slice(&[3, 0xff, 0xff, 0, 0]);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(true)))
        );
        let mut b = SPEC_BYTES[..27].to_vec();
        b.extend_from_slice(&[9, 2]);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, None))
        );
        // A long tail after the known fields.
        let mut b = SPEC_BYTES.to_vec();
        b.extend_from_slice(&[7; 300]);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(true)))
        );

        // Options first, span before trace.
        let mut b = vec![0, 2, 1, 1];
        b.extend_from_slice(&SPEC_SPAN.to_be_bytes());
        b.push(0);
        b.extend_from_slice(&SPEC_TRACE.to_be_bytes());
        assert_eq!(
            ex_bytes(&b),
            Extracted::Valid(ctx(SPEC_TRACE, SPEC_SPAN, Some(true)))
        );
    }

    #[test]
    fn invalid() {
        // Wrong version.
        let mut b = SPEC_BYTES.to_vec();
        b[0] = 1;
        assert_eq!(
            ex_bytes(&b),
            Extracted::Invalid("grpc-trace-bin: unsupported version")
        );
        // Truncated fields.
        for len in [2, 10, 17, 19, 26, 28] {
            assert_eq!(
                ex_bytes(&SPEC_BYTES[..len]),
                Extracted::Invalid("grpc-trace-bin: truncated field"),
                "{len}"
            );
        }
        // Missing ids.
        assert_eq!(
            ex_bytes(&[0]),
            Extracted::Invalid("grpc-trace-bin: missing or zero trace id")
        );
        assert_eq!(
            ex_bytes(&SPEC_BYTES[..18]),
            Extracted::Invalid("grpc-trace-bin: missing or zero span id")
        );
        assert_eq!(
            ex_bytes(&[0, 1, 1, 2, 3, 4, 5, 6, 7, 8]),
            Extracted::Invalid("grpc-trace-bin: missing or zero trace id")
        );
        assert_eq!(
            ex_bytes(&[0, 5, 0]),
            Extracted::Invalid("grpc-trace-bin: missing or zero trace id")
        );
        assert_eq!(ex_bytes(&[]), Extracted::Invalid("grpc-trace-bin: empty"));
        // Zero ids.
        let mut b = SPEC_BYTES.to_vec();
        b[2..18].fill(0);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Invalid("grpc-trace-bin: missing or zero trace id")
        );
        let mut b = SPEC_BYTES.to_vec();
        b[19..27].fill(0);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Invalid("grpc-trace-bin: missing or zero span id")
        );
        // Repeated field.
        let mut b = SPEC_BYTES[..27].to_vec();
        b.extend_from_slice(&[1, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Invalid("grpc-trace-bin: field repeated")
        );
        let mut b = vec![0, 2, 1, 2, 0];
        b.extend_from_slice(&SPEC_BYTES[1..27]);
        assert_eq!(
            ex_bytes(&b),
            Extracted::Invalid("grpc-trace-bin: field repeated")
        );
        // Not base64 (URL-safe alphabet, bad padding, bytes that are not ASCII).
        assert_eq!(
            ex("AABL-S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE"),
            Extracted::Invalid("grpc-trace-bin: not base64")
        );
        assert_eq!(
            ex("AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=="),
            Extracted::Invalid("grpc-trace-bin: not base64")
        );
        let h = RequestHeaders::new(vec![(
            "grpc-trace-bin".into(),
            vec![0xff, 0xfe, 0xfd, 0xfc],
        )]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("grpc-trace-bin: not base64")
        );
        // The tail after the known fields must still be base64.
        let bad_tail = format!("{}!!!!", SPEC_B64.trim_end_matches('='));
        assert_eq!(
            ex(&bad_tail),
            Extracted::Invalid("grpc-trace-bin: not base64")
        );
        // Repeated header.
        let h = RequestHeaders::from_strs(&[
            ("grpc-trace-bin", SPEC_B64),
            ("grpc-trace-bin", SPEC_B64),
        ]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid("grpc-trace-bin: header repeated")
        );
    }

    #[test]
    fn inject_values() {
        let decode = |s: String| base64::decode(s.as_bytes()).unwrap();
        let b = decode(injected(&ctx(SPEC_TRACE, SPEC_SPAN, Some(false))).unwrap());
        assert_eq!(b.len(), 29);
        assert_eq!(b[..28], SPEC_BYTES[..28]);
        assert_eq!(b[28], 0);
        assert_eq!(
            decode(injected(&ctx(SPEC_TRACE, SPEC_SPAN, None)).unwrap())[28],
            0
        );
        let mut debug = ctx(SPEC_TRACE, SPEC_SPAN, None);
        debug.debug = true;
        assert_eq!(decode(injected(&debug).unwrap())[28], 1);
        // A 64-bit trace id is the low 8 bytes of the 16.
        let b = decode(injected(&ctx(0xa3ce929d0e0e4736, 1, Some(true))).unwrap());
        assert_eq!(
            b[2..18],
            [0, 0, 0, 0, 0, 0, 0, 0, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36]
        );
        assert_eq!(injected(&ctx(0, 1, None)), None);
        assert_eq!(injected(&ctx(1, 0, None)), None);
    }

    #[test]
    fn round_trips() {
        let incoming = RequestHeaders::from_strs(&[("grpc-trace-bin", SPEC_B64)]);
        for trace_id in [
            SPEC_TRACE,
            0xa3ce929d0e0e4736,
            1,
            u128::MAX,
            1 << 64,
            u128::from(u64::MAX),
        ] {
            for span_id in [SPEC_SPAN, 1, u64::MAX] {
                for sampled in [Some(true), Some(false)] {
                    let c = ctx(trace_id, span_id, sampled);
                    assert_eq!(
                        round_trip(Format::GrpcTraceBin, &c, &incoming),
                        Extracted::Valid(c)
                    );
                }
            }
        }
        // The 29-byte form always carries options: a deferred decision comes back as "not sampled".
        let mut edits = HeaderEdits::default();
        inject(&ctx(SPEC_TRACE, 1, None), &incoming, &mut edits);
        assert_eq!(
            extract(&incoming.apply(&edits)),
            Extracted::Valid(ctx(SPEC_TRACE, 1, Some(false)))
        );
    }
}
