//! Start-up steps every filter takes the same way.

use crate::config::ConfigError;
use crate::host::{Host, LogLevel, ProxyHost};

/// The level every filter logs at: configuration errors, transitions and one-off warnings, never a line
/// per request. Envoy's own `wasm` log level filters further; a message below this one costs no host
/// call at all.
pub const LOG_LEVEL: LogLevel = LogLevel::Info;

/// Reads the plugin configuration with `load` (the filter's: parse, validate, then its shared-memory
/// ceiling). On error it logs exactly one line naming the field and the reason, and returns `None`; the
/// filter then returns `false` from `on_configure`, which makes Envoy reject the configuration instead
/// of running with a guess.
///
/// No log line of a filter names the filter itself: Envoy starts every line a plugin logs with the
/// plugin's name, root_id and vm_id (those set: `wasm log circuit-breaker: invalid configuration: ...`),
/// so a name of our own would only repeat it.
pub fn load_config<T>(load: impl FnOnce(Option<&[u8]>) -> Result<T, ConfigError>) -> Option<T> {
    load_config_from(&ProxyHost, load)
}

/// [`load_config`] from `host`.
pub fn load_config_from<T>(
    host: &impl Host,
    load: impl FnOnce(Option<&[u8]>) -> Result<T, ConfigError>,
) -> Option<T> {
    let raw = host.plugin_configuration();
    match load(raw.as_deref()) {
        Ok(config) => Some(config),
        Err(e) => {
            log::error!("{e}");
            None
        }
    }
}
