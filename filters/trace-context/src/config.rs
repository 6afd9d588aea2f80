//! The filter's configuration (Istio `pluginConfig` JSON, camelCase). Every field has a default, so no
//! configuration at all gives a working filter.

use crate::baggage::BaggageLimits;
use crate::formats::Format;
use filter_common::config::{
    list, one_of, quoted, read, string, ConfigError, FromJson, Path, Validate,
};
use filter_common::duration::ConfigDuration;
use filter_common::json::Value;
use filter_common::limits::{
    byte_size, check_len, DEFAULT_MAX_SHARED_MEMORY, MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN,
};
use filter_common::members;
use filter_common::w3c::{
    check_filter_state_name, check_response_header, DEFAULT_FILTER_STATE_NAME,
    DEFAULT_RESPONSE_HEADER,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Formats read from requests, in precedence order: the first valid one wins.
    pub extract: Vec<Format>,
    /// Formats always written on the forwarded request.
    pub inject: Vec<Format>,
    /// Formats that arrived but are not in `inject` are rewritten from the winning context (true) or
    /// removed (false), so downstream never sees two different traces.
    pub keep_received_formats: bool,
    /// Probability that a trace this filter starts, or one that arrived without a decision, is sampled.
    pub sampling_ratio: f64,
    /// 128 or 64: the size of trace ids this filter creates. 64 suits meshes with 64-bit-only peers.
    pub new_trace_id_bits: u32,
    /// Act as a hop: give the forwarded request a new span (parent) id.
    pub participate: bool,
    /// When set and participating, the `tracestate` member written with this key (value: the new span id).
    pub tracestate_key: Option<String>,
    /// Longest `tracestate` forwarded; whole members are dropped beyond it (W3C: at least 512).
    pub tracestate_max_length: usize,
    pub baggage: BaggageConfig,
    /// Response header carrying the trace id; empty disables it.
    pub response_header: String,
    /// Adds W3C `traceresponse` to responses.
    pub trace_response: bool,
    /// Filter state name holding the trace id (`%FILTER_STATE(wasm.NAME)%` in access logs); empty disables.
    pub filter_state_name: String,
    /// Which side of the workload this listener is: `auto` reads Envoy's `listener_direction`.
    pub direction: Direction,
    pub correlation: CorrelationConfig,
    /// The most shared memory the configuration may need in the worst case (see `memory`).
    pub max_shared_memory: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BaggageConfig {
    pub enabled: bool,
    pub max_members: usize,
    pub max_bytes: usize,
    /// When set, only these keys are propagated.
    pub allow_keys: Option<Vec<String>>,
    pub deny_keys: Vec<String>,
    /// Translate Jaeger `uberctx-*` headers into `baggage`.
    pub from_jaeger: bool,
    /// Translate OpenTracing `ot-baggage-*` headers into `baggage`.
    pub from_ot_trace: bool,
    /// Remove `baggage` (and the translated headers) on outbound requests leaving the workload.
    pub strip_on_egress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Auto,
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationConfig {
    /// Restore the context of an outbound request that carries only `x-request-id`.
    pub enabled: bool,
    /// Number of fixed slots in shared data (memory is slots x one small entry).
    pub slots: u32,
    /// How long an inbound context can be restored.
    pub ttl: ConfigDuration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            extract: Format::ALL.to_vec(),
            inject: vec![Format::TraceContext],
            keep_received_formats: true,
            sampling_ratio: 1.0,
            new_trace_id_bits: 128,
            participate: false,
            tracestate_key: None,
            tracestate_max_length: crate::tracestate::PROPAGATE_MIN,
            baggage: BaggageConfig::default(),
            response_header: DEFAULT_RESPONSE_HEADER.to_string(),
            trace_response: true,
            filter_state_name: DEFAULT_FILTER_STATE_NAME.to_string(),
            direction: Direction::Auto,
            correlation: CorrelationConfig::default(),
            max_shared_memory: DEFAULT_MAX_SHARED_MEMORY,
        }
    }
}

impl Default for BaggageConfig {
    fn default() -> Self {
        let limits = BaggageLimits::default();
        BaggageConfig {
            enabled: true,
            max_members: limits.max_members,
            max_bytes: limits.max_bytes,
            allow_keys: None,
            deny_keys: Vec::new(),
            from_jaeger: true,
            from_ot_trace: true,
            strip_on_egress: false,
        }
    }
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        CorrelationConfig {
            enabled: false,
            slots: 4096,
            ttl: ConfigDuration::from_millis(60_000),
        }
    }
}

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
        crate::memory::budget(self).check(self.max_shared_memory)
    }
}

impl FromJson for Config {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        members!(v, at, |value| {
            "extract" => c.extract = formats(value, at)?,
            "inject" => c.inject = formats(value, at)?,
            "keepReceivedFormats" => c.keep_received_formats = read(value, at)?,
            "samplingRatio" => c.sampling_ratio = read(value, at)?,
            "newTraceIdBits" => c.new_trace_id_bits = read(value, at)?,
            "participate" => c.participate = read(value, at)?,
            "tracestateKey" => c.tracestate_key = read(value, at)?,
            "tracestateMaxLength" => c.tracestate_max_length = read(value, at)?,
            "baggage" => c.baggage = read(value, at)?,
            "responseHeader" => c.response_header = read(value, at)?,
            "traceResponse" => c.trace_response = read(value, at)?,
            "filterStateName" => c.filter_state_name = read(value, at)?,
            "direction" => c.direction = read(value, at)?,
            "correlation" => c.correlation = read(value, at)?,
            "maxSharedMemory" => c.max_shared_memory = byte_size(value, at)?,
        });
        Ok(c)
    }
}

impl FromJson for BaggageConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut b = BaggageConfig::default();
        members!(v, at, |value| {
            "enabled" => b.enabled = read(value, at)?,
            "maxMembers" => b.max_members = read(value, at)?,
            "maxBytes" => b.max_bytes = read(value, at)?,
            "allowKeys" => b.allow_keys = read(value, at)?,
            "denyKeys" => b.deny_keys = read(value, at)?,
            "fromJaeger" => b.from_jaeger = read(value, at)?,
            "fromOtTrace" => b.from_ot_trace = read(value, at)?,
            "stripOnEgress" => b.strip_on_egress = read(value, at)?,
        });
        Ok(b)
    }
}

impl FromJson for CorrelationConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut c = CorrelationConfig::default();
        members!(v, at, |value| {
            "enabled" => c.enabled = read(value, at)?,
            "slots" => c.slots = read(value, at)?,
            "ttl" => c.ttl = read(value, at)?,
        });
        Ok(c)
    }
}

impl FromJson for Direction {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        one_of(
            v,
            at,
            &[
                ("auto", Direction::Auto),
                ("inbound", Direction::Inbound),
                ("outbound", Direction::Outbound),
            ],
        )
    }
}

/// Reads a list of format names, naming the unknown one in the error.
fn formats(v: &Value, at: &Path<'_>) -> Result<Vec<Format>, ConfigError> {
    let items = list(v, at)?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = string(item, &at.index(i))?;
        let format = Format::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
            at.error(format!(
                "unknown format {}; known formats: {}",
                quoted(name),
                filter_common::text::join(&known, ", ")
            ))
        })?;
        if out.contains(&format) {
            return Err(at.error(format!("format {} is listed twice", quoted(name))));
        }
        out.push(format);
    }
    Ok(out)
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

    #[test]
    fn a_full_configuration_parses() {
        let json = br#"{
            "extract": ["b3", "tracecontext"], "inject": ["tracecontext", "b3multi"],
            "keepReceivedFormats": false, "samplingRatio": 0.25, "newTraceIdBits": 64.0,
            "participate": true, "tracestateKey": "mesh", "tracestateMaxLength": 1024,
            "baggage": {"enabled": true, "maxMembers": 10, "maxBytes": 2048, "allowKeys": ["tenant"],
                        "denyKeys": ["secret"], "fromJaeger": false, "fromOtTrace": false,
                        "stripOnEgress": true},
            "responseHeader": "x-b3-traceid-echo", "traceResponse": false, "filterStateName": "tid",
            "direction": "outbound",
            "correlation": {"enabled": true, "slots": 128, "ttl": "30s"}
        }"#;
        let c: Config = parse(Some(json)).unwrap();
        assert_eq!(c.extract, vec![Format::B3, Format::TraceContext]);
        assert_eq!(c.new_trace_id_bits, 64);
        assert_eq!(c.correlation.ttl.0.as_secs(), 30);
        assert_eq!(c.direction, Direction::Outbound);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"extract": ["zipkin"]}"#, "extract"),
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
            (
                br#"{"correlation": {"enabled": true, "slots": 1048576}}"#,
                "correlation.slots",
            ),
            (
                br#"{"correlation": {"enabled": true}, "maxSharedMemory": 1000}"#,
                "correlation.slots",
            ),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }
}
