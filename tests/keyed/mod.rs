//! A gateway in `keys` mode: the demo table against a real simulator, with
//! app keys written to a keys file the way `switchyard keys create` does.

use std::path::Path;
use std::sync::Arc;

use switchyard::app::{self, Options};
use switchyard::config::{AuthMode, Config};
use switchyard::sim::Simulator;

use crate::common::{Env, ADMIN_TOKEN};

const SECRET: &str = "keyed-test-secret";

/// One key to create: name, routes, requests and tokens per minute.
pub struct Spec {
    pub name: &'static str,
    pub routes: &'static [&'static str],
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// Starts the gateway with `keys` (in the order given, returned as the
/// secrets to send) after `tweak`.
pub async fn start(
    dir: &Path,
    keys: &[Spec],
    tweak: impl FnOnce(&mut Config),
) -> (Env, Vec<String>) {
    let sim = Simulator::new();
    let sim_addr = sim
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts");
    let mut config = switchyard::demo::config(sim_addr).expect("demo table is valid");
    config.auth.mode = AuthMode::Keys;
    config.auth.keys_file = dir.join("keys.json");
    tweak(&mut config);
    let (records, secrets): (Vec<_>, Vec<_>) = keys
        .iter()
        .map(|k| {
            switchyard::keys::create(
                SECRET.as_bytes(),
                k.name,
                k.routes.iter().map(|r| (*r).to_string()).collect(),
                None,
                k.rpm,
                k.tpm,
            )
        })
        .unzip();
    switchyard::keys::save_file(&config.auth.keys_file, records).unwrap();
    let demo_env = switchyard::demo::env();
    let env: switchyard::provider::EnvLookup = Arc::new(move |name| {
        if name == "SWITCHYARD_KEY_SECRET" {
            Some(SECRET.into())
        } else {
            demo_env(name)
        }
    });
    let opts = Options {
        path: None,
        env,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: ADMIN_TOKEN.into(),
    };
    let gw = app::start(config, opts).await.expect("gateway starts");
    let env = Env {
        sim,
        sim_addr,
        gw,
        http: reqwest::Client::new(),
    };
    (env, secrets)
}
