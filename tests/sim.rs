//! Integration tests of the vendor simulator over real HTTP.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard::sim::{digest, Knobs, Simulator, Vendor};

const FILLER: &str = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu";

async fn start() -> (Simulator, String) {
    let sim = Simulator::new();
    let addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (sim, format!("http://{addr}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `(event, data)` of every SSE frame in `body`.
fn frames(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut event = None;
            let mut data = String::new();
            for line in f.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = Some(e.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, data)
        })
        .collect()
}

fn json_frames(body: &str) -> Vec<Value> {
    frames(body)
        .into_iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(&d).unwrap())
        .collect()
}

fn anthropic(c: &reqwest::Client, base: &str, body: Value) -> reqwest::RequestBuilder {
    c.post(format!("{base}/anthropic/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
}

fn openai(c: &reqwest::Client, base: &str, body: Value) -> reqwest::RequestBuilder {
    c.post(format!("{base}/openai/v1/chat/completions"))
        .bearer_auth("k")
        .json(&body)
}

fn weather_tool_openai() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}])
}

#[tokio::test]
async fn anthropic_non_stream_and_auth() {
    let (sim, base) = start().await;
    let c = client();
    let req = json!({"model": "claude-x", "max_tokens": 100, "temperature": 0.5,
        "system": "be brief", "messages": [{"role": "user", "content": "hello world"}]});
    let resp = anthropic(&c, &base, req.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let want = format!(
        "[anthropic/claude-x] digest={} t=0.5 {FILLER}",
        digest("hello world")
    );
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], want.as_str());
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["input_tokens"], 6);
    assert_eq!(v["usage"]["output_tokens"], 15);
    assert_eq!(sim.count(Vendor::Anthropic, "claude-x"), 1);
    let h = sim.last_headers(Vendor::Anthropic).unwrap();
    assert_eq!(h["anthropic-version"], "2023-06-01");

    let resp = c
        .post(format!("{base}/anthropic/v1/messages"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let resp = anthropic(&c, &base, json!({"model": "claude-x", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(sim.total(Vendor::Anthropic), 3);
}

#[tokio::test]
async fn anthropic_stream_stop_sequence() {
    let (_sim, base) = start().await;
    let resp = anthropic(
        &client(),
        &base,
        json!({"model": "claude-x", "max_tokens": 100, "stream": true,
            "stop_sequences": ["gamma"],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = resp.text().await.unwrap();
    let fs = frames(&body);
    let names: Vec<&str> = fs.iter().map(|(e, _)| e.as_deref().unwrap()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let mut text = String::new();
    for (e, d) in &fs {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["type"], e.as_deref().unwrap());
        if e.as_deref() == Some("content_block_delta") {
            assert_eq!(v["delta"]["type"], "text_delta");
            text.push_str(v["delta"]["text"].as_str().unwrap());
        }
        if e.as_deref() == Some("message_delta") {
            assert_eq!(v["delta"]["stop_reason"], "stop_sequence");
            assert_eq!(v["delta"]["stop_sequence"], "gamma");
            assert_eq!(v["usage"]["output_tokens"], 5);
        }
    }
    assert_eq!(
        text,
        format!(
            "[anthropic/claude-x] digest={} images=1 alpha beta ",
            digest("hi")
        )
    );
}

#[tokio::test]
async fn openai_non_stream_and_stream_with_usage() {
    let (sim, base) = start().await;
    let c = client();
    let msgs = json!([{"role": "system", "content": "sys"}, {"role": "user", "content": "q one"}]);
    let v: Value = openai(
        &c,
        &base,
        json!({"model": "gpt-x", "messages": msgs, "max_tokens": 4}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let want = format!("[openai/gpt-x] digest={} alpha beta", digest("q one"));
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 4);

    let body = openai(
        &c,
        &base,
        json!({"model": "gpt-x", "messages": msgs, "stream": true,
            "top_p": 0.9, "stream_options": {"include_usage": true}}),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(body.ends_with("data: [DONE]\n\n"));
    let chunks = json_frames(&body);
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        format!("[openai/gpt-x] digest={} p=0.9 {FILLER}", digest("q one"))
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 15);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(sim.count(Vendor::Openai, "gpt-x"), 2);

    let resp = c
        .post(format!("{base}/openai/v1/chat/completions"))
        .body("{not json")
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn local_needs_no_key_and_omits_usage() {
    let (sim, base) = start().await;
    let c = client();
    let req = json!({"model": "Qwen/Qwen2.5-7B", "messages": [{"role": "user", "content": "x"}]});
    let v: Value = c
        .post(format!("{base}/local/v1/chat/completions"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = format!("[local/Qwen/Qwen2.5-7B] digest={} {FILLER}", digest("x"));
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    let mut req = req;
    req["stream"] = json!(true);
    let body = c
        .post(format!("{base}/local/v1/chat/completions"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = json_frames(&body);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(sim.count(Vendor::Local, "Qwen/Qwen2.5-7B"), 2);
}

#[tokio::test]
async fn gemini_non_stream_and_stream() {
    let (sim, base) = start().await;
    let c = client();
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "hey there"}]}],
        "generationConfig": {"temperature": 0.2}});
    let v: Value = c
        .post(format!(
            "{base}/gemini/v1beta/models/gemini-x:generateContent?key=k"
        ))
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want = format!(
        "[gemini/gemini-x] digest={} t=0.2 {FILLER}",
        digest("hey there")
    );
    let cand = &v["candidates"][0];
    assert_eq!(cand["content"]["role"], "model");
    assert_eq!(cand["content"]["parts"][0]["text"], want.as_str());
    assert_eq!(cand["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 15);
    assert_eq!(v["modelVersion"], "gemini-x");

    let body = c
        .post(format!(
            "{base}/gemini/v1/models/gemini-x:streamGenerateContent?alt=sse"
        ))
        .header("x-goog-api-key", "k")
        .json(&req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks = json_frames(&body);
    assert!(chunks.len() > 3);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, want);
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["totalTokenCount"], 18);
    assert_eq!(sim.count(Vendor::Gemini, "gemini-x"), 2);

    let resp = c
        .post(format!(
            "{base}/gemini/v1beta/models/gemini-x:generateContent"
        ))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn tool_calls_stream_in_pieces_and_results_round_trip() {
    let (_sim, base) = start().await;
    let c = client();
    let msgs = json!([{"role": "user", "content": "weather?"}]);
    let body = openai(
        &c,
        &base,
        json!({"model": "gpt-x", "messages": msgs, "stream": true,
            "tools": weather_tool_openai()}),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let chunks = json_frames(&body);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let pieces: Vec<&str> = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .filter(|a| !a.is_empty())
        .collect();
    assert!(pieces.len() >= 3, "{pieces:?}");
    let args: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(args, json!({"city": "sim-city", "days": 1}));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // Anthropic: input_json_delta pieces.
    let body = anthropic(
        &c,
        &base,
        json!({"model": "claude-x", "max_tokens": 50, "stream": true,
            "tools": [{"name": "lookup", "input_schema": {"type": "object",
                "properties": {"q": {"type": "string"}, "exact": {"type": "boolean"}}}}],
            "messages": msgs}),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let events = json_frames(&body);
    assert_eq!(events[1]["content_block"]["type"], "tool_use");
    let partial: Vec<&str> = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert!(partial.len() >= 3);
    let args: Value = serde_json::from_str(&partial.concat()).unwrap();
    assert_eq!(args, json!({"q": "sim-q", "exact": true}));
    assert!(body.contains(r#""stop_reason":"tool_use""#));

    // The tool result comes back: its digest is in the answer.
    let msgs = json!([{"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"}]);
    let v: Value = openai(
        &c,
        &base,
        json!({"model": "gpt-x", "messages": msgs,
            "tools": weather_tool_openai()}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let want = format!(
        "[openai/gpt-x] tool-result={} {FILLER}",
        digest("sunny, 21C")
    );
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
}

#[tokio::test]
async fn suspended_models_answer_each_vendors_404() {
    let (sim, base) = start().await;
    let c = client();
    let suspended = Knobs {
        suspended: true,
        ..Knobs::default()
    };
    for v in Vendor::ALL {
        sim.set_knobs(v, "*", suspended.clone());
    }
    let msgs = json!([{"role": "user", "content": "x"}]);
    let resp = anthropic(
        &c,
        &base,
        json!({"model": "claude-x", "max_tokens": 5, "messages": msgs}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(v["error"]["message"], "model: claude-x");

    let resp = openai(&c, &base, json!({"model": "gpt-x", "messages": msgs}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(
        v["error"]["message"],
        "The model `gpt-x` does not exist or you do not have access to it."
    );

    let resp = c
        .post(format!(
            "{base}/gemini/v1beta/models/gemini-x:generateContent?key=k"
        ))
        .json(&json!({"contents": [{"parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert_eq!(
        v["error"]["message"],
        "models/gemini-x is not found for API version v1beta, or is not supported for generateContent."
    );
}

#[tokio::test]
async fn anthropic_529_with_retry_after_and_http_knobs() {
    let (sim, base) = start().await;
    let c = client();
    sim.set_knobs(
        Vendor::Anthropic,
        "claude-x",
        Knobs {
            error_status: Some(529),
            retry_after_secs: Some(7),
            ..Knobs::default()
        },
    );
    let req = json!({"model": "claude-x", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    let resp = anthropic(&c, &base, req.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["retry-after"], "7");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    // Over HTTP: half of OpenAI requests get 429, evenly.
    let put = c
        .put(format!("{base}/_sim/knobs/openai/*"))
        .json(&json!({"error_status": 429, "error_rate": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = openai(
            &c,
            &base,
            json!({"model": "gpt-x", "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        }
    }
    assert_eq!(statuses, [429, 200, 429, 200]);
    let bad = c
        .put(format!("{base}/_sim/knobs/openai/gpt-x"))
        .json(&json!({"nope": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let counts: Value = c
        .get(format!("{base}/_sim/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts, json!({"anthropic/claude-x": 1, "openai/gpt-x": 4}));
    let r = c.post(format!("{base}/_sim/reset")).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(sim.total(Vendor::Openai), 0);
    assert!(sim.knobs().is_empty());
    let resp = anthropic(&c, &base, req).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn reset_knob_drops_the_connection() {
    let (sim, base) = start().await;
    let c = client();
    sim.set_knobs(
        Vendor::Openai,
        "gpt-x",
        Knobs {
            reset: true,
            ..Knobs::default()
        },
    );
    let req = json!({"model": "gpt-x", "messages": [{"role": "user", "content": "x"}]});
    let err = openai(&c, &base, req.clone()).send().await.unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(sim.count(Vendor::Openai, "gpt-x"), 1);
    sim.clear_knobs();
    let resp = openai(&c, &base, req).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn stream_faults_cut_stall_garble_and_in_band_errors() {
    let (sim, base) = start().await;
    let c = client();
    let req = json!({"model": "gpt-x", "stream": true,
        "messages": [{"role": "user", "content": "x"}]});
    let set = |k: Knobs| sim.set_knobs(Vendor::Openai, "gpt-x", k);

    set(Knobs {
        reset_after_tokens: Some(3),
        ..Knobs::default()
    });
    let resp = openai(&c, &base, req.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text().await.is_err(),
        "a cut stream must not end cleanly"
    );

    set(Knobs {
        stall_after_tokens: Some(2),
        ..Knobs::default()
    });
    let resp = openai(&c, &base, req.clone()).send().await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(300), resp.text()).await;
    assert!(read.is_err(), "a stalled stream must not end");

    set(Knobs {
        malformed_after_tokens: Some(1),
        ..Knobs::default()
    });
    let body = openai(&c, &base, req.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("data: {not json\n\n"));
    assert!(body.ends_with("data: [DONE]\n\n"));

    set(Knobs {
        in_band_error: true,
        ..Knobs::default()
    });
    let body = openai(&c, &base, req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first: Value = serde_json::from_str(&frames(&body)[0].1).unwrap();
    assert_eq!(first["error"]["type"], "server_error");

    sim.set_knobs(
        Vendor::Anthropic,
        "*",
        Knobs {
            in_band_error: true,
            ..Knobs::default()
        },
    );
    let body = anthropic(
        &c,
        &base,
        json!({"model": "c", "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "x"}]}),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(body.starts_with("event: error\ndata: {"));
    assert!(body.contains("overloaded_error"));
}

#[tokio::test]
async fn pacing_knobs_delay_the_stream() {
    let (sim, base) = start().await;
    sim.set_knobs(
        Vendor::Gemini,
        "*",
        Knobs {
            ttft_ms: 100,
            tokens_per_sec: 200.0,
            ..Knobs::default()
        },
    );
    let t0 = std::time::Instant::now();
    let resp = client()
        .post(format!(
            "{base}/gemini/v1beta/models/g:streamGenerateContent?alt=sse&key=k"
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    // 100 ms to the first token, then 13 gaps of 5 ms.
    assert!(
        t0.elapsed() >= Duration::from_millis(160),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(json_frames(&body).len(), 15);
}
