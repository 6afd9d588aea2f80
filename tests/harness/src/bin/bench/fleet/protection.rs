//! The protections compared, and what each adds to the callers' and the dependency sidecar's
//! configuration. Every sidecar is configured as Istio renders a plain mesh (no DestinationRule, no
//! VirtualService): the default retry policy on outbound routes, no route timeout, circuit-breaker
//! thresholds at 2^32-1; each protection then changes only what a user would change to get it.

use e2e_harness::{validate_yaml, validation_yaml, HttpFilter, WasmFilter};

use super::service::WORKERS;
use super::CALLERS;
use crate::envoy;

/// Each caller's share of the service's workers: the limit a platform engineer would derive from
/// the service's capacity, for `max_requests` and `maxConcurrentCalls` alike.
pub const PER_CALLER_LIMIT: usize = WORKERS / CALLERS;
/// The inbound limit: the service's workers.
pub const INBOUND_LIMIT: usize = WORKERS;
/// The callers' cap on a server-requested open time.
pub const MAX_PUSHBACK: &str = "10s";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protection {
    None,
    MaxRequests,
    AdaptiveConcurrency,
    Breaker,
    MaxConcurrentCalls,
    InboundShedding,
}

impl Protection {
    pub const ALL: [Protection; 6] = [
        Protection::None,
        Protection::MaxRequests,
        Protection::AdaptiveConcurrency,
        Protection::Breaker,
        Protection::MaxConcurrentCalls,
        Protection::InboundShedding,
    ];

    /// Identifier for `BENCH_FLEET_PROTECTIONS`.
    pub fn key(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::MaxRequests => "max_requests",
            Protection::AdaptiveConcurrency => "adaptive_concurrency",
            Protection::Breaker => "breaker",
            Protection::MaxConcurrentCalls => "max_concurrent_calls",
            Protection::InboundShedding => "inbound_shedding",
        }
    }

    /// Short name, for tables, charts and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::MaxRequests => "max_requests",
            Protection::AdaptiveConcurrency => "adaptive_concurrency",
            Protection::Breaker => "breaker (defaults)",
            Protection::MaxConcurrentCalls => "maxConcurrentCalls",
            Protection::InboundShedding => "inbound shedding + maxPushback",
        }
    }

    /// What is configured where, for the report.
    pub fn what(self) -> String {
        match self {
            Protection::None => "Istio's defaults only".to_string(),
            Protection::MaxRequests => format!(
                "each caller's cluster to the dependency: `circuit_breakers` `max_requests: \
                 {PER_CALLER_LIMIT}` (a DestinationRule's `http2MaxRequests: {PER_CALLER_LIMIT}`)"
            ),
            Protection::AdaptiveConcurrency => format!(
                "Envoy's `adaptive_concurrency` filter on the dependency sidecar's inbound listener, \
                 where it sees all of the service's traffic as its docs require; the gradient \
                 controller as in Envoy's docs example: {ADAPTIVE_SUMMARY}"
            ),
            Protection::Breaker => "the circuit breaker on each caller, no configuration".to_string(),
            Protection::MaxConcurrentCalls => {
                format!("the circuit breaker on each caller: `{}`", caller_limit_config())
            }
            Protection::InboundShedding => format!(
                "the circuit breaker on the dependency sidecar's inbound listener: `{}`; on each \
                 caller: `{}`",
                inbound_limit_config(),
                caller_pushback_config()
            ),
        }
    }

    /// HTTP filters of each caller's outbound listener, before the router.
    pub fn caller_filters(self) -> Vec<HttpFilter> {
        match self {
            Protection::Breaker => vec![breaker("caller_breaker", None)],
            Protection::MaxConcurrentCalls => {
                vec![breaker("caller_breaker", Some(caller_limit_config()))]
            }
            Protection::InboundShedding => {
                vec![breaker("caller_breaker", Some(caller_pushback_config()))]
            }
            _ => Vec::new(),
        }
    }

    /// HTTP filters of the dependency sidecar's inbound listener, before the router.
    pub fn dependency_filters(self) -> Vec<HttpFilter> {
        match self {
            Protection::AdaptiveConcurrency => vec![HttpFilter::raw(ADAPTIVE_YAML)],
            Protection::InboundShedding => {
                vec![breaker("inbound_breaker", Some(inbound_limit_config()))]
            }
            _ => Vec::new(),
        }
    }

    /// The `max_requests` of each caller's cluster to the dependency.
    pub fn caller_max_requests(self) -> u64 {
        match self {
            Protection::MaxRequests => PER_CALLER_LIMIT as u64,
            _ => ISTIO_UNLIMITED,
        }
    }

    /// `Err` with the reason when this build cannot run the protection: its breaker configuration
    /// is refused at load (a field this module does not know yet). Checked with `envoy --mode
    /// validate`, which loads each plugin's configuration, before any sidecar starts.
    pub fn availability(self) -> Result<(), String> {
        let configs: Vec<String> = match self {
            Protection::MaxConcurrentCalls => vec![caller_limit_config()],
            Protection::InboundShedding => vec![inbound_limit_config(), caller_pushback_config()],
            _ => return Ok(()),
        };
        for config in configs {
            let filter = WasmFilter::new("circuit-breaker", envoy::module("circuit_breaker.wasm"))
                .configuration(config.clone());
            if let Err(log) = validate_yaml(&validation_yaml(filter)) {
                return Err(refusal(&log, &config));
            }
        }
        Ok(())
    }
}

/// Istio's value for a threshold no DestinationRule sets (`cluster_traffic_policy.go`).
pub const ISTIO_UNLIMITED: u64 = 4_294_967_295;

/// The line of Envoy's output that says why the configuration was refused: the breaker's own
/// message (it names the field), else Envoy's last error line.
fn refusal(log: &str, config: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .find(|l| l.contains("maxConcurrentCalls") || l.contains("maxPushback"))
        .or_else(|| lines.iter().rev().find(|l| l.contains("error")))
        .or(lines.last())
        .copied()
        .unwrap_or("Envoy refused the configuration");
    // Log lines start with a timestamp and thread in brackets; the message is after the last "] ".
    let message = line.rsplit("] ").next().unwrap_or(line);
    format!("configuration `{config}` refused: {message}")
}

fn breaker(name: &str, config: Option<String>) -> HttpFilter {
    let mut f =
        WasmFilter::new(name, envoy::module("circuit_breaker.wasm")).vm_id("circuit-breaker");
    if let Some(c) = config {
        f = f.configuration(c);
    }
    f.into()
}

fn caller_limit_config() -> String {
    format!(
        r#"{{"breakers":[{{"name":"default","keyBy":"cluster","maxConcurrentCalls":{PER_CALLER_LIMIT}}}]}}"#
    )
}

fn inbound_limit_config() -> String {
    format!(
        r#"{{"breakers":[{{"name":"inbound","keyBy":"cluster","maxConcurrentCalls":{INBOUND_LIMIT}}}]}}"#
    )
}

fn caller_pushback_config() -> String {
    format!(
        r#"{{"breakers":[{{"name":"default","keyBy":"cluster","maxPushback":"{MAX_PUSHBACK}"}}]}}"#
    )
}

const ADAPTIVE_SUMMARY: &str = "p90 of the sampled latencies, limit recomputed every 100 ms, minRTT \
     measured over 50 requests every 60 s (jitter 10 %), at least 3 concurrent requests, 25 % buffer";

/// Envoy's documented example of the filter (`adaptive_concurrency_filter.rst`).
const ADAPTIVE_YAML: &str = "name: envoy.filters.http.adaptive_concurrency
typed_config:
  \"@type\": type.googleapis.com/envoy.extensions.filters.http.adaptive_concurrency.v3.AdaptiveConcurrency
  gradient_controller_config:
    sample_aggregate_percentile: {value: 90}
    concurrency_limit_params:
      concurrency_update_interval: 0.1s
    min_rtt_calc_params:
      jitter: {value: 10}
      interval: 60s
      request_count: 50
  enabled: {default_value: true, runtime_key: adaptive_concurrency.enabled}";

/// Istio's default route retry policy (`route/retry/retry.go` `DefaultPolicy`): two retries on
/// connection failures, refused streams, resets and 503, each on another host when there is one.
pub const ISTIO_RETRY_YAML: &str = "retry_policy:
  retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
  num_retries: 2
  retry_host_predicate:
  - name: envoy.retry_host_predicates.previous_hosts
    typed_config:
      \"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
  host_selection_retry_max_attempts: 5
  retriable_status_codes: [503]";

/// The one DEFAULT-priority threshold Istio always writes (`track_remaining` on), with `max_requests`.
pub fn istio_thresholds_yaml(max_requests: u64) -> String {
    format!(
        "circuit_breakers:
  thresholds:
  - max_connections: {ISTIO_UNLIMITED}
    max_pending_requests: {ISTIO_UNLIMITED}
    max_requests: {max_requests}
    max_retries: {ISTIO_UNLIMITED}
    track_remaining: true"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Envoy 1.40 printed for a breaker configuration with a field the module does not know.
    const REFUSED: &str = "\
[2026-12-06 12:17:26.328][6570][error][wasm] [source/extensions/common/wasm/context.cc:1157] wasm log cb: circuit-breaker: invalid configuration: field `breakers[0].maxPushback`: unknown field
[2026-12-06 12:17:26.328][6570][error][wasm] [source/extensions/common/wasm/wasm.cc:104] Wasm VM failed Failed to configure base Wasm plugin
[2026-12-06 12:17:26.342][6570][critical][main] [source/server/config_validation/server.cc:76] error initializing configuration '/tmp/v.yaml': Unable to create Wasm plugin cb";

    #[test]
    fn a_refusal_quotes_the_breakers_own_message() {
        let why = refusal(REFUSED, "{}");
        assert!(
            why.ends_with(
                "wasm log cb: circuit-breaker: invalid configuration: field \
                 `breakers[0].maxPushback`: unknown field"
            ),
            "{why}"
        );
    }

    #[test]
    fn without_the_breakers_message_a_refusal_quotes_envoys_last_error() {
        let log: String = REFUSED.lines().skip(1).collect::<Vec<_>>().join("\n");
        let why = refusal(&log, "{}");
        assert!(why.ends_with("Unable to create Wasm plugin cb"), "{why}");
    }

    #[test]
    fn protections_without_new_fields_need_no_check() {
        for p in [
            Protection::None,
            Protection::MaxRequests,
            Protection::AdaptiveConcurrency,
            Protection::Breaker,
        ] {
            assert_eq!(p.availability(), Ok(()), "{p:?}");
        }
    }
}
