//! The proxy-wasm shell: it forwards each callback to the stage (`stage::Stream`) with the one real
//! host (`ProxyHost`) and the VM's state, and decides nothing itself.

use crate::stage::{Stream, Vm};
use filter_common::host::{self, ProxyHost};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(FallbackRoot::default()) });
}}

#[derive(Default)]
struct FallbackRoot {
    vm: Option<Rc<Vm>>,
}

impl Context for FallbackRoot {}

impl RootContext for FallbackRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // An invalid configuration is refused (one log line naming the field): Envoy keeps the old one.
        let Some(vm) = Vm::load(&ProxyHost) else {
            return false;
        };
        self.vm = Some(Rc::new(vm));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FallbackStream {
            vm: self.vm.clone(),
            stage: Stream::default(),
        }))
    }
}

struct FallbackStream {
    /// `None` only before a configuration loaded: every callback then lets the stream pass.
    vm: Option<Rc<Vm>>,
    stage: Stream,
}

impl Context for FallbackStream {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // No configuration, no call made: nothing waits for an answer.
        if let Some(vm) = &self.vm {
            self.stage
                .on_http_call_response(&ProxyHost, vm, token, num_headers, body_size);
        }
    }
}

impl HttpContext for FallbackStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => self.stage.on_request_headers(&ProxyHost, vm),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => self
                .stage
                .on_response_headers(&ProxyHost, vm, end_of_stream),
            None => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => self
                .stage
                .on_response_body(&ProxyHost, vm, body_size, end_of_stream),
            None => Action::Continue,
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        match &self.vm {
            Some(vm) => self.stage.on_response_trailers(&ProxyHost, vm),
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        host::stream_end();
    }
}
