//! A [`Host`] in memory for unit tests (cargo feature `test-support`): it serves scripted header maps,
//! properties, buffers and a settable clock, keeps shared data in a [`MemoryStore`] (the host's CAS
//! rules), fails any kind of call on demand, and records every call in order, so a test can assert
//! what a filter's request path set, sent and resumed, and how many host calls it made.
//!
//! Header writes change the scripted map as Envoy does (a replace removes every value, then adds one),
//! so a later read sees them. A withdrawn map (`withdraw`) answers as Envoy does for request headers
//! after the request continued: reads find nothing and writes fail with `BadArgument`.

use crate::headers::HeaderMap;
use crate::host::{
    Buffer, Host, HostError, LogLevel, MapType, MetricKind, SharedWrite, BAD_ARGUMENT,
};
use crate::shared::{MemoryStore, SharedData};
use crate::wire;
use crate::HashMap;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// The kinds of host call, one per [`Host`] method that reaches the host: what `fail_next` and
/// `count` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    HeaderMap,
    Header,
    SetHeader,
    AddHeader,
    RemoveHeader,
    Property,
    SetProperty,
    Buffer,
    Now,
    GetSharedData,
    SetSharedData,
    DefineMetric,
    IncrementMetric,
    RecordMetric,
    SendLocalResponse,
    ResumeRequest,
    ResumeResponse,
    SetTickPeriod,
    DispatchHttpCall,
    Log,
}

/// A local reply as the filter sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub details: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// -1: not gRPC.
    pub grpc_status: i32,
}

impl LocalReply {
    /// The first value of a reply header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// An outgoing HTTP call as the filter dispatched it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// One host call, with what it carried (failed calls too: they were made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    HeaderMap(MapType),
    Header(MapType, String),
    SetHeader(MapType, String, Vec<u8>),
    AddHeader(MapType, String, Vec<u8>),
    RemoveHeader(MapType, String),
    Property(Vec<String>),
    SetProperty(Vec<String>, Vec<u8>),
    Buffer(Buffer),
    Now,
    GetSharedData(String),
    SetSharedData(String, Vec<u8>, u32),
    DefineMetric(MetricKind, String),
    IncrementMetric(u32, i64),
    RecordMetric(u32, u64),
    SendLocalResponse(LocalReply),
    ResumeRequest,
    ResumeResponse,
    SetTickPeriod(u32),
    DispatchHttpCall(HttpCall),
    Log(LogLevel, String),
}

impl Call {
    pub fn op(&self) -> Op {
        match self {
            Call::HeaderMap(..) => Op::HeaderMap,
            Call::Header(..) => Op::Header,
            Call::SetHeader(..) => Op::SetHeader,
            Call::AddHeader(..) => Op::AddHeader,
            Call::RemoveHeader(..) => Op::RemoveHeader,
            Call::Property(..) => Op::Property,
            Call::SetProperty(..) => Op::SetProperty,
            Call::Buffer(..) => Op::Buffer,
            Call::Now => Op::Now,
            Call::GetSharedData(..) => Op::GetSharedData,
            Call::SetSharedData(..) => Op::SetSharedData,
            Call::DefineMetric(..) => Op::DefineMetric,
            Call::IncrementMetric(..) => Op::IncrementMetric,
            Call::RecordMetric(..) => Op::RecordMetric,
            Call::SendLocalResponse(..) => Op::SendLocalResponse,
            Call::ResumeRequest => Op::ResumeRequest,
            Call::ResumeResponse => Op::ResumeResponse,
            Call::SetTickPeriod(..) => Op::SetTickPeriod,
            Call::DispatchHttpCall(..) => Op::DispatchHttpCall,
            Call::Log(..) => Op::Log,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Failing {
    Times(u32, HostError),
    Always(HostError),
}

/// One metric as defined, with its value.
#[derive(Debug, Clone)]
struct Metric {
    name: String,
    kind: MetricKind,
    value: i64,
}

/// Header maps are indexed by the ABI's `MapType` value (0..=7).
const MAPS: usize = 8;

/// One header map's pairs, in order.
type Pairs = Vec<(String, Vec<u8>)>;

/// A host in memory. Every method takes `&self`, as the trait's do.
pub struct FakeHost<'a> {
    /// `None`: the map is withdrawn (unavailable).
    maps: RefCell<[Option<Pairs>; MAPS]>,
    properties: RefCell<HashMap<Vec<String>, Vec<u8>>>,
    buffers: RefCell<HashMap<Buffer, Vec<u8>>>,
    now: Cell<u64>,
    shared: MemoryStore<'a>,
    metrics: RefCell<Vec<Metric>>,
    tick_period: Cell<Option<u32>>,
    next_token: Cell<u32>,
    failures: RefCell<HashMap<Op, Failing>>,
    calls: RefCell<Vec<Call>>,
}

impl Default for FakeHost<'_> {
    fn default() -> Self {
        FakeHost {
            maps: RefCell::new(std::array::from_fn(|_| Some(Vec::new()))),
            properties: RefCell::default(),
            buffers: RefCell::default(),
            now: Cell::new(0),
            shared: MemoryStore::new(),
            metrics: RefCell::default(),
            tick_period: Cell::new(None),
            next_token: Cell::new(1),
            failures: RefCell::default(),
            calls: RefCell::default(),
        }
    }
}

fn owned_path(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| s.to_string()).collect()
}

impl<'a> FakeHost<'a> {
    /// Every map present and empty, no properties, the clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    // ---- Scripting what the host serves ----

    /// Replaces a header map (and makes it available).
    pub fn script_headers(&self, map: MapType, pairs: &[(&str, &str)]) {
        let pairs = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        self.put_map(map, Some(pairs));
    }

    /// Adds one header whose value may be any bytes (not UTF-8, say); makes the map available.
    pub fn script_header_bytes(&self, map: MapType, name: &str, value: &[u8]) {
        let mut pairs = self.headers(map).unwrap_or_default();
        pairs.push((name.to_string(), value.to_vec()));
        self.put_map(map, Some(pairs));
    }

    /// Makes a map unavailable, as request headers are once the request continued.
    pub fn withdraw(&self, map: MapType) {
        self.put_map(map, None);
    }

    pub fn script_property(&self, path: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(owned_path(path), value.to_vec());
    }

    /// An integer attribute, encoded as Envoy does (8 bytes, little-endian).
    pub fn script_property_u64(&self, path: &[&str], value: u64) {
        self.script_property(path, &value.to_le_bytes());
    }

    pub fn script_buffer(&self, which: Buffer, bytes: &[u8]) {
        self.buffers.borrow_mut().insert(which, bytes.to_vec());
    }

    pub fn set_clock(&self, nanos: u64) {
        self.now.set(nanos);
    }

    pub fn advance_clock(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now.set(self.now.get().saturating_add(by));
    }

    /// The shared data, to seed it, inject per-key faults or another worker's writes, and read it back.
    pub fn shared(&self) -> &MemoryStore<'a> {
        &self.shared
    }

    // ---- Scripted failures ----

    /// The next call of `op` fails (with `BadArgument`); failures of one kind add up.
    pub fn fail_next(&self, op: Op) {
        self.fail_next_with(op, BAD_ARGUMENT);
    }

    pub fn fail_next_with(&self, op: Op, error: HostError) {
        let mut failures = self.failures.borrow_mut();
        let next = match failures.get(&op) {
            Some(Failing::Times(n, _)) => Failing::Times(n.saturating_add(1), error),
            Some(Failing::Always(e)) => Failing::Always(*e),
            None => Failing::Times(1, error),
        };
        failures.insert(op, next);
    }

    /// Every call of `op` fails until `recover`.
    pub fn fail_always(&self, op: Op) {
        self.failures
            .borrow_mut()
            .insert(op, Failing::Always(BAD_ARGUMENT));
    }

    pub fn recover(&self, op: Op) {
        self.failures.borrow_mut().remove(&op);
    }

    // ---- What the filter did ----

    /// Every host call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// How many calls of `op` were made (failed ones included).
    pub fn count(&self, op: Op) -> usize {
        self.calls.borrow().iter().filter(|c| c.op() == op).count()
    }

    /// Every host call so far: what a request costs.
    pub fn call_count(&self) -> usize {
        self.calls.borrow().len()
    }

    /// Forgets the calls so far (say, after a set-up step).
    pub fn clear_calls(&self) {
        self.calls.borrow_mut().clear();
    }

    /// A map as it is now, after the filter's writes; `None` when withdrawn. Records no call.
    pub fn headers(&self, map: MapType) -> Option<Pairs> {
        self.maps.borrow().get(map as usize).cloned().flatten()
    }

    /// Every value of one header as it is now. Records no call.
    pub fn header_values(&self, map: MapType, name: &str) -> Vec<Vec<u8>> {
        // Only the values asked for are copied: a profile of a request path over the fake host
        // (`examples/request_path.rs`) should show the filter's cost, not a copy of every header.
        let maps = self.maps.borrow();
        let pairs = maps.get(map as usize).and_then(Option::as_ref);
        pairs
            .into_iter()
            .flatten()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A property as it is now (scripted or written by the filter). Records no call.
    pub fn property_value(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.borrow().get(&owned_path(path)).cloned()
    }

    pub fn local_replies(&self) -> Vec<LocalReply> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::SendLocalResponse(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::DispatchHttpCall(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Log(level, line) => Some((*level, line.clone())),
                _ => None,
            })
            .collect()
    }

    /// A metric's value by name; `None` when never defined.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .borrow()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Calls that change a metric (increments and records).
    pub fn metric_calls(&self) -> usize {
        self.count(Op::IncrementMetric) + self.count(Op::RecordMetric)
    }

    /// The tick period last set.
    pub fn tick_period(&self) -> Option<u32> {
        self.tick_period.get()
    }

    // ---- Internals ----

    fn record(&self, call: Call) {
        self.calls.borrow_mut().push(call);
    }

    /// The error this call of `op` fails with, if one is scripted.
    fn failure(&self, op: Op) -> Option<HostError> {
        let mut failures = self.failures.borrow_mut();
        match failures.get(&op).copied()? {
            Failing::Always(e) => Some(e),
            Failing::Times(n, e) => {
                if n <= 1 {
                    failures.remove(&op);
                } else {
                    failures.insert(op, Failing::Times(n - 1, e));
                }
                Some(e)
            }
        }
    }

    fn put_map(&self, map: MapType, pairs: Option<Pairs>) {
        if let Some(slot) = self.maps.borrow_mut().get_mut(map as usize) {
            *slot = pairs;
        }
    }

    /// Edits an available map; `BadArgument` for a withdrawn one.
    fn with_map(&self, map: MapType, edit: impl FnOnce(&mut Pairs)) -> Result<(), HostError> {
        let mut maps = self.maps.borrow_mut();
        match maps.get_mut(map as usize) {
            Some(Some(pairs)) => {
                edit(pairs);
                Ok(())
            }
            _ => Err(BAD_ARGUMENT),
        }
    }

    fn write(
        &self,
        call: Call,
        apply: impl FnOnce() -> Result<(), HostError>,
    ) -> Result<(), HostError> {
        let op = call.op();
        self.record(call);
        match self.failure(op) {
            Some(e) => Err(e),
            None => apply(),
        }
    }
}

impl Host for FakeHost<'_> {
    fn header_map(&self, map: MapType) -> HeaderMap {
        self.record(Call::HeaderMap(map));
        if self.failure(Op::HeaderMap).is_some() {
            return HeaderMap::default();
        }
        let pairs = self.headers(map).unwrap_or_default();
        let refs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        HeaderMap::from_encoded(wire::encode_map(&refs))
    }

    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
        self.record(Call::Header(map, name.to_string()));
        if self.failure(Op::Header).is_some() {
            return None;
        }
        self.header_values(map, name).into_iter().next()
    }

    fn set_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.write(
            Call::SetHeader(map, name.to_string(), value.to_vec()),
            || {
                self.with_map(map, |m| {
                    m.retain(|(n, _)| n != name);
                    m.push((name.to_string(), value.to_vec()));
                })
            },
        )
    }

    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.write(
            Call::AddHeader(map, name.to_string(), value.to_vec()),
            || self.with_map(map, |m| m.push((name.to_string(), value.to_vec()))),
        )
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        self.write(Call::RemoveHeader(map, name.to_string()), || {
            self.with_map(map, |m| m.retain(|(n, _)| n != name))
        })
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.record(Call::Property(owned_path(path)));
        if self.failure(Op::Property).is_some() {
            return None;
        }
        self.property_value(path)
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        self.write(Call::SetProperty(owned_path(path), value.to_vec()), || {
            self.script_property(path, value);
            Ok(())
        })
    }

    fn buffer(&self, which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
        self.record(Call::Buffer(which));
        if self.failure(Op::Buffer).is_some() {
            return None;
        }
        let buffers = self.buffers.borrow();
        let bytes = buffers.get(&which)?;
        let end = start.saturating_add(max_size).min(bytes.len());
        // As Envoy: a read of no bytes (none asked, or none left from `start`) hands back no buffer
        // (proxy-wasm-cpp-host's get_buffer_bytes returns a null pointer), which `ProxyHost` reads as
        // `None`.
        bytes
            .get(start..end)
            .filter(|b| !b.is_empty())
            .map(<[u8]>::to_vec)
    }

    fn now_nanos(&self) -> u64 {
        self.record(Call::Now);
        if self.failure(Op::Now).is_some() {
            return 0;
        }
        self.now.get()
    }

    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        self.record(Call::GetSharedData(key.to_string()));
        if let Some(e) = self.failure(Op::GetSharedData) {
            return Err(e);
        }
        self.shared.get(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        self.record(Call::SetSharedData(key.to_string(), value.to_vec(), cas));
        if let Some(e) = self.failure(Op::SetSharedData) {
            return SharedWrite::Failed(e);
        }
        self.shared.set(key, value, cas)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        self.record(Call::DefineMetric(kind, name.to_string()));
        if self.failure(Op::DefineMetric).is_some() {
            return None;
        }
        let mut metrics = self.metrics.borrow_mut();
        let index = match metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                metrics.push(Metric {
                    name: name.to_string(),
                    kind,
                    value: 0,
                });
                metrics.len() - 1
            }
        };
        u32::try_from(index).ok()
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        self.record(Call::IncrementMetric(id, delta));
        if self.failure(Op::IncrementMetric).is_some() {
            return;
        }
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            // Envoy refuses to decrement a counter.
            if m.kind == MetricKind::Gauge || delta >= 0 {
                m.value = m.value.saturating_add(delta);
            }
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        self.record(Call::RecordMetric(id, value));
        if self.failure(Op::RecordMetric).is_some() {
            return;
        }
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            // As Envoy: a gauge is set, a counter is added to.
            m.value = match m.kind {
                MetricKind::Gauge => value,
                MetricKind::Counter => m.value.saturating_add(value),
            };
        }
    }

    fn send_local_response(
        &self,
        status: u32,
        details: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), HostError> {
        let reply = LocalReply {
            status,
            details: details.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: body.to_vec(),
            grpc_status,
        };
        self.write(Call::SendLocalResponse(reply), || Ok(()))
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.write(Call::ResumeRequest, || Ok(()))
    }

    fn resume_response(&self) -> Result<(), HostError> {
        self.write(Call::ResumeResponse, || Ok(()))
    }

    fn set_tick_period(&self, millis: u32) -> Result<(), HostError> {
        self.write(Call::SetTickPeriod(millis), || {
            self.tick_period.set(Some(millis));
            Ok(())
        })
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let token = self.next_token.get();
        self.record(Call::DispatchHttpCall(HttpCall {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.map(<[u8]>::to_vec),
            timeout,
        }));
        if let Some(e) = self.failure(Op::DispatchHttpCall) {
            return Err(e);
        }
        self.next_token.set(token.wrapping_add(1));
        Ok(token)
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.record(Call::Log(level, message.to_string()));
        let _ = self.failure(Op::Log);
    }
}

/// What every filter's `examples/request_path.rs` (`make perf-native`) serves: one healthy request,
/// the same for the three filters so their native profiles compare.
pub mod profile {
    /// The request's W3C `traceparent`.
    pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// The request headers as Envoy hands them to the first filter.
    pub const REQUEST_HEADERS: [(&str, &str); 8] = [
        (":method", "GET"),
        (":path", "/orders/42"),
        (":authority", "orders.shop.svc.cluster.local"),
        (":scheme", "http"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("x-request-id", "3d5c2b4e-7f1a-4c2b-9d3e-2a1b0c9d8e7f"),
        ("traceparent", TRACEPARENT),
    ];

    /// A count from the environment (`REQUESTS`, `WARMUP`), `default` when unset or not a number.
    pub fn env_count(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::shared::{create_key, Fault};

    const REQ: MapType = MapType::HttpRequestHeaders;
    const RESP: MapType = MapType::HttpResponseHeaders;

    #[test]
    fn serves_scripted_headers_in_one_call_and_sees_its_own_writes() {
        let host = FakeHost::new();
        host.script_headers(REQ, &[(":path", "/a"), ("x", "1"), ("x", "2")]);
        host.script_header_bytes(REQ, "bin", &[0xff]);
        let map = host.header_map(REQ);
        assert_eq!(map.get_all("x").count(), 2);
        assert_eq!(map.get_first("bin"), Some(&[0xff][..]));
        assert_eq!(host.count(Op::HeaderMap), 1);
        assert_eq!(host.header(REQ, "x"), Some(b"1".to_vec()));

        host.set_header(REQ, "x", b"3").unwrap();
        assert_eq!(host.header_values(REQ, "x"), vec![b"3".to_vec()]);
        host.add_header(REQ, "x", b"4").unwrap();
        assert_eq!(host.header_values(REQ, "x").len(), 2);
        host.remove_header(REQ, "x").unwrap();
        assert!(host.header_values(REQ, "x").is_empty());
        assert_eq!(
            host.calls()[2..],
            [
                Call::SetHeader(REQ, "x".into(), b"3".to_vec()),
                Call::AddHeader(REQ, "x".into(), b"4".to_vec()),
                Call::RemoveHeader(REQ, "x".into()),
            ]
        );
        // Maps are separate.
        assert_eq!(host.header(RESP, ":path"), None);
    }

    #[test]
    fn a_withdrawn_map_reads_empty_and_refuses_writes() {
        let host = FakeHost::new();
        host.script_headers(REQ, &[("a", "1")]);
        host.withdraw(REQ);
        assert_eq!(host.header_map(REQ).iter().count(), 0);
        assert_eq!(host.header(REQ, "a"), None);
        assert_eq!(host.set_header(REQ, "a", b"2"), Err(BAD_ARGUMENT));
        assert_eq!(host.headers(REQ), None);
    }

    #[test]
    fn scripted_failures_fire_as_often_as_asked() {
        let host = FakeHost::new();
        host.fail_next(Op::SetHeader);
        host.fail_next_with(Op::SetHeader, HostError(10));
        assert!(host.set_header(RESP, "a", b"1").is_err());
        assert_eq!(host.set_header(RESP, "a", b"1"), Err(HostError(10)));
        assert!(host.set_header(RESP, "a", b"1").is_ok());
        assert_eq!(host.count(Op::SetHeader), 3, "failed calls are recorded");

        host.fail_always(Op::ResumeResponse);
        assert!(host.resume_response().is_err());
        assert!(host.resume_response().is_err());
        host.recover(Op::ResumeResponse);
        assert!(host.resume_response().is_ok());

        host.script_property(&["p"], b"v");
        host.fail_next(Op::Property);
        assert_eq!(host.property(&["p"]), None);
        assert_eq!(host.property(&["p"]), Some(b"v".to_vec()));

        host.set_clock(5);
        host.fail_next(Op::Now);
        assert_eq!(
            host.now_nanos(),
            0,
            "a refused clock reads 0, as ProxyHost's"
        );
        assert_eq!(host.now_nanos(), 5);

        host.fail_next(Op::SendLocalResponse);
        assert!(host.send_local_response(503, "d", &[], b"", -1).is_err());
        assert_eq!(host.local_replies().len(), 1, "the attempt is recorded");
    }

    #[test]
    fn shared_data_keeps_the_hosts_cas_rules() {
        let host = FakeHost::new();
        assert_eq!(host.shared_data("k"), Ok(None));
        // The create race: the first write to a missing key succeeds whatever the token.
        assert_eq!(host.set_shared_data("k", b"a", 7), SharedWrite::Written);
        let (value, cas) = host.shared_data("k").unwrap().unwrap();
        assert_eq!(value, b"a");
        assert_eq!(
            host.set_shared_data("k", b"b", cas.wrapping_add(1)),
            SharedWrite::CasMismatch
        );
        assert_eq!(host.set_shared_data("k", b"b", cas), SharedWrite::Written);
        assert_eq!(
            host.set_shared_data("k", b"c", cas),
            SharedWrite::CasMismatch
        );
        assert_eq!(host.shared().value("k").unwrap(), b"b");

        // Per-key faults of the store and whole-call failures of the host both reach the caller.
        host.shared().inject("k", Fault::CasMismatch);
        assert_eq!(host.set_shared_data("k", b"d", 0), SharedWrite::CasMismatch);
        host.fail_next(Op::GetSharedData);
        assert_eq!(host.shared_data("k"), Err(BAD_ARGUMENT));
        host.fail_next(Op::SetSharedData);
        assert_eq!(
            host.set_shared_data("k", b"d", 0),
            SharedWrite::Failed(BAD_ARGUMENT)
        );
        assert_eq!(host.shared().value("k").unwrap(), b"b");

        // Every host is a `SharedData`: the stores' helpers run over it.
        create_key(&host, "new", b"0").unwrap();
        create_key(&host, "new", b"other").unwrap();
        assert_eq!(host.shared().value("new").unwrap(), b"0");
    }

    #[test]
    fn another_worker_can_write_between_a_read_and_a_write() {
        let host = FakeHost::new();
        host.set_shared_data("k", b"0", 0);
        let (_, cas) = host.shared_data("k").unwrap().unwrap();
        host.shared().before_write(|key, store| {
            if key == "k" && store.value("k").as_deref() == Some(b"0") {
                store.set("k", b"other", 0);
            }
        });
        assert_eq!(
            host.set_shared_data("k", b"mine", cas),
            SharedWrite::CasMismatch
        );
        assert_eq!(host.shared().value("k").unwrap(), b"other");
    }

    #[test]
    fn records_replies_resumes_calls_ticks_logs_and_metrics() {
        let host = FakeHost::new();
        host.send_local_response(503, "cb", &[("retry-after", b"5")], b"no", -1)
            .unwrap();
        let reply = &host.local_replies()[0];
        assert_eq!((reply.status, reply.details.as_str()), (503, "cb"));
        assert_eq!(reply.header("retry-after"), Some(&b"5"[..]));
        assert_eq!(reply.body, b"no");

        host.resume_request().unwrap();
        assert_eq!(host.count(Op::ResumeRequest), 1);
        assert_eq!(host.count(Op::ResumeResponse), 0);

        let t1 = host
            .dispatch_http_call("alt", &[(":path", "/x")], None, Duration::from_millis(5))
            .unwrap();
        host.fail_next(Op::DispatchHttpCall);
        assert!(host
            .dispatch_http_call("missing", &[], None, Duration::ZERO)
            .is_err());
        let t2 = host
            .dispatch_http_call("alt", &[], Some(b"b"), Duration::ZERO)
            .unwrap();
        assert_ne!(t1, t2);
        assert_eq!(host.http_calls()[0].cluster, "alt");
        assert_eq!(host.http_calls()[0].timeout, Duration::from_millis(5));

        host.set_tick_period(1000).unwrap();
        assert_eq!(host.tick_period(), Some(1000));

        host.log(LogLevel::Warn, "careful");
        assert_eq!(host.logs(), vec![(LogLevel::Warn, "careful".to_string())]);

        let c = host.define_metric(MetricKind::Counter, "c").unwrap();
        assert_eq!(host.define_metric(MetricKind::Counter, "c"), Some(c));
        host.increment_metric(c, 2);
        host.increment_metric(c, -1);
        host.record_metric(c, 3);
        assert_eq!(host.metric("c"), Some(5), "counters never go down");
        let g = host.define_metric(MetricKind::Gauge, "g").unwrap();
        host.record_metric(g, 9);
        host.increment_metric(g, -4);
        assert_eq!(host.metric("g"), Some(5));
        assert_eq!(host.metric("never"), None);
    }

    #[test]
    fn properties_buffers_and_the_clock() {
        let host = FakeHost::new();
        host.script_property_u64(&["response", "code"], 503);
        assert_eq!(host.property_u64(&["response", "code"]), Some(503));
        host.script_property(&["response", "code_details"], b"via_upstream");
        assert_eq!(host.property_u64(&["response", "code_details"]), None);
        host.set_property(&["trace"], b"abc").unwrap();
        assert_eq!(host.property(&["trace"]), Some(b"abc".to_vec()));

        host.script_buffer(Buffer::HttpResponseBody, b"hello");
        assert_eq!(
            host.buffer(Buffer::HttpResponseBody, 1, 3),
            Some(b"ell".to_vec())
        );
        assert_eq!(
            host.buffer(Buffer::HttpResponseBody, 0, usize::MAX),
            Some(b"hello".to_vec())
        );
        assert_eq!(host.buffer(Buffer::HttpRequestBody, 0, 1), None);
        // No bytes read is no buffer, as from Envoy.
        assert_eq!(host.buffer(Buffer::HttpResponseBody, 0, 0), None);
        assert_eq!(host.buffer(Buffer::HttpResponseBody, 5, 3), None);

        host.set_clock(1_000);
        host.advance_clock(Duration::from_nanos(500));
        assert_eq!(host.now_nanos(), 1_500);
        host.clear_calls();
        assert_eq!(host.call_count(), 0);
    }

    #[test]
    fn the_traits_helpers_read_through_the_host() {
        let host = FakeHost::new();
        host.script_headers(RESP, &[(":status", " 503 "), ("grpc-status", "x")]);
        assert_eq!(host.header_number::<u16>(RESP, ":status"), Some(503));
        assert_eq!(host.header_number::<u32>(RESP, "grpc-status"), None);
        assert_eq!(host.header_number::<u32>(RESP, "absent"), None);
        assert_eq!(
            host.header_pairs(RESP),
            vec![
                (":status".to_string(), b" 503 ".to_vec()),
                ("grpc-status".to_string(), b"x".to_vec())
            ]
        );
        assert_eq!(host.plugin_root_id(), "");
        host.script_property(&["plugin_root_id"], b"cb");
        assert_eq!(host.plugin_root_id(), "cb");
        assert_eq!(host.plugin_configuration(), None);
        host.script_buffer(Buffer::PluginConfiguration, b"{}");
        assert_eq!(host.plugin_configuration(), Some(b"{}".to_vec()));
        // A property of the wrong width is not an integer.
        host.script_property(&["n"], &[1, 0, 0, 0]);
        assert_eq!(host.property_u64(&["n"]), None);
    }
}
