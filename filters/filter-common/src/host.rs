//! The host seam: [`Host`], every host call the filters make, and [`ProxyHost`], the one implementation,
//! which calls the proxy-wasm ABI.
//!
//! Per-request logic takes `host: &impl Host` (a generic parameter, so the Wasm build has no dynamic
//! dispatch) and runs natively in unit tests over `fake_host::FakeHost` (cargo feature `test-support`).
//! Every method takes `&self`: the real host is a unit struct with nothing to mutate, and logic that
//! holds a header map it read keeps borrowing it while it writes other headers.
//!
//! [`ProxyHost`] never panics. The SDK's `hostcalls` wrappers `panic!` on any status they do not expect
//! (a header touched after the request continued, say), and a panic traps the VM and fails every later
//! request on that worker. So it calls the same ABI imports directly and turns every failure into a
//! value the caller handles. Memory the host returns is allocated through the SDK's
//! `proxy_on_memory_allocate`, so it is released by rebuilding the boxed slice that function made.
//! Each call is counted for `make perf-counts` (`crate::perf`, feature `count-host-calls`).
//!
//! The free functions at the end are the filters' entry points from before the seam: thin wrappers over
//! [`ProxyHost`], kept until each filter's request path takes a `Host`.

use crate::headers::HeaderMap;
use crate::perf::{self, Call};
use crate::wire;
// The ABI's own names for header maps, log levels and a callback's answer: plain enums, usable natively.
pub use proxy_wasm::types::{Action, LogLevel, MapType};
use std::time::Duration;

/// A status the host returned, kept for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host status {}", self.0)
    }
}

/// The ABI's `BadArgument`: what Envoy answers for a map that is gone (request headers read after the
/// request continued) or a stream that cannot be resumed.
pub const BAD_ARGUMENT: HostError = HostError(2);

/// Result of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Another worker wrote the key since `cas` was read.
    CasMismatch,
    Failed(HostError),
}

/// The buffers a filter can read (the ABI's `BufferType` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Buffer {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// The metric kinds the filters define (the ABI's `MetricType` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

/// Everything the filters ask of the host. Reads return `None` (or an empty map) when the host has
/// nothing or refuses; writes return the host's error; nothing panics.
pub trait Host {
    /// Every header of `map`, in order, duplicates kept, values as bytes, in one host call: lookups
    /// borrow from the one buffer the host returned. Empty when the map is not available (request
    /// headers after the request continued).
    fn header_map(&self, map: MapType) -> HeaderMap;
    /// The first value of one header (a header present with an empty value is `Some(vec![])`).
    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of `name` with `value`.
    fn set_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Adds one more value of `name`.
    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Removes every value of `name`.
    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError>;
    /// An Envoy attribute such as `["xds", "route_name"]`; `None` when absent or unavailable.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes a property: an unknown top-level name is filter state, readable as
    /// `%FILTER_STATE(wasm.NAME)%` in access logs.
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Up to `max_size` bytes of a buffer from `start`; `None` when absent or unavailable, and for a read
    /// of no bytes (Envoy hands back no buffer then).
    fn buffer(&self, which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>>;
    /// Wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
    fn now_nanos(&self) -> u64;
    /// A shared-data value and its CAS token; `Ok(None)` when the key does not exist.
    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// Writes shared data; `cas` 0 writes unconditionally, another token only if the key still has it
    /// (a missing key is created whatever the token).
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite;
    /// Defines (or finds) a metric; `None` if the host refused the name.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds `delta` to a counter or gauge. Errors are dropped: a lost sample must not fail a request.
    fn increment_metric(&self, id: u32, delta: i64);
    /// Sets a gauge. Errors are dropped, as for `increment_metric`.
    fn record_metric(&self, id: u32, value: u64);
    /// Sends a local reply. `details` appears as `%RESPONSE_CODE_DETAILS%` in access logs;
    /// `grpc_status` -1 means "not gRPC".
    fn send_local_response(
        &self,
        status: u32,
        details: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), HostError>;
    /// Lets a paused request continue; an error when the stream is gone.
    fn resume_request(&self) -> Result<(), HostError>;
    /// Lets a paused response continue; an error when the stream is gone.
    fn resume_response(&self) -> Result<(), HostError>;
    /// Asks for the root context's `on_tick` every `millis` ms (0 stops it).
    fn set_tick_period(&self, millis: u32) -> Result<(), HostError>;
    /// Calls `cluster` with `headers`; the answer arrives in `on_http_call_response` with the token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// One line in Envoy's log (the `log` crate's macros reach the same call through the SDK's logger).
    fn log(&self, level: LogLevel, message: &str);

    /// Every header of `map` as owned pairs (for callers that keep them past the map).
    fn header_pairs(&self, map: MapType) -> Vec<(String, Vec<u8>)> {
        self.header_map(map)
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

    /// A header parsed as a number (`:status`, `grpc-status`); `None` when absent or not a number.
    fn header_number<T: std::str::FromStr>(&self, map: MapType, name: &str) -> Option<T>
    where
        Self: Sized,
    {
        let value = self.header(map, name)?;
        std::str::from_utf8(&value).ok()?.trim().parse().ok()
    }

    /// An 8-byte little-endian integer attribute (`response.code`, `response.flags`, ...).
    fn property_u64(&self, path: &[&str]) -> Option<u64> {
        let bytes = self.property(path)?;
        let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
        Some(u64::from_le_bytes(array))
    }

    /// The plugin's root id (Istio's `pluginName`), empty when unavailable: filters prefix their
    /// shared-data keys with it, because Istio gives every WasmPlugin one shared-data namespace.
    fn plugin_root_id(&self) -> String {
        self.property(&["plugin_root_id"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The plugin configuration (Istio's `pluginConfig` as JSON); `None` when there is none.
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        self.buffer(Buffer::PluginConfiguration, 0, usize::MAX)
    }
}

/// The host Envoy is: the proxy-wasm ABI.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyHost;

// ABI statuses and stream types.
const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

const STREAM_HTTP_REQUEST: u32 = 0;
const STREAM_HTTP_RESPONSE: u32 = 1;

// The SDK declares the same imports with its own enum types; these use plain integers so an unexpected
// status from the host can never be an invalid enum value.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a pointer returned by the host for exactly `size` bytes.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // The SDK allocates a boxed slice of exactly `size` bytes, so capacity == length == size.
    Some(Vec::from_raw_parts(data, size, size))
}

fn status_result(status: u32) -> Result<(), HostError> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

impl ProxyHost {
    /// A header map as the host encodes it (see `wire::decode_spans`), in one allocation; empty when
    /// the map is not available.
    pub fn header_map_encoded(&self, map: MapType) -> Vec<u8> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        perf::hit(Call::HeaderPairs);
        // SAFETY: out-pointers are valid locals; the host hands back its own allocation.
        let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
        if status != STATUS_OK {
            return Vec::new();
        }
        // SAFETY: on success the host returned `size` bytes it allocated for us.
        unsafe { take_host_buffer(data, size) }.unwrap_or_default()
    }

    fn continue_stream(&self, stream: u32) -> Result<(), HostError> {
        perf::hit(Call::Other);
        // SAFETY: plain value.
        status_result(unsafe { proxy_continue_stream(stream) })
    }
}

impl Host for ProxyHost {
    fn header_map(&self, map: MapType) -> HeaderMap {
        HeaderMap::from_encoded(self.header_map_encoded(map))
    }

    fn header(&self, map: MapType, name: &str) -> Option<Vec<u8>> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        perf::hit(Call::HeaderValue);
        // SAFETY: name is a valid slice; out-pointers are valid locals.
        let status = unsafe {
            proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
        };
        if status != STATUS_OK {
            return None;
        }
        // SAFETY: on success the host returned `size` bytes it allocated for us. A null buffer on
        // success is a header present with an empty value.
        Some(unsafe { take_host_buffer(data, size) }.unwrap_or_default())
    }

    fn set_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        perf::hit(Call::SetHeader);
        // SAFETY: both slices are valid for the call.
        status_result(unsafe {
            proxy_replace_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn add_header(&self, map: MapType, name: &str, value: &[u8]) -> Result<(), HostError> {
        perf::hit(Call::AddHeader);
        // SAFETY: both slices are valid for the call.
        status_result(unsafe {
            proxy_add_header_map_value(
                map as u32,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    fn remove_header(&self, map: MapType, name: &str) -> Result<(), HostError> {
        perf::hit(Call::RemoveHeader);
        // SAFETY: the slice is valid for the call.
        status_result(unsafe {
            proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len())
        })
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let encoded = wire::encode_path(path);
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        perf::hit(Call::GetProperty);
        // SAFETY: the path slice is valid; out-pointers are valid locals.
        let status =
            unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
        if status != STATUS_OK {
            return None;
        }
        // SAFETY: on success the host returned `size` bytes it allocated for us (none for an empty
        // value).
        Some(unsafe { take_host_buffer(data, size) }.unwrap_or_default())
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        let encoded = wire::encode_path(path);
        perf::hit(Call::SetProperty);
        // SAFETY: both slices are valid for the call.
        status_result(unsafe {
            proxy_set_property(encoded.as_ptr(), encoded.len(), value.as_ptr(), value.len())
        })
    }

    fn buffer(&self, which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        perf::hit(Call::Buffer);
        // SAFETY: out-pointers are valid locals; the host hands back its own allocation.
        let status =
            unsafe { proxy_get_buffer_bytes(which as u32, start, max_size, &mut data, &mut size) };
        if status != STATUS_OK {
            return None;
        }
        // SAFETY: on success the host returned `size` bytes it allocated for us.
        unsafe { take_host_buffer(data, size) }
    }

    fn now_nanos(&self) -> u64 {
        let mut t = 0u64;
        perf::hit(Call::Now);
        // SAFETY: out-pointer is a valid local.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
        if status == STATUS_OK {
            t
        } else {
            0
        }
    }

    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        let mut cas = 0u32;
        perf::hit(Call::GetSharedData);
        // SAFETY: key slice valid; out-pointers are valid locals.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        match status {
            STATUS_OK => {
                // SAFETY: on success the host returned `size` bytes it allocated for us.
                let value = unsafe { take_host_buffer(data, size) }.unwrap_or_default();
                Ok(Some((value, cas)))
            }
            STATUS_NOT_FOUND => Ok(None),
            other => Err(HostError(other)),
        }
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> SharedWrite {
        perf::hit(Call::SetSharedData);
        // SAFETY: both slices are valid for the call.
        let status = unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        };
        match status {
            STATUS_OK => SharedWrite::Written,
            STATUS_CAS_MISMATCH => SharedWrite::CasMismatch,
            other => SharedWrite::Failed(HostError(other)),
        }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut id = 0u32;
        perf::hit(Call::Metric);
        // SAFETY: name slice valid; out-pointer is a valid local.
        let status =
            unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
        (status == STATUS_OK).then_some(id)
    }

    fn increment_metric(&self, id: u32, delta: i64) {
        perf::hit(Call::Metric);
        // SAFETY: plain values.
        let _ = unsafe { proxy_increment_metric(id, delta) };
    }

    fn record_metric(&self, id: u32, value: u64) {
        perf::hit(Call::Metric);
        // SAFETY: plain values.
        let _ = unsafe { proxy_record_metric(id, value) };
    }

    fn send_local_response(
        &self,
        status: u32,
        details: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        grpc_status: i32,
    ) -> Result<(), HostError> {
        let encoded = wire::encode_map(headers);
        perf::hit(Call::Other);
        // SAFETY: every slice is valid for the call.
        status_result(unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                encoded.as_ptr(),
                encoded.len(),
                grpc_status,
            )
        })
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.continue_stream(STREAM_HTTP_REQUEST)
    }

    fn resume_response(&self) -> Result<(), HostError> {
        self.continue_stream(STREAM_HTTP_RESPONSE)
    }

    fn set_tick_period(&self, millis: u32) -> Result<(), HostError> {
        perf::hit(Call::Other);
        // SAFETY: plain value argument.
        status_result(unsafe { proxy_set_tick_period_milliseconds(millis) })
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        perf::hit(Call::Other);
        // The one SDK call left: it registers the token with the SDK's dispatcher, which routes the
        // answer back to this context (a raw host call would make the dispatcher reject the answer). It
        // returns an error for the statuses Envoy uses (unknown cluster, bad headers); it panics only on
        // statuses Envoy never returns for this call, or on a token the host hands out twice.
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            body,
            Vec::new(),
            timeout,
        )
        .map_err(|status| HostError(status as u32))
    }

    fn log(&self, level: LogLevel, message: &str) {
        // SAFETY: the slice is valid for the call. A refused line cannot be reported anywhere.
        let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
    }
}

/// Adds this stream's counts to the `perf.*` counters (feature `count-host-calls` only; a no-op
/// otherwise). Each filter calls it when a stream ends (`on_log`).
#[inline(always)]
pub fn stream_end() {
    perf::stream_end(
        || ProxyHost.plugin_root_id(),
        |name| ProxyHost.define_metric(MetricKind::Counter, name),
        |id, delta| ProxyHost.increment_metric(id, delta),
    );
}

// Compatibility wrappers: what the filters called before the seam, now through `ProxyHost`. The stages
// of each filter take a `Host` instead; these go when the last caller has moved.

/// Up to `max_size` bytes of a buffer from `start`; `None` when absent or unavailable.
pub fn buffer(which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
    ProxyHost.buffer(which, start, max_size)
}

/// The plugin configuration (Istio's `pluginConfig` as JSON); `None` when there is none.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    ProxyHost.plugin_configuration()
}

/// A header map as the host encodes it, in one allocation; empty when the map is not available.
pub fn header_map_encoded(map: MapType) -> Vec<u8> {
    ProxyHost.header_map_encoded(map)
}

/// Every header of a map as owned pairs; empty when the map is not available.
pub fn header_pairs(map: MapType) -> Vec<(String, Vec<u8>)> {
    ProxyHost.header_pairs(map)
}

/// The first value of one header.
pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    ProxyHost.header(map, name)
}

/// Replaces every value of `name` with `value`; false if the host refused.
pub fn set_header(map: MapType, name: &str, value: &[u8]) -> bool {
    ProxyHost.set_header(map, name, value).is_ok()
}

/// Adds one more value of `name`; false if the host refused.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> bool {
    ProxyHost.add_header(map, name, value).is_ok()
}

/// Removes every value of `name`; false if the host refused.
pub fn remove_header(map: MapType, name: &str) -> bool {
    ProxyHost.remove_header(map, name).is_ok()
}

/// An Envoy attribute; `None` when absent or unavailable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    ProxyHost.property(path)
}

/// An 8-byte little-endian integer attribute.
pub fn property_u64(path: &[&str]) -> Option<u64> {
    ProxyHost.property_u64(path)
}

/// A header parsed as a number; `None` when absent or not a number.
pub fn header_number<T: std::str::FromStr>(map: MapType, name: &str) -> Option<T> {
    ProxyHost.header_number(map, name)
}

/// The plugin's root id, empty when unavailable.
pub fn plugin_root_id() -> String {
    ProxyHost.plugin_root_id()
}

/// Writes filter state; false if refused.
pub fn set_property(path: &[&str], value: &[u8]) -> bool {
    ProxyHost.set_property(path, value).is_ok()
}

/// A shared-data value and its CAS token. `Ok(None)` when the key does not exist.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    ProxyHost.shared_data(key)
}

/// Writes shared data; `cas` 0 writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SharedWrite {
    ProxyHost.set_shared_data(key, value, cas)
}

/// Wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
pub fn now_nanos() -> u64 {
    ProxyHost.now_nanos()
}

/// Asks for `on_tick` every `millis` ms (0 stops it); false if the host refuses.
pub fn set_tick_period(millis: u32) -> bool {
    ProxyHost.set_tick_period(millis).is_ok()
}

/// Defines (or finds) a counter; `None` if the host refused the name.
pub fn define_counter(name: &str) -> Option<u32> {
    ProxyHost.define_metric(MetricKind::Counter, name)
}

/// Defines (or finds) a gauge; `None` if the host refused the name.
pub fn define_gauge(name: &str) -> Option<u32> {
    ProxyHost.define_metric(MetricKind::Gauge, name)
}

/// Adds `delta` to a counter or gauge.
pub fn increment_metric(id: u32, delta: i64) {
    ProxyHost.increment_metric(id, delta)
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) {
    ProxyHost.record_metric(id, value)
}

/// Lets a paused request continue; false if the host refused (the stream is gone).
pub fn resume_request() -> bool {
    ProxyHost.resume_request().is_ok()
}

/// Lets a paused response continue; false if the host refused (the stream is gone).
pub fn resume_response() -> bool {
    ProxyHost.resume_response().is_ok()
}

/// Sends a local reply; false if the host refused.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    grpc_status: i32,
) -> bool {
    ProxyHost
        .send_local_response(status, details, headers, body, grpc_status)
        .is_ok()
}
