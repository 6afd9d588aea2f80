//! The proxy-wasm shell: loads the configuration, builds the VM's state and forwards each stream
//! callback to `stage` over `ProxyHost`. Everything the filter decides lives in `stage`.

use crate::stage::{Stream, Vm};
use filter_common::host::ProxyHost;
use filter_common::plugin::load_config;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TraceRoot::default()) });
}}

#[derive(Default)]
struct TraceRoot {
    vm: Option<Rc<Vm>>,
}

impl Context for TraceRoot {}

impl RootContext for TraceRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config(crate::memory::load) else {
            return false;
        };
        self.vm = Some(Rc::new(Vm::configure(&ProxyHost, config)));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK requires a context; without a configuration the stream just passes through.
        Some(Box::new(TraceStream {
            vm: self.vm.clone(),
            stage: Stream::default(),
        }))
    }
}

struct TraceStream {
    vm: Option<Rc<Vm>>,
    stage: Stream,
}

impl Context for TraceStream {}

impl HttpContext for TraceStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => self.stage.on_request_headers(&ProxyHost, vm),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.vm {
            Some(vm) => self.stage.on_response_headers(&ProxyHost, vm),
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        filter_common::host::stream_end();
    }
}
