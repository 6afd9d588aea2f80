//! Test-only filter that traps its VM on command, so the end-to-end tests can watch what Envoy's
//! `failure_policy` gives callers (tests/harness/tests/failure_policy/). Never shipped: the real
//! filters never trap (clippy denies what panics).
//!
//! Commands:
//! - VM configuration (`vm_config.configuration`) `trap:start`: trap in `on_vm_start`.
//! - Plugin configuration containing `"trap":"configure"`: trap in `on_configure`.
//! - Request header `x-trap: request-headers | response-headers | log`: trap in that callback of
//!   this stream. `x-trap-how: panic` panics instead (the SDK's hook logs the message, then
//!   `panic = "abort"` aborts, which is also a trap), to show a Rust panic ends the same way.
//! - Request header `x-trap: restarts`: from now on every VM of this vm_id traps in `on_vm_start`
//!   (a mark in shared data, which outlives VMs), then this stream traps in its request headers:
//!   a VM that Envoy cannot bring back.
//!
//! Every response through a live VM carries `x-trap-filter: <vm id>` (the VM's start time in
//! nanoseconds), so a test tells "the filter ran" from "Envoy skipped it" and an old VM from a new.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TrapRoot { vm: 0 }) });
}}

/// Where a stream was told to trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    RequestHeaders,
    ResponseHeaders,
    Log,
    /// Request headers, after marking every later VM start to trap.
    Restarts,
}

/// Shared-data key whose presence makes every VM start trap.
const RESTART_MARK: &str = "trap-filter/trap-at-start";

impl Point {
    pub fn parse(value: &str) -> Option<Point> {
        match value.trim() {
            "request-headers" => Some(Point::RequestHeaders),
            "response-headers" => Some(Point::ResponseHeaders),
            "log" => Some(Point::Log),
            "restarts" => Some(Point::Restarts),
            _ => None,
        }
    }
}

/// Whether a plugin configuration asks for a trap in `on_configure` (no JSON parser: one less thing
/// in a module that exists to fail on purpose).
pub fn configure_traps(config: &[u8]) -> bool {
    let text: String = String::from_utf8_lossy(config)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    text.contains(r#""trap":"configure""#)
}

/// Whether the VM configuration asks for a trap in `on_vm_start`.
pub fn start_traps(vm_config: &[u8]) -> bool {
    String::from_utf8_lossy(vm_config).trim() == "trap:start"
}

/// Traps the VM: the `unreachable` instruction, or a Rust panic when `panic` (which the SDK's hook
/// logs, then aborts: the same trap).
#[allow(clippy::panic)] // Trapping is this test module's whole purpose.
fn trap(why: &str, panic: bool) -> ! {
    proxy_wasm::hostcalls::log(LogLevel::Warn, &format!("trap-filter: trapping in {why}")).ok();
    if panic {
        panic!("trap-filter: panic in {why}");
    }
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

struct TrapRoot {
    vm: u64,
}

impl Context for TrapRoot {}

impl RootContext for TrapRoot {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.vm = proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let config = self.get_vm_configuration().unwrap_or_default();
        let marked = matches!(
            proxy_wasm::hostcalls::get_shared_data(RESTART_MARK),
            Ok((Some(v), _)) if !v.is_empty()
        );
        if start_traps(&config) || marked {
            trap("on_vm_start", false);
        }
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        if configure_traps(&config) {
            trap("on_configure", false);
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TrapStream {
            vm: self.vm,
            point: None,
            panic: false,
        }))
    }
}

struct TrapStream {
    vm: u64,
    point: Option<Point>,
    panic: bool,
}

impl TrapStream {
    fn maybe_trap(&self, here: Point) {
        if self.point == Some(here) {
            trap(&format!("{here:?}"), self.panic);
        }
    }
}

impl Context for TrapStream {}

impl HttpContext for TrapStream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let header = |name: &str| {
            self.get_http_request_header_bytes(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        let point = header("x-trap").as_deref().and_then(Point::parse);
        let panic = header("x-trap-how").as_deref() == Some("panic");
        self.point = point;
        self.panic = panic;
        self.maybe_trap(Point::RequestHeaders);
        if self.point == Some(Point::Restarts) {
            proxy_wasm::hostcalls::set_shared_data(RESTART_MARK, Some(b"1"), None).ok();
            trap("RequestHeaders, marking VM starts to trap", self.panic);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.maybe_trap(Point::ResponseHeaders);
        self.set_http_response_header("x-trap-filter", Some(&self.vm.to_string()));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.maybe_trap(Point::Log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert!(configure_traps(br#"{"trap": "configure"}"#));
        assert!(!configure_traps(br#"{"trap": "never"}"#));
        assert!(!configure_traps(b""));
        assert!(start_traps(b"trap:start"));
        assert!(!start_traps(b""));
        assert_eq!(Point::parse("log"), Some(Point::Log));
        assert_eq!(Point::parse("request-headers"), Some(Point::RequestHeaders));
        assert_eq!(Point::parse("nowhere"), None);
    }
}
