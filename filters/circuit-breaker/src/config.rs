//! The filter's configuration (Istio `pluginConfig` JSON, camelCase). No configuration at all gives one
//! breaker per upstream cluster with the defaults documented in the README.

use crate::classify::{Condition, EnvoyReason, Outcome, Rule, StatusRange, StatusSet};
use filter_common::config::{
    check, check_names, one_of, quoted, read, string, ConfigError, FromJson, Path, Validate,
};
use filter_common::duration::ConfigDuration;
use filter_common::json::Value;
use filter_common::limits::{byte_size, DEFAULT_MAX_SHARED_MEMORY};
use filter_common::matching::is_header_name;
pub use filter_common::matching::Match;
use filter_common::members;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub breakers: Vec<BreakerConfig>,
    pub status_header: String,
    /// The most shared memory the configuration may need in the worst case (see `memory`).
    pub max_shared_memory: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            breakers: vec![BreakerConfig {
                key_by: Some(KeyBy::Cluster),
                ..BreakerConfig::default()
            }],
            status_header: "x-circuit-breaker".to_string(),
            max_shared_memory: DEFAULT_MAX_SHARED_MEMORY,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub name: String,
    pub matcher: Match,
    pub key_by: Option<KeyBy>,
    pub max_keys: u32,
    pub mode: Mode,
    pub window: WindowConfig,
    pub minimum_calls: u32,
    pub failure_rate_threshold: f64,
    pub slow_call_duration: Option<ConfigDuration>,
    pub slow_call_rate_threshold: f64,
    pub consecutive_failures: u32,
    pub classify: Vec<Rule>,
    pub open_duration: ConfigDuration,
    pub open_duration_multiplier: f64,
    pub max_open_duration: ConfigDuration,
    pub open_jitter: f64,
    pub half_open_probes: u32,
    pub max_half_open_duration: ConfigDuration,
    pub reject_status: u32,
    pub retry_after: bool,
    pub envoy_overloaded: bool,
    /// Calls in flight for one key, all workers together; `None`: no limit (see `permits`).
    pub max_concurrent_calls: Option<u32>,
    /// The longest server-driven backoff honoured; zero: off (see `pushback`).
    pub max_pushback: ConfigDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            name: "default".to_string(),
            matcher: Match::default(),
            key_by: None,
            max_keys: 100,
            mode: Mode::Normal,
            window: WindowConfig::default(),
            minimum_calls: 20,
            failure_rate_threshold: 50.0,
            slow_call_duration: None,
            slow_call_rate_threshold: 100.0,
            consecutive_failures: 5,
            classify: default_rules(),
            open_duration: ConfigDuration::from_millis(5_000),
            open_duration_multiplier: 2.0,
            max_open_duration: ConfigDuration::from_millis(60_000),
            open_jitter: 0.1,
            half_open_probes: 3,
            max_half_open_duration: ConfigDuration::from_millis(30_000),
            reject_status: 503,
            retry_after: true,
            envoy_overloaded: false,
            max_concurrent_calls: None,
            max_pushback: ConfigDuration::from_millis(0),
        }
    }
}

/// The documented default outcome rules.
pub fn default_rules() -> Vec<Rule> {
    use filter_common::failure::UpstreamFailure::*;
    use EnvoyReason::{DownstreamCancel, NoResponse, Upstream};
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

/// What splits one breaker into independent ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyBy {
    Cluster,
    Route,
    Authority,
    Header(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    DryRun,
    ForcedOpen,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WindowType {
    #[default]
    Time,
    Count,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowConfig {
    pub kind: WindowType,
    pub duration: ConfigDuration,
    pub buckets: u32,
    pub size: u32,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            kind: WindowType::Time,
            duration: ConfigDuration::from_millis(10_000),
            buckets: 10,
            size: 100,
        }
    }
}

impl FromJson for Config {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut c = Config::default();
        members!(v, at, |value| {
            "breakers" => c.breakers = read(value, at)?,
            "statusHeader" => c.status_header = read(value, at)?,
            "maxSharedMemory" => c.max_shared_memory = byte_size(value, at)?,
        });
        Ok(c)
    }
}

impl FromJson for BreakerConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut b = BreakerConfig::default();
        members!(v, at, |value| {
            "name" => b.name = read(value, at)?,
            "match" => b.matcher = read(value, at)?,
            "keyBy" => b.key_by = read(value, at)?,
            "maxKeys" => b.max_keys = read(value, at)?,
            "mode" => b.mode = read(value, at)?,
            "window" => b.window = read(value, at)?,
            "minimumCalls" => b.minimum_calls = read(value, at)?,
            "failureRateThreshold" => b.failure_rate_threshold = read(value, at)?,
            "slowCallDuration" => b.slow_call_duration = read(value, at)?,
            "slowCallRateThreshold" => b.slow_call_rate_threshold = read(value, at)?,
            "consecutiveFailures" => b.consecutive_failures = read(value, at)?,
            "classify" => b.classify = read(value, at)?,
            "openDuration" => b.open_duration = read(value, at)?,
            "openDurationMultiplier" => b.open_duration_multiplier = read(value, at)?,
            "maxOpenDuration" => b.max_open_duration = read(value, at)?,
            "openJitter" => b.open_jitter = read(value, at)?,
            "halfOpenProbes" => b.half_open_probes = read(value, at)?,
            "maxHalfOpenDuration" => b.max_half_open_duration = read(value, at)?,
            "rejectStatus" => b.reject_status = read(value, at)?,
            "retryAfter" => b.retry_after = read(value, at)?,
            "envoyOverloaded" => b.envoy_overloaded = read(value, at)?,
            "maxConcurrentCalls" => b.max_concurrent_calls = Some(read(value, at)?),
            "maxPushback" => b.max_pushback = read(value, at)?,
        });
        Ok(b)
    }
}

impl FromJson for WindowConfig {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let mut w = WindowConfig::default();
        members!(v, at, |value| {
            "type" => w.kind = read(value, at)?,
            "duration" => w.duration = read(value, at)?,
            "buckets" => w.buckets = read(value, at)?,
            "size" => w.size = read(value, at)?,
        });
        Ok(w)
    }
}

impl FromJson for Mode {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        one_of(
            v,
            at,
            &[
                ("normal", Mode::Normal),
                ("dryRun", Mode::DryRun),
                ("forcedOpen", Mode::ForcedOpen),
                ("disabled", Mode::Disabled),
            ],
        )
    }
}

impl FromJson for WindowType {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        one_of(
            v,
            at,
            &[("time", WindowType::Time), ("count", WindowType::Count)],
        )
    }
}

impl FromJson for KeyBy {
    fn from_json(v: &Value, at: &Path<'_>) -> Result<Self, ConfigError> {
        let s = string(v, at)?;
        Ok(match s {
            "cluster" => KeyBy::Cluster,
            "route" => KeyBy::Route,
            "authority" => KeyBy::Authority,
            other => match other.strip_prefix("header:") {
                Some(name) if is_header_name(name) => KeyBy::Header(name.to_string()),
                _ => {
                    return Err(at.error(format!(
                        "expected \"cluster\", \"route\", \"authority\" or \"header:<lower-case name>\", got {}",
                        quoted(s)
                    )))
                }
            },
        })
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.breakers.is_empty(),
            "breakers",
            "must list at least one breaker",
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
        crate::memory::budget(self).check(self.max_shared_memory)
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

    #[test]
    fn a_full_breaker_parses() {
        let json = br#"{"breakers": [{
            "name": "payments", "match": {"cluster": "pay", "route": "r", "authority": "pay.svc",
                "pathPrefix": "/api", "method": "POST", "header": {"name": "x-tenant", "value": "a"}},
            "keyBy": "header:x-tenant", "maxKeys": 50.0, "mode": "dryRun",
            "window": {"type": "count", "size": 30}, "minimumCalls": 5, "failureRateThreshold": 25,
            "slowCallDuration": "2s", "slowCallRateThreshold": 80, "consecutiveFailures": 3,
            "classify": [{"status": ["502", "504-599"], "outcome": "failure"}, {"grpcStatus": [14], "outcome": "failure"},
                         {"envoy": ["timeout"], "outcome": "ignore"}],
            "openDuration": "1s", "openDurationMultiplier": 1.5, "maxOpenDuration": "30s", "openJitter": 0,
            "halfOpenProbes": 1, "maxHalfOpenDuration": "5s", "rejectStatus": 429, "retryAfter": false,
            "envoyOverloaded": true, "maxConcurrentCalls": 40, "maxPushback": "30s"}], "statusHeader": "x-cb"}"#;
        let c: Config = parse(Some(json)).unwrap();
        let b = &c.breakers[0];
        assert_eq!(b.key_by, Some(KeyBy::Header("x-tenant".into())));
        assert_eq!(b.mode, Mode::DryRun);
        assert_eq!(b.window.kind, WindowType::Count);
        assert_eq!(b.classify.len(), 3);
        assert_eq!(b.max_keys, 50);
        assert_eq!(b.max_concurrent_calls, Some(40));
        assert_eq!(b.max_pushback.0.as_secs(), 30);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"breakers": []}"#, "breakers"),
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
                br#"{"breakers": [{"name": "a", "maxKeys": 10}, {"name": "b", "maxKeys": 10000}]}"#,
                "breakers[1].maxKeys",
            ),
            (
                br#"{"breakers": [{"name": "a", "maxKeys": 100}], "maxSharedMemory": "1Mi"}"#,
                "breakers[0].maxKeys",
            ),
        ];
        for (json, field) in cases {
            let e = parse::<Config>(Some(json)).unwrap_err();
            assert_eq!(&e.field, field, "{}: {}", String::from_utf8_lossy(json), e);
        }
    }
}
