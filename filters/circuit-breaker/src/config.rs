//! The filter's configuration (Istio `pluginConfig` JSON, camelCase), read with serde. No configuration
//! at all gives one breaker per upstream cluster with the defaults documented in the README. Each field
//! sits here once, with its default; `Validate` holds what serde cannot check. The worst-case shared
//! memory is checked where the filter loads (`memory::load`). Imports nothing of this crate: the
//! outcome rules' value types live here, their logic in `classify`.

use filter_common::config::{check, check_names, quoted, whole, whole_some, ConfigError, Validate};
use filter_common::duration::ConfigDuration;
use filter_common::failure::{reason_from_label, UpstreamFailure, MAX_GRPC_CODE};
use filter_common::limits::{byte_size, DEFAULT_MAX_SHARED_MEMORY};
use filter_common::matching::is_header_name;
pub use filter_common::matching::Match;
pub use filter_common::status::{StatusRange, StatusSet};
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
    /// The breakers, first match wins.
    #[default(
        _code = "vec![BreakerConfig { key_by: Some(KeyBy::Cluster), ..BreakerConfig::default() }]"
    )]
    pub breakers: Vec<BreakerConfig>,
    /// Header naming the breaker and state on rejections and dry-run marks.
    #[default("x-circuit-breaker")]
    pub status_header: String,
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
pub struct BreakerConfig {
    /// `[A-Za-z0-9_-]`, 1 to 64 characters; used in metrics and headers.
    #[default("default")]
    pub name: String,
    /// Which requests the breaker guards; empty: all.
    #[serde(rename = "match")]
    pub matcher: Match,
    /// What splits the breaker into independent ones; none: one breaker.
    pub key_by: Option<KeyBy>,
    /// Slots for keys (1 to 10000).
    #[default(100)]
    #[serde(deserialize_with = "whole")]
    pub max_keys: u32,
    pub mode: Mode,
    pub window: WindowConfig,
    /// Calls in the window before any decision.
    #[default(20)]
    #[serde(deserialize_with = "whole")]
    pub minimum_calls: u32,
    /// Percent (above 0, at most 100).
    #[default(50.0)]
    pub failure_rate_threshold: f64,
    /// A call slower than this is slow; none: latency is not watched.
    pub slow_call_duration: Option<ConfigDuration>,
    /// Percent of slow calls that opens the breaker.
    #[default(100.0)]
    pub slow_call_rate_threshold: f64,
    /// Failures in a row that open the breaker (at most 1000; 0: off).
    #[default(5)]
    #[serde(deserialize_with = "whole")]
    pub consecutive_failures: u32,
    /// Outcome rules, first match wins; replace the defaults when given.
    #[default(_code = "default_rules()")]
    pub classify: Vec<Rule>,
    /// First open time.
    #[default(ConfigDuration::from_millis(5_000))]
    pub open_duration: ConfigDuration,
    /// Growth of the open time per further trip (1.0 to 10.0).
    #[default(2.0)]
    pub open_duration_multiplier: f64,
    /// Cap on the open time.
    #[default(ConfigDuration::from_millis(60_000))]
    pub max_open_duration: ConfigDuration,
    /// +/- fraction of randomness on the open time (0.0 to 0.5).
    #[default(0.1)]
    pub open_jitter: f64,
    /// Probe requests in half-open (1 to 1000).
    #[default(3)]
    #[serde(deserialize_with = "whole")]
    pub half_open_probes: u32,
    /// Time for the probes to finish before re-opening.
    #[default(ConfigDuration::from_millis(30_000))]
    pub max_half_open_duration: ConfigDuration,
    /// HTTP status of rejections (400 to 599).
    #[default(503)]
    #[serde(deserialize_with = "whole")]
    pub reject_status: u32,
    /// Send `retry-after` on rejections.
    #[default(true)]
    pub retry_after: bool,
    /// Send `x-envoy-overloaded: true` on rejections.
    pub envoy_overloaded: bool,
    /// Calls in flight for one key, all workers together (1 to 1000000); none: no limit (see
    /// `permits`).
    #[serde(deserialize_with = "whole_some")]
    pub max_concurrent_calls: Option<u32>,
    /// The longest server-driven backoff honoured (at most 1h); zero: off (see `pushback`).
    #[default(ConfigDuration::from_millis(0))]
    pub max_pushback: ConfigDuration,
}

/// The documented default outcome rules.
pub fn default_rules() -> Vec<Rule> {
    use EnvoyReason::{DownstreamCancel, NoResponse, Upstream};
    use UpstreamFailure::*;
    vec![
        Rule {
            outcome: Outcome::Ignore,
            condition: Condition::Envoy(vec![Upstream(Overflow)]),
        },
        Rule {
            outcome: Outcome::Failure,
            condition: Condition::Envoy(vec![
                Upstream(ConnectionFailure),
                Upstream(Timeout),
                Upstream(Reset),
                Upstream(NoHealthyUpstream),
                NoResponse,
            ]),
        },
        // After Envoy's upstream failures: a caller that leaves after one was seen does not hide it.
        Rule {
            outcome: Outcome::Ignore,
            condition: Condition::Envoy(vec![DownstreamCancel]),
        },
        Rule {
            outcome: Outcome::Success,
            condition: Condition::Status(StatusSet(vec![StatusRange(501, 501)])),
        },
        Rule {
            outcome: Outcome::Failure,
            condition: Condition::Status(StatusSet(vec![StatusRange(500, 599)])),
        },
        Rule {
            outcome: Outcome::Failure,
            condition: Condition::GrpcStatus(vec![4, 13, 14]),
        },
    ]
}

/// Most breakers in one configuration. Loading costs about a millisecond of CPU per breaker (its
/// metrics, in every VM), whatever its `maxKeys`: 1000 load in about 2 s.
pub const MAX_BREAKERS: usize = 1000;

/// What splits one breaker into independent ones: `cluster`, `route`, `authority` or `header:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum KeyBy {
    Cluster,
    Route,
    Authority,
    Header(String),
}

impl TryFrom<String> for KeyBy {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "cluster" => KeyBy::Cluster,
            "route" => KeyBy::Route,
            "authority" => KeyBy::Authority,
            other => match other.strip_prefix("header:") {
                Some(name) if is_header_name(name) => KeyBy::Header(name.to_string()),
                _ => {
                    return Err(format!(
                        "expected \"cluster\", \"route\", \"authority\" or \"header:<lower-case name>\", got {}",
                        quoted(&s)
                    ))
                }
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Normal,
    DryRun,
    ForcedOpen,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub enum WindowType {
    #[default]
    Time,
    Count,
}

#[derive(Debug, Clone, PartialEq, Deserialize, SmartDefault)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct WindowConfig {
    /// `time` or `count`.
    #[serde(rename = "type")]
    pub kind: WindowType,
    /// Time window length (1s to 1h).
    #[default(ConfigDuration::from_millis(10_000))]
    pub duration: ConfigDuration,
    /// Time window buckets (1 to 60).
    #[default(10)]
    #[serde(deserialize_with = "whole")]
    pub buckets: u32,
    /// Count window size in calls (1 to 1000).
    #[default(100)]
    #[serde(deserialize_with = "whole")]
    pub size: u32,
}

/// How a call a rule matches counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub enum Outcome {
    Success,
    Failure,
    Ignore,
}

/// Envoy's own reasons a call failed: the upstream failures every filter reads from the response flags,
/// and two of the breaker's own about streams that ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum EnvoyReason {
    Upstream(UpstreamFailure),
    /// The stream ended without any response (status 0), and not because the caller gave up.
    NoResponse,
    /// The caller gave up before any response: it closed its connection (`DC`: an HTTP/1.1 client
    /// timeout) or reset its stream (`DR`: an HTTP/2 `RST_STREAM`, a gRPC cancel or deadline).
    DownstreamCancel,
}

impl TryFrom<String> for EnvoyReason {
    type Error = String;

    fn try_from(label: String) -> Result<Self, String> {
        reason_from_label(
            &label,
            EnvoyReason::Upstream,
            &[
                ("noResponse", EnvoyReason::NoResponse),
                ("downstreamCancel", EnvoyReason::DownstreamCancel),
            ],
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Status(StatusSet),
    GrpcStatus(Vec<u32>),
    Envoy(Vec<EnvoyReason>),
}

/// A `classify` rule: an outcome and exactly one condition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RuleFields")]
pub struct Rule {
    pub outcome: Outcome,
    pub condition: Condition,
}

/// A rule as written; turned into a [`Rule`] (with its one condition) as it is read.
#[derive(Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase", deny_unknown_fields)]
struct RuleFields {
    outcome: Outcome,
    status: Option<StatusSet>,
    #[serde(default, deserialize_with = "filter_common::config::whole_list_some")]
    grpc_status: Option<Vec<u32>>,
    envoy: Option<Vec<EnvoyReason>>,
}

impl TryFrom<RuleFields> for Rule {
    type Error = &'static str;

    fn try_from(r: RuleFields) -> Result<Self, Self::Error> {
        let condition = match (r.status, r.grpc_status, r.envoy) {
            (Some(set), None, None) => Condition::Status(set),
            (None, Some(codes), None) => {
                if codes.is_empty() || codes.iter().any(|c| *c > MAX_GRPC_CODE) {
                    return Err("grpcStatus must list gRPC codes between 0 and 16");
                }
                Condition::GrpcStatus(codes)
            }
            (None, None, Some(reasons)) if !reasons.is_empty() => Condition::Envoy(reasons),
            _ => return Err("a rule needs exactly one condition: status, grpcStatus or envoy"),
        };
        Ok(Rule {
            outcome: r.outcome,
            condition,
        })
    }
}

from_object_only!(Config, BreakerConfig, WindowConfig, RuleFields);
from_name_only!(Mode, WindowType, Outcome);

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.breakers.is_empty(),
            "breakers",
            "must list at least one breaker",
        )?;
        check(
            self.breakers.len() <= MAX_BREAKERS,
            "breakers",
            "must list at most 1000 breakers (each takes time to load in every VM); split one by key with keyBy",
        )?;
        check(
            is_header_name(&self.status_header),
            "statusHeader",
            filter_common::matching::HEADER_NAME_RULE,
        )?;
        check_names(self.breakers.iter().map(|x| x.name.as_str()), "breakers")?;
        for (i, b) in self.breakers.iter().enumerate() {
            let f = |name: &str| format!("breakers[{i}].{name}");
            b.matcher.validate(&f("match"))?;
            check(
                (1..=10_000).contains(&b.max_keys),
                f("maxKeys"),
                "must be between 1 and 10000",
            )?;
            let w = &b.window;
            let secs = w.duration.0.as_millis();
            check(
                (1_000..=3_600_000).contains(&secs),
                f("window.duration"),
                "must be between 1s and 1h",
            )?;
            check(
                (1..=60).contains(&w.buckets),
                f("window.buckets"),
                "must be between 1 and 60",
            )?;
            check(
                (1..=1000).contains(&w.size),
                f("window.size"),
                "must be between 1 and 1000",
            )?;
            check(
                b.consecutive_failures <= 1000,
                f("consecutiveFailures"),
                "must be at most 1000 (0 turns the rule off)",
            )?;
            check(
                b.minimum_calls >= 1,
                f("minimumCalls"),
                "must be at least 1",
            )?;
            check(
                b.failure_rate_threshold > 0.0 && b.failure_rate_threshold <= 100.0,
                f("failureRateThreshold"),
                "must be a percentage above 0 and at most 100",
            )?;
            check(
                b.slow_call_rate_threshold > 0.0 && b.slow_call_rate_threshold <= 100.0,
                f("slowCallRateThreshold"),
                "must be a percentage above 0 and at most 100",
            )?;
            if let Some(d) = b.slow_call_duration {
                check(!d.0.is_zero(), f("slowCallDuration"), "must be positive")?;
            }
            check(
                !b.open_duration.0.is_zero(),
                f("openDuration"),
                "must be positive",
            )?;
            check(
                b.max_open_duration >= b.open_duration,
                f("maxOpenDuration"),
                "must be at least openDuration",
            )?;
            check(
                (1.0..=10.0).contains(&b.open_duration_multiplier),
                f("openDurationMultiplier"),
                "must be between 1.0 and 10.0",
            )?;
            check(
                (0.0..=0.5).contains(&b.open_jitter),
                f("openJitter"),
                "must be between 0.0 and 0.5",
            )?;
            check(
                (1..=1000).contains(&b.half_open_probes),
                f("halfOpenProbes"),
                "must be between 1 and 1000",
            )?;
            check(
                !b.max_half_open_duration.0.is_zero(),
                f("maxHalfOpenDuration"),
                "must be positive",
            )?;
            check(
                (400..=599).contains(&b.reject_status),
                f("rejectStatus"),
                "must be between 400 and 599",
            )?;
            validate_overload(b, &f)?;
        }
        Ok(())
    }
}

/// Limits of the overload fields (issue 20): `maxConcurrentCalls`, `maxPushback`.
fn validate_overload(b: &BreakerConfig, f: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    if let Some(n) = b.max_concurrent_calls {
        check(
            (1..=1_000_000).contains(&n),
            f("maxConcurrentCalls"),
            "must be between 1 and 1000000 (leave it out for no limit)",
        )?;
    }
    check(
        b.max_pushback.0.as_secs() <= 3600,
        f("maxPushback"),
        "must be at most 1h (\"0s\" turns it off)",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use filter_common::config::parse;

    #[test]
    fn no_configuration_gives_one_breaker_per_cluster() {
        let c: Config = parse(None).unwrap();
        assert_eq!(c.breakers.len(), 1);
        let b = &c.breakers[0];
        assert_eq!(b.name, "default");
        assert_eq!(b.key_by, Some(KeyBy::Cluster));
        assert_eq!(b.window.kind, WindowType::Time);
        assert_eq!(b.window.duration.0.as_secs(), 10);
        assert_eq!(b.minimum_calls, 20);
        assert_eq!(b.failure_rate_threshold, 50.0);
        assert_eq!(b.consecutive_failures, 5);
        assert_eq!(b.open_duration.0.as_secs(), 5);
        assert_eq!(b.max_open_duration.0.as_secs(), 60);
        assert_eq!(b.half_open_probes, 3);
        assert_eq!(b.classify, default_rules());
        assert_eq!(b.max_concurrent_calls, None, "no limit");
        assert!(b.max_pushback.0.is_zero(), "no pushback");
    }

    /// Every field set to a value other than its default, and every field asserted: a field wired to
    /// the wrong name or left at its default fails here.
    #[test]
    fn every_field_is_read() {
        let json = br#"{"breakers": [{
            "name": "payments", "match": {"cluster": "pay", "route": "r", "authority": "pay.svc",
                "pathPrefix": "/api", "method": "POST", "header": {"name": "x-tenant", "value": "a"}},
            "keyBy": "header:x-tenant", "maxKeys": 50.0, "mode": "dryRun",
            "window": {"type": "count", "duration": "20s", "buckets": 5, "size": 30},
            "minimumCalls": 5, "failureRateThreshold": 25,
            "slowCallDuration": "2s", "slowCallRateThreshold": 80, "consecutiveFailures": 3,
            "classify": [{"status": ["502", "504-599"], "outcome": "failure"}, {"grpcStatus": [14], "outcome": "success"},
                         {"envoy": ["timeout", "noResponse"], "outcome": "ignore"}],
            "openDuration": "1s", "openDurationMultiplier": 1.5, "maxOpenDuration": "30s", "openJitter": 0,
            "halfOpenProbes": 1, "maxHalfOpenDuration": "5s", "rejectStatus": 429, "retryAfter": false,
            "envoyOverloaded": true, "maxConcurrentCalls": 40.0, "maxPushback": "30s"}],
            "statusHeader": "x-cb", "maxSharedMemory": "128Mi"}"#;
        let c: Config = parse(Some(json)).unwrap();
        let d = BreakerConfig::default();
        assert_eq!(c.status_header, "x-cb");
        assert_eq!(c.max_shared_memory, 128 << 20);
        assert_eq!(c.breakers.len(), 1);
        let b = &c.breakers[0];
        assert_eq!(b.name, "payments");
        assert_eq!(
            b.matcher,
            Match {
                cluster: Some("pay".into()),
                route: Some("r".into()),
                authority: Some("pay.svc".into()),
                path_prefix: Some("/api".into()),
                method: Some("POST".into()),
                header: Some(filter_common::matching::HeaderMatch {
                    name: "x-tenant".into(),
                    value: Some("a".into())
                }),
            }
        );
        assert_eq!(b.key_by, Some(KeyBy::Header("x-tenant".into())));
        assert_eq!(b.max_keys, 50);
        assert_eq!(b.mode, Mode::DryRun);
        assert_eq!(
            b.window,
            WindowConfig {
                kind: WindowType::Count,
                duration: ConfigDuration::from_millis(20_000),
                buckets: 5,
                size: 30
            }
        );
        assert_eq!(b.minimum_calls, 5);
        assert_eq!(b.failure_rate_threshold, 25.0);
        assert_eq!(
            b.slow_call_duration,
            Some(ConfigDuration::from_millis(2_000))
        );
        assert_eq!(b.slow_call_rate_threshold, 80.0);
        assert_eq!(b.consecutive_failures, 3);
        assert_eq!(
            b.classify,
            vec![
                Rule {
                    outcome: Outcome::Failure,
                    condition: Condition::Status(StatusSet(vec![
                        StatusRange(502, 502),
                        StatusRange(504, 599)
                    ])),
                },
                Rule {
                    outcome: Outcome::Success,
                    condition: Condition::GrpcStatus(vec![14]),
                },
                Rule {
                    outcome: Outcome::Ignore,
                    condition: Condition::Envoy(vec![
                        EnvoyReason::Upstream(UpstreamFailure::Timeout),
                        EnvoyReason::NoResponse
                    ]),
                },
            ]
        );
        assert_eq!(b.open_duration, ConfigDuration::from_millis(1_000));
        assert_eq!(b.open_duration_multiplier, 1.5);
        assert_eq!(b.max_open_duration, ConfigDuration::from_millis(30_000));
        assert_eq!(b.open_jitter, 0.0);
        assert_eq!(b.half_open_probes, 1);
        assert_eq!(b.max_half_open_duration, ConfigDuration::from_millis(5_000));
        assert_eq!(b.reject_status, 429);
        assert!(!b.retry_after);
        assert!(b.envoy_overloaded);
        assert_eq!(b.max_concurrent_calls, Some(40));
        assert_eq!(b.max_pushback, ConfigDuration::from_millis(30_000));
        // Each value above differs from its default, so a field left unread would show.
        assert_ne!(b.window, d.window);
        assert_ne!(b.classify, d.classify);
        assert_ne!(b.open_jitter, d.open_jitter);
        assert_ne!(c.status_header, Config::default().status_header);
    }

    /// Every field the README's configuration tables name is one the configuration reads: each is set
    /// (to `null`, which no field takes except an optional one) and must not be an unknown field.
    #[test]
    fn every_field_in_the_readme_is_accepted() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Configuration")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        let (mut top_level, mut in_table, mut seen) = (true, false, 0);
        for line in section.lines() {
            if line.starts_with("Each breaker") {
                top_level = false;
            }
            // Only the tables of fields (`| field | default | meaning |`), not the reasons' table.
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
            let doc = if top_level {
                value
            } else {
                serde_json::json!({"breakers": [value]})
            };
            if let Err(e) = parse::<Config>(Some(doc.to_string().as_bytes())) {
                assert!(!e.reason.contains("unknown field"), "{field}: {e}");
            }
            seen += 1;
        }
        assert!(seen >= 30, "only {seen} fields in the README's tables");
    }

    #[test]
    fn values_at_their_limits() {
        let breaker =
            |json: &str| parse::<Config>(Some(format!(r#"{{"breakers": [{json}]}}"#).as_bytes()));
        for field in ["failureRateThreshold", "slowCallRateThreshold"] {
            // A percentage above 0 (0 would open on any call) and at most 100.
            for ok in ["0.5", "100"] {
                assert!(
                    breaker(&format!(r#"{{"{field}": {ok}}}"#)).is_ok(),
                    "{field} {ok}"
                );
            }
            for bad in ["0", "100.5", "150"] {
                let e = breaker(&format!(r#"{{"{field}": {bad}}}"#)).unwrap_err();
                assert_eq!(e.field, format!("breakers[0].{field}"), "{bad}");
            }
        }
        // gRPC codes run from 0 (OK) to 16 (UNAUTHENTICATED).
        let rule = |codes: &str| {
            breaker(&format!(
                r#"{{"classify": [{{"grpcStatus": {codes}, "outcome": "failure"}}]}}"#
            ))
        };
        assert!(rule("[0, 16]").is_ok());
        assert!(rule("[17]").is_err());
        // A header key names a lower-case header (what Envoy's header maps hold).
        let key = |by: &str| breaker(&format!(r#"{{"keyBy": "{by}"}}"#));
        assert_eq!(
            key("header:x-tenant").unwrap().breakers[0].key_by,
            Some(KeyBy::Header("x-tenant".into()))
        );
        for bad in ["header:X-Tenant", "header:", "header:a b"] {
            assert_eq!(key(bad).unwrap_err().field, "breakers[0].keyBy", "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let one = r#"{"match": {"pathPrefix": "/x"}}"#;
        let too_many = format!(
            r#"{{"breakers": [{}]}}"#,
            vec![one; MAX_BREAKERS + 1].join(",")
        );
        let cases: &[(&[u8], &str)] = &[
            (br#"{"breakers": []}"#, "breakers"),
            (too_many.as_bytes(), "breakers"),
            (br#"{"breakers": [{"name": "a b"}]}"#, "breakers[0].name"),
            (
                br#"{"breakers": [{"name": "a"}, {"name": "a"}]}"#,
                "breakers[1].name",
            ),
            (
                br#"{"breakers": [{"failureRateThreshold": 150}]}"#,
                "breakers[0].failureRateThreshold",
            ),
            (
                br#"{"breakers": [{"keyBy": "tenant"}]}"#,
                "breakers[0].keyBy",
            ),
            (br#"{"breakers": [{"mode": "off"}]}"#, "breakers[0].mode"),
            (
                br#"{"breakers": [{"window": {"duration": "100ms"}}]}"#,
                "breakers[0].window.duration",
            ),
            (
                br#"{"breakers": [{"window": {"type": "sliding"}}]}"#,
                "breakers[0].window.type",
            ),
            (
                br#"{"breakers": [{"openDuration": "10s", "maxOpenDuration": "5s"}]}"#,
                "breakers[0].maxOpenDuration",
            ),
            (
                br#"{"breakers": [{"classify": [{"outcome": "failure"}]}]}"#,
                "breakers[0].classify[0]",
            ),
            (
                br#"{"breakers": [{"classify": [{"status": "600", "outcome": "failure"}]}]}"#,
                "breakers[0].classify[0].status",
            ),
            (
                br#"{"breakers": [{"classify": [{"envoy": ["meteor"], "outcome": "failure"}]}]}"#,
                "breakers[0].classify[0].envoy[0]",
            ),
            (
                br#"{"breakers": [{"halfOpenProbes": 0}]}"#,
                "breakers[0].halfOpenProbes",
            ),
            (
                br#"{"breakers": [{"rejectStatus": 200}]}"#,
                "breakers[0].rejectStatus",
            ),
            (
                br#"{"breakers": [{"openJitter": 0.9}]}"#,
                "breakers[0].openJitter",
            ),
            (
                br#"{"breakers": [{"maxConcurrentCalls": 0}]}"#,
                "breakers[0].maxConcurrentCalls",
            ),
            (
                br#"{"breakers": [{"maxConcurrentCalls": -3}]}"#,
                "breakers[0].maxConcurrentCalls",
            ),
            (
                br#"{"breakers": [{"maxConcurrentCalls": 2.5}]}"#,
                "breakers[0].maxConcurrentCalls",
            ),
            (
                br#"{"breakers": [{"maxPushback": "2h"}]}"#,
                "breakers[0].maxPushback",
            ),
            (
                br#"{"breakers": [{"maxPushback": 30}]}"#,
                "breakers[0].maxPushback",
            ),
            (br#"{"breakerz": []}"#, "breakerz"),
            (
                br#"{"breakers": [{"consecutiveFailures": 5000}]}"#,
                "breakers[0].consecutiveFailures",
            ),
            (br#"{"maxSharedMemory": "lots"}"#, "maxSharedMemory"),
            (
                br#"{"breakers": [{"window": ["time", "10s"]}]}"#,
                "breakers[0].window",
            ),
            (
                br#"{"breakers": [{"mode": {"dryRun": null}}]}"#,
                "breakers[0].mode",
            ),
            (
                br#"{"breakers": [{"maxKeys": 5.5}]}"#,
                "breakers[0].maxKeys",
            ),
            (
                br#"{"breakers": [{"maxKeys": 1e400}]}"#,
                "breakers[0].maxKeys",
            ),
            (
                br#"{"breakers": [{"name": "a", "name": "b"}]}"#,
                "breakers[0]",
            ),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }
}
