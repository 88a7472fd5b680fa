//! OpenAI Chat Completions, as apps send it and as OpenAI and the
//! OpenAI-compatible open-weight servers (vLLM, Ollama, llama.cpp, TGI) serve it.
//!
//! `mod.rs`: requests and whole answers, both directions; `stream.rs`: the
//! SSE encoder and decoder; `error.rs`: error shapes both ways and the
//! vendor-error classification.

mod error;
mod stream;

pub(in crate::dialect) use error::vendor_error;
pub use error::{decode_error, encode_error};
pub use stream::{OpenAiStreamDecoder, OpenAiStreamEncoder};

use crate::clock::unix_now;
use serde_json::{json, Map, Value};

use super::util::{self, new_id, opt_bool, opt_f64, opt_str, opt_u32, stop_list};
use super::{
    taxonomy, ApiError, DialectError, ErrorKind, StreamDecoder, StreamEncoder, StreamFault,
    VendorClass, VendorError,
};
use crate::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Image, Message, Part, Role, StreamEvent,
    ToolCall, ToolChoice, ToolDef, ToolResult, Usage,
};

/// Request fields this module models; everything else is passthrough.
const KNOWN: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
];

/// Differences of an egress server from OpenAI proper. Open-weight servers
/// speak the same format with small gaps, so they are flags, not a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// Send `max_completion_tokens` (OpenAI's current name) instead of
    /// `max_tokens` (what vLLM, Ollama and llama.cpp read).
    pub max_completion_tokens: bool,
    /// Ask for usage in streams with `stream_options.include_usage`.
    pub stream_usage: bool,
    /// Whether `tool_choice: "required"` is understood; else sent as "auto".
    pub tool_choice_required: bool,
}

impl Flavor {
    pub const OPENAI: Flavor = Flavor {
        max_completion_tokens: true,
        stream_usage: true,
        tool_choice_required: true,
    };
}

// ---------------------------------------------------------------- ingress

pub fn decode_request(body: &[u8]) -> Result<ChatRequest, DialectError> {
    let obj = util::parse_object(body)?;
    let model = opt_str(&obj, "model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| DialectError::invalid("`model` is required: name a route", "model"))?
        .to_string();
    let raw_messages = match obj.get("messages") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            return Err(DialectError::invalid(
                "`messages` must not be empty",
                "messages",
            ))
        }
        _ => {
            return Err(DialectError::invalid(
                "`messages` must be an array",
                "messages",
            ))
        }
    };
    let mut system: Vec<String> = Vec::new();
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, raw) in raw_messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = raw
            .as_object()
            .ok_or_else(|| DialectError::invalid(format!("`{path}` must be an object"), &path))?;
        let role = opt_str(m, "role")?.unwrap_or_default();
        match role {
            "system" | "developer" => system.push(text_of(m.get("content"), &path)?),
            "user" => messages.push(Message {
                role: Role::User,
                content: user_parts(m.get("content"), &path)?,
            }),
            "assistant" => messages.push(assistant_message(m, &path)?),
            "tool" => {
                let call_id = opt_str(m, "tool_call_id")?
                    .ok_or_else(|| {
                        DialectError::invalid("a tool message needs `tool_call_id`", format!("{path}.tool_call_id"))
                    })?
                    .to_string();
                messages.push(Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult(ToolResult {
                        call_id,
                        name: opt_str(m, "name")?.map(str::to_owned),
                        content: text_of(m.get("content"), &path)?,
                        is_error: false,
                    })],
                });
            }
            other => {
                return Err(DialectError::invalid(
                    format!("`{path}.role` must be system, developer, user, assistant or tool, not `{other}`"),
                    format!("{path}.role"),
                ))
            }
        }
    }
    let max_tokens = match opt_u32(&obj, "max_completion_tokens")? {
        Some(v) => Some(v),
        None => opt_u32(&obj, "max_tokens")?,
    };
    Ok(ChatRequest {
        model,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        tools: decode_tools(obj.get("tools"))?,
        tool_choice: decode_tool_choice(obj.get("tool_choice"))?,
        max_tokens,
        temperature: opt_f64(&obj, "temperature")?,
        top_p: opt_f64(&obj, "top_p")?,
        stop: stop_list(&obj, "stop")?,
        stream: opt_bool(&obj, "stream")?.unwrap_or(false),
        passthrough: util::passthrough(Dialect::OpenAi, &obj, KNOWN),
    })
}

/// Text of a `content` that is a string or an array of text parts.
fn text_of(content: Option<&Value>, path: &str) -> Result<String, DialectError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match p.get("text").and_then(Value::as_str) {
                    Some(t) => out.push_str(t),
                    None => {
                        return Err(DialectError::invalid(
                            format!("`{path}.content` may only hold text parts here"),
                            format!("{path}.content"),
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(DialectError::invalid(
            format!("`{path}.content` must be a string or an array"),
            format!("{path}.content"),
        )),
    }
}

fn user_parts(content: Option<&Value>, path: &str) -> Result<Vec<Part>, DialectError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(DialectError::invalid(
                format!("`{path}.content` must be a string or an array of parts"),
                format!("{path}.content"),
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}.content[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.push(Part::Text(
                p.get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        DialectError::invalid("a text part needs `text`", format!("{ppath}.text"))
                    })?
                    .to_string(),
            )),
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|u| u.get("url").or(Some(u)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        DialectError::invalid(
                            "an image part needs `image_url.url`",
                            format!("{ppath}.image_url"),
                        )
                    })?;
                out.push(Part::Image(match util::split_data_url(url) {
                    Some((media_type, data)) => Image::Base64 { media_type, data },
                    None => Image::Url(url.to_string()),
                }));
            }
            _ => {
                return Err(DialectError::invalid(
                    "content parts must be of type `text` or `image_url`",
                    format!("{ppath}.type"),
                ))
            }
        }
    }
    Ok(out)
}

fn assistant_message(m: &Map<String, Value>, path: &str) -> Result<Message, DialectError> {
    let mut content = Vec::new();
    let text = text_of(m.get("content"), path)?;
    if !text.is_empty() {
        content.push(Part::Text(text));
    }
    if let Some(calls) = m.get("tool_calls").filter(|v| !v.is_null()) {
        let calls = calls.as_array().ok_or_else(|| {
            DialectError::invalid(
                "`tool_calls` must be an array",
                format!("{path}.tool_calls"),
            )
        })?;
        for (j, c) in calls.iter().enumerate() {
            let f = c.get("function");
            let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
            let (Some(id), Some(name)) = (c.get("id").and_then(Value::as_str), name) else {
                return Err(DialectError::invalid(
                    "a tool call needs `id` and `function.name`",
                    format!("{path}.tool_calls[{j}]"),
                ));
            };
            let arguments = match f.and_then(|f| f.get("arguments")) {
                Some(Value::String(s)) => s.clone(),
                None | Some(Value::Null) => String::new(),
                Some(other) => other.to_string(),
            };
            content.push(Part::ToolCall(ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments,
            }));
        }
    }
    Ok(Message {
        role: Role::Assistant,
        content,
    })
}

fn decode_tools(tools: Option<&Value>) -> Result<Vec<ToolDef>, DialectError> {
    let items = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(DialectError::invalid("`tools` must be an array", "tools")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let f = t
                .get("function")
                .filter(|_| t.get("type").and_then(Value::as_str) == Some("function"));
            let name = f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    DialectError::invalid(
                        "each tool must be `{\"type\":\"function\",\"function\":{\"name\":...}}`",
                        format!("tools[{i}]"),
                    )
                })?;
            Ok(ToolDef {
                name: name.to_string(),
                description: f
                    .and_then(|f| f.get("description"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: f
                    .and_then(|f| f.get("parameters"))
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn decode_tool_choice(v: Option<&Value>) -> Result<Option<ToolChoice>, DialectError> {
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => {
                return Err(DialectError::invalid(
                    "`tool_choice` must be auto, none, required or a function",
                    "tool_choice",
                ))
            }
        }),
        Some(obj) => match obj
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Some(ToolChoice::Tool(name.to_string())),
            None => {
                return Err(DialectError::invalid(
                    "`tool_choice.function.name` is required",
                    "tool_choice",
                ))
            }
        },
    })
}

pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let (text, calls) = split_content(&resp.content);
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let body = json!({
        "id": resp.id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": resp.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_str(resp.finish_reason), "logprobs": null}],
        "usage": usage_json(resp.usage),
    });
    serde_json::to_vec(&body).expect("serialize JSON value")
}

fn split_content(parts: &[Part]) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in parts {
        match p {
            Part::Text(t) => text.push_str(t),
            Part::ToolCall(c) => calls.push(json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })),
            Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    (text, calls)
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

// ----------------------------------------------------------------- egress

pub fn encode_request(req: &ChatRequest, upstream_model: &str, flavor: Flavor) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    for m in &req.messages {
        match m.role {
            Role::User => {
                messages.push(json!({"role": "user", "content": encode_user_content(&m.content)}))
            }
            Role::Assistant => {
                let (text, calls) = split_content(&m.content);
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            Role::Tool => {
                for p in &m.content {
                    if let Part::ToolResult(r) = p {
                        messages.push(json!({"role": "tool", "tool_call_id": r.call_id, "content": r.content}));
                    }
                }
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut f = json!({"name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    f["description"] = d.clone().into();
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required if flavor.tool_choice_required => json!("required"),
            ToolChoice::Required => json!("auto"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), v);
    }
    if let Some(n) = req.max_tokens {
        let key = if flavor.max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), n.into());
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), p.into());
    }
    if !req.stop.is_empty() {
        out.insert("stop".into(), req.stop.clone().into());
    }
    if req.stream {
        out.insert("stream".into(), true.into());
        if flavor.stream_usage {
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    util::merge_passthrough(Dialect::OpenAi, req.passthrough.as_ref(), &mut out);
    Value::Object(out)
}

fn encode_user_content(parts: &[Part]) -> Value {
    if let [Part::Text(t)] = parts {
        return Value::String(t.clone());
    }
    let items = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Image(Image::Base64 { media_type, data }) => Some(json!({
                "type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{data}")},
            })),
            Part::Image(Image::Url(url)) => Some(json!({"type": "image_url", "image_url": {"url": url}})),
            Part::ToolCall(_) | Part::ToolResult(_) => None,
        })
        .collect();
    Value::Array(items)
}

pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DialectError> {
    let obj = util::parse_object(body)?;
    let choice = obj
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| DialectError::invalid("response has no choices", "choices"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| DialectError::invalid("choice has no message", "choices[0].message"))?;
    let assistant = assistant_message(message, "choices[0].message")?;
    let has_calls = assistant
        .content
        .iter()
        .any(|p| matches!(p, Part::ToolCall(_)));
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(decode_finish)
        .unwrap_or(if has_calls {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        });
    Ok(ChatResponse {
        id: opt_str(&obj, "id")?.map_or_else(|| new_id("chatcmpl-"), str::to_owned),
        model: opt_str(&obj, "model")?.unwrap_or_default().to_string(),
        content: assistant.content,
        finish_reason: finish,
        usage: obj.get("usage").map(decode_usage).unwrap_or_default(),
    })
}

fn decode_finish(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn decode_usage(u: &Value) -> Usage {
    Usage {
        input_tokens: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output_tokens: u
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests;
