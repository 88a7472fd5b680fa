//! Shared setup for integration tests: a real simulator and a real gateway,
//! each on a free loopback port, in this test's own runtime.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod redis_server;

use switchyard::app::{self, Gateway, Options};
use switchyard::config::Config;
use switchyard::sim::Simulator;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct Env {
    pub sim: Simulator,
    pub sim_addr: SocketAddr,
    pub gw: Gateway,
    pub http: reqwest::Client,
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.admin_addr)
    }

    /// POSTs an OpenAI chat request for `route`.
    pub async fn openai(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth("app-key")
            .json(&body)
            .send()
            .await
            .expect("request reaches the gateway")
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts the simulator and a gateway on the demo table, after `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Env {
    let sim = Simulator::new();
    let sim_addr = sim.spawn(loopback()).await.expect("simulator starts");
    let mut config = switchyard::demo::config(sim_addr).expect("demo table is valid");
    tweak(&mut config);
    let gw = gateway(config).await;
    Env {
        sim,
        sim_addr,
        gw,
        http: client(),
    }
}

/// A gateway on `config` (no routes file), on free loopback ports, with the
/// simulator's vendor keys and the test admin token.
pub async fn gateway(config: Config) -> Gateway {
    let opts = Options {
        path: None,
        env: switchyard::demo::env(),
        listen: loopback(),
        admin_listen: loopback(),
        admin_token: ADMIN_TOKEN.into(),
    };
    app::start(config, opts).await.expect("gateway starts")
}

/// Starts the simulator and a gateway that reads the demo table from
/// `dir/routes.toml`, so that reloads and the file watcher have a file to
/// read. Returns the file's path and text.
pub async fn start_from_file(dir: &std::path::Path) -> (Env, PathBuf, String) {
    let sim = Simulator::new();
    let sim_addr = sim.spawn(loopback()).await.expect("simulator starts");
    let table = switchyard::demo::DEMO_ROUTES.replace("{sim}", &sim_addr.to_string());
    let path = dir.join("routes.toml");
    std::fs::write(&path, &table).expect("write routes file");
    let config = switchyard::config::load_file(&path).expect("demo table is valid");
    let opts = Options {
        path: Some(path.clone()),
        env: switchyard::demo::env(),
        listen: loopback(),
        admin_listen: loopback(),
        admin_token: ADMIN_TOKEN.into(),
    };
    let gw = app::start(config, opts).await.expect("gateway starts");
    let env = Env {
        sim,
        sim_addr,
        gw,
        http: client(),
    };
    (env, path, table)
}

/// An HTTP client that lets go of idle pooled connections after 5 s, as
/// the official Python and Node SDKs do: the gateway closes a connection
/// idle for `header_read_timeout` (10 s), and a client that reuses one at
/// that very moment loses its request (`IncompleteMessage`), as with any
/// HTTP/1.1 server that closes idle connections.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

pub fn user(route: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"model": route, "messages": [{"role": "user", "content": text}]})
}

/// Collects a response body until it ends or breaks; returns the text and
/// whether it broke (an abnormal end, as after a cut stream).
pub async fn drain(resp: reqwest::Response) -> (String, bool) {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}
