//! Streaming: Gemini SSE chunks (each a partial `GenerateContentResponse`)
//! to canonical stream events and back.

use serde_json::{json, Value};

use super::{
    arguments_object, candidate_parts, decode_finish, decode_usage, error_body, finish_str, get,
    get_str, usage_json, vendor_error,
};
use crate::dialect::util::new_id;
use crate::dialect::{write_sse, ApiError, StreamDecoder, StreamEncoder, StreamFault};
use crate::model::{FinishReason, StreamEvent, Usage};

/// Writes one `data:` frame per text delta and one per complete function
/// call (Gemini never splits a call's arguments), then a last frame with the
/// finish reason and usage. Gemini streams end without a `[DONE]` marker.
#[derive(Default)]
pub struct GeminiStreamEncoder {
    id: String,
    model: String,
    /// A function call whose arguments are still arriving: (index, id, name, arguments).
    pending: Option<(u32, String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl GeminiStreamEncoder {
    fn frame(&mut self, parts: Vec<Value>, last: bool, out: &mut Vec<u8>) {
        if self.id.is_empty() {
            self.id = new_id("");
        }
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut frame = json!({"modelVersion": self.model, "responseId": self.id});
        if last {
            candidate["finishReason"] =
                finish_str(self.finish.unwrap_or(FinishReason::Stop)).into();
            if let Some(u) = self.usage {
                frame["usageMetadata"] = usage_json(u);
            }
        }
        frame["candidates"] = json!([candidate]);
        write_sse(out, None, &frame);
    }

    fn take_call(&mut self) -> Option<Value> {
        let (_, id, name, arguments) = self.pending.take()?;
        Some(
            json!({"functionCall": {"id": id, "name": name, "args": arguments_object(&arguments)}}),
        )
    }

    fn flush_call(&mut self, out: &mut Vec<u8>) {
        if let Some(call) = self.take_call() {
            self.frame(vec![call], false, out);
        }
    }
}

impl StreamEncoder for GeminiStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                self.id = id.clone();
                self.model = model.clone();
            }
            StreamEvent::TextDelta(text) if !text.is_empty() => {
                self.flush_call(out);
                self.frame(vec![json!({"text": text})], false, out);
            }
            StreamEvent::TextDelta(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.flush_call(out);
                self.pending = Some((*index, id.clone(), name.clone(), String::new()));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                // Deltas of a call already sent cannot be added to it; every
                // upstream we decode streams calls one after another.
                if let Some((open, _, _, args)) = &mut self.pending {
                    if open == index {
                        args.push_str(arguments);
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let parts = self.take_call().into_iter().collect();
        self.frame(parts, true, out);
    }

    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        write_sse(out, None, &error_body(error));
    }
}

/// Reads a Gemini backend's `alt=sse` chunks.
#[derive(Default)]
pub struct GeminiStreamDecoder {
    started: bool,
    /// Function calls seen so far: the next call's canonical index.
    calls: u32,
    /// The latest usage seen; Gemini repeats it, cumulative, in many chunks.
    usage: Option<Usage>,
    finished: bool,
}

impl StreamDecoder for GeminiStreamDecoder {
    fn decode(&mut self, _event: &str, data: &str) -> Result<Vec<StreamEvent>, StreamFault> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        if !chunk.is_object() {
            return Err(StreamFault::Malformed(
                "a chunk must be a JSON object".into(),
            ));
        }
        if let Some(error) = vendor_error(&chunk) {
            let status = chunk["error"]
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            return Err(StreamFault::InBand { status, error });
        }
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: get_str(&chunk, "responseId").map_or_else(|| new_id(""), str::to_owned),
                model: get_str(&chunk, "modelVersion")
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        let candidate = get(&chunk, "candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first());
        for p in candidate.into_iter().flat_map(candidate_parts) {
            if get(p, "thought").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(text) = get_str(p, "text").filter(|t| !t.is_empty()) {
                events.push(StreamEvent::TextDelta(text.to_string()));
            } else if let Some(call) = get(p, "functionCall") {
                let index = self.calls;
                self.calls += 1;
                events.push(StreamEvent::ToolCallStart {
                    index,
                    id: get_str(call, "id").map_or_else(|| new_id("call_"), str::to_owned),
                    name: get_str(call, "name").unwrap_or_default().to_string(),
                });
                let arguments =
                    get(call, "args").map_or_else(|| "{}".to_string(), Value::to_string);
                events.push(StreamEvent::ToolCallDelta { index, arguments });
            }
        }
        if let Some(u) = get(&chunk, "usageMetadata") {
            self.usage = Some(decode_usage(Some(u)));
            // Usage that trails the finish chunk is still reported.
            if self.finished {
                events.extend(self.usage.map(StreamEvent::Usage));
            }
        }
        let reason = candidate.and_then(|c| get_str(c, "finishReason"));
        let blocked = candidate.is_none()
            && get(&chunk, "promptFeedback")
                .and_then(|f| get(f, "blockReason"))
                .is_some();
        if !self.finished && (reason.is_some() || blocked) {
            self.finished = true;
            events.extend(self.usage.map(StreamEvent::Usage));
            events.push(StreamEvent::Finish(if blocked {
                FinishReason::ContentFilter
            } else {
                decode_finish(reason, self.calls > 0)
            }));
        }
        Ok(events)
    }
}
