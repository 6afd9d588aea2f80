//! The proxy-wasm shell: loads the configuration, builds the VM's state and forwards each stream
//! callback to `stage` over the configuration's host (`ProxyHost`, its counters batched when
//! `metricsFlushInterval` is set). Everything the filter decides lives in `stage`.

use crate::stage::{Stream, Vm};
use filter_common::host::ProxyHost;
use filter_common::metric_batch::MetricBatch;
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

/// One configuration: the host its callbacks use and the VM's state, shared with every stream.
/// Dropped with the root context and its last stream (Envoy deletes both when it retires the plugin),
/// when the host sends the counts it still holds: it is the last field, so it drops last.
struct Configured {
    vm: Vm,
    host: MetricBatch<ProxyHost>,
}

#[derive(Default)]
struct TraceRoot {
    configured: Option<Rc<Configured>>,
}

impl Context for TraceRoot {}

impl RootContext for TraceRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = load_config(crate::memory::load) else {
            return false;
        };
        // A configuration this root context replaces: its streams still running count at once, as
        // the timer now flushes only the new one.
        if let Some(old) = self.configured.take() {
            old.host.finish();
        }
        let host = MetricBatch::new(ProxyHost, config.metrics_flush_interval.0);
        let vm = Vm::configure(&host, config);
        host.start_timer();
        self.configured = Some(Rc::new(Configured { vm, host }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(c) = &self.configured {
            c.host.flush();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK requires a context; without a configuration the stream just passes through.
        Some(Box::new(TraceStream {
            configured: self.configured.clone(),
            stage: Stream::default(),
        }))
    }
}

struct TraceStream {
    configured: Option<Rc<Configured>>,
    stage: Stream,
}

impl Context for TraceStream {}

impl HttpContext for TraceStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.configured {
            Some(c) => self.stage.on_request_headers(&c.host, &c.vm),
            None => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.configured {
            Some(c) => self.stage.on_response_headers(&c.host, &c.vm),
            None => Action::Continue,
        }
    }

    fn on_log(&mut self) {
        filter_common::host::stream_end();
    }
}
