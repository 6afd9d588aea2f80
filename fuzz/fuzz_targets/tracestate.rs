//! `tracestate` (one header value per line): parsing, editing, rendering within a length limit, and
//! reading the rendering back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trace_context::tracestate::TraceState;

fuzz_target!(|data: &[u8]| {
    let Ok(mut ts) = TraceState::parse(filters_fuzz::lines(data)) else {
        return;
    };
    for max in [0, 128, 512, usize::MAX] {
        if let Some(rendered) = ts.to_header(max) {
            assert!(rendered.len() <= max, "rendered past its limit");
            let back = match TraceState::parse(std::iter::once(rendered.as_bytes())) {
                Ok(back) => back,
                Err(e) => panic!("its own rendering does not parse: {e}: {rendered:?}"),
            };
            if max == usize::MAX {
                assert_eq!(back, ts, "the rendering reads back different");
            }
        }
    }
    ts.upsert("fz", "00f067aa0ba902b7");
    ts.remove("fz");
    let _ = ts.get("congo");
});
