//! No secret leaks: unique canary values are planted as the vendor keys, the
//! HMAC secret and the admin token, and a fresh app key is made; a real
//! `switchyard serve` runs at trace log level through every dialect, streams
//! and the fault paths; then every output — logs, response bodies and
//! headers, metrics, the admin API, the events and state files, and every
//! OTLP export (traces and metrics, content capture on) — is searched for
//! each secret, its SHA-256, and every 8-character window of it.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::distr::{Distribution, Uniform};
use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard::sim::{Knobs, Simulator, Vendor};

/// Random letters outside the hex alphabet, so that no window of a canary
/// can match an id, a digest or a word by chance.
fn canary() -> String {
    const ALPHABET: &[u8] = b"ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ";
    let pick = Uniform::new(0, ALPHABET.len()).unwrap();
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[pick.sample(&mut rng)] as char)
        .collect()
}

fn leaks(secret: &str, haystack: &str) -> Vec<String> {
    let mut needles = vec![
        secret.to_string(),
        hex::encode(Sha256::digest(secret.as_bytes())),
    ];
    let chars: Vec<char> = secret.chars().collect();
    needles.extend(chars.windows(8).map(|w| w.iter().collect::<String>()));
    needles
        .into_iter()
        .filter(|n| haystack.contains(n.as_str()))
        .collect()
}

async fn wait_for_port(stderr_path: &Path) -> (String, String) {
    for _ in 0..200 {
        let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("gateway listening")) {
            let field = |name: &str| {
                line.split(&format!("{name}="))
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .map(|v| v.trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            return (field("addr"), field("admin_addr"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the gateway did not start: {}",
        std::fs::read_to_string(stderr_path).unwrap_or_default()
    );
}

#[tokio::test]
async fn no_secret_appears_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::new();
    let sim_addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (anthropic, openai, gemini, hmac_secret, admin_token) =
        (canary(), canary(), canary(), canary(), canary());
    let table = switchyard::demo::DEMO_ROUTES
        .replace("{sim}", &sim_addr.to_string())
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        .replace(
            "mode = \"any_key\"",
            &format!(
                "mode = \"keys\"\nkeys_file = \"{}\"",
                dir.path().join("keys.json").display()
            ),
        )
        .replace(
            "[auth]",
            &format!(
                "state_file = \"{}\"\nevents_file = \"{}\"\n\n[auth]",
                dir.path().join("state.json").display(),
                dir.path().join("events.jsonl").display()
            ),
        );
    let config = dir.path().join("routes.toml");
    std::fs::write(&config, table).unwrap();

    // A collector that keeps every export as received (protobuf carries
    // strings as plain UTF-8, so a text search sees them).
    let exports = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = {
        let exports = exports.clone();
        axum::Router::new().fallback(axum::routing::post(move |body: bytes::Bytes| async move {
            exports.lock().unwrap().extend_from_slice(&body);
            [(http::header::CONTENT_TYPE, "application/x-protobuf")]
        }))
    };
    let sink_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(sink_listener, sink).await });

    let bin = env!("CARGO_BIN_EXE_switchyard");
    let out = tokio::process::Command::new(bin)
        .args(["keys", "create", "canary-app", "--config"])
        .arg(&config)
        .env("SWITCHYARD_KEY_SECRET", &hmac_secret)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app_key = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let stdout_path = dir.path().join("stdout.log");
    let stderr_path = dir.path().join("stderr.log");
    let mut gw = tokio::process::Command::new(bin)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("SIM_ANTHROPIC_KEY", &anthropic)
        .env("SIM_OPENAI_KEY", &openai)
        .env("SIM_GEMINI_KEY", &gemini)
        .env("SWITCHYARD_KEY_SECRET", &hmac_secret)
        .env("SWITCHYARD_ADMIN_TOKEN", &admin_token)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{sink_addr}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        .stdout(Stdio::from(std::fs::File::create(&stdout_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&stderr_path).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (addr, admin) = wait_for_port(&stderr_path).await;
    let base = format!("http://{addr}");
    let admin = format!("http://{admin}");
    let http = reqwest::Client::new();
    let mut seen = String::new();
    let record = |resp: reqwest::Response| async move {
        let mut s = format!("{:?}\n", resp.headers());
        s.push_str(&resp.text().await.unwrap_or_default());
        s
    };

    // Traffic: every dialect, stream and not, healthy and through each fault.
    let faults = [
        Knobs::default(),
        Knobs {
            suspended: true,
            ..Knobs::default()
        },
        Knobs {
            error_status: Some(401),
            ..Knobs::default()
        },
        Knobs {
            error_status: Some(529),
            ..Knobs::default()
        },
        Knobs {
            reset: true,
            ..Knobs::default()
        },
        Knobs {
            html_error: true,
            ..Knobs::default()
        },
        Knobs {
            in_band_error: true,
            ..Knobs::default()
        },
        Knobs {
            reset_after_tokens: Some(2),
            ..Knobs::default()
        },
        Knobs {
            malformed_after_tokens: Some(2),
            ..Knobs::default()
        },
    ];
    for knobs in faults {
        for (vendor, model) in [
            (Vendor::Anthropic, "claude-sonnet-4-5"),
            (Vendor::Openai, "gpt-5"),
            (Vendor::Gemini, "gemini-2.5-pro"),
        ] {
            sim.set_knobs(vendor, model, knobs.clone());
        }
        for route in ["claude", "gpt", "gemini", "frontier"] {
            for stream in [false, true] {
                let body = json!({"model": route, "stream": stream, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
                let r = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&app_key)
                    .header("x-switchyard-explain", "1")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                seen.push_str(&record(r).await);
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .header("x-api-key", &app_key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                seen.push_str(&record(r).await);
                let action = if stream {
                    "streamGenerateContent?alt=sse&"
                } else {
                    "generateContent?"
                };
                let r = http
                    .post(format!(
                        "{base}/v1beta/models/{route}:{action}key={app_key}"
                    ))
                    .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
                    .send()
                    .await
                    .unwrap();
                seen.push_str(&record(r).await);
            }
        }
    }
    sim.clear_knobs();
    // Auth failures and the admin plane, with and without the token.
    let r = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&admin_token)
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    seen.push_str(&record(r).await);
    for path in [
        "/admin/targets/claude/suspend",
        "/admin/targets/claude/resume",
        "/admin/reload",
    ] {
        let r = http
            .post(format!("{admin}{path}"))
            .bearer_auth(&admin_token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        seen.push_str(&record(r).await);
        let r = http
            .post(format!("{admin}{path}"))
            .bearer_auth(&app_key)
            .send()
            .await
            .unwrap();
        seen.push_str(&record(r).await);
    }
    for path in ["/admin/routes", "/admin/events", "/metrics", "/"] {
        let r = http
            .get(format!("{admin}{path}"))
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap();
        seen.push_str(&record(r).await);
    }
    // A graceful stop, so the last spans and metrics are flushed too.
    let pid = gw.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let status = tokio::time::timeout(Duration::from_secs(40), gw.wait()).await;
    assert!(
        status.is_ok_and(|s| s.is_ok_and(|s| s.success())),
        "a clean exit"
    );
    let exported = String::from_utf8_lossy(&exports.lock().unwrap()).into_owned();
    assert!(
        exported.contains("gen_ai.operation.name") && exported.contains("gen_ai.input.messages"),
        "spans with content were exported"
    );
    assert!(
        exported.contains("gen_ai.client.operation.duration"),
        "metrics were exported"
    );
    seen.push_str(&exported);

    for file in [
        "stdout.log",
        "stderr.log",
        "events.jsonl",
        "state.json",
        "keys.json",
    ] {
        seen.push_str(&std::fs::read_to_string(dir.path().join(file)).unwrap_or_default());
    }
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        log.contains("TRACE") && log.len() > 10_000,
        "trace logging was on"
    );
    assert!(
        seen.contains("outcome=model_unavailable"),
        "the fault paths ran"
    );
    for (name, secret) in [
        ("anthropic key", &anthropic),
        ("openai key", &openai),
        ("gemini key", &gemini),
        ("hmac secret", &hmac_secret),
        ("admin token", &admin_token),
        ("app key", &app_key),
    ] {
        let hits = leaks(secret, &seen);
        assert!(hits.is_empty(), "the {name} leaked: {hits:?}");
    }
}
