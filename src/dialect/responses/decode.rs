//! Responses JSON → canonical: the app's request (ingress) and a
//! Responses backend's answer (egress).

use serde_json::{json, Map, Value};

use super::super::util::{self, new_id, opt_bool, opt_f64, opt_str, opt_u32};
use super::super::DialectError;
use super::ResponsesRequest;
use crate::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Image, Message, Part, Role, ToolCall,
    ToolChoice, ToolDef, ToolResult, Usage,
};

/// Request fields this module models; everything else is passthrough,
/// re-emitted only to a backend that speaks Responses too.
const KNOWN: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "metadata",
    "store",
    "parallel_tool_calls",
    "previous_response_id",
    "stream",
];

pub fn decode_request(body: &[u8]) -> Result<ResponsesRequest, DialectError> {
    let obj = util::parse_object(body)?;
    let model = opt_str(&obj, "model")?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| DialectError::invalid("`model` is required: name a route", "model"))?
        .to_string();
    let mut input_system = Vec::new();
    let messages = match obj.get("input") {
        Some(Value::String(s)) => vec![Message {
            role: Role::User,
            content: vec![Part::Text(s.clone())],
        }],
        Some(Value::Array(items)) if !items.is_empty() => input_items(items, &mut input_system)?,
        _ => {
            return Err(DialectError::invalid(
                "`input` must be a string or a non-empty array of items",
                "input",
            ))
        }
    };
    if let Some(format) = obj.get("text").and_then(|t| t.get("format")) {
        match format.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some(other) => {
                return Err(DialectError::invalid(
                    format!("`text.format` `{other}` is not supported by this gateway: only `text` is carried to every backend"),
                    "text.format",
                ))
            }
            None => return Err(DialectError::invalid("`text.format.type` is required", "text.format")),
        }
    }
    if opt_bool(&obj, "background")? == Some(true) {
        return Err(DialectError::invalid(
            "`background` responses are not supported by this gateway",
            "background",
        ));
    }
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(_) => {
            return Err(DialectError::invalid(
                "`metadata` must be an object",
                "metadata",
            ))
        }
    };
    let instructions = opt_str(&obj, "instructions")?.map(str::to_owned);
    let tools = decode_tools(obj.get("tools"))?;
    let tool_choice = decode_tool_choice(obj.get("tool_choice"))?;
    let max_tokens = opt_u32(&obj, "max_output_tokens")?;
    let temperature = opt_f64(&obj, "temperature")?;
    let top_p = opt_f64(&obj, "top_p")?;
    let store = opt_bool(&obj, "store")?.unwrap_or(true);
    let previous_response_id = opt_str(&obj, "previous_response_id")?.map(str::to_owned);
    let mut echo = Map::new();
    echo.insert("instructions".into(), json!(instructions));
    echo.insert("metadata".into(), metadata);
    echo.insert(
        "tools".into(),
        obj.get("tools")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or_else(|| json!([])),
    );
    echo.insert(
        "tool_choice".into(),
        obj.get("tool_choice")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or_else(|| json!("auto")),
    );
    echo.insert("max_output_tokens".into(), json!(max_tokens));
    echo.insert("temperature".into(), json!(temperature));
    echo.insert("top_p".into(), json!(top_p));
    echo.insert(
        "parallel_tool_calls".into(),
        json!(opt_bool(&obj, "parallel_tool_calls")?.unwrap_or(true)),
    );
    echo.insert("previous_response_id".into(), json!(previous_response_id));
    echo.insert("store".into(), json!(store));
    echo.insert(
        "text".into(),
        obj.get("text")
            .filter(|t| !t.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"format": {"type": "text"}})),
    );
    Ok(ResponsesRequest {
        chat: ChatRequest {
            model,
            system: instructions,
            messages,
            tools,
            tool_choice,
            max_tokens,
            temperature,
            top_p,
            stop: Vec::new(),
            stream: opt_bool(&obj, "stream")?.unwrap_or(false),
            passthrough: util::passthrough(Dialect::Responses, &obj, KNOWN),
        },
        input_system,
        previous_response_id,
        store,
        echo,
    })
}

/// Input items → canonical messages. Function calls join the assistant
/// message before them, as one assistant turn; consecutive call outputs
/// become one tool message.
fn input_items(items: &[Value], system: &mut Vec<String>) -> Result<Vec<Message>, DialectError> {
    let mut out: Vec<Message> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{i}]");
        let obj = item
            .as_object()
            .ok_or_else(|| DialectError::invalid(format!("`{path}` must be an object"), &path))?;
        let kind = match opt_str(obj, "type").map_err(|_| type_error(&path))? {
            Some(k) => k,
            None if obj.contains_key("role") => "message",
            None => return Err(type_error(&path)),
        };
        match kind {
            "message" => {
                let role = opt_str(obj, "role").ok().flatten().unwrap_or_default();
                let content = content_parts(obj.get("content"), &path)?;
                match role {
                    "system" | "developer" => system.push(text_only(&content, &path)?),
                    "user" => out.push(Message { role: Role::User, content }),
                    "assistant" => {
                        if content.iter().any(|p| matches!(p, Part::Image(_))) {
                            return Err(DialectError::invalid(
                                "an assistant message cannot hold images",
                                format!("{path}.content"),
                            ));
                        }
                        out.push(Message { role: Role::Assistant, content })
                    }
                    other => {
                        return Err(DialectError::invalid(
                            format!("`{path}.role` must be user, assistant, system or developer, not `{other}`"),
                            format!("{path}.role"),
                        ))
                    }
                }
            }
            "function_call" => {
                let call = ToolCall {
                    id: required_str(obj, "call_id", &path)?,
                    name: required_str(obj, "name", &path)?,
                    arguments: match obj.get("arguments") {
                        Some(Value::String(s)) => s.clone(),
                        None | Some(Value::Null) => String::new(),
                        Some(other) => other.to_string(),
                    },
                };
                match out.last_mut() {
                    Some(m) if m.role == Role::Assistant => m.content.push(Part::ToolCall(call)),
                    _ => out.push(Message {
                        role: Role::Assistant,
                        content: vec![Part::ToolCall(call)],
                    }),
                }
            }
            "function_call_output" => {
                let call_id = required_str(obj, "call_id", &path)?;
                let content = match obj.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(_)) => {
                        text_only(&content_parts(obj.get("output"), &path)?, &path)?
                    }
                    _ => {
                        return Err(DialectError::invalid(
                            "a function_call_output needs `output` (a string)",
                            format!("{path}.output"),
                        ))
                    }
                };
                let name = out
                    .iter()
                    .flat_map(|m| &m.content)
                    .find_map(|p| match p {
                        Part::ToolCall(c) if c.id == call_id => Some(c.name.clone()),
                        _ => None,
                    });
                let result = Part::ToolResult(ToolResult {
                    call_id,
                    name,
                    content,
                    is_error: false,
                });
                match out.last_mut() {
                    Some(m) if m.role == Role::Tool => m.content.push(result),
                    _ => out.push(Message {
                        role: Role::Tool,
                        content: vec![result],
                    }),
                }
            }
            // Reasoning is the backend's own state; another backend cannot use it.
            "reasoning" => {}
            other => {
                return Err(DialectError::invalid(
                    format!("input items of type `{other}` are not supported by this gateway (message, function_call, function_call_output are)"),
                    format!("{path}.type"),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(DialectError::invalid(
            "`input` holds no user, assistant or tool item",
            "input",
        ));
    }
    Ok(out)
}

fn type_error(path: &str) -> DialectError {
    DialectError::invalid(
        format!("`{path}.type` must be message, function_call or function_call_output"),
        format!("{path}.type"),
    )
}

fn required_str(obj: &Map<String, Value>, key: &str, path: &str) -> Result<String, DialectError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(DialectError::invalid(
            format!("`{path}.{key}` is required (a string)"),
            format!("{path}.{key}"),
        )),
    }
}

/// Content given as a string or as an array of `input_text`,
/// `output_text`, `refusal` and `input_image` parts.
fn content_parts(content: Option<&Value>, path: &str) -> Result<Vec<Part>, DialectError> {
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
        let field = |key: &str| p.get(key).and_then(Value::as_str);
        match field("type") {
            Some("input_text") | Some("output_text") => out.push(Part::Text(
                field("text")
                    .ok_or_else(|| {
                        DialectError::invalid("a text part needs `text`", format!("{ppath}.text"))
                    })?
                    .to_string(),
            )),
            Some("refusal") => {
                out.push(Part::Text(field("refusal").unwrap_or_default().to_string()))
            }
            Some("input_image") => {
                let url = field("image_url").ok_or_else(|| {
                    DialectError::invalid(
                        "an input_image needs `image_url` (a URL or a data: URL); file ids are not supported",
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
                    "content parts must be input_text, output_text, refusal or input_image",
                    format!("{ppath}.type"),
                ))
            }
        }
    }
    Ok(out)
}

fn text_only(parts: &[Part], path: &str) -> Result<String, DialectError> {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            _ => {
                return Err(DialectError::invalid(
                    format!("`{path}` may only hold text here"),
                    path.to_string(),
                ))
            }
        }
    }
    Ok(out)
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
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(DialectError::invalid(
                    "only function tools are supported by this gateway (built-in tools need the vendor's own state)",
                    format!("tools[{i}].type"),
                ));
            }
            let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                DialectError::invalid("a function tool needs `name`", format!("tools[{i}].name"))
            })?;
            Ok(ToolDef {
                name: name.to_string(),
                description: t.get("description").and_then(Value::as_str).map(str::to_owned),
                parameters: t
                    .get("parameters")
                    .filter(|p| !p.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            })
        })
        .collect()
}

fn decode_tool_choice(v: Option<&Value>) -> Result<Option<ToolChoice>, DialectError> {
    let bad = || {
        DialectError::invalid(
            "`tool_choice` must be auto, none, required or {\"type\":\"function\",\"name\":...}",
            "tool_choice",
        )
    };
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        }),
        Some(obj) => match (
            obj.get("type").and_then(Value::as_str),
            obj.get("name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => Some(ToolChoice::Tool(name.to_string())),
            _ => return Err(bad()),
        },
    })
}

// ----------------------------------------------------------------- egress

/// A Responses backend's response object → canonical answer. Reasoning
/// items are dropped: no other dialect can carry them.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DialectError> {
    let obj = util::parse_object(body)?;
    let output = obj
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| DialectError::invalid("response has no output", "output"))?;
    let mut content = Vec::new();
    for item in output {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let parts = item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                let mut text = String::new();
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("output_text") => {
                            text.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default())
                        }
                        Some("refusal") => text
                            .push_str(p.get("refusal").and_then(Value::as_str).unwrap_or_default()),
                        _ => {}
                    }
                }
                if !text.is_empty() {
                    content.push(Part::Text(text));
                }
            }
            Some("function_call") => {
                let field = |k: &str| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                content.push(Part::ToolCall(ToolCall {
                    id: field("call_id"),
                    name: field("name"),
                    arguments: field("arguments"),
                }));
            }
            _ => {}
        }
    }
    Ok(ChatResponse {
        id: opt_str(&obj, "id")?.map_or_else(|| new_id("resp_"), str::to_owned),
        model: opt_str(&obj, "model")?.unwrap_or_default().to_string(),
        finish_reason: finish_of(&obj, content.iter().any(|p| matches!(p, Part::ToolCall(_)))),
        usage: obj.get("usage").map(decode_usage).unwrap_or_default(),
        content,
    })
}

/// The finish reason a response object implies.
pub(super) fn finish_of(obj: &Map<String, Value>, has_calls: bool) -> FinishReason {
    let reason = obj
        .get("incomplete_details")
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    match reason {
        Some("max_output_tokens") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

pub(super) fn decode_usage(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
    }
}
