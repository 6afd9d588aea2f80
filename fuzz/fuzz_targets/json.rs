//! The configuration JSON reader (filter_common::json) against serde_json on arbitrary bytes: it accepts
//! exactly what serde_json accepts, except duplicate keys and nesting deeper than json::MAX_DEPTH (which
//! it refuses by design) and floats beyond f64's range (which serde_json refuses); what it accepts reads
//! back the same strings, structure and numbers.
#![no_main]

use filter_common::json::{parse, Value, Whole};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = parse(data, usize::MAX);
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => same(a, b),
        // serde_json refuses a float beyond f64's range; the reader keeps its text.
        (Ok(_), Err(e)) if e.to_string().contains("number out of range") => {}
        (Ok(a), Err(e)) => panic!("accepted what serde_json refuses ({e}): {a:?}"),
        (Err(e), Ok(_)) => assert!(
            e.reason.contains("twice") || e.reason.contains("deeper"),
            "refused what serde_json accepts: {e}"
        ),
        // serde_json also stops at 128 levels: both refuse.
        (Err(_), Err(_)) => {}
    }
});

fn same(a: &Value, b: &serde_json::Value) {
    match (a, b) {
        (Value::Null, serde_json::Value::Null) => {}
        (Value::Bool(x), serde_json::Value::Bool(y)) => assert_eq!(x, y),
        (Value::String(x), serde_json::Value::String(y)) => assert_eq!(x, y),
        (Value::Number(n), serde_json::Value::Number(m)) => {
            if let Some(u) = m.as_u64() {
                assert_eq!(n.whole(), Whole::Exact(u), "{}", n.as_str());
            }
            if let Some(f) = m.as_f64() {
                let g = n.to_f64();
                // Within a relative 1e-12, or at the ends of the range (subnormals, near overflow).
                let close = (f - g).abs() <= f.abs() * 1e-12
                    || (f - g).abs() <= f64::MIN_POSITIVE
                    || f.abs() > 1e307;
                assert!(close, "{}: {g} vs serde_json's {f}", n.as_str());
            }
        }
        (Value::Array(xs), serde_json::Value::Array(ys)) => {
            assert_eq!(xs.len(), ys.len());
            xs.iter().zip(ys).for_each(|(x, y)| same(x, y));
        }
        (Value::Object(xs), serde_json::Value::Object(ys)) => {
            assert_eq!(xs.len(), ys.len());
            for (k, x) in xs {
                same(x, ys.get(k).unwrap_or(&serde_json::Value::Null));
            }
        }
        (a, b) => panic!("{a:?} read as {b:?} by serde_json"),
    }
}
