//! Canonical → Responses JSON: the response object for the app (ingress)
//! and the request for a Responses backend (egress).

use serde_json::{json, Map, Value};

use super::super::util;
use super::ResponseMeta;
use crate::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Image, Part, Role, ToolChoice, Usage,
};

/// The response object for a complete answer.
pub fn encode_response(resp: &ChatResponse, meta: &ResponseMeta) -> Value {
    let output = output_items(&resp.content, meta);
    response_object(
        meta,
        &resp.model,
        Outcome::Finished(resp.finish_reason),
        output,
        Some(resp.usage),
    )
}

/// How a response ended, for its `status` and detail fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome<'a> {
    InProgress,
    Finished(FinishReason),
    /// The stream broke after it began; the message is free of secrets.
    Failed(&'a str),
}

impl Outcome<'_> {
    /// The stream event that announces this outcome last.
    pub fn event(self) -> &'static str {
        match self {
            Outcome::InProgress => "response.in_progress",
            Outcome::Finished(FinishReason::Length | FinishReason::ContentFilter) => {
                "response.incomplete"
            }
            Outcome::Finished(_) => "response.completed",
            Outcome::Failed(_) => "response.failed",
        }
    }
}

/// A whole response object: identity and echoed request fields from
/// `meta`, then status, output and usage.
pub fn response_object(
    meta: &ResponseMeta,
    model: &str,
    outcome: Outcome<'_>,
    output: Vec<Value>,
    usage: Option<Usage>,
) -> Value {
    let (status, incomplete, error) = match outcome {
        Outcome::InProgress => ("in_progress", Value::Null, Value::Null),
        Outcome::Finished(FinishReason::Length) => (
            "incomplete",
            json!({"reason": "max_output_tokens"}),
            Value::Null,
        ),
        Outcome::Finished(FinishReason::ContentFilter) => (
            "incomplete",
            json!({"reason": "content_filter"}),
            Value::Null,
        ),
        Outcome::Finished(_) => ("completed", Value::Null, Value::Null),
        Outcome::Failed(message) => (
            "failed",
            Value::Null,
            json!({"code": "server_error", "message": message}),
        ),
    };
    let mut obj = Map::new();
    obj.insert("id".into(), json!(meta.id));
    obj.insert("object".into(), json!("response"));
    obj.insert("created_at".into(), json!(meta.created_at));
    obj.insert("status".into(), json!(status));
    obj.insert("error".into(), error);
    obj.insert("incomplete_details".into(), incomplete);
    obj.insert("model".into(), json!(model));
    obj.insert("output".into(), Value::Array(output));
    for (k, v) in &meta.echo {
        obj.insert(k.clone(), v.clone());
    }
    obj.insert("truncation".into(), json!("disabled"));
    obj.insert("usage".into(), usage.map_or(Value::Null, usage_json));
    Value::Object(obj)
}

/// Usage with the `*_details` objects the SDK's types require.
pub(super) fn usage_json(u: Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

/// Answer parts → output items: each run of text is one `message` item
/// with one `output_text` part; each tool call is a `function_call` item.
pub(super) fn output_items(content: &[Part], meta: &ResponseMeta) -> Vec<Value> {
    let mut items = Vec::new();
    let mut text: Option<String> = None;
    for part in content {
        match part {
            Part::Text(t) => text.get_or_insert_with(String::new).push_str(t),
            Part::ToolCall(c) => {
                if let Some(t) = text.take() {
                    items.push(message_item(
                        &meta.item_id("msg", items.len()),
                        &t,
                        "completed",
                    ));
                }
                let id = meta.item_id("fc", items.len());
                items.push(call_item(&id, &c.id, &c.name, &c.arguments, "completed"));
            }
            Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    if let Some(t) = text {
        items.push(message_item(
            &meta.item_id("msg", items.len()),
            &t,
            "completed",
        ));
    }
    items
}

pub(super) fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

pub(super) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id, "type": "message", "status": status, "role": "assistant",
        "content": [text_part(text)],
    })
}

pub(super) fn call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": call_id, "name": name, "arguments": arguments,
    })
}

// ----------------------------------------------------------------- egress

/// The body for a Responses backend. The gateway keeps the conversation
/// itself and sends it whole, so the backend is asked not to store it.
/// Stop sequences have no Responses field and are not sent.
pub fn encode_request(req: &ChatRequest, upstream_model: &str) -> Value {
    let mut input = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        match m.role {
            Role::User => {
                let parts: Vec<Value> = m
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(json!({"type": "input_text", "text": t})),
                        Part::Image(Image::Base64 { media_type, data }) => Some(json!({
                            "type": "input_image", "detail": "auto",
                            "image_url": format!("data:{media_type};base64,{data}"),
                        })),
                        Part::Image(Image::Url(url)) => {
                            Some(json!({"type": "input_image", "detail": "auto", "image_url": url}))
                        }
                        Part::ToolCall(_) | Part::ToolResult(_) => None,
                    })
                    .collect();
                input.push(json!({"type": "message", "role": "user", "content": parts}));
            }
            Role::Assistant => {
                let mut text = String::new();
                for p in &m.content {
                    match p {
                        Part::Text(t) => text.push_str(t),
                        Part::ToolCall(c) => {
                            if !text.is_empty() {
                                input.push(assistant_text(&std::mem::take(&mut text)));
                            }
                            input.push(json!({
                                "type": "function_call", "call_id": c.id,
                                "name": c.name, "arguments": c.arguments,
                            }));
                        }
                        Part::Image(_) | Part::ToolResult(_) => {}
                    }
                }
                if !text.is_empty() {
                    input.push(assistant_text(&text));
                }
            }
            Role::Tool => {
                for p in &m.content {
                    if let Part::ToolResult(r) = p {
                        input.push(json!({"type": "function_call_output", "call_id": r.call_id, "output": r.content}));
                    }
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("input".into(), Value::Array(input));
    if let Some(system) = &req.system {
        out.insert("instructions".into(), system.clone().into());
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"type": "function", "name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = d.clone().into();
                }
                f
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
        };
        out.insert("tool_choice".into(), v);
    }
    if let Some(n) = req.max_tokens {
        out.insert("max_output_tokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), p.into());
    }
    if req.stream {
        out.insert("stream".into(), true.into());
    }
    out.insert("store".into(), false.into());
    util::merge_passthrough(Dialect::Responses, req.passthrough.as_ref(), &mut out);
    Value::Object(out)
}

fn assistant_text(text: &str) -> Value {
    json!({
        "type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}
