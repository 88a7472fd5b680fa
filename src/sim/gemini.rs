//! The simulated Gemini API:
//! `/gemini/{v1beta|v1}/models/{model}:generateContent` and
//! `:streamGenerateContent` (SSE with `?alt=sse`, else a streamed JSON array,
//! as the real API does).
//!
//! Accepts both the camelCase and snake_case field spellings the real API
//! accepts. A `functionResponse`'s text is its `response.content` /
//! `response.result` / `response.output` string, or the response's only
//! string field, else the compact JSON of `response`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::anthropic::string_list;
use super::engine::{self, header_str, sse, Ctx, Dialect, Framer, Parsed};
use super::text::{words, Extract, Finish, Output, Plan, ToolDef};
use super::{Simulator, Vendor};

/// `POST /gemini/{version}/models/{model}:{method}`.
pub(crate) async fn handle(
    State(sim): State<Simulator>,
    Path((version, call)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (mut key, mut alt_sse) = (false, false);
    for pair in query.as_deref().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("key", k)) => key |= !k.is_empty(),
            Some(("alt", a)) => alt_sse = a == "sse",
            _ => {}
        }
    }
    let (model, method) = call.rsplit_once(':').unwrap_or((call.as_str(), ""));
    let gemini = Gemini {
        version: version.clone(),
        key_in_query: key,
        sse: alt_sse,
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return bad_path(&gemini, &call),
    };
    if version != "v1beta" && version != "v1" {
        return bad_path(&gemini, &call);
    }
    let parsed = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => parse(&v).map(|mut p| {
            p.stream = stream;
            p
        }),
        Err(e) => Err(format!("Invalid JSON payload received. {e}")),
    };
    engine::run(&sim, &gemini, &headers, model, parsed).await
}

fn bad_path(gemini: &Gemini, call: &str) -> Response {
    let msg = format!("Method not found: models/{call}");
    let status = StatusCode::NOT_FOUND;
    engine::json(status, &gemini.error_body(status, Some(&msg)))
}

/// `v[camel]`, else `v[snake]`.
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parts(content: &Value) -> impl Iterator<Item = &Value> {
    content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn parts_text(content: &Value) -> String {
    parts(content)
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

fn function_response(part: &Value) -> Option<&Value> {
    field(part, "functionResponse", "function_response")
}

/// The text a tool result carries (see the module doc).
fn response_text(fr: &Value) -> String {
    let resp = fr.get("response").unwrap_or(&Value::Null);
    if let Value::String(s) = resp {
        return s.clone();
    }
    for k in ["content", "result", "output"] {
        if let Some(s) = resp.get(k).and_then(Value::as_str) {
            return s.to_string();
        }
    }
    match resp.as_object() {
        Some(o) if o.len() == 1 => match o.values().next() {
            Some(Value::String(s)) => s.clone(),
            _ => resp.to_string(),
        },
        _ => resp.to_string(),
    }
}

fn parse(v: &Value) -> Result<Parsed, String> {
    let contents = v
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified\n")?;
    let config = field(v, "generationConfig", "generation_config").unwrap_or(&Value::Null);
    let num = |camel: &str, snake: &str| field(config, camel, snake).and_then(Value::as_f64);
    let mut ex = Extract {
        max_tokens: field(config, "maxOutputTokens", "max_output_tokens").and_then(Value::as_u64),
        temperature: num("temperature", "temperature"),
        top_p: num("topP", "top_p"),
        stop: string_list(field(config, "stopSequences", "stop_sequences")),
        ..Extract::default()
    };
    if let Some(sys) = field(v, "systemInstruction", "system_instruction") {
        let text = parts_text(sys);
        if !text.is_empty() {
            ex.input_tokens += words(&text) + 1;
        }
    }
    for c in contents {
        let results: Vec<String> = parts(c)
            .filter_map(function_response)
            .map(response_text)
            .collect();
        ex.input_tokens += words(&parts_text(c)) + words(&results.join(" ")) + 1;
    }
    ex.history = super::engine::history(contents.iter().map(|c| {
        let role = c.get("role").and_then(Value::as_str).unwrap_or("user");
        (role, parts_text(c))
    }));
    let is_user = |c: &Value| matches!(c.get("role").and_then(Value::as_str), Some("user") | None);
    let user = contents
        .iter()
        .rev()
        .find(|c| is_user(c) && !parts(c).all(|p| function_response(p).is_some()));
    if let Some(c) = user {
        ex.last_user_text = parts_text(c);
        ex.images = parts(c)
            .filter(|p| {
                ["inlineData", "inline_data", "fileData", "file_data"]
                    .iter()
                    .any(|k| p.get(*k).is_some())
            })
            .count();
    }
    if let Some(last) = contents.last() {
        ex.tool_result = parts(last)
            .filter_map(function_response)
            .last()
            .map(response_text);
    }
    ex.tool = pick_tool(v);
    Ok(Parsed {
        stream: false,
        include_usage: true,
        extract: ex,
    })
}

/// The function the model will call, honouring `toolConfig` NONE / allowed.
fn pick_tool(v: &Value) -> Option<ToolDef> {
    let decls: Vec<&Value> = v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .collect();
    let fcc = field(v, "toolConfig", "tool_config")
        .and_then(|t| field(t, "functionCallingConfig", "function_calling_config"));
    let mode = fcc.and_then(|f| f.get("mode")).and_then(Value::as_str);
    if mode == Some("NONE") {
        return None;
    }
    let forced = fcc
        .and_then(|f| field(f, "allowedFunctionNames", "allowed_function_names"))
        .and_then(|a| a.get(0))
        .and_then(Value::as_str);
    let name_of = |d: &Value| d.get("name").and_then(Value::as_str).map(String::from);
    let decl = match forced {
        Some(name) => *decls.iter().find(|d| name_of(d).as_deref() == Some(name))?,
        None => *decls.first()?,
    };
    let schema = decl
        .get("parameters")
        .or_else(|| field(decl, "parametersJsonSchema", "parameters_json_schema"));
    Some(ToolDef {
        name: name_of(decl).unwrap_or_default(),
        properties: schema
            .and_then(|s| s.get("properties"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// Gemini's wire shapes for one request (auth and stream mode vary by URL).
struct Gemini {
    version: String,
    key_in_query: bool,
    sse: bool,
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::MaxTokens => "MAX_TOKENS",
        _ => "STOP",
    }
}

fn usage(plan: &Plan) -> Value {
    json!({
        "promptTokenCount": plan.input_tokens,
        "candidatesTokenCount": plan.output_tokens,
        "totalTokenCount": plan.input_tokens + plan.output_tokens,
    })
}

fn response(ctx: &Ctx, parts: Value, finish: Option<&str>, usage: Value) -> Value {
    let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        cand["finishReason"] = json!(f);
    }
    json!({
        "candidates": [cand],
        "usageMetadata": usage,
        "modelVersion": ctx.model,
        "responseId": format!("sim{:016x}", ctx.seq),
    })
}

fn call_part(output: &Output) -> Option<Value> {
    match output {
        Output::Tool(call) => Some(json!({"functionCall": {"name": call.name, "args": call.args}})),
        Output::Text(_) => None,
    }
}

impl Dialect for Gemini {
    fn vendor(&self) -> Vendor {
        Vendor::Gemini
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
        if self.key_in_query || header_str(headers, "x-goog-api-key").is_some() {
            return Ok(());
        }
        let msg = "Method doesn't allow unregistered callers (callers without established \
                   identity). Please use API Key or other form of API consumer identity to call \
                   this API.";
        let status = StatusCode::FORBIDDEN;
        Err((status, self.error_body(status, Some(msg))))
    }

    fn error_body(&self, status: StatusCode, message: Option<&str>) -> Value {
        let code = status.as_u16();
        let default = match code {
            400 => "Request contains an invalid argument.",
            403 => "The caller does not have permission",
            404 => "Requested entity was not found.",
            429 => "Resource has been exhausted (e.g. check quota).",
            500 => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            503 => "The model is overloaded. Please try again later.",
            504 => "Deadline expired before operation could complete.",
            _ => status.canonical_reason().unwrap_or("Unknown error"),
        };
        let msg = message.unwrap_or(default);
        json!({"error": {"code": code, "message": msg, "status": status_name(code)}})
    }

    fn not_found(&self, model: &str) -> (StatusCode, Value) {
        let msg = format!(
            "models/{model} is not found for API version {}, or is not supported for generateContent.",
            self.version
        );
        let status = StatusCode::NOT_FOUND;
        (status, self.error_body(status, Some(&msg)))
    }

    fn in_band_status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn complete(&self, ctx: &Ctx, plan: &Plan) -> Value {
        let parts = match call_part(&plan.output) {
            Some(part) => json!([part]),
            None => json!([{"text": plan.text()}]),
        };
        response(ctx, parts, Some(finish_reason(&plan.finish)), usage(plan))
    }

    fn framer(&self, ctx: Ctx, plan: &Plan, _parsed: &Parsed) -> Box<dyn Framer> {
        Box::new(Frames {
            ctx,
            sse: self.sse,
            opened: false,
            call: call_part(&plan.output),
            finish: finish_reason(&plan.finish),
            usage: usage(plan),
            prompt: plan.input_tokens,
        })
    }

    fn stream_type(&self) -> &'static str {
        if self.sse {
            "text/event-stream"
        } else {
            "application/json; charset=UTF-8"
        }
    }
}

/// Gemini stream: one partial response per text piece; a function call is
/// sent whole in the final response, as Gemini does.
struct Frames {
    ctx: Ctx,
    sse: bool,
    /// JSON-array mode: whether `[` was sent.
    opened: bool,
    call: Option<Value>,
    finish: &'static str,
    usage: Value,
    prompt: u64,
}

impl Frames {
    fn frame(&mut self, v: &Value) -> Bytes {
        if self.sse {
            return sse(None, v);
        }
        let sep = if self.opened { ",\r\n" } else { "[" };
        self.opened = true;
        Bytes::from(format!("{sep}{v}"))
    }
}

impl Framer for Frames {
    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }

    fn text(&mut self, piece: &str) -> Vec<Bytes> {
        let usage = json!({"promptTokenCount": self.prompt, "totalTokenCount": self.prompt});
        let v = response(&self.ctx, json!([{"text": piece}]), None, usage);
        vec![self.frame(&v)]
    }

    fn tool(&mut self, _index: usize, _piece: &str, _last: bool) -> Vec<Bytes> {
        Vec::new()
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let part = self.call.clone().unwrap_or_else(|| json!({"text": ""}));
        let v = response(
            &self.ctx,
            json!([part]),
            Some(self.finish),
            self.usage.clone(),
        );
        let mut frames = vec![self.frame(&v)];
        if !self.sse {
            frames.push(Bytes::from_static(b"]"));
        }
        frames
    }

    fn malformed(&mut self) -> Bytes {
        if self.sse {
            Bytes::from_static(b"data: {not json\n\n")
        } else {
            Bytes::from_static(b",\r\n{not json")
        }
    }

    fn in_band_error(&mut self, error: Value) -> Vec<Bytes> {
        let mut frames = vec![self.frame(&error)];
        if !self.sse {
            frames.push(Bytes::from_static(b"]"));
        }
        frames
    }
}
