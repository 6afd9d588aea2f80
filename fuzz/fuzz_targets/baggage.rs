//! `baggage` (one header value per line) and the Jaeger/OpenTracing baggage headers: parsing, limits,
//! rendering and reading the rendering back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trace_context::baggage::{Baggage, BaggageLimits};
use trace_context::headers::{HeaderEdits, RequestHeaders};

fuzz_target!(|data: &[u8]| {
    let (mut bag, _dropped) = Baggage::parse(filters_fuzz::lines(data));
    let headers = RequestHeaders::new(filters_fuzz::header_pairs(data));
    bag.merge(Baggage::from_prefixed(&headers, "uberctx-"));
    bag.merge(Baggage::from_prefixed(&headers, "ot-baggage-"));
    let limits = BaggageLimits::default();
    bag.apply(&limits);
    if let Some(rendered) = bag.to_header() {
        let (back, dropped) = Baggage::parse(std::iter::once(rendered.as_bytes()));
        assert_eq!(dropped, 0, "its own rendering lost members: {rendered:?}");
        assert_eq!(back.len(), bag.len(), "{rendered:?}");
    }
    let mut edits = HeaderEdits::default();
    bag.to_prefixed("uberctx-", &mut edits);
});
