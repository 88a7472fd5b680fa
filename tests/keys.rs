//! App keys end to end: created by the CLI, used against a live gateway,
//! scoped, rate limited, revoked — each refusal in the caller's dialect.

mod common;
mod keyed;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::app::{self, Options};
use switchyard::sim::Simulator;

const SECRET: &str = "test-hmac-secret";

fn write_config(dir: &Path, sim: SocketAddr) -> std::path::PathBuf {
    let table = switchyard::demo::DEMO_ROUTES
        .replace("{sim}", &sim.to_string())
        .replace(
            "mode = \"any_key\"",
            &format!(
                "mode = \"keys\"\nkeys_file = \"{}\"",
                dir.join("keys.json").display()
            ),
        );
    let path = dir.join("routes.toml");
    std::fs::write(&path, table).unwrap();
    path
}

async fn keys_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SWITCHYARD_KEY_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    dialect: &str,
    key: &str,
    route: &str,
) -> (u16, Value, Option<String>) {
    let req = match dialect {
        "openai" => http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": route, "messages": [{"role": "user", "content": "hi"}]})),
        "anthropic" => http
            .post(format!("{base}/v1/messages"))
            .header("x-api-key", key)
            .json(&json!({"model": route, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})),
        _ => http
            .post(format!("{base}/v1beta/models/{route}:generateContent?key={key}"))
            .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test]
async fn keys_are_scoped_limited_and_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::new();
    let sim_addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let config_path = write_config(dir.path(), sim_addr);

    let (code, key, err) = keys_cli(
        &config_path,
        &["create", "app-a", "--routes", "gpt,frontier", "--rpm", "3"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(key.starts_with("sy-") && key.len() > 40, "{key}");
    let stored = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    assert!(
        !stored.contains(&key) && !stored.contains(&key[3..15]),
        "the file holds no key: {stored}"
    );
    // Its request rate is counted from the headers, before the body names
    // a route: scope is checked with a key of its own.
    let (code, scoped, err) = keys_cli(
        &config_path,
        &["create", "app-s", "--routes", "gpt,frontier"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = keys_cli(&config_path, &["create", "app-b", "--routes", "nowhere"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown route `nowhere`"), "{err}");

    let config = switchyard::config::load_file(&config_path).unwrap();
    let demo_env = switchyard::demo::env();
    let env: switchyard::provider::EnvLookup = Arc::new(move |name| {
        if name == "SWITCHYARD_KEY_SECRET" {
            Some(SECRET.into())
        } else {
            demo_env(name)
        }
    });
    let opts = Options {
        path: Some(config_path.clone()),
        env,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: "admin".into(),
    };
    let gw = app::start(config, opts).await.unwrap();
    let base = format!("http://{}", gw.addr);
    let http = reqwest::Client::new();

    // In scope, three requests a minute: one per dialect fits.
    for dialect in ["openai", "anthropic", "gemini"] {
        let (status, body, _) = call(&http, &base, dialect, &key, "gpt").await;
        assert_eq!(status, 200, "{dialect}: {body}");
    }
    let (status, body, retry) = call(&http, &base, "openai", &key, "gpt").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));

    // Out of scope, unknown and missing keys: 403 / 401 in each dialect's shape.
    let expect = [
        ("openai", "/error/type"),
        ("anthropic", "/error/type"),
        ("gemini", "/error/status"),
    ];
    for (dialect, pointer) in expect {
        let (status, body, _) = call(&http, &base, dialect, &scoped, "claude").await;
        assert_eq!(status, 403, "{dialect}: {body}");
        assert!(body.pointer(pointer).is_some(), "{dialect}: {body}");
        let (status, body, _) = call(&http, &base, dialect, "sy-not-a-key", "gpt").await;
        assert_eq!(status, 401, "{dialect}: {body}");
        let (status, _, _) = call(&http, &base, dialect, "", "gpt").await;
        assert_eq!(status, 401, "{dialect}");
    }
    assert_eq!(
        sim.count(switchyard::sim::Vendor::Anthropic, "claude-sonnet-4-5"),
        0
    );

    // The model list shows only the routes in the key's scope.
    let listed: Value = http
        .get(format!("{base}/v1/models"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["frontier", "gpt"], "{listed}");
    let resp = http
        .get(format!("{base}/v1/models"))
        .bearer_auth("sy-not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Revoked, then reloaded: refused.
    let (code, _, err) = keys_cli(&config_path, &["revoke", "app-a"]).await;
    assert_eq!(code, 0, "{err}");
    switchyard::reload::reload(gw.live.clone(), "test".into())
        .await
        .unwrap();
    let (status, body, _) = call(&http, &base, "openai", &key, "frontier").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let (_, listed, _) = keys_cli(&config_path, &["list"]).await;
    assert!(
        listed.contains("app-a") && listed.contains("revoked") && !listed.contains(&key),
        "{listed}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_gateway_in_keys_mode_without_its_secret_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path(), "127.0.0.1:1".parse().unwrap());
    let config = switchyard::config::load_file(&config_path).unwrap();
    let opts = Options {
        path: None,
        env: switchyard::demo::env(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: "admin".into(),
    };
    let err = app::start(config, opts).await.err().expect("refused");
    assert!(err.to_string().contains("SWITCHYARD_KEY_SECRET"), "{err}");
}

/// Tokens the vendor reported for one answer, as the app sees them: an
/// OpenAI body's `usage`, or an Anthropic stream's `message_start` input
/// plus its `message_delta` output.
fn reported_tokens(dialect: &str, body: &str) -> u64 {
    if dialect == "openai" {
        let v: Value = serde_json::from_str(body).unwrap();
        return v["usage"]["total_tokens"].as_u64().unwrap();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|e| {
            e.pointer("/message/usage/input_tokens")
                .or_else(|| {
                    (e["type"] == "message_delta")
                        .then(|| e.pointer("/usage/output_tokens"))
                        .flatten()
                })
                .and_then(Value::as_u64)
                .unwrap_or(0)
        })
        .sum()
}

/// One request with `key`: its status and the tokens it used.
async fn metered(env: &common::Env, key: &str, dialect: &str, text: &str) -> (u16, u64) {
    let req = if dialect == "openai" {
        env.http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": text}]}))
    } else {
        env.http
            .post(env.url("/v1/messages"))
            .header("x-api-key", key)
            .json(
                &json!({"model": "claude", "max_tokens": 1024, "stream": true,
                    "messages": [{"role": "user", "content": text}]}),
            )
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    match status {
        200 => (status, reported_tokens(dialect, &body)),
        429 => {
            assert!(body.contains("tokens per minute"), "{body}");
            (status, 0)
        }
        _ => panic!("{status}: {body}"),
    }
}

#[tokio::test]
async fn token_limits_bound_what_is_generated_within_the_minute() {
    const LIMIT: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let spec = |name| keyed::Spec {
        name,
        routes: &["*"],
        rpm: None,
        tpm: Some(LIMIT as u32),
    };
    let (env, keys) = keyed::start(dir.path(), &[spec("one-by-one"), spec("burst")], |_| {}).await;

    // One request after another, no max_tokens (OpenAI) or a large one
    // (an Anthropic stream): each reserves its worst case, is settled with
    // what the vendor reported, and the next one fits in what is left.
    let (mut used, mut served) = (0, 0);
    for i in 0..100 {
        let dialect = if i % 2 == 0 { "openai" } else { "anthropic" };
        match metered(&env, &keys[0], dialect, &format!("one {i}")).await {
            (200, n) => {
                used += n;
                served += 1;
            }
            _ => break,
        }
    }
    assert!(served >= 4, "{served} served");
    assert!(
        used as f64 >= 0.8 * LIMIT as f64 && used as f64 <= 1.1 * LIMIT as f64,
        "one by one: {used} tokens used in {served} requests for a limit of {LIMIT}"
    );

    // Many at once: reservations hold the rest of the minute back.
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (http, url, key) = (env.http.clone(), env.url(""), keys[1].clone());
            tokio::spawn(async move {
                let mut used = 0;
                for i in 0..15 {
                    let resp = http
                        .post(format!("{url}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": format!("burst {t} {i}")}]}))
                        .send()
                        .await
                        .unwrap();
                    if resp.status() == 200 {
                        used += reported_tokens("openai", &resp.text().await.unwrap());
                    }
                }
                used
            })
        })
        .collect();
    let mut burst = 0;
    for t in tasks {
        burst += t.await.unwrap();
    }
    assert!(burst > 0);
    assert!(
        burst as f64 <= 1.1 * LIMIT as f64,
        "burst: {burst} tokens used for a limit of {LIMIT} a minute"
    );
}
