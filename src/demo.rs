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

/// Why `switchyard demo --replicas N` could not start its Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("`switchyard demo --replicas` needs redis-server on PATH (e.g. `apt install redis-server` or `brew install redis`); without it, run `switchyard demo` for one gateway")]
    NotFound,
    #[error("cannot start redis-server: {0}")]
    Spawn(std::io::Error),
    #[error("redis-server did not answer on {0} within 5s")]
    NoAnswer(SocketAddr),
}

/// A throwaway `redis-server` for the fleet demo: a free loopback port, no
/// persistence, killed when dropped.
pub struct RedisServer {
    child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Finds `redis-server` on `PATH`, starts it, and waits until it
    /// accepts connections.
    pub async fn start() -> Result<RedisServer, RedisError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let binary = std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|p| p.is_file())
            .ok_or(RedisError::NotFound)?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(RedisError::Spawn)?;
        let child = tokio::process::Command::new(binary)
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(RedisError::Spawn)?;
        let server = RedisServer { child, addr };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(RedisError::NoAnswer(addr));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
