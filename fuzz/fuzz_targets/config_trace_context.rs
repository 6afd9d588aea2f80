//! The trace_context filter's configuration, arbitrary bytes read as the filter reads its pluginConfig (serde_json and serde), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trace_context::config::Config;

fuzz_target!(|data: &[u8]| {
    // Deserialisation, validation and the shared-memory ceiling, as the filter loads it.
    match trace_context::memory::load(Some(data)) {
        Ok(config) => derived(config),
        Err(e) => filters_fuzz::check_config_error(&e),
    }
});

fn derived(config: Config) {
    let _ = config.baggage.limits();
    let _ = trace_context::propagation::Propagator::new(config);
}
