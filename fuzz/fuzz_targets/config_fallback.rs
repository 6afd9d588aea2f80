//! The fallback filter's configuration, arbitrary bytes read as the filter reads its pluginConfig (serde_json and serde), and
//! what the filter derives from a configuration it accepts.
#![no_main]

use fallback::config::Config;
use fallback::render::Negotiated;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Deserialisation, validation and the shared-memory ceiling, as the filter loads it.
    match fallback::memory::load(Some(data)) {
        Ok(config) => derived(config),
        Err(e) => filters_fuzz::check_config_error(&e),
    }
});

fn derived(config: Config) {
    let _ = config.cache.slots();
    for rule in &config.rules {
        let _ = fallback::config::otherwise(&rule.response);
        let vars = fallback::render::Vars::default();
        for format in [Negotiated::Json, Negotiated::Html, Negotiated::Text] {
            let _ = fallback::render::problem(&rule.response, &vars, format);
        }
        let _ = fallback::render::static_response(&rule.response, &vars);
    }
}
