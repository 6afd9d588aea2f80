//! W3C `traceparent` (filter_common::w3c), and the fallback filter's reading of it: a parsed value
//! renders to a value that parses the same.
#![no_main]

use filter_common::w3c::parse_traceparent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tp) = parse_traceparent(data) {
        let rendered = tp.render();
        match parse_traceparent(rendered.as_bytes()) {
            Ok(back) => assert_eq!(back, tp, "{rendered}"),
            Err(e) => panic!("its own rendering does not parse: {e}: {rendered}"),
        }
    }
    if let Some(tp) = fallback::trace::well_formed_traceparent(data) {
        let _ = fallback::trace::trace_id(&tp);
    }
    let _ = fallback::trace::trace_id_from_state(data);
});
