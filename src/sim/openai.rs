//! The simulated OpenAI Chat Completions API (`/openai/v1/chat/completions`)
//! and the open-weight, vLLM-like server (`/local/v1/chat/completions`).
//!
//! Both share the request and chunk format. The local server needs no key,
//! sends no `system_fingerprint`, and uses vLLM's error shape (`type` like
//! `NotFoundError`, numeric `code`), so a gateway must not assume every
//! OpenAI-compatible backend errs exactly like OpenAI.

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::anthropic::string_list;
use super::engine::{self, content_text, header_str, sse, Ctx, Dialect, Framer, Parsed};
use super::text::{words, Extract, Finish, Output, Plan, ToolDef};
use super::{Simulator, Vendor};

/// `POST /openai/v1/chat/completions`.
pub(crate) async fn handle_openai(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, Chat { local: false }, &headers, &body).await
}

/// `POST /local/v1/chat/completions`.
pub(crate) async fn handle_local(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&sim, Chat { local: true }, &headers, &body).await
}

async fn handle(sim: &Simulator, chat: Chat, headers: &HeaderMap, body: &[u8]) -> Response {
    let (model, parsed) = match serde_json::from_slice::<Value>(body) {
        Ok(v) => (
            v.get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            parse(&v),
        ),
        Err(e) => (
            String::new(),
            Err(format!(
                "We could not parse the JSON body of your request. ({e})"
            )),
        ),
    };
    engine::run(sim, &chat, headers, &model, parsed).await
}

fn parse(v: &Value) -> Result<Parsed, String> {
    if !v.is_object() {
        return Err("Invalid type for request body: expected an object.".into());
    }
    if !v.get("model").is_some_and(Value::is_string) {
        return Err("you must provide a model parameter".into());
    }
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("Missing required parameter: 'messages'.")?;
    if messages.is_empty() {
        return Err("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into());
    }
    let role = |m: &Value| m.get("role").and_then(Value::as_str).map(String::from);
    let content = |m: &Value| m.get("content").cloned().unwrap_or(Value::Null);
    let mut ex = Extract {
        max_tokens: v
            .get("max_completion_tokens")
            .or_else(|| v.get("max_tokens"))
            .and_then(Value::as_u64),
        temperature: v.get("temperature").and_then(Value::as_f64),
        top_p: v.get("top_p").and_then(Value::as_f64),
        stop: string_list(v.get("stop")),
        input_tokens: messages
            .iter()
            .map(|m| words(&content_text(&content(m))) + 1)
            .sum(),
        ..Extract::default()
    };
    ex.history = engine::history(messages.iter().map(|m| {
        let r = m.get("role").and_then(Value::as_str).unwrap_or_default();
        (r, content_text(&content(m)))
    }));
    if let Some(m) = messages
        .iter()
        .rev()
        .find(|m| role(m).as_deref() == Some("user"))
    {
        let c = content(m);
        ex.last_user_text = content_text(&c);
        ex.images = c
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("image_url") | Some("input_image")
                )
            })
            .count();
    }
    if let Some(last) = messages.last() {
        if role(last).as_deref() == Some("tool") {
            ex.tool_result = Some(content_text(&content(last)));
        }
    }
    ex.tool = pick_tool(v);
    let include_usage = v
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Parsed {
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage,
        extract: ex,
    })
}

/// The tool the model will call, honouring `tool_choice` none / named.
fn pick_tool(v: &Value) -> Option<ToolDef> {
    let tools = v.get("tools").and_then(Value::as_array)?;
    let choice = v.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    let forced = choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let name_of = |t: &Value| {
        t.get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let tool = match forced {
        Some(name) => tools.iter().find(|t| name_of(t).as_deref() == Some(name))?,
        None => tools.first()?,
    };
    Some(ToolDef {
        name: name_of(tool).unwrap_or_default(),
        properties: tool
            .get("function")
            .and_then(|f| f.get("parameters"))
            .and_then(|p| p.get("properties"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// OpenAI's (or, with `local`, vLLM's) wire shapes.
pub(crate) struct Chat {
    local: bool,
}

fn finish_reason(finish: &Finish) -> &'static str {
    match finish {
        Finish::EndTurn | Finish::StopSequence(_) => "stop",
        Finish::MaxTokens => "length",
        Finish::ToolUse => "tool_calls",
    }
}

fn usage(plan: &Plan) -> Value {
    json!({
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.input_tokens + plan.output_tokens,
    })
}

impl Chat {
    /// OpenAI proper, whose auth and errors the Responses API shares.
    pub(crate) const OPENAI: Chat = Chat { local: false };

    fn id(&self, ctx: &Ctx) -> String {
        format!("chatcmpl-sim{:016x}", ctx.seq)
    }

    /// The fields every completion and chunk object starts with.
    fn envelope(&self, ctx: &Ctx, object: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), self.id(ctx).into());
        m.insert("object".into(), object.into());
        m.insert("created".into(), ctx.created.into());
        m.insert("model".into(), ctx.model.clone().into());
        if !self.local {
            m.insert("system_fingerprint".into(), "fp_sim".into());
        }
        m
    }
}

impl Dialect for Chat {
    fn vendor(&self) -> Vendor {
        if self.local {
            Vendor::Local
        } else {
            Vendor::Openai
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
        let key = header_str(headers, "authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if self.local || key.is_some() {
            return Ok(());
        }
        let msg = "You didn't provide an API key. You need to provide your API key in an \
                   Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
        let mut body = self.error_body(StatusCode::UNAUTHORIZED, Some(msg));
        body["error"]["code"] = Value::Null;
        Err((StatusCode::UNAUTHORIZED, body))
    }

    fn error_body(&self, status: StatusCode, message: Option<&str>) -> Value {
        let code = status.as_u16();
        if self.local {
            let kind = match code {
                400 => "BadRequestError",
                401 => "AuthenticationError",
                404 => "NotFoundError",
                429 => "RateLimitError",
                503 => "ServiceUnavailableError",
                _ => "InternalServerError",
            };
            let msg = message.unwrap_or(status.canonical_reason().unwrap_or("Error"));
            return json!({"error": {"message": msg, "type": kind, "param": null, "code": code}});
        }
        let (kind, err_code, default) = match code {
            400 => ("invalid_request_error", Value::Null, "Invalid request."),
            401 => (
                "invalid_request_error",
                json!("invalid_api_key"),
                "Incorrect API key provided.",
            ),
            403 => (
                "invalid_request_error",
                json!("unsupported_country_region_territory"),
                "Country, region, or territory not supported.",
            ),
            404 => (
                "invalid_request_error",
                json!("model_not_found"),
                "The requested resource does not exist.",
            ),
            429 => (
                "rate_limit_exceeded",
                json!("rate_limit_exceeded"),
                "Rate limit reached for requests. Please try again later.",
            ),
            503 => (
                "server_error",
                Value::Null,
                "The server is overloaded or not ready yet.",
            ),
            _ => (
                "server_error",
                Value::Null,
                "The server had an error while processing your request. Sorry about that!",
            ),
        };
        let msg = message.unwrap_or(default);
        json!({"error": {"message": msg, "type": kind, "param": null, "code": err_code}})
    }

    fn not_found(&self, model: &str) -> (StatusCode, Value) {
        let msg = if self.local {
            format!("The model `{model}` does not exist.")
        } else {
            format!("The model `{model}` does not exist or you do not have access to it.")
        };
        (
            StatusCode::NOT_FOUND,
            self.error_body(StatusCode::NOT_FOUND, Some(&msg)),
        )
    }

    fn in_band_status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn complete(&self, ctx: &Ctx, plan: &Plan) -> Value {
        let message = match &plan.output {
            Output::Text(_) => {
                json!({"role": "assistant", "content": plan.text(), "refusal": null})
            }
            Output::Tool(call) => json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "tool_calls": [{
                    "id": format!("call_sim{}", call.id_suffix),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.args.to_string()},
                }],
            }),
        };
        let mut m = self.envelope(ctx, "chat.completion");
        m.insert(
            "choices".into(),
            json!([{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": finish_reason(&plan.finish),
            }]),
        );
        m.insert("usage".into(), usage(plan));
        Value::Object(m)
    }

    fn framer(&self, ctx: Ctx, plan: &Plan, parsed: &Parsed) -> Box<dyn Framer> {
        let mut base = self.envelope(&ctx, "chat.completion.chunk");
        if parsed.include_usage && !self.local {
            base.insert("usage".into(), Value::Null);
        }
        Box::new(Frames {
            base,
            include_usage: parsed.include_usage,
            finish: finish_reason(&plan.finish),
            usage: usage(plan),
            tool: match &plan.output {
                Output::Tool(call) => {
                    Some((format!("call_sim{}", call.id_suffix), call.name.clone()))
                }
                Output::Text(_) => None,
            },
        })
    }
}

/// OpenAI chunk stream: role chunk, deltas, finish chunk, usage, `[DONE]`.
struct Frames {
    base: Map<String, Value>,
    include_usage: bool,
    finish: &'static str,
    usage: Value,
    /// `(id, name)` when the answer is a tool call.
    tool: Option<(String, String)>,
}

impl Frames {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let mut m = self.base.clone();
        m.insert(
            "choices".into(),
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
        );
        sse(None, &Value::Object(m))
    }
}

impl Framer for Frames {
    fn start(&mut self) -> Vec<Bytes> {
        let delta = match self.tool {
            Some(_) => json!({"role": "assistant", "content": null}),
            None => json!({"role": "assistant", "content": ""}),
        };
        vec![self.chunk(delta, None)]
    }

    fn text(&mut self, piece: &str) -> Vec<Bytes> {
        vec![self.chunk(json!({"content": piece}), None)]
    }

    fn tool(&mut self, index: usize, piece: &str, _last: bool) -> Vec<Bytes> {
        let (id, name) = self.tool.clone().unwrap_or_default();
        let mut frames = Vec::new();
        if index == 0 {
            frames.push(self.chunk(
                json!({"tool_calls": [{"index": 0, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
        }
        frames.push(self.chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            None,
        ));
        frames
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let mut frames = vec![self.chunk(json!({}), Some(self.finish))];
        if self.include_usage {
            let mut m = self.base.clone();
            m.insert("choices".into(), json!([]));
            m.insert("usage".into(), self.usage.clone());
            frames.push(sse(None, &Value::Object(m)));
        }
        frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
        frames
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from_static(b"data: {not json\n\n")
    }

    fn in_band_error(&mut self, error: Value) -> Vec<Bytes> {
        vec![sse(None, &error)]
    }
}
