//! Counters summed inside the VM and handed to Envoy on a timer: the `metricsFlushInterval` option
//! (off by default). Each `increment_metric` is a host call costing thousands of instructions; with the
//! option on, a request's counter increments cost a few instructions each and the root context's
//! `on_tick` sends one `increment_metric` per counter that moved.
//!
//! [`MetricBatch`] wraps any [`Host`] and forwards every call unchanged, except increments of the
//! counters defined through it while batching is on, which it keeps until [`MetricBatch::flush`].
//! Gauges stay immediate: an increment of an id not defined here as a counter is forwarded at once.
//! Off, it forwards everything and keeps nothing.
//!
//! What users see: with the option on, a counter lags by up to the interval. A `MetricBatch` flushes
//! when it is dropped: the shells share it with their streams, so it goes when Envoy deletes the
//! plugin's root context (a configuration push, a listener removed) and its last stream. Not
//! `on_done`: the modules drop that export (tools/wasm-trim), which Envoy would otherwise call for
//! every stream. Counts are lost when the VM goes without deleting its contexts (Envoy killed or
//! crashing; at Envoy's own exit no scrape could read them anyway).
//! Batching stops, after a flush, if the host refuses the timer, so no count waits for a tick that
//! will not come.

use crate::config::ConfigError;
use crate::duration::ConfigDuration;
use crate::headers::HeaderMap;
use crate::host::{Buffer, Host, HostError, LogLevel, MapType, MetricKind, SharedWrite};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// The configuration field every filter names the interval by.
pub const FLUSH_INTERVAL_FIELD: &str = "metricsFlushInterval";

/// The longest flush interval accepted: beyond a minute a counter lags past several Prometheus scrapes
/// (15 s to 60 s), and a VM torn down without deleting its contexts would lose more than a minute of
/// counts.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// `metricsFlushInterval` is `0s` (off) or between 1 ms (the host's timer counts milliseconds) and
/// [`MAX_FLUSH_INTERVAL`].
pub fn check_flush_interval(interval: ConfigDuration) -> Result<(), ConfigError> {
    let d = interval.0;
    if d.is_zero() || (d >= Duration::from_millis(1) && d <= MAX_FLUSH_INTERVAL) {
        Ok(())
    } else {
        Err(ConfigError::new(
            FLUSH_INTERVAL_FIELD,
            "must be \"0s\" (counters sent at once) or between \"1ms\" and \"60s\"",
        ))
    }
}

/// The timer period for a flush interval, in the host's milliseconds; 0 when off. A fraction of a
/// millisecond is dropped, but never down to 0 (which would stop the timer).
fn period_millis(interval: Duration) -> u32 {
    if interval.is_zero() {
        return 0;
    }
    u32::try_from(interval.as_millis())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// A host whose counter increments are summed in the VM while batching is on (see the module docs).
pub struct MetricBatch<H: Host> {
    inner: H,
    /// The flush period in milliseconds while increments are deferred; 0: every call goes through.
    period_ms: Cell<u32>,
    /// Every counter defined through this host while batching, with its count not yet sent, sorted by
    /// id: as many entries as the configuration defines counters, whatever the traffic.
    pending: RefCell<Vec<(u32, i64)>>,
}

impl<H: Host> MetricBatch<H> {
    /// Wraps `inner`; `flush_interval` zero forwards every call (the default: counters exact at once).
    pub fn new(inner: H, flush_interval: Duration) -> Self {
        MetricBatch {
            inner,
            period_ms: Cell::new(period_millis(flush_interval)),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// The wrapped host.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The flush period in milliseconds, `None` when increments are not deferred.
    pub fn flush_period_ms(&self) -> Option<u32> {
        Some(self.period_ms.get()).filter(|ms| *ms > 0)
    }

    /// Starts the root context's timer at the flush period, for a filter with no timer of its own;
    /// nothing when batching is off. A refused timer stops batching (see `set_tick_period`).
    pub fn start_timer(&self) {
        if let Some(ms) = self.flush_period_ms() {
            let _ = self.set_tick_period(ms);
        }
    }

    /// Sends every counter's pending count (one `increment_metric` each, none for a counter that did
    /// not move) and clears it. A refused increment is not retried: the host drops errors of
    /// `increment_metric` anyway, and a count retried forever would grow without bound.
    pub fn flush(&self) {
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            return;
        };
        for (id, delta) in pending.iter_mut() {
            if *delta != 0 {
                self.inner.increment_metric(*id, std::mem::take(delta));
            }
        }
    }

    /// Flushes and stops batching: every later increment goes to the host at once. For a refused
    /// timer, and for a configuration replaced while its streams still run (no timer flushes it then).
    pub fn finish(&self) {
        self.flush();
        self.period_ms.set(0);
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            *pending = Vec::new();
        }
    }

    fn batching(&self) -> bool {
        self.period_ms.get() > 0
    }
}

/// The last counts go to the host when the plugin goes (see the module docs).
impl<H: Host> Drop for MetricBatch<H> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl<H: Host> Host for MetricBatch<H> {
    fn header_map(&self, map: MapType) -> HeaderMap {
        self.inner.header_map(map)
    }

    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
        self.inner.header(map, name)
    }

    fn set_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.inner.set_header(map, name, value)
    }

    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.inner.add_header(map, name, value)
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        self.inner.remove_header(map, name)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.inner.property(path)
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.inner.set_property(path, value)
    }

    fn buffer(&self, which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
        self.inner.buffer(which, start, max_size)
    }

    fn now_nanos(&self) -> u64 {
        self.inner.now_nanos()
    }

    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.inner.shared_data(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.inner.set_shared_data(key, value, cas)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let id = self.inner.define_metric(kind, name)?;
        if kind == MetricKind::Counter && self.batching() {
            if let Ok(mut pending) = self.pending.try_borrow_mut() {
                // The host may hand out an id again for a name defined twice: one entry per id.
                if let Err(at) = pending.binary_search_by_key(&id, |(i, _)| *i) {
                    pending.insert(at, (id, 0));
                }
            }
        }
        Some(id)
    }

    // One copy in the module, not one per call site: a few bytes smaller (16 in fallback.wasm, which
    // is within that much of its size budget).
    #[inline(never)]
    fn increment_metric(&self, id: u32, delta: i64) {
        if self.batching() {
            if let Ok(mut pending) = self.pending.try_borrow_mut() {
                if let Ok(at) = pending.binary_search_by_key(&id, |(i, _)| *i) {
                    if let Some((_, sum)) = pending.get_mut(at) {
                        *sum = sum.saturating_add(delta);
                        return;
                    }
                }
            }
        }
        // Off, a gauge, or an id defined elsewhere: at once.
        self.inner.increment_metric(id, delta)
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.inner.record_metric(id, value)
    }

    fn send_local_response(
        &self,
        status: u32,
        details: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), HostError> {
        self.inner
            .send_local_response(status, details, headers, body, grpc_status)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.inner.resume_request()
    }

    fn resume_response(&self) -> Result<(), HostError> {
        self.inner.resume_response()
    }

    /// Forwarded; while batching, a refused timer (or one stopped) ends batching after a flush, so no
    /// count waits for a tick that will not come.
    fn set_tick_period(&self, millis: u32) -> Result<(), HostError> {
        let result = self.inner.set_tick_period(millis);
        if self.batching() && (result.is_err() || millis == 0) {
            self.inner.log(
                LogLevel::Warn,
                "no timer: metricsFlushInterval is ignored, counters are sent at once",
            );
            self.finish();
        }
        result
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.inner
            .dispatch_http_call(cluster, headers, body, timeout)
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.inner.log(level, message)
    }

    fn header_pairs(&self, map: MapType) -> Vec<(String, Vec<u8>)> {
        self.inner.header_pairs(map)
    }

    fn header_number<T: std::str::FromStr>(&self, map: MapType, name: &str) -> Option<T> {
        self.inner.header_number(map, name)
    }

    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        self.inner.property_u64(path)
    }

    fn plugin_root_id(&self) -> String {
        self.inner.plugin_root_id()
    }

    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        self.inner.plugin_configuration()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, Op};
    use crate::metrics::{Counter, Gauge};

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn counter_increments_reach_the_host_only_at_flush_summed() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let a = Counter::define_on(&batch, "a");
        let b = Counter::define_on(&batch, "b");
        let idle = Counter::define_on(&batch, "idle");
        for _ in 0..5 {
            a.add_on(&batch, 1);
        }
        b.add_on(&batch, 3);
        let host = batch.inner();
        assert_eq!(host.count(Op::IncrementMetric), 0, "deferred");
        assert_eq!(host.metric("a"), Some(0));
        batch.flush();
        assert_eq!(host.metric("a"), Some(5));
        assert_eq!(host.metric("b"), Some(3));
        assert_eq!(host.metric("idle"), Some(0));
        assert_eq!(
            host.count(Op::IncrementMetric),
            2,
            "one call per counter that moved, none for `idle`"
        );
        // Cleared: a second flush sends nothing; later counts start from zero.
        batch.flush();
        assert_eq!(host.count(Op::IncrementMetric), 2);
        a.add_on(&batch, 2);
        idle.add_on(&batch, 1);
        batch.flush();
        assert_eq!(host.metric("a"), Some(7));
        assert_eq!(host.metric("idle"), Some(1));
        assert_eq!(host.count(Op::IncrementMetric), 4);
    }

    #[test]
    fn gauges_stay_immediate() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let g = Gauge::define_on(&batch, "in_flight");
        let c = Counter::define_on(&batch, "calls");
        g.add_on(&batch, 2);
        g.add_on(&batch, -1);
        g.set_on(&batch, 7);
        c.add_on(&batch, 1);
        let host = batch.inner();
        assert_eq!(host.metric("in_flight"), Some(7));
        assert_eq!(
            host.count(Op::IncrementMetric),
            2,
            "the gauge's two, not the counter's"
        );
        assert_eq!(host.metric("calls"), Some(0));
    }

    #[test]
    fn an_id_not_defined_through_the_batch_is_forwarded() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let elsewhere = batch
            .inner()
            .define_metric(MetricKind::Counter, "elsewhere")
            .unwrap();
        batch.increment_metric(elsewhere, 4);
        assert_eq!(batch.inner().metric("elsewhere"), Some(4));
    }

    #[test]
    fn off_it_is_a_pure_pass_through() {
        let direct = FakeHost::new();
        let batch = MetricBatch::new(FakeHost::new(), Duration::ZERO);
        assert_eq!(batch.flush_period_ms(), None);
        for host in [&direct as &FakeHost, batch.inner()] {
            host.script_headers(MapType::HttpRequestHeaders, &[("x-a", "1")]);
        }
        // The same steps on both; the batch must record exactly the calls the bare host does.
        fn steps(host: &impl Host) {
            let c = Counter::define_on(host, "c");
            let g = Gauge::define_on(host, "g");
            c.add_on(host, 1);
            g.add_on(host, 3);
            c.add_on(host, 2);
            let _ = host.header(MapType::HttpRequestHeaders, "x-a");
            let _ = host.set_header(MapType::HttpRequestHeaders, "x-b", b"2");
            let _ = host.set_tick_period(1000);
            let _ = host.now_nanos();
        }
        steps(&direct);
        steps(&batch);
        batch.start_timer();
        batch.flush();
        batch.finish();
        assert_eq!(batch.inner().calls(), direct.calls());
        assert_eq!(batch.inner().metric("c"), Some(3));
        assert_eq!(batch.inner().metric("g"), Some(3));
    }

    #[test]
    fn a_refused_increment_at_flush_is_dropped_not_retried() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let c = Counter::define_on(&batch, "c");
        c.add_on(&batch, 3);
        let host = batch.inner();
        host.fail_next(Op::IncrementMetric);
        batch.flush();
        assert_eq!(host.count(Op::IncrementMetric), 1);
        assert_eq!(host.metric("c"), Some(0), "the host refused it");
        batch.flush();
        assert_eq!(host.count(Op::IncrementMetric), 1, "not retried");
        c.add_on(&batch, 1);
        batch.flush();
        assert_eq!(host.metric("c"), Some(1), "later counts still arrive");
    }

    #[test]
    fn the_timer_runs_at_the_interval_and_a_refused_one_ends_batching() {
        let batch = MetricBatch::new(FakeHost::new(), Duration::from_millis(1500));
        batch.start_timer();
        assert_eq!(batch.inner().tick_period(), Some(1500));
        assert_eq!(batch.flush_period_ms(), Some(1500));

        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let c = Counter::define_on(&batch, "c");
        c.add_on(&batch, 2);
        batch.inner().fail_next(Op::SetTickPeriod);
        batch.start_timer();
        assert_eq!(batch.flush_period_ms(), None);
        assert_eq!(
            batch.inner().metric("c"),
            Some(2),
            "flushed when batching ended"
        );
        c.add_on(&batch, 1);
        assert_eq!(batch.inner().metric("c"), Some(3), "then sent at once");
    }

    #[test]
    fn finish_flushes_then_forwards() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let c = Counter::define_on(&batch, "c");
        c.add_on(&batch, 4);
        batch.finish();
        assert_eq!(batch.inner().metric("c"), Some(4));
        c.add_on(&batch, 1);
        assert_eq!(
            batch.inner().metric("c"),
            Some(5),
            "a stream still draining counts at once"
        );
        assert_eq!(batch.flush_period_ms(), None);
    }

    #[test]
    fn dropping_the_batch_flushes_it() {
        let host = FakeHost::new();
        struct Shared<'h, 'a>(&'h FakeHost<'a>);
        // A host borrowed from the test, so its record outlives the batch.
        impl Host for Shared<'_, '_> {
            fn header_map(&self, map: MapType) -> HeaderMap {
                self.0.header_map(map)
            }
            fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
                self.0.header(map, name)
            }
            fn set_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
                self.0.set_header(map, name, value)
            }
            fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
                self.0.add_header(map, name, value)
            }
            fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
                self.0.remove_header(map, name)
            }
            fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
                self.0.property(path)
            }
            fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
                self.0.set_property(path, value)
            }
            fn buffer(&self, which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
                self.0.buffer(which, start, max_size)
            }
            fn now_nanos(&self) -> u64 {
                self.0.now_nanos()
            }
            fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
                self.0.shared_data(key)
            }
            fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
                self.0.set_shared_data(key, value, cas)
            }
            fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
                self.0.define_metric(kind, name)
            }
            fn increment_metric(&self, id: u32, delta: i64) {
                self.0.increment_metric(id, delta)
            }
            fn record_metric(&self, id: u32, value: u64) {
                self.0.record_metric(id, value)
            }
            fn send_local_response(
                &self,
                status: u32,
                details: &str,
                headers: &[(&str, &[u8])],
                body: &[u8],
                grpc_status: i32,
            ) -> Result<(), HostError> {
                self.0
                    .send_local_response(status, details, headers, body, grpc_status)
            }
            fn resume_request(&self) -> Result<(), HostError> {
                self.0.resume_request()
            }
            fn resume_response(&self) -> Result<(), HostError> {
                self.0.resume_response()
            }
            fn set_tick_period(&self, millis: u32) -> Result<(), HostError> {
                self.0.set_tick_period(millis)
            }
            fn dispatch_http_call(
                &self,
                cluster: &str,
                headers: &[(&str, &str)],
                body: Option<&[u8]>,
                timeout: Duration,
            ) -> Result<u32, HostError> {
                self.0.dispatch_http_call(cluster, headers, body, timeout)
            }
            fn log(&self, level: LogLevel, message: &str) {
                self.0.log(level, message)
            }
        }
        let batch = MetricBatch::new(Shared(&host), SECOND);
        let c = Counter::define_on(&batch, "c");
        c.add_on(&batch, 6);
        assert_eq!(host.metric("c"), Some(0));
        drop(batch);
        assert_eq!(host.metric("c"), Some(6), "sent as the plugin goes");
    }

    #[test]
    fn a_counter_defined_twice_is_kept_once() {
        let batch = MetricBatch::new(FakeHost::new(), SECOND);
        let first = Counter::define_on(&batch, "c");
        let again = Counter::define_on(&batch, "c");
        first.add_on(&batch, 1);
        again.add_on(&batch, 1);
        batch.flush();
        assert_eq!(batch.inner().metric("c"), Some(2));
        assert_eq!(batch.inner().count(Op::IncrementMetric), 1);
    }

    #[test]
    fn the_interval_is_off_or_one_millisecond_to_a_minute() {
        let ok = |ms: u64| check_flush_interval(ConfigDuration::from_millis(ms)).is_ok();
        assert!(ok(0) && ok(1) && ok(1000) && ok(60_000));
        assert!(!ok(60_001));
        let sub_ms = ConfigDuration(Duration::from_micros(500));
        let err = check_flush_interval(sub_ms).unwrap_err();
        assert_eq!(err.field, "metricsFlushInterval");
        assert_eq!(period_millis(Duration::from_micros(1500)), 1);
        assert_eq!(period_millis(Duration::ZERO), 0);
    }
}
