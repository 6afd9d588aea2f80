//! The Envoys under test: what their configurations share, the built modules they load, and their
//! start with a CPU clock.

use std::path::{Path, PathBuf};

use e2e_harness::{workspace_root, Envoy, EnvoyConfig};

use crate::clock::EnvoyClock;
use crate::settings::Settings;

/// What the report's header says about an Envoy that ran: its version and how its CPU was read.
pub struct Setup {
    pub version: String,
    pub clock: EnvoyClock,
}

/// Concurrency and log levels, the same for every Envoy of the run.
pub fn base_config(s: &Settings) -> EnvoyConfig {
    EnvoyConfig::new()
        .concurrency(s.concurrency)
        // Logging is part of the cost being measured; keep it at production levels.
        .log_level("warn")
        .component_log_level("wasm:warn")
}

/// A built module: `file` under dist/.
pub fn module(file: &str) -> PathBuf {
    workspace_root().join("dist").join(file)
}

/// An error unless `module` was built; `hint` ends the message.
pub fn require(module: &Path, hint: &str) -> Result<(), String> {
    if module.is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} not found: run `make build` first{hint}",
            module.display()
        ))
    }
}

/// Starts Envoy and checks that its CPU time can be read before any load depends on it.
pub async fn start(config: EnvoyConfig) -> Result<(Envoy, Setup), String> {
    let envoy = Envoy::start(config).await;
    let clock = EnvoyClock::new(envoy.pid());
    clock.read()?;
    let version = version(&envoy).await;
    Ok((envoy, Setup { version, clock }))
}

async fn version(envoy: &Envoy) -> String {
    envoy
        .admin("GET", "/server_info")
        .await
        .json()
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string()
}
