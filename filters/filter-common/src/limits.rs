//! Bounds an operator can see and rely on: how long configured strings may be, and the most shared
//! memory (Envoy's process-wide shared data) a configuration may claim in the worst case. Each filter
//! computes its worst case at load from the sizes its store really writes, and a configuration above
//! `maxSharedMemory` is refused with the field that costs the most, instead of growing in production.

pub use crate::config::MAX_CONFIG_BYTES;
use crate::config::{ConfigError, Whole, WholeVisitor};
pub use crate::text::human;
use serde::de::{Deserializer, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// The longest free text in a configuration (a static body or a template is the largest kind); every
/// other string has a tighter limit of its own (names, header names and values, match values).
pub const MAX_STRING_LEN: usize = 65_536;
/// The longest header name a field may name.
pub const MAX_HEADER_NAME_LEN: usize = 256;
/// The longest header value a field may hold.
pub const MAX_HEADER_VALUE_LEN: usize = 8_192;
/// The longest match value (cluster, route, authority, path prefix, method).
pub const MAX_MATCH_VALUE_LEN: usize = 1_024;
/// The default `maxSharedMemory`: a sidecar's share of a pod's memory, far above what the defaults use.
pub const DEFAULT_MAX_SHARED_MEMORY: u64 = 64 << 20;
/// What the host keeps per shared-data key besides the key and value bytes: its hash-map node, two
/// strings' headers and allocation overhead, the CAS token (proxy-wasm-cpp-host `SharedData`).
pub const SHARED_ENTRY_OVERHEAD: u64 = 128;

/// The host memory one shared-data key holds.
pub fn shared_entry_bytes(key_len: usize, value_len: usize) -> u64 {
    SHARED_ENTRY_OVERHEAD + key_len as u64 + value_len as u64
}

/// The host memory of a table of `slots` keys `<prefix><slot number>`, each holding at most `value_len`
/// bytes: the shape of every fixed-size slot table the filters keep.
pub fn slot_table_bytes(slots: u32, prefix_len: usize, value_len: usize) -> u64 {
    u64::from(slots).saturating_mul(shared_entry_bytes(
        prefix_len + decimal_digits(slots),
        value_len,
    ))
}

/// How many decimal digits the largest number below `n` (a slot number) may have.
pub fn decimal_digits(n: u32) -> usize {
    n.max(1).ilog10() as usize + 1
}

/// `Ok` when `value` is at most `max` bytes long, else the error for `field`.
pub fn check_len(value: &str, max: usize, field: impl Into<String>) -> Result<(), ConfigError> {
    if value.len() <= max {
        Ok(())
    } else {
        Err(ConfigError::new(
            field,
            format!("is {} bytes long; at most {max} are allowed", value.len()),
        ))
    }
}

/// The worst-case shared memory of a configuration, by the field that sizes each part.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    parts: Vec<(String, u64)>,
}

impl MemoryBudget {
    /// Adds `bytes` sized by `field` (a dotted path such as `breakers[2].maxKeys`).
    pub fn add(&mut self, field: impl Into<String>, bytes: u64) {
        self.parts.push((field.into(), bytes));
    }

    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |sum, (_, b)| sum.saturating_add(*b))
    }

    /// Refuses a total above `limit`, naming the field of the largest part, so the one log line says
    /// what to lower (or that `maxSharedMemory` must be raised).
    pub fn check(&self, limit: u64) -> Result<(), ConfigError> {
        let total = self.total();
        if total <= limit {
            return Ok(());
        }
        let (field, bytes) = self
            .parts
            .iter()
            .max_by_key(|(_, b)| *b)
            .map(|(f, b)| (f.as_str(), *b))
            .unwrap_or(("maxSharedMemory", total));
        Err(ConfigError::new(
            field,
            format!(
                "needs up to {} of shared memory ({} for the whole configuration), above maxSharedMemory {}; lower it or raise maxSharedMemory",
                human(bytes),
                human(total),
                human(limit)
            ),
        ))
    }
}

/// `x` with one decimal for a log line (a rate such as `33.3`), as `{:.1}` gives it except where `x`
/// lies within a rounding error of a half tenth; without the standard library's float formatting (about
/// 14 KB of a module). Not finite: `?`.
pub fn one_decimal(x: f64) -> String {
    if !x.is_finite() {
        return "?".to_string();
    }
    let tenths = (x.abs() * 10.0).round_ties_even() as u64;
    let sign = if x < 0.0 && tenths != 0 { "-" } else { "" };
    format!("{sign}{}.{}", tenths / 10, tenths % 10)
}

/// A byte size (`#[serde(deserialize_with = "byte_size")]`): a whole number of bytes (as [`whole`] reads
/// it), or a string with a Kubernetes binary suffix (`"64Mi"`, `"512Ki"`, `"1Gi"`; `"64MiB"` too).
///
/// [`whole`]: crate::config::whole
pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct ByteSize;

    impl Visitor<'_> for ByteSize {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(SIZE_SYNTAX)
        }

        fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<u64, E> {
            Ok(x)
        }

        fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<u64, E> {
            WholeVisitor::<u64>(PhantomData)
                .visit_i64(x)
                .map(|w: Whole<u64>| w.0)
        }

        fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<u64, E> {
            WholeVisitor::<u64>(PhantomData)
                .visit_f64(x)
                .map(|w: Whole<u64>| w.0)
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<u64, E> {
            parse_size(s).ok_or_else(|| {
                E::custom(format!(
                    "expected {SIZE_SYNTAX}, got {}",
                    crate::config::quoted(s)
                ))
            })
        }
    }

    d.deserialize_any(ByteSize)
}

const SIZE_SYNTAX: &str = "a whole number of bytes or a size such as \"64Mi\" (Ki, Mi, Gi)";

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = (s.get(..digits)?, s.get(digits..)?.trim());
    let n: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim_end_matches('B') {
        "" if !unit.ends_with('B') || unit == "B" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shared_memory_is_64_mib() {
        assert_eq!(DEFAULT_MAX_SHARED_MEMORY, 67_108_864);
    }

    #[test]
    fn a_size_of_the_wrong_type_says_what_is_expected() {
        let mut de = serde_json::Deserializer::from_str("true");
        let e = byte_size(&mut de).unwrap_err().to_string();
        assert!(e.contains(SIZE_SYNTAX), "{e}");
    }

    #[test]
    fn an_entry_costs_the_host_s_overhead_and_its_bytes() {
        assert_eq!(shared_entry_bytes(0, 0), SHARED_ENTRY_OVERHEAD);
        assert_eq!(shared_entry_bytes(10, 300), SHARED_ENTRY_OVERHEAD + 310);
        // A table of 100 slots `<prefix><0..99>`: two digits at most.
        assert_eq!(
            slot_table_bytes(100, 5, 40),
            100 * (SHARED_ENTRY_OVERHEAD + 5 + 3 + 40)
        );
        for (n, digits) in [
            (0, 1),
            (1, 1),
            (9, 1),
            (10, 2),
            (99, 2),
            (100, 3),
            (65_536, 5),
        ] {
            assert_eq!(decimal_digits(n), digits, "{n}");
        }
        assert_eq!(decimal_digits(u32::MAX), 10);
    }

    #[test]
    fn sizes_parse_in_bytes_and_binary_units() {
        let v = |json: &str| {
            let mut de = serde_json::Deserializer::from_str(json);
            byte_size(&mut de).ok()
        };
        assert_eq!(v(r#"1024"#), Some(1024));
        assert_eq!(v(r#"1024.0"#), Some(1024));
        assert_eq!(v(r#""64Mi""#), Some(64 << 20));
        assert_eq!(v(r#""64MiB""#), Some(64 << 20));
        assert_eq!(v(r#""512Ki""#), Some(512 << 10));
        assert_eq!(v(r#""2Gi""#), Some(2 << 30));
        assert_eq!(v(r#""100""#), Some(100));
        assert_eq!(v(r#""100B""#), Some(100), "bytes may say so");
        assert_eq!(v(r#""100BB""#), None);
        for bad in [
            r#""64MB""#,
            r#""Mi""#,
            "-1",
            "1.5",
            r#""99999999999999Gi""#,
            "18446744073709551616",
            "true",
        ] {
            assert_eq!(v(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_budget_names_the_largest_part() {
        let mut b = MemoryBudget::default();
        b.add("breakers[0].maxKeys", 10 << 20);
        b.add("breakers[1].maxKeys", 60 << 20);
        assert_eq!(b.total(), 70 << 20);
        assert!(b.check(70 << 20).is_ok());
        let e = b.check(64 << 20).unwrap_err();
        assert_eq!(e.field, "breakers[1].maxKeys");
        assert!(e.reason.contains("60.0 MiB"), "{}", e.reason);
        assert!(e.reason.contains("70.0 MiB"), "{}", e.reason);
        assert!(
            e.reason.contains("maxSharedMemory 64.0 MiB"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn human_sizes_round_like_the_float_formatting_did() {
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(64 << 20), "64.0 MiB");
        assert_eq!(human((1 << 20) + (1 << 20) / 10), "1.1 MiB");
        assert_eq!(human(1280), "1.2 KiB", "1.25 exactly: half to even");
        assert_eq!(human(1792), "1.8 KiB", "1.75 exactly: half to even");
        assert_eq!(human(u64::MAX), "17179869184.0 GiB");
        for b in [
            1500u64,
            10_000,
            3 << 29,
            123_456_789,
            1_101_004,
            1_101_005,
            1_153_433,
        ] {
            let size = [1u64 << 30, 1 << 20, 1 << 10]
                .into_iter()
                .find(|s| b >= *s)
                .unwrap();
            assert_eq!(
                human(b).split(' ').next().unwrap(),
                format!("{:.1}", b as f64 / size as f64)
            );
        }
    }

    #[test]
    fn one_decimal_is_what_the_float_formatting_gave() {
        for x in [
            0.0, 50.0, 33.333_333, 66.666_7, 12.5, 99.96, 100.0, 0.04, 0.06, 1e-9, -2.25, 1e6,
        ] {
            assert_eq!(one_decimal(x), format!("{x:.1}"), "{x}");
        }
        assert_eq!(one_decimal(f64::NAN), "?");
    }

    #[test]
    fn lengths_are_checked() {
        assert!(check_len("abc", 3, "f").is_ok());
        assert_eq!(check_len("abcd", 3, "f").unwrap_err().field, "f");
    }
}
