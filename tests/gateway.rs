//! The real gateway against the real simulator over loopback sockets.

mod common;

use std::time::Duration;

use common::{drain, start, user};
use serde_json::{json, Value};
use switchyard::sim::{digest, Knobs, Vendor};

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn every_backend_kind_serves_the_openai_dialect() {
    let env = start(|_| {}).await;
    for (route, prefix) in [
        ("claude", "[anthropic/claude-sonnet-4-5]"),
        ("gpt", "[openai/gpt-5]"),
        ("gemini", "[gemini/gemini-2.5-pro]"),
        ("local", "[local/qwen3-32b]"),
    ] {
        let resp = env.openai(user(route, "hello")).await;
        assert_eq!(resp.status(), 200, "{route}");
        assert_eq!(header(&resp, "x-switchyard-target"), route);
        let body: Value = resp.json().await.unwrap();
        let text = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("{prefix} digest={}", digest("hello"))),
            "{text}"
        );
    }
}

#[tokio::test]
async fn vendor_keys_are_sent_and_app_keys_are_not() {
    let env = start(|_| {}).await;
    for route in ["claude", "gpt", "gemini"] {
        assert_eq!(env.openai(user(route, "x")).await.status(), 200);
    }
    let a = env.sim.last_headers(Vendor::Anthropic).unwrap();
    assert_eq!(a.get("x-api-key").unwrap(), "sim-key");
    assert_eq!(a.get("anthropic-version").unwrap(), "2023-06-01");
    let o = env.sim.last_headers(Vendor::Openai).unwrap();
    assert_eq!(o.get("authorization").unwrap(), "Bearer sim-key");
    let g = env.sim.last_headers(Vendor::Gemini).unwrap();
    assert_eq!(g.get("x-goog-api-key").unwrap(), "sim-key");
    for h in [a, o, g] {
        assert!(h
            .values()
            .all(|v| !v.to_str().unwrap_or("").contains("app-key")));
    }
}

#[tokio::test]
async fn hard_failures_fail_over_before_the_first_byte() {
    let knobs = [
        Knobs {
            suspended: true,
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
            error_status: Some(529),
            ..Knobs::default()
        },
        Knobs {
            error_status: Some(503),
            ..Knobs::default()
        },
        Knobs {
            error_status: Some(429),
            retry_after_secs: Some(30),
            ..Knobs::default()
        },
    ];
    for k in knobs {
        // A fresh gateway per case: failures add up to an ejection otherwise.
        let env = start(|_| {}).await;
        env.sim
            .set_knobs(Vendor::Anthropic, "claude-sonnet-4-5", k.clone());
        let resp = env.openai(user("frontier", "fail me over")).await;
        assert_eq!(resp.status(), 200, "{k:?}");
        assert_eq!(header(&resp, "x-switchyard-target"), "gpt", "{k:?}");
        assert_eq!(header(&resp, "x-switchyard-attempts"), "2");
        assert_eq!(env.sim.count(Vendor::Anthropic, "claude-sonnet-4-5"), 1);
        assert_eq!(env.sim.count(Vendor::Openai, "gpt-5"), 1);
    }
}

#[tokio::test]
async fn client_errors_are_not_failed_over() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        Vendor::Anthropic,
        "claude-sonnet-4-5",
        Knobs {
            error_status: Some(400),
            ..Knobs::default()
        },
    );
    let resp = env.openai(user("frontier", "bad")).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(
        env.sim.count(Vendor::Openai, "gpt-5"),
        0,
        "a 400 must not be replayed elsewhere"
    );
}

#[tokio::test]
async fn no_target_left_gives_one_clean_error() {
    let env = start(|_| {}).await;
    for (v, m) in [
        (Vendor::Anthropic, "claude-sonnet-4-5"),
        (Vendor::Openai, "gpt-5"),
        (Vendor::Gemini, "gemini-2.5-pro"),
        (Vendor::Local, "qwen3-32b"),
    ] {
        env.sim.set_knobs(
            v,
            m,
            Knobs {
                suspended: true,
                ..Knobs::default()
            },
        );
    }
    let resp = env.openai(user("frontier", "anyone?")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "x-switchyard-attempts"), "4");
    let text = resp.text().await.unwrap();
    for t in [
        "claude: model_unavailable",
        "gpt: model_unavailable",
        "gemini: model_unavailable",
        "local: model_unavailable",
    ] {
        assert!(text.contains(t), "{text}");
    }
    assert!(
        !text.contains("sim-key") && !text.contains("127.0.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn slow_first_token_fails_over_on_streams() {
    let env = start(|c| {
        c.routes.get_mut("frontier").unwrap().first_token_timeout = Duration::from_millis(300);
    })
    .await;
    env.sim.set_knobs(
        Vendor::Anthropic,
        "claude-sonnet-4-5",
        Knobs {
            ttft_ms: 5_000,
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "quick");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-target"), "gpt");
    let text = resp.text().await.unwrap();
    assert!(text.contains("[openai/gpt-5]"));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stream_cut_after_it_began_ends_with_an_error_not_a_clean_end() {
    let env = start(|c| {
        c.routes.get_mut("gpt").unwrap().idle_timeout = Duration::from_millis(300);
    })
    .await;
    for knobs in [
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
        Knobs {
            stall_after_tokens: Some(3),
            ..Knobs::default()
        },
    ] {
        env.sim.set_knobs(Vendor::Openai, "gpt-5", knobs.clone());
        let mut body = user("gpt", "cut me");
        body["stream"] = json!(true);
        let resp = env.openai(body).await;
        assert_eq!(resp.status(), 200);
        let (text, broke) = drain(resp).await;
        assert!(text.contains("[openai/gpt-5]"), "{knobs:?}: {text}");
        assert!(
            text.contains("data: {\"error\""),
            "{knobs:?}: an error event must be sent: {text}"
        );
        assert!(!text.contains("[DONE]"), "{knobs:?}: never a clean end");
        assert!(broke, "{knobs:?}: the body must end abnormally");
    }
}

#[tokio::test]
async fn a_malformed_stream_event_is_dropped_and_the_answer_completes() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        Vendor::Openai,
        "gpt-5",
        Knobs {
            malformed_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let mut body = user("gpt", "garbage inside");
    body["stream"] = json!(true);
    let (text, broke) = drain(env.openai(body).await).await;
    assert!(!broke, "{text}");
    assert!(!text.contains("not json"), "{text}");
    assert!(
        text.contains(" mu\""),
        "the words after the bad event arrive: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_in_each_dialect() {
    let env = start(|c| c.gateway.max_body_bytes = 2048).await;
    let cases: [(&str, &str); 3] = [
        ("/v1/chat/completions", "error"),
        ("/v1/messages", "error"),
        ("/v1beta/models/gpt:generateContent", "error"),
    ];
    for (path, key) in cases {
        let post = |body: Vec<u8>, ct: &'static str| {
            env.http
                .post(env.url(path))
                .header("authorization", "Bearer k")
                .header("x-api-key", "k")
                .header("x-goog-api-key", "k")
                .header("content-type", ct)
                .body(body)
                .send()
        };
        let resp = post(b"{not json".to_vec(), "application/json")
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert!(v[key].is_object(), "{path}: {v}");
        let resp = post(vec![b' '; 4096], "application/json").await.unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let resp = post(b"{}".to_vec(), "text/plain").await.unwrap();
        assert_eq!(resp.status(), 415, "{path}");
        let deep = "[".repeat(10_000);
        let resp = post(deep.into_bytes(), "application/json").await.unwrap();
        assert!(resp.status() == 400 || resp.status() == 413, "{path}");
        let resp = post(vec![0xff, 0xfe, b'{'], "application/json")
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    let v: Value = env
        .http
        .post(env.url("/v1/messages"))
        .header("x-api-key", "k")
        .body("{nope")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // The process is still up and serving.
    assert_eq!(env.openai(user("gpt", "still fine")).await.status(), 200);
}

#[tokio::test]
async fn many_concurrent_requests_all_arrive_intact() {
    let env = start(|_| {}).await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let http = env.http.clone();
            let url = env.url("/v1/chat/completions");
            tokio::spawn(async move {
                let text = format!("message number {i}");
                let body = json!({"model": "frontier", "stream": i % 2 == 0, "messages": [{"role": "user", "content": text}]});
                let resp = http.post(url).bearer_auth("k").json(&body).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                let body = resp.text().await.unwrap();
                assert!(body.contains(&digest(&text)), "{body}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(env.sim.count(Vendor::Anthropic, "claude-sonnet-4-5"), 64);
}

#[tokio::test]
async fn reload_swaps_the_table_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = common::start_from_file(dir.path()).await;
    let gw = &env.gw;
    let http = reqwest::Client::new();
    let ask = |route: &'static str| {
        http.post(format!("http://{}/v1/chat/completions", gw.addr))
            .bearer_auth("k")
            .json(&user(route, "hi"))
            .send()
    };
    let reload = || {
        http.post(format!("http://{}/admin/reload", gw.admin_addr))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
    };
    assert_eq!(
        ask("frontier").await.unwrap().headers()["x-switchyard-target"],
        "claude"
    );

    // Reorder frontier: gpt first.
    std::fs::write(
        &path,
        table.replace(
            r#"targets = ["claude", "gpt", "gemini", "local"]"#,
            r#"targets = ["gpt", "claude"]"#,
        ),
    )
    .unwrap();
    let resp = reload().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["version"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(
        ask("frontier").await.unwrap().headers()["x-switchyard-target"],
        "gpt"
    );

    // A broken file is rejected with its errors; the table keeps serving.
    std::fs::write(
        &path,
        table.replace(r#"targets = ["claude"]"#, r#"targets = ["nobody"]"#),
    )
    .unwrap();
    let resp = reload().await.unwrap();
    assert_eq!(resp.status(), 422);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["problems"][0]
            .as_str()
            .unwrap()
            .contains("unknown target `nobody`"),
        "{v}"
    );
    assert_eq!(
        ask("frontier").await.unwrap().headers()["x-switchyard-target"],
        "gpt"
    );
    assert_eq!(ask("claude").await.unwrap().status(), 200);

    // Without the admin token, nothing happens.
    let resp = http
        .post(format!("http://{}/admin/reload", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    env.gw.shutdown().await;
}

#[tokio::test]
async fn a_changed_routes_file_is_picked_up_without_a_command() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = common::start_from_file(dir.path()).await;
    let gw = &env.gw;
    // An editor-style atomic save: temp file, then rename over the original.
    let tmp = dir.path().join(".routes.toml.tmp");
    let new = table.replace(
        r#"targets = ["claude", "gpt", "gemini", "local"]"#,
        r#"targets = ["local"]"#,
    );
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let mut served_by_local = false;
    for _ in 0..100 {
        let snap = gw.live.load();
        if snap.table.routes["frontier"].targets[0].name == "local" {
            served_by_local = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served_by_local, "the watcher reloaded the renamed file");
    // A broken save changes nothing, and says why.
    std::fs::write(&path, "[routes.frontier\n").unwrap();
    let mut rejected = false;
    for _ in 0..100 {
        if gw.live.last_reload_error.load().is_some() {
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejected);
    assert_eq!(
        gw.live.load().table.routes["frontier"].targets[0].name,
        "local"
    );
    env.gw.shutdown().await;
}

#[tokio::test]
async fn every_target_out_still_names_the_route() {
    let env = start(|_| {}).await;
    for target in ["claude", "gpt", "gemini", "local"] {
        let resp = env
            .http
            .post(env.admin_url(&format!("/admin/targets/{target}/suspend")))
            .bearer_auth(common::ADMIN_TOKEN)
            .json(&json!({"reason": "drill"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{target}");
    }
    let resp = env.openai(user("frontier", "anyone?")).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "x-switchyard-route"), "frontier");
    assert_eq!(header(&resp, "x-switchyard-attempts"), "0");
    assert!(!header(&resp, "retry-after").is_empty());
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("every target is out"),
        "{body}"
    );
}

#[tokio::test]
async fn gemini_streams_without_alt_sse_answer_one_json_array() {
    let env = start(|_| {}).await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "array please"}]}]});
    let resp = env
        .http
        .post(env.url("/v1beta/models/gemini:streamGenerateContent"))
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "content-type").starts_with("application/json"),
        "{}",
        header(&resp, "content-type")
    );
    let text = resp.text().await.unwrap();
    let chunks: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(chunks.len() >= 2, "{text}");
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert!(
        joined.starts_with(&format!(
            "[gemini/gemini-2.5-pro] digest={}",
            digest("array please")
        )),
        "{joined}"
    );
    assert_eq!(
        chunks.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    // With alt=sse: SSE frames, as before.
    let resp = env
        .http
        .post(env.url("/v1beta/models/gemini:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert!(resp.text().await.unwrap().starts_with("data: {"));
}

#[tokio::test]
async fn listing_models_needs_a_key() {
    let env = start(|_| {}).await;
    let resp = env.http.get(env.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");
    assert!(body.to_string().find("frontier").is_none(), "{body}");
    let resp = env
        .http
        .get(env.url("/v1/models"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the admin token is not an app key");
    let resp = env
        .http
        .get(env.url("/v1/models"))
        .bearer_auth("app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 5, "{body}");
}

#[tokio::test]
async fn the_admin_listener_refuses_foreign_host_names() {
    let env = start(|c| c.gateway.admin_allowed_hosts = vec!["ops.internal".into()]).await;
    let get = |host: &'static str| {
        env.http
            .get(env.admin_url("/metrics"))
            .header("host", host)
            .send()
    };
    // A DNS-rebinding page reaches 127.0.0.1 under its own name.
    for foreign in [
        "evil.example",
        "evil.example:9901",
        "127.0.0.1.evil.example",
    ] {
        let resp = get(foreign).await.unwrap();
        assert_eq!(resp.status(), 421, "{foreign}");
        assert!(!resp.text().await.unwrap().contains("switchyard_"));
    }
    for ours in [
        "127.0.0.1:9901",
        "localhost",
        "[::1]:1234",
        "ops.internal:9901",
    ] {
        assert_eq!(get(ours).await.unwrap().status(), 200, "{ours}");
    }
    // The data plane does not care.
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .header("host", "api.example")
        .bearer_auth("k")
        .json(&user("gpt", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
