//! Every trace format's extract over arbitrary request headers, a context read back through the format
//! that wrote it, and the whole per-request decision (default configuration and every format with
//! baggage translation on).
#![no_main]

use std::sync::OnceLock;

use filter_common::config::parse;
use filter_common::ids::IdGenerator;
use libfuzzer_sys::fuzz_target;
use trace_context::config::Config;
use trace_context::formats::{Extracted, Format};
use trace_context::headers::{HeaderEdits, RequestHeaders};
use trace_context::propagation::Propagator;

fn propagators() -> &'static [Propagator; 2] {
    static P: OnceLock<[Propagator; 2]> = OnceLock::new();
    P.get_or_init(|| {
        let all = r#"{"extract": ["tracecontext", "b3", "b3multi", "jaeger", "ottrace", "datadog",
            "xray", "cloudtrace", "grpc-trace-bin"], "inject": ["tracecontext", "b3", "b3multi",
            "jaeger", "ottrace", "datadog", "xray", "cloudtrace", "grpc-trace-bin"],
            "participate": true, "tracestateKey": "fz", "baggage": {"fromJaeger": true, "fromOtTrace": true}}"#;
        let all: Config = match parse(Some(all.as_bytes())) {
            Ok(c) => c,
            Err(e) => panic!("the fuzz target's own configuration: {e}"),
        };
        [Propagator::new(Config::default()), Propagator::new(all)]
    })
}

fuzz_target!(|data: &[u8]| {
    let headers = RequestHeaders::new(filters_fuzz::header_pairs(data));
    for format in Format::ALL {
        if let Extracted::Valid(ctx) = format.extract(&headers) {
            // What a format reads, it writes back so that it reads the same ids.
            let none = RequestHeaders::default();
            let mut edits = HeaderEdits::default();
            format.inject(&ctx, &none, &mut edits);
            match format.extract(&none.apply(&edits)) {
                Extracted::Valid(back) => assert_eq!(
                    (back.trace_id, back.span_id),
                    (ctx.trace_id, ctx.span_id),
                    "{} changed the ids it read",
                    format.name()
                ),
                other => panic!("{} cannot read its own output: {other:?}", format.name()),
            }
        }
    }
    for p in propagators() {
        for egress in [false, true] {
            let mut ids = IdGenerator::from_seed(1);
            let d = p.decide(&headers, &mut ids, egress, 1_764_000_000, || None);
            let _ = p.forwarded_tracestate(&d, &headers);
            // The next hop reads the forwarded context back.
            let next = headers.apply(&d.edits);
            let again = p.decide(&next, &mut ids, egress, 1_764_000_000, || None);
            assert_eq!(
                again.context.trace_id, d.context.trace_id,
                "the next hop lost the trace"
            );
        }
    }
});
