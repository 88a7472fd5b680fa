//! Anthropic Messages (`POST /v1/messages`), as Anthropic SDK apps send it
//! and as Anthropic serves it.
//!
//! Mapping choices worth knowing:
//! - On the wire, `tool_result` blocks travel in user messages; canonically
//!   they are `Role::Tool` messages. A user message is split into a Tool
//!   message (its results) followed by a User message (the rest), and
//!   encoding merges consecutive messages of the same wire role again,
//!   because Anthropic requires user and assistant turns to alternate.
//! - `thinking` and `redacted_thinking` blocks are dropped: they are the
//!   model's internal state, which no other vendor can take back.
//! - Canonical `input_tokens` include cached prompt tokens (Anthropic counts
//!   cache reads and writes apart from `input_tokens`).

use serde_json::{json, Map, Value};

use super::util::{self, new_id, opt_bool, opt_f64, opt_str, opt_u32, stop_list};
use super::{taxonomy, ApiError, DialectError, ErrorKind, VendorClass, VendorError};
use crate::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Image, Message, Part, Role, ToolCall,
    ToolChoice, ToolDef, ToolResult, Usage,
};

mod stream;

pub use stream::{AnthropicStreamDecoder, AnthropicStreamEncoder};

/// Request fields this module models; everything else is passthrough.
const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "system",
    "messages",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
];

/// Anthropic rejects requests without `max_tokens`; other dialects make it
/// optional, so egress fills in this value when the app set none.
const DEFAULT_MAX_TOKENS: u32 = 4096;

// ---------------------------------------------------------------- ingress

/// Reads an app's Messages request. `max_tokens` is required here as it is
/// by Anthropic, so an app gets the same 400 it would get from the vendor.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, DialectError> {
    let obj = util::parse_object(body)?;
    let model = opt_str(&obj, "model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| DialectError::invalid("`model` is required: name a route", "model"))?
        .to_string();
    let max_tokens = opt_u32(&obj, "max_tokens")?
        .ok_or_else(|| DialectError::invalid("`max_tokens` is required", "max_tokens"))?;
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
    let mut messages = Vec::with_capacity(raw_messages.len());
    for (i, raw) in raw_messages.iter().enumerate() {
        decode_message(raw, &format!("messages[{i}]"), &mut messages)?;
    }
    Ok(ChatRequest {
        model,
        system: decode_system(obj.get("system"))?,
        messages,
        tools: decode_tools(obj.get("tools"))?,
        tool_choice: decode_tool_choice(obj.get("tool_choice"))?,
        max_tokens: Some(max_tokens),
        temperature: opt_f64(&obj, "temperature")?,
        top_p: opt_f64(&obj, "top_p")?,
        stop: stop_list(&obj, "stop_sequences")?,
        stream: opt_bool(&obj, "stream")?.unwrap_or(false),
        passthrough: util::passthrough(Dialect::Anthropic, &obj, KNOWN),
    })
}

/// `system` as a string or an array of text blocks (which may carry
/// `cache_control`, not modelled), joined with blank lines.
fn decode_system(v: Option<&Value>) -> Result<Option<String>, DialectError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match b.get("type").and_then(Value::as_str) {
                Some("text") => str_field(b, "text", &format!("system[{i}]")).map(str::to_owned),
                _ => Err(DialectError::invalid(
                    "`system` blocks must be text blocks",
                    format!("system[{i}].type"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join("\n\n"),
        Some(_) => {
            return Err(DialectError::invalid(
                "`system` must be a string or an array of text blocks",
                "system",
            ))
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

/// Appends one wire message as one or two canonical messages.
fn decode_message(raw: &Value, path: &str, out: &mut Vec<Message>) -> Result<(), DialectError> {
    let m = raw
        .as_object()
        .ok_or_else(|| DialectError::invalid(format!("`{path}` must be an object"), path))?;
    let parts: Vec<Part> = match m.get("content") {
        Some(Value::String(s)) => vec![Part::Text(s.clone())],
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .filter_map(|(j, b)| decode_block(b, &format!("{path}.content[{j}]")).transpose())
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(DialectError::invalid(
                format!("`{path}.content` must be a string or an array of blocks"),
                format!("{path}.content"),
            ))
        }
    };
    match opt_str(m, "role")?.unwrap_or_default() {
        "user" => {
            if parts.iter().any(|p| matches!(p, Part::ToolCall(_))) {
                return Err(DialectError::invalid(
                    "`tool_use` blocks belong in assistant messages",
                    format!("{path}.content"),
                ));
            }
            let (results, rest): (Vec<Part>, Vec<Part>) = parts
                .into_iter()
                .partition(|p| matches!(p, Part::ToolResult(_)));
            let only_results = !results.is_empty() && rest.is_empty();
            if !results.is_empty() {
                out.push(Message {
                    role: Role::Tool,
                    content: results,
                });
            }
            if !only_results {
                out.push(Message {
                    role: Role::User,
                    content: rest,
                });
            }
        }
        "assistant" => {
            if parts
                .iter()
                .any(|p| matches!(p, Part::ToolResult(_) | Part::Image(_)))
            {
                return Err(DialectError::invalid(
                    "assistant messages may hold only text and `tool_use` blocks",
                    format!("{path}.content"),
                ));
            }
            out.push(Message {
                role: Role::Assistant,
                content: parts,
            });
        }
        other => {
            return Err(DialectError::invalid(
                format!("`{path}.role` must be user or assistant, not `{other}`"),
                format!("{path}.role"),
            ))
        }
    }
    Ok(())
}

/// One content block; `None` for blocks deliberately dropped (thinking).
fn decode_block(b: &Value, path: &str) -> Result<Option<Part>, DialectError> {
    let part = match b.get("type").and_then(Value::as_str).unwrap_or_default() {
        "text" => Part::Text(str_field(b, "text", path)?.to_string()),
        "image" => Part::Image(decode_image(b.get("source"), &format!("{path}.source"))?),
        "tool_use" => Part::ToolCall(ToolCall {
            id: str_field(b, "id", path)?.to_string(),
            name: str_field(b, "name", path)?.to_string(),
            arguments: match b.get("input") {
                None | Some(Value::Null) => "{}".to_string(),
                Some(input) => input.to_string(),
            },
        }),
        "tool_result" => Part::ToolResult(ToolResult {
            call_id: str_field(b, "tool_use_id", path)?.to_string(),
            name: None,
            content: tool_result_text(b.get("content"), path)?,
            is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        }),
        "thinking" | "redacted_thinking" => return Ok(None),
        other => {
            return Err(DialectError::invalid(
                format!("content block type `{other}` is not supported"),
                format!("{path}.type"),
            ))
        }
    };
    Ok(Some(part))
}

fn str_field<'a>(b: &'a Value, key: &str, path: &str) -> Result<&'a str, DialectError> {
    b.get(key).and_then(Value::as_str).ok_or_else(|| {
        DialectError::invalid(
            format!("`{path}.{key}` must be a string"),
            format!("{path}.{key}"),
        )
    })
}

fn decode_image(source: Option<&Value>, path: &str) -> Result<Image, DialectError> {
    let source = source.unwrap_or(&Value::Null);
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => Ok(Image::Base64 {
            media_type: str_field(source, "media_type", path)?.to_string(),
            data: str_field(source, "data", path)?.to_string(),
        }),
        Some("url") => Ok(Image::Url(str_field(source, "url", path)?.to_string())),
        _ => Err(DialectError::invalid(
            "an image `source` must be of type `base64` or `url`",
            format!("{path}.type"),
        )),
    }
}

/// A tool result's content: a string or text blocks (joined by newlines).
/// Images inside results are refused: the canonical result is text only.
fn tool_result_text(content: Option<&Value>, path: &str) -> Result<String, DialectError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match b.get("type").and_then(Value::as_str) {
                Some("text") => str_field(b, "text", &format!("{path}.content[{i}]")),
                _ => Err(DialectError::invalid(
                    "only text blocks are supported inside `tool_result`",
                    format!("{path}.content[{i}].type"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        Some(_) => Err(DialectError::invalid(
            "`tool_result.content` must be a string or an array of text blocks",
            format!("{path}.content"),
        )),
    }
}

/// Client tools only: server tools (web search, code execution...) run
/// inside Anthropic and have no canonical equivalent.
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
            let path = format!("tools[{i}]");
            if !matches!(t.get("type").and_then(Value::as_str), None | Some("custom")) {
                return Err(DialectError::invalid(
                    "server tools are not supported; declare client tools with `input_schema`",
                    format!("{path}.type"),
                ));
            }
            Ok(ToolDef {
                name: str_field(t, "name", &path)?.to_string(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn decode_tool_choice(v: Option<&Value>) -> Result<Option<ToolChoice>, DialectError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    Ok(Some(match v.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Auto,
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => ToolChoice::Tool(str_field(v, "name", "tool_choice")?.to_string()),
        _ => {
            return Err(DialectError::invalid(
                "`tool_choice.type` must be auto, any, tool or none",
                "tool_choice.type",
            ))
        }
    }))
}

/// The Messages response body for an app, whatever backend answered.
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let content: Vec<Value> = resp
        .content
        .iter()
        .filter(|p| matches!(p, Part::Text(_) | Part::ToolCall(_)))
        .filter_map(encode_part)
        .collect();
    let body = json!({
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason_str(resp.finish_reason),
        "stop_sequence": null,
        "usage": {"input_tokens": resp.usage.input_tokens, "output_tokens": resp.usage.output_tokens},
    });
    serde_json::to_vec(&body).expect("serialize JSON value")
}

fn stop_reason_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "end_turn",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

fn error_meta(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => (400, "invalid_request_error"),
        ErrorKind::Authentication => (401, "authentication_error"),
        ErrorKind::Permission => (403, "permission_error"),
        ErrorKind::NotFound => (404, "not_found_error"),
        ErrorKind::RequestTooLarge => (413, "request_too_large"),
        ErrorKind::RequestTimeout => (408, "invalid_request_error"),
        ErrorKind::UnsupportedMediaType => (415, "invalid_request_error"),
        ErrorKind::RateLimited => (429, "rate_limit_error"),
        ErrorKind::Overloaded => (529, "overloaded_error"),
        // The SDKs raise InternalServerError for any 5xx.
        ErrorKind::Upstream => (502, "api_error"),
        ErrorKind::Timeout => (504, "api_error"),
        ErrorKind::Internal => (500, "api_error"),
    }
}

fn error_body(error: &ApiError) -> Value {
    let (_, kind) = error_meta(error.kind);
    json!({"type": "error", "error": {"type": kind, "message": error.message}})
}

/// Status and body of an error for an Anthropic app; the SDKs pick their
/// exception class from the status (529 → OverloadedError).
pub fn encode_error(error: &ApiError) -> (u16, Vec<u8>) {
    let (status, _) = error_meta(error.kind);
    (
        status,
        serde_json::to_vec(&error_body(error)).expect("serialize JSON value"),
    )
}

// ----------------------------------------------------------------- egress

/// The Messages body for an Anthropic backend serving `upstream_model`.
pub fn encode_request(req: &ChatRequest, upstream_model: &str) -> Value {
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert(
        "max_tokens".into(),
        req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if let Some(system) = req.system.as_ref().filter(|s| !s.is_empty()) {
        out.insert("system".into(), system.clone().into());
    }
    out.insert("messages".into(), encode_messages(&req.messages));
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let schema = match &t.parameters {
                    Value::Object(_) => t.parameters.clone(),
                    _ => json!({"type": "object", "properties": {}}),
                };
                let mut tool = json!({"name": t.name, "input_schema": schema});
                if let Some(d) = &t.description {
                    tool["description"] = d.clone().into();
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
        // Anthropic refuses `tool_choice` without tools, so it goes only here.
        if let Some(choice) = &req.tool_choice {
            let v = match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
            };
            out.insert("tool_choice".into(), v);
        }
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), p.into());
    }
    if !req.stop.is_empty() {
        out.insert("stop_sequences".into(), req.stop.clone().into());
    }
    if req.stream {
        out.insert("stream".into(), true.into());
    }
    util::merge_passthrough(Dialect::Anthropic, req.passthrough.as_ref(), &mut out);
    Value::Object(out)
}

/// Canonical messages as alternating wire turns: Tool messages become user
/// turns, consecutive turns of one role are merged, and within a user turn
/// the `tool_result` blocks come first, as Anthropic requires.
fn encode_messages(messages: &[Message]) -> Value {
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let role = if m.role == Role::Assistant {
            "assistant"
        } else {
            "user"
        };
        let blocks: Vec<Value> = m.content.iter().filter_map(encode_part).collect();
        if blocks.is_empty() {
            continue; // Anthropic refuses empty turns.
        }
        match turns.last_mut() {
            Some((last, open)) if *last == role => open.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            blocks.sort_by_key(|b| b["type"] != "tool_result");
            json!({"role": role, "content": blocks})
        })
        .collect()
}

/// One canonical part as a content block; `None` for empty text, which
/// Anthropic refuses.
fn encode_part(part: &Part) -> Option<Value> {
    Some(match part {
        Part::Text(t) if t.is_empty() => return None,
        Part::Text(t) => json!({"type": "text", "text": t}),
        Part::Image(image) => {
            let source = match image {
                Image::Base64 { media_type, data } => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                Image::Url(url) => match util::split_data_url(url) {
                    Some((media_type, data)) => {
                        json!({"type": "base64", "media_type": media_type, "data": data})
                    }
                    None => json!({"type": "url", "url": url}),
                },
            };
            json!({"type": "image", "source": source})
        }
        Part::ToolCall(c) => {
            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(&c.arguments)})
        }
        Part::ToolResult(r) => {
            let mut block = json!({"type": "tool_result", "tool_use_id": r.call_id});
            if !r.content.is_empty() {
                block["content"] = r.content.clone().into();
            }
            if r.is_error {
                block["is_error"] = true.into();
            }
            block
        }
    })
}

/// Canonical arguments (JSON text) as the object Anthropic requires for
/// `input`. Empty text is `{}`; text that is not a JSON object (a call cut
/// short by max_tokens, a bare value) is kept verbatim under
/// `raw_arguments`, so the model sees what it sent instead of an emptied call.
fn arguments_object(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"raw_arguments": arguments}),
    }
}

/// Reads an Anthropic backend's non-stream answer.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DialectError> {
    let obj = util::parse_object(body)?;
    let blocks = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| DialectError::invalid("response has no `content` array", "content"))?;
    let mut content = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.iter().enumerate() {
        let path = format!("content[{i}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push(Part::Text(str_field(b, "text", &path)?.to_string())),
            Some("tool_use") => content.push(Part::ToolCall(ToolCall {
                id: str_field(b, "id", &path)?.to_string(),
                name: str_field(b, "name", &path)?.to_string(),
                arguments: b
                    .get("input")
                    .map_or_else(|| "{}".to_string(), Value::to_string),
            })),
            // Thinking and server-tool blocks have no canonical form.
            _ => {}
        }
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    let finish_reason = match opt_str(&obj, "stop_reason")? {
        Some(reason) => decode_stop_reason(reason),
        None if has_calls => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        id: opt_str(&obj, "id")?.map_or_else(|| new_id("msg_"), str::to_owned),
        model: opt_str(&obj, "model")?.unwrap_or_default().to_string(),
        content,
        finish_reason,
        usage: decode_usage(obj.get("usage")),
    })
}

fn decode_stop_reason(s: &str) -> FinishReason {
    match s {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "stop_sequence" => FinishReason::StopSequence,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        // end_turn, pause_turn and reasons added later.
        _ => FinishReason::Stop,
    }
}

/// Usage with cache reads and writes counted as prompt tokens.
fn decode_usage(u: Option<&Value>) -> Usage {
    let count = |key: &str| {
        u.and_then(|u| u.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input_tokens: count("input_tokens")
            + count("cache_creation_input_tokens")
            + count("cache_read_input_tokens"),
        output_tokens: count("output_tokens"),
    }
}

/// Reads `{"type":"error","error":{"type","message"}}`; anything else gives
/// a generic message that does not echo the body.
pub fn decode_error(status: u16, body: &[u8]) -> VendorError {
    let parsed = util::error_json(body);
    match parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object())
    {
        Some(err) => vendor_error(
            Some(status),
            err.get("type").and_then(Value::as_str).unwrap_or_default(),
            err.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| util::opaque_error(status), str::to_owned),
        ),
        None => VendorError::opaque(status),
    }
}

/// Classifies an Anthropic error from its `error.type`; only
/// `invalid_request_error` (which Anthropic uses for a disabled
/// organization, low credit and long prompts alike) needs the message.
pub(crate) fn vendor_error(status: Option<u16>, kind: &str, message: String) -> VendorError {
    let class = match kind {
        "overloaded_error" => VendorClass::Overloaded,
        "rate_limit_error" => VendorClass::RateLimited,
        "authentication_error" => VendorClass::Credentials,
        "permission_error" => VendorClass::ModelBlocked,
        "not_found_error" => VendorClass::ModelUnavailable,
        "billing_error" => VendorClass::QuotaExhausted,
        "api_error" | "timeout_error" => VendorClass::ServerError,
        "request_too_large" => VendorClass::InvalidRequest,
        "invalid_request_error" => match taxonomy::fallback(status.or(Some(400)), &message) {
            c @ (VendorClass::AccountDisabled
            | VendorClass::QuotaExhausted
            | VendorClass::ContextLength) => c,
            _ => VendorClass::InvalidRequest,
        },
        _ => taxonomy::fallback(status, &message),
    };
    VendorError::new(class, (!kind.is_empty()).then(|| kind.to_string()), message)
}

#[cfg(test)]
mod tests;
