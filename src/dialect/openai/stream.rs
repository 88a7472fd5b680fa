//! OpenAI chat-completion SSE: the encoder apps read and the decoder for
//! upstream streams.

use super::*;

/// Streams `chat.completion.chunk` frames. The finish chunk and the usage
/// chunk are held until `finish`, because upstreams may report them in
/// either order and the OpenAI SDK expects usage last.
#[derive(Default)]
pub struct OpenAiStreamEncoder {
    id: String,
    model: String,
    created: u64,
    started: bool,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl OpenAiStreamEncoder {
    fn chunk(&self, delta: Value, finish: Option<FinishReason>, out: &mut Vec<u8>) {
        let frame = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish.map(finish_str), "logprobs": null}],
        });
        crate::dialect::write_sse(out, None, &frame);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            if self.id.is_empty() {
                self.id = new_id("chatcmpl-");
            }
            self.created = unix_now();
            self.started = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out);
        }
    }
}

impl StreamEncoder for OpenAiStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                self.id = id.clone();
                self.model = model.clone();
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(text) => {
                self.ensure_started(out);
                self.chunk(json!({"content": text}), None, out);
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    None,
                    out,
                );
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                self.chunk(
                    json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
                    None,
                    out,
                );
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.chunk(
            json!({}),
            Some(self.finish.unwrap_or(FinishReason::Stop)),
            out,
        );
        if let Some(u) = self.usage {
            let frame = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": usage_json(u),
            });
            crate::dialect::write_sse(out, None, &frame);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        let (_, body) = encode_error(error);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
    }
}

/// Reads upstream `chat.completion.chunk` frames.
#[derive(Default)]
pub struct OpenAiStreamDecoder {
    started: bool,
    /// Tool calls seen so far, by the upstream's `index`.
    calls_seen: Vec<u32>,
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn decode(&mut self, _event: &str, data: &str) -> Result<Vec<StreamEvent>, StreamFault> {
        let data = data.trim();
        if data == "[DONE]" || data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        if let Some(err) = chunk.get("error") {
            let status = err
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            return Err(StreamFault::InBand {
                status,
                error: vendor_error(status, err),
            });
        }
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(StreamEvent::Start {
                id: chunk
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| new_id("chatcmpl-"), str::to_owned),
                model: chunk
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        if let Some(choice) = choices.and_then(|c| c.first()) {
            let delta = choice.get("delta");
            if let Some(text) = delta.and_then(|d| d.get("content")).and_then(Value::as_str) {
                if !text.is_empty() {
                    events.push(StreamEvent::TextDelta(text.to_string()));
                }
            }
            if let Some(calls) = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
            {
                for c in calls {
                    let index = c
                        .get("index")
                        .and_then(Value::as_u64)
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| {
                            StreamFault::Malformed("tool call delta without index".into())
                        })?;
                    let f = c.get("function");
                    if !self.calls_seen.contains(&index) {
                        self.calls_seen.push(index);
                        events.push(StreamEvent::ToolCallStart {
                            index,
                            id: c
                                .get("id")
                                .and_then(Value::as_str)
                                .map_or_else(|| new_id("call_"), str::to_owned),
                            name: f
                                .and_then(|f| f.get("name"))
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string(),
                        });
                    }
                    if let Some(args) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                        if !args.is_empty() {
                            events.push(StreamEvent::ToolCallDelta {
                                index,
                                arguments: args.to_string(),
                            });
                        }
                    }
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                events.push(StreamEvent::Finish(decode_finish(reason)));
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            events.push(StreamEvent::Usage(decode_usage(u)));
        }
        Ok(events)
    }
}
