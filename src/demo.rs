//! The embedded default: the demo routes table (contract §6) pointed at the
//! built-in simulator, with stand-in vendor keys that never leave loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{self, Config, ConfigError};
use crate::provider::EnvLookup;

/// The demo table; `{sim}` is replaced by the simulator's address.
pub const DEMO_ROUTES: &str = include_str!("demo_routes.toml");

/// The demo table pointed at a simulator listening on `sim`.
pub fn config(sim: SocketAddr) -> Result<Config, ConfigError> {
    let text = DEMO_ROUTES.replace("{sim}", &sim.to_string());
    config::load_str("<demo>", &text, Vec::new())
}

/// Vendor "keys" for the simulator: the demo needs none of the user's.
pub fn env() -> EnvLookup {
    Arc::new(|name| name.starts_with("SIM_").then(|| "sim-key".to_string()))
}
