//! App keys end to end: created by the CLI, used against a live gateway,
//! scoped, rate limited, revoked — each refusal in the caller's dialect.

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
        let (status, body, _) = call(&http, &base, dialect, &key, "claude").await;
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
