//! Durations in configuration are strings such as `"500ms"`, `"10s"`, `"1m30s"` or `"1.5s"`, the forms
//! Envoy, Istio and Go users write.

use crate::config::quoted;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// A configured duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(Duration::from_millis(ms))
    }

    pub fn as_nanos_u64(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A duration field is a string in [`parse_duration`]'s syntax. The newtype carries it, so a field (or
/// an `Option` of one) needs no `deserialize_with`.
impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses one or more `<number><unit>` groups; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("expected a duration such as \"500ms\" or \"10s\", got an empty string".into());
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at_checked(number_len).ok_or_else(|| bad(s))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at_checked(unit_len).ok_or_else(|| bad(s))?;
        let nanos_per_unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad(s)),
        };
        total_nanos = total_nanos
            .checked_add(scaled(number, nanos_per_unit).ok_or_else(|| bad(s))?)
            .ok_or_else(|| bad(s))?;
        rest = next;
    }
    let nanos =
        u64::try_from(total_nanos).map_err(|_| format!("duration {} is too large", quoted(s)))?;
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits with an optional fraction) times `unit` nanoseconds, truncated to whole nanoseconds.
/// The sum is a u128, so a value past u64 is "too large" rather than malformed; but no u128 division
/// or parsing, which would cost a module about 2.5 KB.
fn scaled(number: &str, unit: u64) -> Option<u128> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    // Digits only (the caller split at the first other character), as `str::parse` would take them.
    let mut whole_value: u128 = 0;
    for digit in whole.bytes() {
        let d = u128::from(char::from(digit).to_digit(10)?);
        whole_value = whole_value.checked_mul(10)?.checked_add(d)?;
    }
    let mut value = whole_value.checked_mul(u128::from(unit))?;
    let mut scale = unit;
    for digit in fraction.chars() {
        let d = u64::from(digit.to_digit(10)?);
        scale /= 10;
        // d * scale < 10 * unit: no overflow.
        value = value.checked_add(u128::from(d * scale))?;
    }
    Some(value)
}

fn bad(s: &str) -> String {
    format!(
        "expected a duration such as \"500ms\", \"10s\" or \"1m30s\", got {}",
        quoted(s)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_are_a_unit_and_nanos_saturate() {
        assert_eq!(parse_duration("250ns").unwrap(), Duration::from_nanos(250));
        assert_eq!(
            ConfigDuration::from_millis(1_500).as_nanos_u64(),
            1_500_000_000
        );
        assert_eq!(
            ConfigDuration(Duration::from_secs(u64::MAX)).as_nanos_u64(),
            u64::MAX
        );
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration(" 5s ").unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "10",
            "s",
            "-1s",
            "1x",
            "1.2.3s",
            "ms5",
            "1 s",
            "99999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn past_u64_is_too_large_and_past_u128_malformed() {
        let e = parse_duration("99999999999999h").unwrap_err();
        assert!(
            e.starts_with("duration \"99999999999999h\" is too large"),
            "{e}"
        );
        let e = parse_duration(&format!("{}s", "9".repeat(40))).unwrap_err();
        assert!(e.starts_with("expected a duration such as"), "{e}");
        assert_eq!(
            parse_duration("18446744073.709551615s").unwrap(),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(
            parse_duration("0.0000000019s").unwrap(),
            Duration::from_nanos(1)
        );
    }

    #[test]
    fn deserializes_from_json_string_only() {
        use crate::config::from_slice;
        let d: ConfigDuration = from_slice(b"\"250ms\"").unwrap();
        assert_eq!(d.0, Duration::from_millis(250));
        assert!(from_slice::<ConfigDuration>(b"250").is_err());
        let e = from_slice::<ConfigDuration>(b"\"soon\"").unwrap_err();
        assert_eq!(e.field, "(root)");
        assert!(
            e.reason.starts_with("expected a duration such as"),
            "{}",
            e.reason
        );
    }
}
