//! Responses SSE: the event sequence the SDK's `responses.stream` helper
//! checks (ingress), and reading a Responses backend's stream (egress).
//!
//! Ingress order: `response.created`, `response.in_progress`, then per
//! output item `response.output_item.added`, (for a message)
//! `response.content_part.added`, deltas, `response.output_text.done`,
//! `response.content_part.done`, (for a call) deltas and
//! `response.function_call_arguments.done`, then
//! `response.output_item.done`; last `response.completed` (or
//! `response.incomplete`). A break ends with `response.failed` and an
//! `error` event. Every event carries a growing `sequence_number`.

use serde_json::{json, Value};

use super::super::{ApiError, StreamDecoder, StreamEncoder, StreamFault};
use super::encode::{call_item, message_item, response_object, text_part, Outcome};
use super::ResponseMeta;
use crate::model::{FinishReason, Part, StreamEvent, ToolCall, Usage};

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        /// The upstream's tool call index.
        index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Writes Responses stream events and keeps the finished output, so the
/// caller can store the turn once the stream completed.
#[derive(Default)]
pub struct ResponsesStreamEncoder {
    meta: ResponseMeta,
    model: String,
    seq: u64,
    started: bool,
    /// Finished output items (JSON) and the same answer as canonical parts.
    items: Vec<Value>,
    parts: Vec<Part>,
    open: Option<Open>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// The final response object, once `finish` wrote it.
    completed: Option<Value>,
}

impl ResponsesStreamEncoder {
    pub fn new(meta: ResponseMeta) -> Self {
        ResponsesStreamEncoder {
            meta,
            ..Self::default()
        }
    }

    /// The final response object and the answer's parts, after a clean end.
    pub fn completed(&self) -> Option<(&Value, &[Part])> {
        self.completed.as_ref().map(|v| (v, self.parts.as_slice()))
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<u8>) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        super::super::write_sse(out, Some(kind), &data);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.meta.id.is_empty() {
            self.meta = ResponseMeta::new(std::mem::take(&mut self.meta.echo));
        }
        let resp = response_object(
            &self.meta,
            &self.model,
            Outcome::InProgress,
            Vec::new(),
            None,
        );
        self.emit("response.created", json!({"response": resp}), out);
        let resp = response_object(
            &self.meta,
            &self.model,
            Outcome::InProgress,
            Vec::new(),
            None,
        );
        self.emit("response.in_progress", json!({"response": resp}), out);
    }

    fn output_index(&self) -> usize {
        self.items.len()
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        if matches!(self.open, Some(Open::Message { .. })) {
            return;
        }
        self.close(out);
        let index = self.output_index();
        let id = self.meta.item_id("msg", index);
        let mut item = message_item(&id, "", "in_progress");
        item["content"] = json!([]);
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": text_part("")}),
            out,
        );
        self.open = Some(Open::Message {
            id,
            text: String::new(),
        });
    }

    /// Finishes the open item: its done events, then it joins the output.
    fn close(&mut self, out: &mut Vec<u8>) {
        let index = self.output_index();
        match self.open.take() {
            None => {}
            Some(Open::Message { id, text }) => {
                let at = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = at.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                self.emit("response.output_text.done", done, out);
                let mut part = at;
                part["part"] = text_part(&text);
                self.emit("response.content_part.done", part, out);
                let item = message_item(&id, &text, "completed");
                self.emit(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item.clone()}),
                    out,
                );
                self.items.push(item);
                self.parts.push(Part::Text(text));
            }
            Some(Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            }) => {
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments}),
                    out,
                );
                let item = call_item(&id, &call_id, &name, &arguments, "completed");
                self.emit(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item.clone()}),
                    out,
                );
                self.items.push(item);
                self.parts.push(Part::ToolCall(ToolCall {
                    id: call_id,
                    name,
                    arguments,
                }));
            }
        }
    }
}

impl StreamEncoder for ResponsesStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { model, .. } => {
                self.model = model.clone();
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(text) => {
                self.ensure_started(out);
                self.open_message(out);
                let index = self.output_index();
                if let Some(Open::Message { id, text: acc }) = &mut self.open {
                    acc.push_str(text);
                    let data = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []});
                    self.emit("response.output_text.delta", data, out);
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.close(out);
                let at = self.output_index();
                let item_id = self.meta.item_id("fc", at);
                let item = call_item(&item_id, id, name, "", "in_progress");
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": at, "item": item}),
                    out,
                );
                self.open = Some(Open::Call {
                    id: item_id,
                    index: *index,
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                let at = self.output_index();
                if let Some(Open::Call {
                    id,
                    index: open,
                    arguments: acc,
                    ..
                }) = &mut self.open
                {
                    if open == index {
                        acc.push_str(arguments);
                        let data = json!({"item_id": id, "output_index": at, "delta": arguments});
                        self.emit("response.function_call_arguments.delta", data, out);
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close(out);
        let outcome = Outcome::Finished(self.finish.unwrap_or(FinishReason::Stop));
        let resp = response_object(
            &self.meta,
            &self.model,
            outcome,
            self.items.clone(),
            self.usage,
        );
        self.emit(outcome.event(), json!({"response": resp.clone()}), out);
        self.completed = Some(resp);
    }

    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        self.ensure_started(out);
        let outcome = Outcome::Failed(&error.message);
        let resp = response_object(
            &self.meta,
            &self.model,
            outcome,
            self.items.clone(),
            self.usage,
        );
        self.emit(outcome.event(), json!({"response": resp}), out);
        let (_, body) = super::super::openai::encode_error(error);
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let e = &body["error"];
        self.emit(
            "error",
            json!({"code": e["code"].as_str().unwrap_or("server_error"), "message": e["message"], "param": e["param"]}),
            out,
        );
    }
}

// ----------------------------------------------------------------- egress

/// Reads a Responses backend's SSE events.
#[derive(Default)]
pub struct ResponsesStreamDecoder {
    started: bool,
    /// Output index of each function call seen, in order: a call's
    /// position here is its canonical tool call index.
    calls: Vec<u64>,
}

impl StreamDecoder for ResponsesStreamDecoder {
    fn decode(&mut self, _event: &str, data: &str) -> Result<Vec<StreamEvent>, StreamFault> {
        let data = data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        let str_of = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut events = Vec::new();
        if !self.started && kind.starts_with("response.") {
            self.started = true;
            let resp = v.get("response").unwrap_or(&Value::Null);
            events.push(StreamEvent::Start {
                id: str_of(resp, "id"),
                model: str_of(resp, "model"),
            });
        }
        match kind {
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    let index = self.calls.len() as u32;
                    self.calls.push(
                        v.get("output_index")
                            .and_then(Value::as_u64)
                            .unwrap_or(u64::MAX),
                    );
                    events.push(StreamEvent::ToolCallStart {
                        index,
                        id: str_of(item, "call_id"),
                        name: str_of(item, "name"),
                    });
                    let args = str_of(item, "arguments");
                    if !args.is_empty() {
                        events.push(StreamEvent::ToolCallDelta {
                            index,
                            arguments: args,
                        });
                    }
                }
            }
            "response.output_text.delta" => {
                let delta = str_of(&v, "delta");
                if !delta.is_empty() {
                    events.push(StreamEvent::TextDelta(delta));
                }
            }
            "response.function_call_arguments.delta" => {
                let at = v.get("output_index").and_then(Value::as_u64);
                let index = self
                    .calls
                    .iter()
                    .position(|o| Some(*o) == at)
                    .ok_or_else(|| {
                        StreamFault::Malformed("arguments for an unknown function call".into())
                    })?;
                events.push(StreamEvent::ToolCallDelta {
                    index: index as u32,
                    arguments: str_of(&v, "delta"),
                });
            }
            "response.completed" | "response.incomplete" => {
                let resp = v
                    .get("response")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Some(u) = resp.get("usage").filter(|u| !u.is_null()) {
                    events.push(StreamEvent::Usage(super::decode::decode_usage(u)));
                }
                events.push(StreamEvent::Finish(super::decode::finish_of(
                    &resp,
                    !self.calls.is_empty(),
                )));
            }
            "response.failed" => {
                let err = v
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .unwrap_or(&Value::Null);
                return Err(in_band(err));
            }
            "error" => return Err(in_band(&v)),
            _ => {}
        }
        Ok(events)
    }
}

fn in_band(err: &Value) -> StreamFault {
    StreamFault::InBand {
        status: None,
        error: super::super::openai::vendor_error(None, err),
    }
}
