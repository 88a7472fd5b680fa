//! Gemini `generateContent` and `streamGenerateContent?alt=sse` (REST), as
//! the google-genai SDKs send it and as the Gemini API serves it.
//!
//! Mapping choices worth knowing:
//! - The model is in the URL, not the body: `decode_request` takes the route
//!   and the stream flag from the path, `encode_request` leaves them out.
//! - Google's JSON parser takes proto field names (`system_instruction`) as
//!   well as camelCase, and both appear in the wild, so decoding accepts both.
//! - Function calls rarely carry ids. Decoding names them `call_{n}` in
//!   conversation order and links each `functionResponse` to an unanswered
//!   call of the same name (see [`CallLedger`]). Encoding to a backend sends
//!   no ids: Gemini matches responses by name and order.
//! - A function's `response` object is canonical text: `{"content": text}`
//!   (or `{"error": text}` for a failed call) one way, the unwrapped string or
//!   the object's JSON the other way.
//! - Generation settings and tools the canonical model lacks (`topK`,
//!   `responseSchema`, `googleSearch`...) ride in the passthrough under
//!   `generationConfig` and `tools`, and are merged back for a Gemini backend.
//! - Thought parts are dropped, and with them thought signatures, which the
//!   canonical model cannot carry.

use serde_json::{json, Map, Value};

use super::util::{self, new_id};
use super::{taxonomy, ApiError, DialectError, ErrorKind, VendorClass, VendorError};
use crate::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Image, Message, Part, Role, ToolCall,
    ToolChoice, Usage,
};

mod decode;
mod stream;

pub use decode::decode_request;
pub use stream::{GeminiStreamDecoder, GeminiStreamEncoder};

/// A field by its camelCase name or its snake_case proto name; null is absent.
fn field<'a>(obj: &'a Map<String, Value>, camel: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(&snake(camel)))
        .filter(|v| !v.is_null())
}

/// [`field`] on a value that should be an object.
fn get<'a>(v: &'a Value, camel: &str) -> Option<&'a Value> {
    v.as_object().and_then(|o| field(o, camel))
}

fn get_str<'a>(v: &'a Value, camel: &str) -> Option<&'a str> {
    get(v, camel).and_then(Value::as_str)
}

fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> DialectError {
    DialectError::invalid(message, param)
}

/// The `generateContent` response body for an app, whatever backend answered.
pub fn encode_response(resp: &ChatResponse) -> Vec<u8> {
    let parts: Vec<Value> = resp
        .content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(json!({"text": t})),
            // The id lets the app's SDK echo it back in its functionResponse.
            Part::ToolCall(c) => Some(json!({"functionCall": {"id": c.id, "name": c.name, "args": arguments_object(&c.arguments)}})),
            Part::Image(_) | Part::ToolResult(_) => None,
        })
        .collect();
    let body = json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_str(resp.finish_reason),
            "index": 0,
        }],
        "usageMetadata": usage_json(resp.usage),
        "modelVersion": resp.model,
        "responseId": resp.id,
    });
    serde_json::to_vec(&body).expect("serialize JSON value")
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
    }
}

fn usage_json(u: Usage) -> Value {
    json!({
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    })
}

/// Canonical arguments (JSON text) as the object Gemini requires for
/// `args`. Empty text is `{}`; text that is not a JSON object (a call cut
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

/// Status codes and status names as the Gemini API uses them. 502 has no
/// status of its own there; gRPC's HTTP mapping reads it as UNAVAILABLE.
fn error_meta(kind: ErrorKind) -> (u16, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => (400, "INVALID_ARGUMENT"),
        ErrorKind::Authentication => (401, "UNAUTHENTICATED"),
        ErrorKind::Permission => (403, "PERMISSION_DENIED"),
        ErrorKind::NotFound => (404, "NOT_FOUND"),
        ErrorKind::RequestTooLarge => (413, "INVALID_ARGUMENT"),
        ErrorKind::RequestTimeout => (408, "DEADLINE_EXCEEDED"),
        ErrorKind::UnsupportedMediaType => (415, "INVALID_ARGUMENT"),
        ErrorKind::RateLimited => (429, "RESOURCE_EXHAUSTED"),
        ErrorKind::Overloaded => (503, "UNAVAILABLE"),
        ErrorKind::Upstream => (502, "UNAVAILABLE"),
        ErrorKind::Timeout => (504, "DEADLINE_EXCEEDED"),
        ErrorKind::Internal => (500, "INTERNAL"),
    }
}

fn error_body(error: &ApiError) -> Value {
    let (status, name) = error_meta(error.kind);
    json!({"error": {"code": status, "message": error.message, "status": name}})
}

/// Status and body of an error for a Gemini app; google-genai raises
/// ClientError for 4xx and ServerError for 5xx.
pub fn encode_error(error: &ApiError) -> (u16, Vec<u8>) {
    let (status, _) = error_meta(error.kind);
    (
        status,
        serde_json::to_vec(&error_body(error)).expect("serialize JSON value"),
    )
}

// ----------------------------------------------------------------- egress

/// The body for a Gemini backend. The model (and streaming) are named in
/// the URL the provider builds, so `_upstream_model` is not written here; it
/// is taken for the same signature as the other dialects.
pub fn encode_request(req: &ChatRequest, _upstream_model: &str) -> Value {
    let gemini_pass = req
        .passthrough
        .as_ref()
        .filter(|p| p.dialect == Dialect::Gemini);
    let extra = |key: &str| gemini_pass.and_then(|p| p.fields.get(key));
    let mut out = Map::new();
    out.insert("contents".into(), encode_contents(&req.messages));
    if let Some(system) = req.system.as_ref().filter(|s| !s.is_empty()) {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    let mut tools: Vec<Value> = Vec::new();
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                // Full JSON Schema (additionalProperties, $defs...) is only
                // accepted by `parametersJsonSchema`, not by `parameters`.
                let mut d = json!({"name": t.name, "parametersJsonSchema": t.parameters});
                if let Some(desc) = &t.description {
                    d["description"] = desc.clone().into();
                }
                d
            })
            .collect();
        tools.push(json!({"functionDeclarations": decls}));
    }
    tools.extend(
        extra("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = req.tool_choice.as_ref().filter(|_| !req.tools.is_empty()) {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        out.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": config}),
        );
    }
    let mut config = Map::new();
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        config.insert("topP".into(), p.into());
    }
    if let Some(n) = req.max_tokens {
        config.insert("maxOutputTokens".into(), n.into());
    }
    if !req.stop.is_empty() {
        config.insert("stopSequences".into(), req.stop.clone().into());
    }
    for (k, v) in extra("generationConfig")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        config.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    util::merge_passthrough(Dialect::Gemini, req.passthrough.as_ref(), &mut out);
    Value::Object(out)
}

/// Canonical messages as Contents: Tool messages are user turns, and
/// consecutive turns of one role are merged, since Gemini wants all the
/// responses to one model turn's calls in one Content.
fn encode_contents(messages: &[Message]) -> Value {
    let names: Vec<(&str, &str)> = messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some((c.id.as_str(), c.name.as_str())),
            _ => None,
        })
        .collect();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for m in messages {
        let role = if m.role == Role::Assistant {
            "model"
        } else {
            "user"
        };
        let parts: Vec<Value> = m
            .content
            .iter()
            .filter_map(|p| encode_part(p, &names))
            .collect();
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, open)) if *last == role => open.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

fn encode_part(part: &Part, call_names: &[(&str, &str)]) -> Option<Value> {
    Some(match part {
        Part::Text(t) if t.is_empty() => return None,
        Part::Text(t) => json!({"text": t}),
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        Part::Image(Image::Url(url)) => match util::split_data_url(url) {
            Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
            None => {
                let mut file = json!({"fileUri": url});
                if let Some(mime) = image_mime_from_url(url) {
                    file["mimeType"] = mime.into();
                }
                json!({"fileData": file})
            }
        },
        Part::ToolCall(c) => {
            json!({"functionCall": {"name": c.name, "args": arguments_object(&c.arguments)}})
        }
        Part::ToolResult(r) => {
            // Gemini needs the function name; dialects without it carry only
            // the call id, so the name comes from the matching call (or,
            // lacking one, the id itself, which Gemini will refuse loudly).
            let name = r.name.as_deref().unwrap_or_else(|| {
                call_names
                    .iter()
                    .find(|(id, _)| *id == r.call_id)
                    .map_or(r.call_id.as_str(), |(_, n)| n)
            });
            let key = if r.is_error { "error" } else { "content" };
            json!({"functionResponse": {"name": name, "response": {key: r.content}}})
        }
    })
}

/// A file URL's image type from its extension, when it has a known one.
fn image_mime_from_url(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        _ => return None,
    })
}

/// Reads a Gemini backend's non-stream answer (the first candidate).
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DialectError> {
    let obj = util::parse_object(body)?;
    let id = field(&obj, "responseId")
        .and_then(Value::as_str)
        .map_or_else(|| new_id(""), str::to_owned);
    let model = field(&obj, "modelVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let usage = decode_usage(field(&obj, "usageMetadata"));
    let candidate = field(&obj, "candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let Some(candidate) = candidate else {
        if field(&obj, "promptFeedback")
            .and_then(|f| get(f, "blockReason"))
            .is_some()
        {
            return Ok(ChatResponse {
                id,
                model,
                content: Vec::new(),
                finish_reason: FinishReason::ContentFilter,
                usage,
            });
        }
        return Err(invalid("response has no candidates", "candidates"));
    };
    let mut content = Vec::new();
    for p in candidate_parts(candidate) {
        if let Some(part) = response_part(p) {
            content.push(part);
        }
    }
    let has_calls = content.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(ChatResponse {
        id,
        model,
        content,
        finish_reason: decode_finish(get_str(candidate, "finishReason"), has_calls),
        usage,
    })
}

fn candidate_parts(candidate: &Value) -> impl Iterator<Item = &Value> {
    get(candidate, "content")
        .and_then(|c| get(c, "parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Text and function calls of an answer; thoughts and other parts have no
/// canonical form.
fn response_part(p: &Value) -> Option<Part> {
    if get(p, "thought").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    if let Some(text) = get_str(p, "text") {
        return Some(Part::Text(text.to_string()));
    }
    let call = get(p, "functionCall")?;
    Some(Part::ToolCall(ToolCall {
        id: get_str(call, "id").map_or_else(|| new_id("call_"), str::to_owned),
        name: get_str(call, "name").unwrap_or_default().to_string(),
        arguments: get(call, "args").map_or_else(|| "{}".to_string(), Value::to_string),
    }))
}

/// Gemini says STOP after function calls too; canonical says ToolCalls.
fn decode_finish(reason: Option<&str>, has_calls: bool) -> FinishReason {
    match reason {
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY" | "RECITATION" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "IMAGE_SAFETY",
        ) => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// Thinking tokens are billed as output, so they count as output here.
fn decode_usage(u: Option<&Value>) -> Usage {
    let count = |key: &str| {
        u.and_then(|u| get(u, key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Usage {
        input_tokens: count("promptTokenCount"),
        output_tokens: count("candidatesTokenCount") + count("thoughtsTokenCount"),
    }
}

/// `{"error":{"code","message","status"}}` as a vendor error, from an
/// object or (as streaming endpoints answer) an array holding one.
/// Reads a Gemini error (a bare object or the one-element array the
/// streaming endpoint answers) and classifies it from `error.status` and
/// the `google.rpc.ErrorInfo` reason, with `QuotaFailure` telling a daily
/// quota from a per-minute rate limit and `RetryInfo` giving the reset.
fn vendor_error(v: &Value) -> Option<VendorError> {
    let err = v
        .as_array()
        .and_then(|a| a.first())
        .unwrap_or(v)
        .get("error")?;
    if !err.is_object() {
        return None;
    }
    let status = err
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok());
    let name = get_str(err, "status").unwrap_or_default();
    let message = get_str(err, "message")
        .unwrap_or("error without a message")
        .to_string();
    let details: &[Value] = err
        .get("details")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let reason = of_type(details, "google.rpc.ErrorInfo")
        .find_map(|d| get_str(d, "reason"))
        .unwrap_or_default();
    // A quota that runs per day (or is zero) does not come back within a
    // request's life; a per-minute one is an ordinary rate limit.
    let daily_quota = of_type(details, "google.rpc.QuotaFailure")
        .filter_map(|d| d.get("violations").and_then(Value::as_array))
        .flatten()
        .any(|v| get_str(v, "quotaId").is_some_and(|q| q.contains("PerDay")))
        || message.contains("limit: 0,");
    let class = match (reason, name) {
        ("CONSUMER_SUSPENDED", _) => VendorClass::AccountDisabled,
        ("API_KEY_INVALID" | "API_KEY_EXPIRED" | "SERVICE_DISABLED", _) => VendorClass::Credentials,
        ("RATE_LIMIT_EXCEEDED", _) => VendorClass::RateLimited,
        (_, "RESOURCE_EXHAUSTED") if daily_quota => VendorClass::QuotaExhausted,
        (_, "RESOURCE_EXHAUSTED") => VendorClass::RateLimited,
        (_, "PERMISSION_DENIED" | "UNAUTHENTICATED") => {
            match taxonomy::fallback(status, &message) {
                VendorClass::AccountDisabled => VendorClass::AccountDisabled,
                _ => VendorClass::Credentials,
            }
        }
        (_, "NOT_FOUND") => VendorClass::ModelUnavailable,
        (_, "UNAVAILABLE") => VendorClass::Overloaded,
        (_, "INTERNAL" | "DEADLINE_EXCEEDED") => VendorClass::ServerError,
        (_, "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE") => {
            match taxonomy::fallback(Some(400), &message) {
                c @ (VendorClass::ContextLength | VendorClass::QuotaExhausted) => c,
                _ => VendorClass::InvalidRequest,
            }
        }
        // `UNKNOWN` (or no status) says nothing: the HTTP code decides, so a
        // 529 from a proxy in front of Gemini is still an overload.
        _ => taxonomy::fallback(status, &message),
    };
    let mut out = VendorError::new(class, (!name.is_empty()).then(|| name.to_string()), message);
    out.retry_in = of_type(details, "google.rpc.RetryInfo")
        .find_map(|d| get_str(d, "retryDelay"))
        .and_then(taxonomy::parse_reset);
    Some(out)
}

/// The `details` entries of one `google.rpc` type.
fn of_type<'a>(details: &'a [Value], suffix: &'a str) -> impl Iterator<Item = &'a Value> {
    details
        .iter()
        .filter(move |d| get_str(d, "@type").is_some_and(|t| t.ends_with(suffix)))
}

/// Reads a Gemini error body; anything else gives a generic message that
/// does not echo the body.
pub fn decode_error(status: u16, body: &[u8]) -> VendorError {
    util::error_json(body)
        .as_ref()
        .and_then(vendor_error)
        .unwrap_or_else(|| VendorError::opaque(status))
}

#[cfg(test)]
mod tests;
