//! Host calls that never panic.
//!
//! The SDK's `hostcalls` wrappers `panic!` on any status they do not expect (a header touched after the
//! request continued, say), and a panic traps the VM and fails every later request on that worker. These
//! wrappers call the same proxy-wasm ABI imports directly and turn every failure into a value the filter
//! handles. Memory the host returns is allocated through the SDK's `proxy_on_memory_allocate`, so it is
//! released by rebuilding the boxed slice that function made.

use crate::wire;
pub use proxy_wasm::types::MapType;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_CAS_MISMATCH: u32 = 8;

const STREAM_HTTP_REQUEST: u32 = 0;
const STREAM_HTTP_RESPONSE: u32 = 1;

const METRIC_COUNTER: u32 = 0;
const METRIC_GAUGE: u32 = 1;

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

/// The buffers a filter can read (the ABI's `BufferType` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

/// Up to `max_size` bytes of a buffer from `start`; `None` when absent or unavailable.
pub fn buffer(which: Buffer, start: usize, max_size: usize) -> Option<Vec<u8>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    crate::perf::hit(crate::perf::Call::Buffer);
    // SAFETY: out-pointers are valid locals; the host hands back its own allocation.
    let status =
        unsafe { proxy_get_buffer_bytes(which as u32, start, max_size, &mut data, &mut size) };
    if status != STATUS_OK {
        return None;
    }
    // SAFETY: on success the host returned `size` bytes it allocated for us.
    unsafe { take_host_buffer(data, size) }
}

/// The plugin configuration (Istio's `pluginConfig` as JSON); `None` when there is none.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    buffer(Buffer::PluginConfiguration, 0, usize::MAX)
}

/// A header map as the host encodes it (see `wire::decode_spans`), in one allocation; empty when the
/// map is not available.
pub fn header_map_encoded(map: MapType) -> Vec<u8> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    crate::perf::hit(crate::perf::Call::HeaderPairs);
    // SAFETY: out-pointers are valid locals; the host hands back its own allocation.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    if status != STATUS_OK {
        return Vec::new();
    }
    // SAFETY: on success the host returned `size` bytes it allocated for us.
    unsafe { take_host_buffer(data, size) }.unwrap_or_default()
}

/// Every header of a map, in order, duplicates kept, values as bytes. Empty when the map is not
/// available (for example request headers read after the request continued).
pub fn header_pairs(map: MapType) -> Vec<(String, Vec<u8>)> {
    wire::decode_map(&header_map_encoded(map)).unwrap_or_default()
}

/// The first value of one header.
pub fn header(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    crate::perf::hit(crate::perf::Call::HeaderValue);
    // SAFETY: name is a valid slice; out-pointers are valid locals.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    if status != STATUS_OK {
        return None;
    }
    // SAFETY: on success the host returned `size` bytes it allocated for us. A null buffer on success is
    // a header present with an empty value.
    Some(unsafe { take_host_buffer(data, size) }.unwrap_or_default())
}

/// Replaces every value of `name` with `value`; false if the host refused.
pub fn set_header(map: MapType, name: &str, value: &[u8]) -> bool {
    crate::perf::hit(crate::perf::Call::SetHeader);
    // SAFETY: both slices are valid for the call.
    let status = unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == STATUS_OK
}

/// Adds one more value of `name`; false if the host refused.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> bool {
    crate::perf::hit(crate::perf::Call::AddHeader);
    // SAFETY: both slices are valid for the call.
    let status = unsafe {
        proxy_add_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == STATUS_OK
}

/// Removes every value of `name`; false if the host refused.
pub fn remove_header(map: MapType, name: &str) -> bool {
    crate::perf::hit(crate::perf::Call::RemoveHeader);
    // SAFETY: the slice is valid for the call.
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    status == STATUS_OK
}

/// An Envoy attribute such as `["xds", "route_name"]`; `None` when absent or unavailable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let encoded = wire::encode_path(path);
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    crate::perf::hit(crate::perf::Call::GetProperty);
    // SAFETY: the path slice is valid; out-pointers are valid locals.
    let status =
        unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), &mut data, &mut size) };
    if status != STATUS_OK {
        return None;
    }
    // SAFETY: on success the host returned `size` bytes it allocated for us (none for an empty value).
    Some(unsafe { take_host_buffer(data, size) }.unwrap_or_default())
}

/// An 8-byte little-endian integer attribute (`response.code`, `response.flags`, ...).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes = property(path)?;
    let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
    Some(u64::from_le_bytes(array))
}

/// A header of `map` parsed as a number (`:status`, `grpc-status`); `None` when absent or not a number.
pub fn header_number<T: std::str::FromStr>(map: MapType, name: &str) -> Option<T> {
    let value = header(map, name)?;
    std::str::from_utf8(&value).ok()?.trim().parse().ok()
}

/// The plugin's root id (Istio's `pluginName`), empty when unavailable: filters prefix their shared-data
/// keys with it, because Istio gives every WasmPlugin one shared-data namespace.
pub fn plugin_root_id() -> String {
    property(&["plugin_root_id"])
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Writes filter state readable as `%FILTER_STATE(wasm.NAME)%` in access logs; false if refused.
pub fn set_property(path: &[&str], value: &[u8]) -> bool {
    let encoded = wire::encode_path(path);
    crate::perf::hit(crate::perf::Call::SetProperty);
    // SAFETY: both slices are valid for the call.
    let status =
        unsafe { proxy_set_property(encoded.as_ptr(), encoded.len(), value.as_ptr(), value.len()) };
    status == STATUS_OK
}

/// A shared-data value and its CAS token. `Ok(None)` when the key does not exist.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data = std::ptr::null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    crate::perf::hit(crate::perf::Call::GetSharedData);
    // SAFETY: key slice valid; out-pointers are valid locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
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

/// Result of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Written,
    /// Another worker wrote the key since `cas` was read.
    CasMismatch,
    Failed(HostError),
}

/// Writes shared data; `cas` 0 writes unconditionally.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SharedWrite {
    crate::perf::hit(crate::perf::Call::SetSharedData);
    // SAFETY: both slices are valid for the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        STATUS_OK => SharedWrite::Written,
        STATUS_CAS_MISMATCH => SharedWrite::CasMismatch,
        other => SharedWrite::Failed(HostError(other)),
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch (0 if the host refuses).
pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    crate::perf::hit(crate::perf::Call::Now);
    // SAFETY: out-pointer is a valid local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == STATUS_OK {
        t
    } else {
        0
    }
}

/// Asks for the root context's `on_tick` every `millis` ms (0 stops it); false if the host refuses.
pub fn set_tick_period(millis: u32) -> bool {
    crate::perf::hit(crate::perf::Call::Other);
    // SAFETY: plain value argument.
    unsafe { proxy_set_tick_period_milliseconds(millis) == STATUS_OK }
}

fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    crate::perf::hit(crate::perf::Call::Metric);
    // SAFETY: name slice valid; out-pointer is a valid local.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

/// Defines (or finds) a counter; `None` if the host refused the name.
pub fn define_counter(name: &str) -> Option<u32> {
    define_metric(METRIC_COUNTER, name)
}

/// Defines (or finds) a gauge; `None` if the host refused the name.
pub fn define_gauge(name: &str) -> Option<u32> {
    define_metric(METRIC_GAUGE, name)
}

/// Adds `delta` to a counter or gauge; errors are ignored because a lost sample must not fail a request.
pub fn increment_metric(id: u32, delta: i64) {
    crate::perf::hit(crate::perf::Call::Metric);
    // SAFETY: plain values.
    let _ = unsafe { proxy_increment_metric(id, delta) };
}

/// Sets a gauge.
pub fn record_metric(id: u32, value: u64) {
    crate::perf::hit(crate::perf::Call::Metric);
    // SAFETY: plain values.
    let _ = unsafe { proxy_record_metric(id, value) };
}

/// Lets a paused request continue; false if the host refused (the stream is gone).
pub fn resume_request() -> bool {
    crate::perf::hit(crate::perf::Call::Other);
    // SAFETY: plain value.
    unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) == STATUS_OK }
}

/// Lets a paused response continue; false if the host refused (the stream is gone).
pub fn resume_response() -> bool {
    crate::perf::hit(crate::perf::Call::Other);
    // SAFETY: plain value.
    unsafe { proxy_continue_stream(STREAM_HTTP_RESPONSE) == STATUS_OK }
}

/// Sends a local reply. `details` appears as `%RESPONSE_CODE_DETAILS%` in access logs; `grpc_status`
/// -1 means "not gRPC". False if the host refused.
pub fn send_local_response(
    status: u32,
    details: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    grpc_status: i32,
) -> bool {
    let encoded = wire::encode_map(headers);
    crate::perf::hit(crate::perf::Call::Other);
    // SAFETY: every slice is valid for the call.
    let result = unsafe {
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
    };
    result == STATUS_OK
}

/// A status the host returned, kept for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host status {}", self.0)
    }
}
