//! Envoy's `/stats/prometheus` text as tests read it: sums of series, the lines of one filter for a
//! failure message, and assertions that poll, because filters record a stream's outcome after the
//! client already has its response.

use std::time::{Duration, Instant};

use crate::envoy::{Envoy, RECORD_WAIT};

/// A Prometheus series and its expected value: metric name, labels it must carry, value.
pub type Series<'a> = (&'a str, &'a [(&'a str, &'a str)], u64);

/// What [`assert_series`] makes of a series Envoy does not render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The check fails: the series must be there.
    Fails,
    /// It reads as 0.
    ReadsAsZero,
}

/// Polls `/stats/prometheus` until every `(metric, labels, value)` of `expected` holds, for at most
/// [`RECORD_WAIT`], then asserts them, so a mismatch shows the series whose names contain `family`.
pub async fn assert_series(envoy: &Envoy, family: &str, absent: Absent, expected: &[Series<'_>]) {
    let read = |text: &str, metric: &str, labels: &[(&str, &str)]| match absent {
        Absent::Fails => prom_sum(text, metric, labels),
        Absent::ReadsAsZero => Some(prom_sum(text, metric, labels).unwrap_or(0)),
    };
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let all = expected
            .iter()
            .all(|(m, l, v)| read(&text, m, l) == Some(*v));
        if all || Instant::now() >= deadline {
            for (m, l, v) in expected {
                assert_eq!(
                    read(&text, m, l),
                    Some(*v),
                    "{m}{l:?}; series:\n{}",
                    prom_lines(&text, family)
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/stats/prometheus` until the sum of `metric` over the series carrying `labels` satisfies
/// `pred` (an absent series never does), for at most [`RECORD_WAIT`]; returns that sum, or panics
/// showing the series whose names contain `family`.
pub async fn wait_series(
    envoy: &Envoy,
    family: &str,
    metric: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + RECORD_WAIT;
    loop {
        let text = envoy.prometheus().await;
        let v = prom_sum(&text, metric, labels);
        if let Some(v) = v.filter(|v| pred(*v)) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!(
                "{metric}{labels:?} = {v:?}: condition not met after {RECORD_WAIT:?}; series:\n{}",
                prom_lines(&text, family)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of the Prometheus series `metric` whose labels include all of `labels`; `None` when no series
/// matches.
pub fn prom_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<u64> {
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if name != metric {
            continue;
        }
        let have: Vec<(&str, &str)> = label_text
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        if labels.iter().all(|l| have.contains(l)) {
            let v: f64 = value.trim().parse().unwrap_or(0.0);
            *sum.get_or_insert(0) += v as u64;
        }
    }
    sum
}

/// The lines of `text` that contain `needle`, for failure messages.
pub fn prom_lines(text: &str, needle: &str) -> String {
    text.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}
