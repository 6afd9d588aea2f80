//! The filter's configuration (Istio `pluginConfig` JSON, camelCase). No configuration at all gives one
//! rule: Envoy's own failures and circuit-breaker rejections become problem responses.

use crate::trigger::{EnvoyReason, Triggers};
use filter_common::config::{
    check, check_names, missing, one_of, read, ConfigError, FromJson, Path, Validate,
};
use filter_common::duration::ConfigDuration;
use filter_common::http_field;
use filter_common::json::Value;
use filter_common::limits::{
    byte_size, check_len, DEFAULT_MAX_SHARED_MEMORY, MAX_HEADER_VALUE_LEN, MAX_MATCH_VALUE_LEN,
};
use filter_common::matching::{is_header_name, Match, HEADER_NAME_RULE};
use filter_common::members;
use filter_common::w3c::{
    check_filter_state_name, check_response_header, DEFAULT_FILTER_STATE_NAME,
    DEFAULT_RESPONSE_HEADER, TRACERESPONSE,
};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub rules: Vec<RuleConfig>,
    pub cache: CacheConfig,
    pub trace: TraceConfig,
    /// The most shared memory the configuration may need in the worst case (see `memory`).
    pub max_shared_memory: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: vec![RuleConfig {
                name: "default".to_string(),
                matcher: Match::default(),
                triggers: Triggers {
                    envoy: EnvoyReason::ALL.to_vec(),
                    circuit_breaker: true,
                    ..Triggers::default()
                },
                response: ResponseConfig::default(),
            }],
            cache: CacheConfig::default(),
            trace: TraceConfig::default(),
            max_shared_memory: DEFAULT_MAX_SHARED_MEMORY,
        }
    }
}

/// The trace headers a fallback carries. A fallback sent in place of a response skips the encoder
/// filters before this one, trace-context among them, so it adds them itself; the fields and defaults
/// are trace-context's own.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    pub response_header: String,
    pub trace_response: bool,
    pub filter_state_name: String,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            response_header: DEFAULT_RESPONSE_HEADER.to_string(),
            trace_response: true,
            filter_state_name: DEFAULT_FILTER_STATE_NAME.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig {
    pub name: String,
    pub matcher: Match,
    pub triggers: Triggers,
    pub response: ResponseConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    #[default]
    Problem,
    Static,
    Stale,
    Alternate,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Problem => "problem",
            Kind::Static => "static",
            Kind::Stale => "stale",
            Kind::Alternate => "alternate",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResponseConfig {
    pub kind: Kind,
    /// Problem: the original status when absent; static: 200 when absent.
    pub status: Option<u32>,
    pub title: Option<String>,
    pub problem_type: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub ttl: ConfigDuration,
    pub max_body_bytes: usize,
    pub key_headers: Vec<String>,
    /// Stale: request headers that make a response the caller's own (names in any case, kept lower
    /// case).
    pub private_headers: Vec<String>,
    pub cluster: Option<String>,
    pub timeout: ConfigDuration,
    pub otherwise: Option<Box<ResponseConfig>>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            kind: Kind::Problem,
            status: None,
            title: None,
            problem_type: "about:blank".to_string(),
            headers: BTreeMap::new(),
            body: String::new(),
            ttl: ConfigDuration::from_millis(60_000),
            max_body_bytes: 65_536,
            key_headers: Vec::new(),
            private_headers: DEFAULT_PRIVATE_HEADERS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            cluster: None,
            timeout: ConfigDuration::from_millis(1_000),
            otherwise: None,
        }
    }
}

/// Request headers that carry credentials by default.
pub const DEFAULT_PRIVATE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub max_bytes: usize,
    pub max_body_bytes: usize,
}

impl FromJson for Config {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        members!(v, at, |value| {
            "rules" => c.rules = read(value, at)?,
            "cache" => c.cache = read(value, at)?,
            "trace" => c.trace = read(value, at)?,
            "maxSharedMemory" => c.max_shared_memory = byte_size(value, at)?,
        });
        Ok(c)
    }
}

impl FromJson for TraceConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut t = TraceConfig::default();
        members!(v, at, |value| {
            "responseHeader" => t.response_header = read(value, at)?,
            "traceResponse" => t.trace_response = read(value, at)?,
            "filterStateName" => t.filter_state_name = read(value, at)?,
        });
        Ok(t)
    }
}

impl FromJson for RuleConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut name = None;
        let (mut matcher, mut triggers, mut response) = Default::default();
        members!(v, at, |value| {
            "name" => name = read(value, at)?,
            "match" => matcher = read(value, at)?,
            "triggers" => triggers = read(value, at)?,
            "response" => response = read(value, at)?,
        });
        Ok(RuleConfig {
            name: name.ok_or_else(|| missing(at, "name"))?,
            matcher,
            triggers,
            response,
        })
    }
}

impl FromJson for Kind {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        one_of(
            v,
            at,
            &[
                ("problem", Kind::Problem),
                ("static", Kind::Static),
                ("stale", Kind::Stale),
                ("alternate", Kind::Alternate),
            ],
        )
    }
}

impl FromJson for ResponseConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut r = ResponseConfig::default();
        members!(v, at, |value| {
            "kind" => r.kind = read(value, at)?,
            "status" => r.status = Some(read(value, at)?),
            "title" => r.title = read(value, at)?,
            "type" => r.problem_type = read(value, at)?,
            "headers" => r.headers = read(value, at)?,
            "body" => r.body = read(value, at)?,
            "ttl" => r.ttl = read(value, at)?,
            "maxBodyBytes" => r.max_body_bytes = read(value, at)?,
            "keyHeaders" => r.key_headers = read(value, at)?,
            "privateHeaders" => {
                let names: Vec<String> = read(value, at)?;
                r.private_headers = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            },
            "cluster" => r.cluster = read(value, at)?,
            "timeout" => r.timeout = read(value, at)?,
            "otherwise" => r.otherwise = read(value, at)?,
        });
        Ok(r)
    }
}

impl FromJson for CacheConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut c = CacheConfig::default();
        members!(v, at, |value| {
            "maxBytes" => c.max_bytes = read(value, at)?,
            "maxBodyBytes" => c.max_body_bytes = read(value, at)?,
        });
        Ok(c)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 8 << 20,
            max_body_bytes: 65_536,
        }
    }
}

impl Config {
    /// Whether any rule serves stale responses: only then is the cache created and counted (an
    /// `otherwise` is never stale).
    pub fn serves_stale(&self) -> bool {
        self.rules.iter().any(|r| r.response.kind == Kind::Stale)
    }
}

impl CacheConfig {
    /// The number of fixed cache slots.
    pub fn slots(&self) -> u32 {
        u32::try_from(self.max_bytes / self.max_body_bytes.max(1)).unwrap_or(u32::MAX)
    }
}

/// Headers a fallback reply sets itself: no other option may name them.
const REPLY_HEADERS: &[&str] = &[
    TRACERESPONSE,
    "x-fallback",
    "content-type",
    "content-length",
    "grpc-status",
    "grpc-message",
];

/// The most cache slots: each is created at start-up.
pub const MAX_SLOTS: u32 = 65_536;

/// The response used when a stale or alternate response has nothing to serve.
pub fn otherwise(r: &ResponseConfig) -> ResponseConfig {
    r.otherwise.as_deref().cloned().unwrap_or_default()
}

fn validate_response(
    r: &ResponseConfig,
    field: &str,
    cache: &CacheConfig,
    nested: bool,
) -> Result<(), ConfigError> {
    let f = |name: &str| format!("{field}.{name}");
    if let Some(status) = r.status {
        check(
            (200..=599).contains(&status),
            f("status"),
            "must be between 200 and 599",
        )?;
    }
    for (name, value) in &r.headers {
        http_field::check_name(name, f("headers"))?;
        check_len(value, MAX_HEADER_VALUE_LEN, f(&format!("headers.{name}")))?;
        http_field::check_value(value, f(&format!("headers.{name}")))?;
    }
    if let Some(title) = &r.title {
        check_len(title, MAX_HEADER_VALUE_LEN, f("title"))?;
    }
    check_len(&r.problem_type, MAX_HEADER_VALUE_LEN, f("type"))?;
    if let Some(cluster) = &r.cluster {
        check_len(cluster, MAX_MATCH_VALUE_LEN, f("cluster"))?;
    }
    for name in &r.key_headers {
        check(is_header_name(name), f("keyHeaders"), HEADER_NAME_RULE)?;
    }
    for name in &r.private_headers {
        check(is_header_name(name), f("privateHeaders"), HEADER_NAME_RULE)?;
    }
    match r.kind {
        Kind::Stale => {
            check(!r.ttl.0.is_zero(), f("ttl"), "must be positive")?;
            check(
                r.max_body_bytes >= 1 && r.max_body_bytes <= cache.max_body_bytes,
                f("maxBodyBytes"),
                "must be between 1 and cache.maxBodyBytes",
            )?;
        }
        Kind::Alternate => {
            check(
                r.cluster.as_deref().is_some_and(|c| !c.is_empty()),
                f("cluster"),
                "is required for an alternate response",
            )?;
            // Envoy reads 0 ms as "no timeout": below 1 ms the call could wait forever.
            check(
                r.timeout.0.as_millis() >= 1 && r.timeout.0.as_millis() <= 60_000,
                f("timeout"),
                "must be between 1ms and 60s",
            )?;
        }
        Kind::Problem | Kind::Static => {}
    }
    if let Some(o) = &r.otherwise {
        check(
            !nested && matches!(o.kind, Kind::Problem | Kind::Static),
            f("otherwise"),
            "must be a problem or static response",
        )?;
        validate_response(o, &f("otherwise"), cache, true)?;
    }
    Ok(())
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.rules.is_empty(),
            "rules",
            "must list at least one rule",
        )?;
        check(
            self.cache.max_body_bytes >= 1 && self.cache.max_body_bytes <= 16 << 20,
            "cache.maxBodyBytes",
            "must be between 1 and 16777216",
        )?;
        check(
            self.cache.max_bytes >= self.cache.max_body_bytes && self.cache.max_bytes <= 1 << 30,
            "cache.maxBytes",
            "must be at least cache.maxBodyBytes and at most 1073741824",
        )?;
        check(
            self.cache.slots() <= MAX_SLOTS,
            "cache.maxBytes",
            "divided by cache.maxBodyBytes gives more than 65536 slots",
        )?;
        let header = self.trace.response_header.as_str();
        check_response_header(header, "trace.responseHeader")?;
        check(
            !REPLY_HEADERS.contains(&header),
            "trace.responseHeader",
            "names a header the fallback reply sets itself",
        )?;
        check_filter_state_name(&self.trace.filter_state_name, "trace.filterStateName")?;
        check_names(self.rules.iter().map(|x| x.name.as_str()), "rules")?;
        for (i, r) in self.rules.iter().enumerate() {
            let f = |name: &str| format!("rules[{i}].{name}");
            r.matcher.validate(&f("match"))?;
            check(
                !r.triggers.is_empty(),
                f("triggers"),
                "must name at least one trigger",
            )?;
            validate_response(&r.response, &f("response"), &self.cache, false)?;
        }
        crate::memory::budget(self).check(self.max_shared_memory)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    #[test]
    fn no_configuration_gives_the_default_rule() {
        let c: Config = parse(None).unwrap();
        assert_eq!(c.rules.len(), 1);
        let r = &c.rules[0];
        assert!(r.triggers.circuit_breaker);
        assert_eq!(r.triggers.envoy, EnvoyReason::ALL.to_vec());
        assert!(
            r.triggers.status.is_none(),
            "application errors pass through"
        );
        assert_eq!(r.response.kind, Kind::Problem);
        assert_eq!(c.cache.slots(), 128);
    }

    #[test]
    fn a_full_configuration_parses() {
        let json = br#"{"rules": [
            {"name": "s", "match": {"pathPrefix": "/api"}, "triggers": {"status": ["500-599"], "grpcStatus": [14],
              "envoy": ["timeout"], "circuitBreaker": true},
             "response": {"kind": "stale", "ttl": "30s", "maxBodyBytes": 1024, "keyHeaders": ["accept"],
              "otherwise": {"kind": "static", "status": 200.0, "headers": {"content-type": "text/plain"}, "body": "x"}}},
            {"name": "a", "triggers": {"status": "503"}, "response": {"kind": "alternate", "cluster": "backup", "timeout": "250ms"}}
          ], "cache": {"maxBytes": 1048576, "maxBodyBytes": 4096}}"#;
        let c: Config = parse(Some(json)).unwrap();
        assert_eq!(c.rules[0].response.kind, Kind::Stale);
        assert_eq!(
            c.rules[0].response.private_headers,
            DEFAULT_PRIVATE_HEADERS.to_vec()
        );
        assert_eq!(otherwise(&c.rules[0].response).status, Some(200));
        assert_eq!(c.cache.slots(), 256);
    }

    #[test]
    fn private_headers_are_case_insensitive_and_replace_the_default() {
        let json = br#"{"rules": [{"name": "s", "triggers": {"status": "503"},
            "response": {"kind": "stale", "privateHeaders": ["X-Session", "Cookie"]}}]}"#;
        let c: Config = parse(Some(json)).unwrap();
        assert_eq!(c.rules[0].response.private_headers, ["x-session", "cookie"]);
        let json = br#"{"rules": [{"name": "s", "triggers": {"status": "503"},
            "response": {"kind": "stale", "privateHeaders": []}}]}"#;
        let c: Config = parse(Some(json)).unwrap();
        assert!(c.rules[0].response.private_headers.is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"rules": []}"#, "rules"),
            (br#"{"rules": [{"name": "a", "triggers": {}}]}"#, "rules[0].triggers"),
            (br#"{"rules": [{"name": "a b", "triggers": {"status": "500"}}]}"#, "rules[0].name"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "cached"}}]}"#, "rules[0].response.kind"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "alternate"}}]}"#, "rules[0].response.cluster"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "status": 700}}]}"#, "rules[0].response.status"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "maxBodyBytes": 100000}}]}"#, "rules[0].response.maxBodyBytes"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "otherwise": {"kind": "stale"}}}]}"#, "rules[0].response.otherwise"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"headers": {"X-Bad": "1"}}}]}"#, "rules[0].response.headers"),
            // Configured headers that would split the response or are no field at all (issue 16 item 4).
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "headers": {"x-a": "b\r\nset-cookie: session=attacker"}}}]}"#, "rules[0].response.headers.x-a"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "headers": {"x-a": "b\u0000"}}}]}"#, "rules[0].response.headers.x-a"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "headers": {"x-a": " b"}}}]}"#, "rules[0].response.headers.x-a"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "headers": {"x a": "b"}}}]}"#, "rules[0].response.headers"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "headers": {"x-a\r\nx-b": "b"}}}]}"#, "rules[0].response.headers"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "otherwise": {"kind": "static", "headers": {"content-type": "text/html\nx: y"}}}}]}"#, "rules[0].response.otherwise.headers.content-type"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "privateHeaders": ["x-ok", "bad header"]}}]}"#, "rules[0].response.privateHeaders"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "privateHeaders": [":authority"]}}]}"#, "rules[0].response.privateHeaders"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "privateHeaders": [""]}}]}"#, "rules[0].response.privateHeaders"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "stale", "privateHeaders": "x-api-key"}}]}"#, "rules[0].response.privateHeaders"),
            (br#"{"rules": [{"name": "a", "triggers": {"envoy": ["meteor"]}}]}"#, "rules[0].triggers.envoy[0]"),
            (br#"{"rules": [{"name": "a", "triggers": {"grpcStatus": [17]}}]}"#, "rules[0].triggers.grpcStatus"),
            (br#"{"cache": {"maxBytes": 10, "maxBodyBytes": 100}}"#, "cache.maxBytes"),
            (br#"{"rulez": []}"#, "rulez"),
            (br#"{"trace": {"responseHeader": "X-Trace"}}"#, "trace.responseHeader"),
            (br#"{"trace": {"traceResponse": "yes"}}"#, "trace.traceResponse"),
            (br#"{"trace": {"responseHeader": "traceresponse"}}"#, "trace.responseHeader"),
            (br#"{"trace": {"responseHeader": "x-fallback"}}"#, "trace.responseHeader"),
            (br#"{"trace": {"filterStateName": "a b"}}"#, "trace.filterStateName"),
            (br#"{"maxSharedMemory": -1}"#, "maxSharedMemory"),
            (
                br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}], "cache": {"maxBytes": 134217728}}"#,
                "cache.maxBytes",
            ),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }

    #[test]
    fn long_header_values_and_a_raised_ceiling() {
        let long = "v".repeat(MAX_HEADER_VALUE_LEN + 1);
        let json = format!(
            r#"{{"rules": [{{"name": "a", "triggers": {{"status": "500"}}, "response": {{"kind": "static", "headers": {{"x-a": "{long}"}}}}}}]}}"#
        );
        let e = parse::<Config>(Some(json.as_bytes())).unwrap_err();
        assert_eq!(e.field, "rules[0].response.headers.x-a");
        let big_cache = br#"{"rules": [{"name": "s", "triggers": {"status": "503"}, "response": {"kind": "stale"}}], "cache": {"maxBytes": 134217728}, "maxSharedMemory": "256Mi"}"#;
        let c = parse::<Config>(Some(big_cache)).unwrap();
        assert_eq!(c.max_shared_memory, 256 << 20);
        // A cache nobody reads costs nothing: without a stale rule, any cache size fits.
        let unused = br#"{"cache": {"maxBytes": 1073741824}, "maxSharedMemory": 1}"#;
        assert!(parse::<Config>(Some(unused)).is_ok());
    }
}
