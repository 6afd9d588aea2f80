//! The proxy-wasm shell: loads the configuration, builds the plugin's state and forwards each callback
//! to `stage` over `ProxyHost`. Everything the filter decides lives in `stage`.

use crate::stage::{Plugin, Stream, Worker};
use filter_common::host::{Host, ProxyHost};
use filter_common::plugin::load_config_from;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

// The module's entry point: only the Wasm build exports it, so native builds (tests, fuzzing) can link
// several filter crates into one binary.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(filter_common::plugin::LOG_LEVEL);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BreakerRoot::default()) });
}}

thread_local! {
    /// This VM's `Worker`, handed to every root context it runs. Envoy runs a configuration push in
    /// the same VM with a new root context, and the SDK makes root contexts from a plain `fn`, which
    /// can hold nothing: the VM's window, stripe lease and permits outlive a configuration only here.
    static WORKER: OnceCell<Rc<RefCell<Worker>>> = const { OnceCell::new() };
}

fn worker() -> Rc<RefCell<Worker>> {
    WORKER.with(|w| {
        w.get_or_init(|| Rc::new(RefCell::new(Worker::new(ProxyHost.now_nanos()))))
            .clone()
    })
}

#[derive(Default)]
struct BreakerRoot {
    plugin: Option<Rc<Plugin>>,
}

impl Context for BreakerRoot {}

impl RootContext for BreakerRoot {
    fn on_tick(&mut self) {
        if let Some(plugin) = &self.plugin {
            plugin.on_tick(&ProxyHost);
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config_from(&ProxyHost, crate::memory::load) else {
            return false;
        };
        self.plugin = Some(Rc::new(Plugin::configure(&ProxyHost, config, worker())));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK requires a context; without a configuration the stream just passes through.
        Some(Box::new(BreakerStream {
            plugin: self.plugin.clone(),
            stage: Stream::default(),
        }))
    }
}

struct BreakerStream {
    plugin: Option<Rc<Plugin>>,
    stage: Stream,
}

impl Context for BreakerStream {}

impl HttpContext for BreakerStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.plugin {
            Some(plugin) => self.stage.on_request_headers(&ProxyHost, plugin),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.plugin {
            Some(plugin) => self.stage.on_response_headers(&ProxyHost, plugin),
            None => Action::Continue,
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        match &self.plugin {
            Some(plugin) => self.stage.on_response_trailers(&ProxyHost, plugin),
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        if let Some(plugin) = &self.plugin {
            self.stage.on_log(&ProxyHost, plugin);
        }
        filter_common::host::stream_end();
    }
}

impl Drop for BreakerStream {
    /// A stream that ends without `on_log` (the host skipped it) still gives its permit back.
    fn drop(&mut self) {
        if let Some(plugin) = &self.plugin {
            self.stage.on_drop(&ProxyHost, plugin);
        }
    }
}
