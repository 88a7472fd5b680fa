//! The simulated Anthropic Messages API (`/anthropic/v1/messages`).
//!
//! Mirrors the real wire format: `x-api-key` + `anthropic-version` required,
//! `max_tokens` required, `{"type":"error","error":{..}}` errors, and the
//! named-event SSE sequence (`message_start` .. `message_stop`).

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::engine::{self, content_text, header_str, history, sse, Ctx, Dialect, Framer, Parsed};
use super::text::{words, Extract, Finish, Output, Plan, ToolDef};
use super::{Simulator, Vendor};

/// `POST /anthropic/v1/messages`.
pub(crate) async fn handle(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (model, parsed) = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => (
            v.get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            parse(&v),
        ),
        Err(e) => (String::new(), Err(format!("invalid JSON body: {e}"))),
    };
    engine::run(&sim, &Anthropic, &headers, &model, parsed).await
}

/// Reads a Messages request, validating the fields Anthropic requires.
fn parse(v: &Value) -> Result<Parsed, String> {
    if !v.is_object() {
        return Err("request body must be a JSON object".into());
    }
    if !v.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required".into());
    }
    let max_tokens = v
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or("max_tokens: Field required")?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut ex = Extract {
        max_tokens: Some(max_tokens),
        temperature: v.get("temperature").and_then(Value::as_f64),
        top_p: v.get("top_p").and_then(Value::as_f64),
        stop: string_list(v.get("stop_sequences")),
        ..Extract::default()
    };
    let system = v.get("system").map(content_text).unwrap_or_default();
    if !system.is_empty() {
        ex.input_tokens += words(&system) + 1;
    }
    for m in messages {
        ex.input_tokens += words(&message_text(m)) + 1;
    }
    ex.history = history(messages.iter().map(|m| {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        (role, content_text(m.get("content").unwrap_or(&Value::Null)))
    }));
    let is_result = |b: &Value| b.get("type").and_then(Value::as_str) == Some("tool_result");
    let user = messages.iter().rev().find(|m| {
        m.get("role").and_then(Value::as_str) == Some("user")
            && match m.get("content") {
                Some(Value::Array(blocks)) => !blocks.iter().all(is_result),
                _ => true,
            }
    });
    if let Some(m) = user {
        let content = m.get("content").unwrap_or(&Value::Null);
        ex.last_user_text = content_text(content);
        ex.images = blocks(content)
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("image"))
            .count();
    }
    if let Some(last) = messages.last() {
        if last.get("role").and_then(Value::as_str) == Some("user") {
            let content = last.get("content").unwrap_or(&Value::Null);
            ex.tool_result = blocks(content)
                .filter(|b| is_result(b))
                .last()
                .map(|b| content_text(b.get("content").unwrap_or(&Value::Null)));
        }
    }
    ex.tool = pick_tool(v);
    Ok(Parsed {
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
        extract: ex,
    })
}

fn blocks(content: &Value) -> impl Iterator<Item = &Value> {
    content.as_array().into_iter().flatten()
}

/// All text of a message, tool results included (for input token counts).
fn message_text(m: &Value) -> String {
    let content = m.get("content").unwrap_or(&Value::Null);
    let mut text = content_text(content);
    for b in blocks(content) {
        if let Some(inner) = b.get("content") {
            text.push(' ');
            text.push_str(&content_text(inner));
        }
    }
    text
}

/// `["a","b"]` (or one string) as a list; anything else is empty.
pub(crate) fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// The tool the model will call, honouring `tool_choice` none / named tool.
fn pick_tool(v: &Value) -> Option<ToolDef> {
    let tools = v.get("tools").and_then(Value::as_array)?;
    let choice = v.get("tool_choice");
    let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str);
    if kind == Some("none") {
        return None;
    }
    let forced = (kind == Some("tool"))
        .then(|| choice.and_then(|c| c.get("name")).and_then(Value::as_str))
        .flatten();
    let tool = match forced {
        Some(name) => tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?,
        None => tools.first()?,
    };
    Some(ToolDef {
        name: tool
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        properties: tool
            .get("input_schema")
            .and_then(|s| s.get("properties"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// Anthropic's wire shapes.
struct Anthropic;

fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn stop_fields(finish: &Finish) -> (&'static str, Value) {
    match finish {
        Finish::EndTurn => ("end_turn", Value::Null),
        Finish::MaxTokens => ("max_tokens", Value::Null),
        Finish::StopSequence(s) => ("stop_sequence", Value::String(s.clone())),
        Finish::ToolUse => ("tool_use", Value::Null),
    }
}

fn message_id(ctx: &Ctx) -> String {
    format!("msg_sim{:016x}", ctx.seq)
}

impl Dialect for Anthropic {
    fn vendor(&self) -> Vendor {
        Vendor::Anthropic
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
        let msg = if header_str(headers, "x-api-key").is_none() {
            "x-api-key header is required"
        } else if header_str(headers, "anthropic-version").is_none() {
            "anthropic-version: header is required"
        } else {
            return Ok(());
        };
        Err((StatusCode::UNAUTHORIZED, error("authentication_error", msg)))
    }

    fn error_body(&self, status: StatusCode, message: Option<&str>) -> Value {
        let (kind, default) = match status.as_u16() {
            400 => ("invalid_request_error", "Invalid request"),
            401 => ("authentication_error", "invalid x-api-key"),
            403 => (
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            404 => ("not_found_error", "Not found"),
            413 => (
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            ),
            429 => (
                "rate_limit_error",
                "Number of requests has exceeded your rate limit.",
            ),
            529 => ("overloaded_error", "Overloaded"),
            _ => ("api_error", "Internal server error"),
        };
        error(kind, message.unwrap_or(default))
    }

    fn not_found(&self, model: &str) -> (StatusCode, Value) {
        let body = error("not_found_error", &format!("model: {model}"));
        (StatusCode::NOT_FOUND, body)
    }

    fn in_band_status(&self) -> StatusCode {
        StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    }

    fn complete(&self, ctx: &Ctx, plan: &Plan) -> Value {
        let content = match &plan.output {
            Output::Text(_) if plan.text().is_empty() => json!([]),
            Output::Text(_) => json!([{"type": "text", "text": plan.text()}]),
            Output::Tool(call) => json!([{
                "type": "tool_use",
                "id": format!("toolu_sim{}", call.id_suffix),
                "name": call.name,
                "input": call.args,
            }]),
        };
        let (reason, seq) = stop_fields(&plan.finish);
        json!({
            "id": message_id(ctx),
            "type": "message",
            "role": "assistant",
            "model": ctx.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": seq,
            "usage": {
                "input_tokens": plan.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": plan.output_tokens,
            },
        })
    }

    fn framer(&self, ctx: Ctx, plan: &Plan, _parsed: &Parsed) -> Box<dyn Framer> {
        Box::new(Frames {
            ctx,
            plan_output: plan.output.clone(),
            finish: plan.finish.clone(),
            input_tokens: plan.input_tokens,
            output_tokens: plan.output_tokens,
        })
    }
}

/// Anthropic's stream: one content block (text or tool_use) at index 0.
struct Frames {
    ctx: Ctx,
    plan_output: Output,
    finish: Finish,
    input_tokens: u64,
    output_tokens: u64,
}

impl Framer for Frames {
    fn start(&mut self) -> Vec<Bytes> {
        let block = match &self.plan_output {
            Output::Text(_) => json!({"type": "text", "text": ""}),
            Output::Tool(call) => json!({
                "type": "tool_use",
                "id": format!("toolu_sim{}", call.id_suffix),
                "name": call.name,
                "input": {},
            }),
        };
        vec![
            sse(
                Some("message_start"),
                &json!({"type": "message_start", "message": {
                    "id": message_id(&self.ctx),
                    "type": "message",
                    "role": "assistant",
                    "model": self.ctx.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
                }}),
            ),
            sse(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0, "content_block": block}),
            ),
            sse(Some("ping"), &json!({"type": "ping"})),
        ]
    }

    fn text(&mut self, piece: &str) -> Vec<Bytes> {
        let delta = json!({"type": "text_delta", "text": piece});
        vec![delta_frame(delta)]
    }

    fn tool(&mut self, _index: usize, piece: &str, _last: bool) -> Vec<Bytes> {
        let delta = json!({"type": "input_json_delta", "partial_json": piece});
        vec![delta_frame(delta)]
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let (reason, seq) = stop_fields(&self.finish);
        vec![
            sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            ),
            sse(
                Some("message_delta"),
                &json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": seq},
                    "usage": {"output_tokens": self.output_tokens},
                }),
            ),
            sse(Some("message_stop"), &json!({"type": "message_stop"})),
        ]
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from_static(b"event: content_block_delta\ndata: {not json\n\n")
    }

    fn in_band_error(&mut self, error: Value) -> Vec<Bytes> {
        vec![sse(Some("error"), &error)]
    }
}

fn delta_frame(delta: Value) -> Bytes {
    sse(
        Some("content_block_delta"),
        &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
    )
}
