//! OpenAI providers with `api = "responses"`: the gateway calls the
//! simulator's Responses API (`/openai/v1/responses`) and translates its
//! answers and event streams for apps of any dialect.

mod common;

use common::{drain, start, user, Env};
use serde_json::{json, Value};
use switchyard::config::OpenAiApi;
use switchyard::sim::{digest, Knobs, Vendor};

async fn responses_env() -> Env {
    start(|c| {
        c.providers
            .get_mut("openai")
            .expect("demo openai provider")
            .api = OpenAiApi::Responses;
    })
    .await
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}])
}

#[tokio::test]
async fn chat_apps_are_served_through_the_responses_api() {
    let env = responses_env().await;
    let resp = env.openai(user("gpt", "hello")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    // The upstream id tells which OpenAI API answered.
    assert!(
        body["id"].as_str().unwrap().starts_with("resp_sim"),
        "{body}"
    );
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("[openai/gpt-5] digest={}", digest("hello"))),
        "{text}"
    );
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn tool_calls_stream_and_round_trip_through_the_responses_api() {
    let env = responses_env().await;
    let mut req = user("gpt", "weather?");
    req["tools"] = weather();
    req["stream"] = json!(true);
    let (sse, broke) = drain(env.openai(req).await).await;
    assert!(!broke);
    let mut args = String::new();
    let mut finish = None;
    let mut call_id = String::new();
    for line in sse.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        assert!(chunk["id"].as_str().unwrap().starts_with("resp_sim"));
        if let Some(c) = chunk["choices"][0]["delta"]["tool_calls"][0].as_object() {
            if let Some(id) = c.get("id").and_then(Value::as_str) {
                call_id = id.to_string();
            }
            args.push_str(c["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"location": "sim-location"})
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(call_id.starts_with("call_sim"));

    let mut next = json!({"model": "gpt", "tools": weather(), "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]});
    next["stream"] = json!(false);
    let body: Value = env.openai(next).await.json().await.unwrap();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("[openai/gpt-5] tool-result={}", digest("sunny"))),
        "{text}"
    );
}

#[tokio::test]
async fn a_cut_responses_stream_ends_abnormally() {
    let env = responses_env().await;
    env.sim.set_knobs(
        Vendor::Openai,
        "gpt-5",
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let mut req = user("gpt", "cut me");
    req["stream"] = json!(true);
    let (sse, broke) = drain(env.openai(req).await).await;
    assert!(broke, "a cut must not end cleanly: {sse}");
    assert!(!sse.contains("[DONE]"));
}

#[tokio::test]
async fn the_responses_api_is_only_for_openai_providers() {
    let env = responses_env().await;
    let table = switchyard::demo::DEMO_ROUTES.replace("{sim}", &env.sim_addr.to_string());
    let bad = table.replace(
        "kind = \"anthropic\"",
        "kind = \"anthropic\"\napi = \"responses\"",
    );
    let err = switchyard::config::load_str("routes.toml", &bad, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("providers.anthropic.api"), "{err}");
}
