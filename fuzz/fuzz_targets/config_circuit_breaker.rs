//! The circuit_breaker filter's configuration, arbitrary bytes read as the filter reads its pluginConfig (serde_json and serde), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use circuit_breaker::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Deserialisation, validation and the shared-memory ceiling, as the filter loads it.
    match circuit_breaker::memory::load(Some(data)) {
        Ok(config) => derived(config),
        Err(e) => filters_fuzz::check_config_error(&e),
    }
});

fn derived(config: Config) {
    for b in &config.breakers {
        let _ = circuit_breaker::memory::breaker_bytes(b);
        let _ = circuit_breaker::window::Stripe::new(1, b).encode();
        let _ = circuit_breaker::state::touch_interval_ns(b);
        let _ = circuit_breaker::state::idle_after_ns(b);
        for trips in [0, 1, 64, u32::MAX] {
            let _ = circuit_breaker::state::open_duration_ns(b, trips, 0.999);
        }
    }
}
