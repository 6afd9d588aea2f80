//! The filter's configuration (Istio `pluginConfig` JSON, camelCase), read with serde. Every field has a
//! default, so no configuration at all gives a working filter. Each field sits here once, with its
//! default; `Validate` holds what serde cannot check. The worst-case shared memory is checked where the
//! filter loads (`memory::load`). Imports nothing of this crate but value types (`Format`, the
//! baggage limits, the W3C `tracestate` rules).

use crate::baggage::BaggageLimits;
use crate::formats::Format;
use filter_common::config::{quoted, whole, ConfigError, Validate};
use filter_common::duration::ConfigDuration;
use filter_common::limits::{
    byte_size, check_len, DEFAULT_MAX_SHARED_MEMORY, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN,
};
use filter_common::w3c::{
    check_filter_state_name, check_response_header, DEFAULT_FILTER_STATE_NAME,
    DEFAULT_RESPONSE_HEADER,
};
use filter_common::{from_name_only, from_object_only};
use serde::Deserialize;
use smart_default::SmartDefault;

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// Formats read from requests, in precedence order: the first valid one wins.
    #[default(_code = "Format::ALL.to_vec()")]
    pub extract: Vec<Format>,
    /// Formats always written on the forwarded request.
    #[default(_code = "vec![Format::TraceContext]")]
    pub inject: Vec<Format>,
    /// Formats that arrived but are not in `inject` are rewritten from the winning context (true) or
    /// removed (false), so downstream never sees two different traces.
    #[default(true)]
    pub keep_received_formats: bool,
    /// Probability that a trace this filter starts, or one that arrived without a decision, is sampled.
    #[default(1.0)]
    pub sampling_ratio: f64,
    /// 128 or 64: the size of trace ids this filter creates. 64 suits meshes with 64-bit-only peers.
    #[default(128)]
    #[serde(deserialize_with = "whole")]
    pub new_trace_id_bits: u32,
    /// Act as a hop: give the forwarded request a new span (parent) id.
    pub participate: bool,
    /// When set and participating, the `tracestate` member written with this key (value: the new span id).
    pub tracestate_key: Option<String>,
    /// Longest `tracestate` forwarded; whole members are dropped beyond it (W3C: at least 512).
    #[default(crate::tracestate::PROPAGATE_MIN)]
    #[serde(deserialize_with = "whole")]
    pub tracestate_max_length: usize,
    pub baggage: BaggageConfig,
    /// Response header carrying the trace id; empty disables it.
    #[default(DEFAULT_RESPONSE_HEADER.to_string())]
    pub response_header: String,
    /// Adds W3C `traceresponse` to responses.
    #[default(true)]
    pub trace_response: bool,
    /// Filter state name holding the trace id (`%FILTER_STATE(wasm.NAME)%` in access logs); empty disables.
    #[default(DEFAULT_FILTER_STATE_NAME.to_string())]
    pub filter_state_name: String,
    /// Which side of the workload this listener is: `auto` reads Envoy's `listener_direction`.
    pub direction: Direction,
    pub correlation: CorrelationConfig,
    /// The most shared memory the configuration may need in the worst case (see `memory`).
    #[default(DEFAULT_MAX_SHARED_MEMORY)]
    #[serde(deserialize_with = "byte_size")]
    pub max_shared_memory: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct BaggageConfig {
    /// Handle `baggage` at all (false: leave every baggage header untouched).
    #[default(true)]
    pub enabled: bool,
    /// Members kept, from the left (1 to 1024).
    #[default(BaggageLimits::default().max_members)]
    #[serde(deserialize_with = "whole")]
    pub max_members: usize,
    /// Bytes of the serialized `baggage` header (1 to 65536).
    #[default(BaggageLimits::default().max_bytes)]
    #[serde(deserialize_with = "whole")]
    pub max_bytes: usize,
    /// When set, only these keys are propagated.
    pub allow_keys: Option<Vec<String>>,
    /// Keys never propagated.
    pub deny_keys: Vec<String>,
    /// Translate Jaeger `uberctx-*` headers into `baggage`.
    #[default(true)]
    pub from_jaeger: bool,
    /// Translate OpenTracing `ot-baggage-*` headers into `baggage`.
    #[default(true)]
    pub from_ot_trace: bool,
    /// Remove `baggage` (and the translated headers) on outbound requests leaving the workload.
    pub strip_on_egress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub enum Direction {
    #[default]
    Auto,
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct CorrelationConfig {
    /// Restore the context of an outbound request that carries only `x-request-id`.
    pub enabled: bool,
    /// Number of fixed slots in shared data (memory is slots x one small entry).
    #[default(4096)]
    #[serde(deserialize_with = "whole")]
    pub slots: u32,
    /// How long an inbound context can be restored.
    #[default(ConfigDuration::from_millis(60_000))]
    pub ttl: ConfigDuration,
}

from_object_only!(Config, BaggageConfig, CorrelationConfig);
from_name_only!(Direction);

impl BaggageConfig {
    pub fn limits(&self) -> BaggageLimits {
        BaggageLimits {
            max_members: self.max_members,
            max_bytes: self.max_bytes,
            allow: self.allow_keys.clone(),
            deny: self.deny_keys.clone(),
        }
    }
}

/// The most baggage members kept: W3C asks for at least 64; beyond this a header is an attack.
pub const MAX_BAGGAGE_MEMBERS: usize = 1024;
/// The largest `baggage` header kept: W3C asks for at least 8192 bytes; Envoy's default limit for all
/// request headers together is 60 KiB.
pub const MAX_BAGGAGE_BYTES: usize = 65_536;

/// The largest number of correlation slots: 1 Mi slots of at most `correlation::MAX_ENTRY_LEN` (715)
/// bytes stay under 750 MiB of values (under 200 MiB when no entry carries a `tracestate`).
pub const MAX_CORRELATION_SLOTS: u32 = 1 << 20;

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::new(
                "samplingRatio",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.new_trace_id_bits != 128 && self.new_trace_id_bits != 64 {
            return Err(ConfigError::new("newTraceIdBits", "must be 128 or 64"));
        }
        if self.extract.is_empty() {
            return Err(ConfigError::new("extract", "must name at least one format"));
        }
        if self.tracestate_max_length < crate::tracestate::PROPAGATE_MIN
            || self.tracestate_max_length > MAX_HEADER_VALUE_LEN
        {
            return Err(ConfigError::new(
                "tracestateMaxLength",
                "must be between 512 (W3C Trace Context requires propagating 512 characters) and 8192",
            ));
        }
        if let Some(key) = &self.tracestate_key {
            if crate::tracestate::validate_key(key).is_err() {
                return Err(ConfigError::new(
                    "tracestateKey",
                    "is not a valid W3C tracestate key",
                ));
            }
            if !self.participate {
                return Err(ConfigError::new(
                    "tracestateKey",
                    "needs \"participate\": true (the member carries the span id this filter mints)",
                ));
            }
        }
        if self.baggage.max_members == 0 || self.baggage.max_members > MAX_BAGGAGE_MEMBERS {
            return Err(ConfigError::new(
                "baggage.maxMembers",
                "must be between 1 and 1024",
            ));
        }
        if self.baggage.max_bytes == 0 || self.baggage.max_bytes > MAX_BAGGAGE_BYTES {
            return Err(ConfigError::new(
                "baggage.maxBytes",
                "must be between 1 and 65536",
            ));
        }
        check_formats(&self.extract, "extract")?;
        check_formats(&self.inject, "inject")?;
        check_response_header(&self.response_header, "responseHeader")?;
        if self.correlation.slots == 0 || self.correlation.slots > MAX_CORRELATION_SLOTS {
            return Err(ConfigError::new(
                "correlation.slots",
                "must be between 1 and 1048576",
            ));
        }
        if self.correlation.ttl.0.is_zero() {
            return Err(ConfigError::new("correlation.ttl", "must be positive"));
        }
        check_filter_state_name(&self.filter_state_name, "filterStateName")?;
        let lists = [
            (
                "baggage.allowKeys",
                self.baggage.allow_keys.as_deref().unwrap_or_default(),
            ),
            ("baggage.denyKeys", self.baggage.deny_keys.as_slice()),
        ];
        for (field, keys) in lists {
            for (i, key) in keys.iter().enumerate() {
                check_len(key, MAX_HEADER_NAME_LEN, format!("{field}[{i}]"))?;
            }
        }
        Ok(())
    }
}

/// A format listed twice is a mistake (and would be written twice).
fn check_formats(formats: &[Format], field: &str) -> Result<(), ConfigError> {
    for (i, format) in formats.iter().enumerate() {
        if formats
            .get(..i)
            .is_some_and(|earlier| earlier.contains(format))
        {
            return Err(ConfigError::new(
                field,
                format!("format {} is listed twice", quoted(format.name())),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    #[test]
    fn no_configuration_gives_the_documented_defaults() {
        let c: Config = parse(None).unwrap();
        assert_eq!(c.extract, Format::ALL.to_vec());
        assert_eq!(c.inject, vec![Format::TraceContext]);
        assert!(c.keep_received_formats);
        assert_eq!(c.response_header, "x-trace-id");
        assert!(c.trace_response);
        assert!(!c.correlation.enabled);
        assert_eq!(c.baggage.max_members, 64);
        assert_eq!(c.baggage.max_bytes, 8192);
    }

    /// Every field set to a value other than its default, and every field asserted.
    #[test]
    fn every_field_is_read() {
        let json = br#"{
            "extract": ["b3", "tracecontext"], "inject": ["tracecontext", "b3multi"],
            "keepReceivedFormats": false, "samplingRatio": 0.25, "newTraceIdBits": 64.0,
            "participate": true, "tracestateKey": "mesh", "tracestateMaxLength": 1024,
            "baggage": {"enabled": false, "maxMembers": 10, "maxBytes": 2048, "allowKeys": ["tenant"],
                        "denyKeys": ["secret"], "fromJaeger": false, "fromOtTrace": false,
                        "stripOnEgress": true},
            "responseHeader": "x-b3-traceid-echo", "traceResponse": false, "filterStateName": "tid",
            "direction": "outbound",
            "correlation": {"enabled": true, "slots": 128, "ttl": "30s"},
            "maxSharedMemory": "32Mi"
        }"#;
        let c: Config = parse(Some(json)).unwrap();
        assert_eq!(c.extract, vec![Format::B3, Format::TraceContext]);
        assert_eq!(c.inject, vec![Format::TraceContext, Format::B3Multi]);
        assert!(!c.keep_received_formats);
        assert_eq!(c.sampling_ratio, 0.25);
        assert_eq!(c.new_trace_id_bits, 64);
        assert!(c.participate);
        assert_eq!(c.tracestate_key.as_deref(), Some("mesh"));
        assert_eq!(c.tracestate_max_length, 1024);
        assert_eq!(
            c.baggage,
            BaggageConfig {
                enabled: false,
                max_members: 10,
                max_bytes: 2048,
                allow_keys: Some(vec!["tenant".into()]),
                deny_keys: vec!["secret".into()],
                from_jaeger: false,
                from_ot_trace: false,
                strip_on_egress: true,
            }
        );
        assert_eq!(c.response_header, "x-b3-traceid-echo");
        assert!(!c.trace_response);
        assert_eq!(c.filter_state_name, "tid");
        assert_eq!(c.direction, Direction::Outbound);
        assert_eq!(
            c.correlation,
            CorrelationConfig {
                enabled: true,
                slots: 128,
                ttl: ConfigDuration::from_millis(30_000)
            }
        );
        assert_eq!(c.max_shared_memory, 32 << 20);
        let d = Config::default();
        assert_ne!(c.baggage, d.baggage);
        assert_ne!(c.correlation, d.correlation);
    }

    /// Every field the README's configuration table names is one the configuration reads: each is set
    /// (to `null`, which no field takes except an optional one) and must not be an unknown field.
    #[test]
    fn every_field_in_the_readme_is_accepted() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Configuration")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let (mut in_table, mut seen) = (false, 0);
        for line in section.lines() {
            in_table = (in_table && !line.is_empty()) || line.starts_with("| field |");
            let Some(field) = line
                .strip_prefix("| `")
                .filter(|_| in_table)
                .and_then(|rest| rest.split('`').next())
            else {
                continue;
            };
            let mut value = serde_json::Value::Null;
            for part in field.rsplit('.') {
                value = serde_json::json!({ part: value });
            }
            if let Err(e) = parse::<Config>(Some(value.to_string().as_bytes())) {
                assert!(!e.reason.contains("unknown field"), "{field}: {e}");
            }
            seen += 1;
        }
        assert!(seen >= 24, "only {seen} fields in the README's table");
    }

    #[test]
    fn documented_bounds_are_inclusive() {
        for (json, field, last_good) in [
            ("tracestateMaxLength", "tracestateMaxLength", 8192),
            (r#"baggage": {"maxMembers"#, "baggage.maxMembers", 1024),
            (r#"baggage": {"maxBytes"#, "baggage.maxBytes", 65_536),
            (r#"correlation": {"slots"#, "correlation.slots", 1 << 20),
        ] {
            let close = if json.contains('{') { "}}" } else { "}" };
            let config = |n: u64| format!(r#"{{"{json}": {n}{close}"#);
            let good = config(last_good);
            assert!(parse::<Config>(Some(good.as_bytes())).is_ok(), "{good}");
            let bad = config(last_good + 1);
            let e = parse::<Config>(Some(bad.as_bytes())).unwrap_err();
            assert_eq!(e.field, field, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"extract": ["zipkin"]}"#, "extract[0]"),
            (br#"{"inject": ["b3", "nope"]}"#, "inject[1]"),
            (br#"{"direction": {"inbound": null}}"#, "direction"),
            (br#"{"newTraceIdBits": 64.5}"#, "newTraceIdBits"),
            (br#"{"baggage": ["x"]}"#, "baggage"),
            (br#"{"extract": ["b3", "b3"]}"#, "extract"),
            (br#"{"extract": []}"#, "extract"),
            (br#"{"samplingRatio": 1.5}"#, "samplingRatio"),
            (br#"{"newTraceIdBits": 96}"#, "newTraceIdBits"),
            (br#"{"baggage": {"maxMembrs": 3}}"#, "baggage.maxMembrs"),
            (br#"{"correlation": {"ttl": "soon"}}"#, "correlation.ttl"),
            (br#"{"correlation": {"slots": 0}}"#, "correlation.slots"),
            (br#"{"direction": "sideways"}"#, "direction"),
            (br#"{"responseHeader": "X Trace"}"#, "responseHeader"),
            (br#"{"tracestateKey": "Bad Key"}"#, "tracestateKey"),
            (br#"{"tracestateKey": "mesh"}"#, "tracestateKey"),
            (br#"{"tracestateMaxLength": 100}"#, "tracestateMaxLength"),
            (br#"{"unknown": 1}"#, "unknown"),
            (br#"{"tracestateMaxLength": 10000}"#, "tracestateMaxLength"),
            (
                br#"{"baggage": {"maxMembers": 5000}}"#,
                "baggage.maxMembers",
            ),
            (br#"{"baggage": {"maxBytes": 0}}"#, "baggage.maxBytes"),
            (br#"{"maxSharedMemory": "64 pages"}"#, "maxSharedMemory"),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }
}
