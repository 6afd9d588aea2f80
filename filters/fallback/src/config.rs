//! The filter's configuration (Istio `pluginConfig` JSON, camelCase), read with serde. No configuration
//! at all gives one rule: Envoy's own failures and circuit-breaker rejections become problem responses.
//! Each field sits here once, with its default; `Validate` holds what serde cannot check. The worst-case
//! shared memory is checked where the filter loads (`memory::load`). Imports nothing of this crate but
//! the triggers' value types.

use crate::trigger::{EnvoyReason, Triggers};
use filter_common::config::{
    check, check_names, unique_map, whole, whole_some, ConfigError, Validate,
};
use filter_common::duration::ConfigDuration;
use filter_common::http_field;
use filter_common::limits::{
    byte_size, check_len, DEFAULT_MAX_SHARED_MEMORY, MAX_HEADER_VALUE_LEN, MAX_MATCH_VALUE_LEN,
    MAX_STRING_LEN,
};
use filter_common::matching::{is_header_name, Match, HEADER_NAME_RULE};
use filter_common::w3c::{
    check_filter_state_name, check_response_header, DEFAULT_FILTER_STATE_NAME,
    DEFAULT_RESPONSE_HEADER, TRACERESPONSE,
};
use filter_common::{from_name_only, from_object_only};
use serde::{Deserialize, Deserializer};
use smart_default::SmartDefault;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// First match wins.
    #[default(_code = "vec![RuleConfig::default_rule()]")]
    pub rules: Vec<RuleConfig>,
    pub cache: CacheConfig,
    pub trace: TraceConfig,
    /// The most shared memory the configuration may need in the worst case (see `memory`).
    #[default(DEFAULT_MAX_SHARED_MEMORY)]
    #[serde(deserialize_with = "byte_size")]
    pub max_shared_memory: u64,
}

/// The trace headers a fallback carries. A fallback sent in place of a response skips the encoder
/// filters before this one, trace-context among them, so it adds them itself; the fields and defaults
/// are trace-context's own.
#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct TraceConfig {
    /// Response header given the trace id on fallback replies; empty disables it.
    #[default(DEFAULT_RESPONSE_HEADER.to_string())]
    pub response_header: String,
    /// Add W3C `traceresponse` to fallback replies.
    #[default(true)]
    pub trace_response: bool,
    /// Filter state read for the trace id when the request carries no `traceparent`; empty disables it.
    #[default(DEFAULT_FILTER_STATE_NAME.to_string())]
    pub filter_state_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConfig {
    /// `[A-Za-z0-9_-]`, 1 to 64 characters (required).
    pub name: String,
    /// Which requests the rule covers; empty: all.
    #[serde(default, rename = "match")]
    pub matcher: Match,
    /// What fires the rule (at least one).
    #[serde(default)]
    pub triggers: Triggers,
    /// What the caller gets instead.
    #[serde(default)]
    pub response: ResponseConfig,
}

impl RuleConfig {
    /// The rule of no configuration: Envoy's own failures and breaker rejections become problems.
    fn default_rule() -> RuleConfig {
        RuleConfig {
            name: "default".to_string(),
            matcher: Match::default(),
            triggers: Triggers {
                envoy: EnvoyReason::ALL.to_vec(),
                circuit_breaker: true,
                ..Triggers::default()
            },
            response: ResponseConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
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

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct ResponseConfig {
    /// `problem`, `static`, `stale` or `alternate`.
    pub kind: Kind,
    /// Problem: the original status when absent; static: 200 when absent.
    #[serde(deserialize_with = "whole_some")]
    pub status: Option<u32>,
    /// Problem `title`; the status's reason phrase when absent.
    pub title: Option<String>,
    /// Problem `type` URI.
    #[default("about:blank")]
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Static response headers (lower-case names).
    #[serde(deserialize_with = "unique_map")]
    pub headers: BTreeMap<String, String>,
    /// Static body, with placeholders.
    pub body: String,
    /// Stale: how old a cached response may be.
    #[default(ConfigDuration::from_millis(60_000))]
    pub ttl: ConfigDuration,
    /// Stale: largest body cached; alternate: largest answer served.
    #[default(65_536)]
    #[serde(deserialize_with = "whole")]
    pub max_body_bytes: usize,
    /// Stale: request headers in the cache key; alternate: headers forwarded.
    pub key_headers: Vec<String>,
    /// Stale: request headers that make a response the caller's own (names in any case, kept lower
    /// case); replaces the default list.
    #[default(_code = "DEFAULT_PRIVATE_HEADERS.iter().map(|h| h.to_string()).collect()")]
    #[serde(deserialize_with = "lower_case")]
    pub private_headers: Vec<String>,
    /// Alternate: the Envoy cluster asked (required there).
    pub cluster: Option<String>,
    /// Alternate: call timeout (1 ms to 60 s).
    #[default(ConfigDuration::from_millis(1_000))]
    pub timeout: ConfigDuration,
    /// Stale and alternate: the response when they have nothing (`problem` or `static`).
    pub otherwise: Option<Box<ResponseConfig>>,
}

/// Header names as given, kept lower case (Envoy's header maps are).
fn lower_case<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.iter().map(|n| n.to_ascii_lowercase()).collect())
}

/// Request headers that carry credentials by default.
pub const DEFAULT_PRIVATE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "x-auth-token",
];

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(
    remote = "Self",
    default,
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct CacheConfig {
    /// Total bytes of stale responses kept, across all worker threads.
    #[default(8 << 20)]
    #[serde(deserialize_with = "whole")]
    pub max_bytes: usize,
    /// The size of one cache slot (no rule caches more).
    #[default(65_536)]
    #[serde(deserialize_with = "whole")]
    pub max_body_bytes: usize,
}

from_object_only!(Config, TraceConfig, RuleConfig, ResponseConfig, CacheConfig);
from_name_only!(Kind);

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
    check_len(&r.body, MAX_STRING_LEN, f("body"))?;
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
        Ok(())
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

    /// Every field set to a value other than its default, and every field asserted.
    #[test]
    fn every_field_is_read() {
        let json = br#"{"rules": [
            {"name": "s", "match": {"pathPrefix": "/api"},
             "triggers": {"status": ["500-599"], "grpcStatus": [14.0], "envoy": ["timeout", "localReply"], "circuitBreaker": true},
             "response": {"kind": "stale", "status": 503, "title": "Later", "type": "https://example.com/p",
              "headers": {"x-a": "1"}, "body": "b", "ttl": "30s", "maxBodyBytes": 1024, "keyHeaders": ["accept"],
              "privateHeaders": ["X-Session"], "cluster": "backup", "timeout": "250ms",
              "otherwise": {"kind": "static", "status": 200.0, "body": "x"}}}
          ], "cache": {"maxBytes": 1048576, "maxBodyBytes": 4096},
          "trace": {"responseHeader": "x-t", "traceResponse": false, "filterStateName": "tid"},
          "maxSharedMemory": "32Mi"}"#;
        let c: Config = parse(Some(json)).unwrap();
        let d = ResponseConfig::default();
        assert_eq!(c.max_shared_memory, 32 << 20);
        assert_eq!(
            c.cache,
            CacheConfig {
                max_bytes: 1 << 20,
                max_body_bytes: 4096
            }
        );
        assert_eq!(
            c.trace,
            TraceConfig {
                response_header: "x-t".into(),
                trace_response: false,
                filter_state_name: "tid".into()
            }
        );
        assert_eq!(c.rules.len(), 1);
        let rule = &c.rules[0];
        assert_eq!(rule.name, "s");
        assert_eq!(rule.matcher.path_prefix.as_deref(), Some("/api"));
        assert_eq!(
            rule.triggers,
            Triggers {
                status: Some(filter_common::status::StatusSet(vec![
                    filter_common::status::StatusRange(500, 599)
                ])),
                grpc_status: vec![14],
                envoy: vec![
                    EnvoyReason::Upstream(filter_common::failure::UpstreamFailure::Timeout),
                    EnvoyReason::LocalReply
                ],
                circuit_breaker: true,
            }
        );
        let r = &rule.response;
        assert_eq!(r.kind, Kind::Stale);
        assert_eq!(r.status, Some(503));
        assert_eq!(r.title.as_deref(), Some("Later"));
        assert_eq!(r.problem_type, "https://example.com/p");
        assert_eq!(
            r.headers,
            BTreeMap::from([("x-a".to_string(), "1".to_string())])
        );
        assert_eq!(r.body, "b");
        assert_eq!(r.ttl, ConfigDuration::from_millis(30_000));
        assert_eq!(r.max_body_bytes, 1024);
        assert_eq!(r.key_headers, ["accept"]);
        assert_eq!(r.private_headers, ["x-session"]);
        assert_eq!(r.cluster.as_deref(), Some("backup"));
        assert_eq!(r.timeout, ConfigDuration::from_millis(250));
        let o = r.otherwise.as_deref().unwrap();
        assert_eq!(
            (o.kind, o.status, o.body.as_str()),
            (Kind::Static, Some(200), "x")
        );
        assert_eq!(otherwise(r).status, Some(200));
        assert_ne!(r.ttl, d.ttl);
        assert_ne!(r.timeout, d.timeout);
        assert_eq!(c.cache.slots(), 256);
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
                value = match part.strip_suffix("[]") {
                    Some(list) => serde_json::json!({ list: [value] }),
                    None => serde_json::json!({ part: value }),
                };
            }
            if let Err(e) = parse::<Config>(Some(value.to_string().as_bytes())) {
                assert!(!e.reason.contains("unknown field"), "{field}: {e}");
            }
            seen += 1;
        }
        assert!(seen >= 25, "only {seen} fields in the README's table");
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
    fn values_at_their_limits() {
        let doc = |rule_response: &str, cache: &str| {
            parse::<Config>(Some(
                format!(
                    r#"{{"rules": [{{"name": "r", "triggers": {{"circuitBreaker": true}},
                        "response": {rule_response}}}], "cache": {cache}}}"#
                )
                .as_bytes(),
            ))
        };
        let response = |r: &str| doc(r, "{}");
        let field = |r: Result<Config, ConfigError>| r.unwrap_err().field;
        for ok in ["200", "599"] {
            assert!(response(&format!(r#"{{"status": {ok}}}"#)).is_ok(), "{ok}");
        }
        for bad in ["199", "600"] {
            assert_eq!(
                field(response(&format!(r#"{{"status": {bad}}}"#))),
                "rules[0].response.status"
            );
        }
        // A stale rule keeps bodies of 1 byte up to the cache's maxBodyBytes.
        let stale = |max: &str| {
            doc(
                &format!(r#"{{"kind": "stale", "maxBodyBytes": {max}}}"#),
                r#"{"maxBodyBytes": 4096}"#,
            )
        };
        assert!(stale("1").is_ok() && stale("4096").is_ok());
        for bad in ["0", "4097"] {
            assert_eq!(field(stale(bad)), "rules[0].response.maxBodyBytes", "{bad}");
        }
        // An alternate call needs a cluster and a timeout of 1 ms to 60 s.
        let alternate = |cluster: &str, timeout: &str| {
            response(&format!(
                r#"{{"kind": "alternate", "cluster": "{cluster}", "timeout": "{timeout}"}}"#
            ))
        };
        assert!(alternate("b", "1ms").is_ok() && alternate("b", "60s").is_ok());
        for bad in ["0ms", "60001ms"] {
            assert_eq!(field(alternate("b", bad)), "rules[0].response.timeout");
        }
        assert_eq!(field(alternate("", "1s")), "rules[0].response.cluster");
        // `otherwise` is one level of problem or static.
        assert!(response(r#"{"kind": "stale", "otherwise": {"kind": "static"}}"#).is_ok());
        for bad in [
            r#"{"kind": "stale", "otherwise": {"kind": "stale"}}"#,
            r#"{"kind": "stale", "otherwise": {"kind": "static", "otherwise": {"kind": "problem"}}}"#,
        ] {
            assert!(
                field(response(bad)).starts_with("rules[0].response.otherwise"),
                "{bad}"
            );
        }
        // The cache: bodies of 1 byte to 16 MiB, a total of one body to 1 GiB, at most 65536 slots.
        let cache = |c: &str| doc("{}", c);
        assert!(cache(r#"{"maxBodyBytes": 1, "maxBytes": 1}"#).is_ok());
        assert!(cache(r#"{"maxBodyBytes": 16777216, "maxBytes": 16777216}"#).is_ok());
        assert!(cache(r#"{"maxBodyBytes": 16384, "maxBytes": 1073741824}"#).is_ok());
        assert!(cache(r#"{"maxBodyBytes": 4096, "maxBytes": 268435456}"#).is_ok());
        assert_eq!(
            doc("{}", r#"{"maxBodyBytes": 4096, "maxBytes": 268435456}"#)
                .unwrap()
                .cache
                .slots(),
            MAX_SLOTS
        );
        for (bad, name) in [
            (r#"{"maxBodyBytes": 0}"#, "cache.maxBodyBytes"),
            (r#"{"maxBodyBytes": 16777217}"#, "cache.maxBodyBytes"),
            (
                r#"{"maxBodyBytes": 4096, "maxBytes": 4095}"#,
                "cache.maxBytes",
            ),
            (
                r#"{"maxBodyBytes": 16384, "maxBytes": 1073741825}"#,
                "cache.maxBytes",
            ),
            (
                r#"{"maxBodyBytes": 4096, "maxBytes": 268439552}"#,
                "cache.maxBytes",
            ),
        ] {
            assert_eq!(field(cache(bad)), name, "{bad}");
        }
    }

    #[test]
    fn kinds_are_labelled_as_configured_and_only_stale_rules_need_the_cache() {
        for kind in ["problem", "static", "stale", "alternate"] {
            let k: Kind =
                filter_common::config::from_slice(format!("\"{kind}\"").as_bytes()).unwrap();
            assert_eq!(k.label(), kind);
        }
        let rules = |kinds: &[&str]| {
            let rules: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    format!(
                        r#"{{"name": "r{i}", "triggers": {{"circuitBreaker": true}},
                            "response": {{"kind": "{k}", "cluster": "b"}}}}"#
                    )
                })
                .collect();
            parse::<Config>(Some(
                format!(r#"{{"rules": [{}]}}"#, rules.join(",")).as_bytes(),
            ))
            .unwrap()
        };
        assert!(rules(&["problem", "stale"]).serves_stale());
        assert!(!rules(&["problem", "static", "alternate"]).serves_stale());
        assert!(!parse::<Config>(None).unwrap().serves_stale());
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
            (br#"{"rules": [{"triggers": {"status": "503"}}]}"#, "rules[0]"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"headers": {"x-a": "1", "x-a": "2"}}}]}"#, "rules[0].response.headers"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"status": 200.5}}]}"#, "rules[0].response.status"),
            (br#"{"rules": [{"name": "a", "triggers": {"status": "500"}, "response": {"kind": "static", "body": "\ud800"}}]}"#, "rules[0].response.body"),
            (br#"{"rules": [{"name": "a", "triggers": ["status"]}]}"#, "rules[0].triggers"),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }

    #[test]
    fn nesting_past_the_recursion_limit_is_refused() {
        let mut response = r#"{"kind": "static"}"#.to_string();
        for _ in 0..300 {
            response = format!(r#"{{"kind": "stale", "otherwise": {response}}}"#);
        }
        let json = format!(
            r#"{{"rules": [{{"name": "a", "triggers": {{"status": "500"}}, "response": {response}}}]}}"#
        );
        let e = parse::<Config>(Some(json.as_bytes())).unwrap_err();
        assert!(
            e.field.starts_with("rules[0].response.otherwise.otherwise"),
            "{}",
            e.field
        );
        assert!(e.reason.contains("recursion limit"), "{}", e.reason);
    }

    #[test]
    fn long_header_values_and_bodies_are_refused() {
        let long = "v".repeat(MAX_HEADER_VALUE_LEN + 1);
        let json = format!(
            r#"{{"rules": [{{"name": "a", "triggers": {{"status": "500"}}, "response": {{"kind": "static", "headers": {{"x-a": "{long}"}}}}}}]}}"#
        );
        let e = parse::<Config>(Some(json.as_bytes())).unwrap_err();
        assert_eq!(e.field, "rules[0].response.headers.x-a");
        let body = "b".repeat(MAX_STRING_LEN + 1);
        let json = format!(
            r#"{{"rules": [{{"name": "a", "triggers": {{"status": "500"}}, "response": {{"kind": "static", "body": "{body}"}}}}]}}"#
        );
        let e = parse::<Config>(Some(json.as_bytes())).unwrap_err();
        assert_eq!(e.field, "rules[0].response.body");
        assert!(e.reason.contains("at most 65536"), "{e}");
    }
}
