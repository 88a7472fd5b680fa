//! The simulated OpenAI Responses API (`/openai/v1/responses`): OpenAI's
//! auth and error shapes, Responses input items, response objects and the
//! typed event stream (`response.created` … `response.completed`).

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::engine::{self, history, sse, Ctx, Dialect, Framer, Parsed};
use super::openai::Chat;
use super::text::{words, Extract, Finish, Output, Plan, ToolDef};
use super::{Simulator, Vendor};

/// `POST /openai/v1/responses`.
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
        Err(e) => (
            String::new(),
            Err(format!(
                "We could not parse the JSON body of your request. ({e})"
            )),
        ),
    };
    engine::run(&sim, &Api, &headers, &model, parsed).await
}

/// Text of a content that is a string or an array of text parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("input_text" | "output_text")
                )
            })
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

fn parse(v: &Value) -> Result<Parsed, String> {
    if !v.get("model").is_some_and(Value::is_string) {
        return Err("Missing required parameter: 'model'.".into());
    }
    let items: Vec<Value> = match v.get("input") {
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        _ => return Err("Missing required parameter: 'input'.".into()),
    };
    let str_of = |item: &Value, k: &str| item.get(k).and_then(Value::as_str).map(String::from);
    let mut ex = Extract {
        max_tokens: v.get("max_output_tokens").and_then(Value::as_u64),
        temperature: v.get("temperature").and_then(Value::as_f64),
        top_p: v.get("top_p").and_then(Value::as_f64),
        ..Extract::default()
    };
    if let Some(i) = v.get("instructions").and_then(Value::as_str) {
        ex.input_tokens += words(i) + 1;
    }
    let is_message = |item: &Value| {
        item.get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
            == "message"
    };
    for item in &items {
        let text = match item.get("type").and_then(Value::as_str) {
            Some("function_call_output") => str_of(item, "output").unwrap_or_default(),
            Some("function_call") => str_of(item, "arguments").unwrap_or_default(),
            _ => text_of(item.get("content").unwrap_or(&Value::Null)),
        };
        ex.input_tokens += words(&text) + 1;
    }
    ex.history = history(items.iter().filter(|i| is_message(i)).map(|i| {
        let role = i.get("role").and_then(Value::as_str).unwrap_or_default();
        (role, text_of(i.get("content").unwrap_or(&Value::Null)))
    }));
    if let Some(user) = items
        .iter()
        .rev()
        .find(|i| is_message(i) && i.get("role").and_then(Value::as_str) == Some("user"))
    {
        let content = user.get("content").unwrap_or(&Value::Null);
        ex.last_user_text = text_of(content);
        ex.images = content
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("input_image"))
            .count();
    }
    if let Some(last) = items.last() {
        if last.get("type").and_then(Value::as_str) == Some("function_call_output") {
            ex.tool_result = Some(str_of(last, "output").unwrap_or_default());
        }
    }
    ex.tool = pick_tool(v);
    Ok(Parsed {
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
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
    let forced = choice.and_then(|c| c.get("name")).and_then(Value::as_str);
    let name_of = |t: &Value| t.get("name").and_then(Value::as_str).map(String::from);
    let tool = match forced {
        Some(name) => tools.iter().find(|t| name_of(t).as_deref() == Some(name))?,
        None => tools.first()?,
    };
    Some(ToolDef {
        name: name_of(tool).unwrap_or_default(),
        properties: tool
            .get("parameters")
            .and_then(|p| p.get("properties"))
            .cloned()
            .unwrap_or(Value::Null),
    })
}

/// OpenAI Responses wire shapes; auth and errors are OpenAI's.
struct Api;

fn ids(ctx: &Ctx) -> (String, String, String) {
    (
        format!("resp_sim{:016x}", ctx.seq),
        format!("msg_sim{:016x}", ctx.seq),
        format!("fc_sim{:016x}", ctx.seq),
    )
}

/// The response object; `output` and `status` as given.
fn object(ctx: &Ctx, plan: &Plan, status: &str, output: Value) -> Value {
    let incomplete = match (&plan.finish, status) {
        (Finish::MaxTokens, "incomplete") => json!({"reason": "max_output_tokens"}),
        _ => Value::Null,
    };
    json!({
        "id": ids(ctx).0, "object": "response", "created_at": ctx.created,
        "status": status, "error": null, "incomplete_details": incomplete,
        "model": ctx.model, "output": output,
        "usage": if status == "in_progress" { Value::Null } else { json!({
            "input_tokens": plan.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": plan.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": plan.input_tokens + plan.output_tokens,
        })},
    })
}

fn final_status(plan: &Plan) -> &'static str {
    match plan.finish {
        Finish::MaxTokens => "incomplete",
        _ => "completed",
    }
}

/// The one output item of an answer, at `status`, with `text` / arguments.
fn item(ctx: &Ctx, plan: &Plan, status: &str, content: &str) -> Value {
    let (_, msg, fc) = ids(ctx);
    match &plan.output {
        Output::Text(_) => json!({
            "id": msg, "type": "message", "status": status, "role": "assistant",
            "content": if status == "in_progress" { json!([]) } else {
                json!([{"type": "output_text", "text": content, "annotations": []}])
            },
        }),
        Output::Tool(call) => json!({
            "id": fc, "type": "function_call", "status": status,
            "call_id": format!("call_sim{}", call.id_suffix), "name": call.name,
            "arguments": content,
        }),
    }
}

impl Dialect for Api {
    fn vendor(&self) -> Vendor {
        Vendor::Openai
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
        Chat::OPENAI.authorize(headers)
    }

    fn error_body(&self, status: StatusCode, message: Option<&str>) -> Value {
        Chat::OPENAI.error_body(status, message)
    }

    fn not_found(&self, model: &str) -> (StatusCode, Value) {
        Chat::OPENAI.not_found(model)
    }

    fn in_band_status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn complete(&self, ctx: &Ctx, plan: &Plan) -> Value {
        let content = match &plan.output {
            Output::Text(_) => plan.text(),
            Output::Tool(call) => call.args.to_string(),
        };
        let output = json!([item(ctx, plan, "completed", &content)]);
        object(ctx, plan, final_status(plan), output)
    }

    fn framer(&self, ctx: Ctx, plan: &Plan, _parsed: &Parsed) -> Box<dyn Framer> {
        Box::new(Events {
            done: self.complete(&ctx, plan),
            ctx,
            plan: plan.clone(),
            seq: 0,
            acc: String::new(),
        })
    }
}

/// The Responses event stream of one answer.
struct Events {
    ctx: Ctx,
    plan: Plan,
    /// The final response object, sent with `response.completed`.
    done: Value,
    seq: u64,
    /// Text or arguments sent so far.
    acc: String,
}

impl Events {
    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        sse(Some(kind), &data)
    }

    fn item_id(&self) -> String {
        let (_, msg, fc) = ids(&self.ctx);
        match self.plan.output {
            Output::Text(_) => msg,
            Output::Tool(_) => fc,
        }
    }
}

impl Framer for Events {
    fn start(&mut self) -> Vec<Bytes> {
        let pending = object(&self.ctx, &self.plan, "in_progress", json!([]));
        let added = item(&self.ctx, &self.plan, "in_progress", "");
        let mut frames = vec![
            self.event("response.created", json!({"response": pending.clone()})),
            self.event("response.in_progress", json!({"response": pending})),
            self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": added}),
            ),
        ];
        if matches!(self.plan.output, Output::Text(_)) {
            let id = self.item_id();
            frames.push(self.event(
                "response.content_part.added",
                json!({"item_id": id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
            ));
        }
        frames
    }

    fn text(&mut self, piece: &str) -> Vec<Bytes> {
        self.acc.push_str(piece);
        let id = self.item_id();
        vec![self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        )]
    }

    fn tool(&mut self, _index: usize, piece: &str, last: bool) -> Vec<Bytes> {
        self.acc.push_str(piece);
        let id = self.item_id();
        let mut frames = vec![self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": id, "output_index": 0, "delta": piece}),
        )];
        if last {
            let args = self.acc.clone();
            frames.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": 0, "arguments": args}),
            ));
        }
        frames
    }

    fn finish(&mut self) -> Vec<Bytes> {
        let id = self.item_id();
        let text = self.acc.clone();
        let mut frames = Vec::new();
        if matches!(self.plan.output, Output::Text(_)) {
            let at = json!({"item_id": id, "output_index": 0, "content_index": 0});
            let mut done = at.clone();
            done["text"] = json!(text);
            frames.push(self.event("response.output_text.done", done));
            let mut part = at;
            part["part"] = json!({"type": "output_text", "text": text, "annotations": []});
            frames.push(self.event("response.content_part.done", part));
        }
        let item = self.done["output"][0].clone();
        frames.push(self.event(
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ));
        let kind = match final_status(&self.plan) {
            "incomplete" => "response.incomplete",
            _ => "response.completed",
        };
        let done = self.done.clone();
        frames.push(self.event(kind, json!({"response": done})));
        frames
    }

    fn malformed(&mut self) -> Bytes {
        Bytes::from_static(b"event: response.output_text.delta\ndata: {not json\n\n")
    }

    fn in_band_error(&mut self, error: Value) -> Vec<Bytes> {
        let e = &error["error"];
        let data = json!({"code": e["code"].as_str().or(e["type"].as_str()), "message": e["message"], "param": null});
        vec![self.event("error", data)]
    }
}
