//! Streaming: Anthropic SSE events to canonical stream events and back.

use serde_json::{json, Value};

use super::{decode_stop_reason, decode_usage, error_body, stop_reason_str};
use crate::dialect::util::new_id;
use crate::dialect::{write_sse, ApiError, StreamDecoder, StreamEncoder, StreamFault};
use crate::model::{FinishReason, StreamEvent, Usage};

/// Streams the event sequence the Anthropic SDKs expect: `message_start`,
/// then per content block `content_block_start`, deltas and
/// `content_block_stop`, then `message_delta` and `message_stop`. Finish and
/// usage are held until `finish`, since upstreams report them in either order.
#[derive(Default)]
pub struct AnthropicStreamEncoder {
    started: bool,
    /// The content block being written, if one is open.
    open: Option<OpenBlock>,
    /// Wire index the next content block gets.
    next_block: u32,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    /// A tool_use block, by canonical tool-call index.
    Tool(u32),
}

impl AnthropicStreamEncoder {
    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        self.started = true;
        let message = json!({
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.usage.map_or(0, |u| u.input_tokens), "output_tokens": 0},
        });
        write_sse(
            out,
            Some("message_start"),
            &json!({"type": "message_start", "message": message}),
        );
    }

    /// Defensive: a stream whose upstream never said Start still opens with
    /// `message_start`, or the SDK rejects every later event.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(&new_id("msg_"), "", out);
        }
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if self.open.take().is_some() {
            let index = self.next_block - 1;
            write_sse(
                out,
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open_block(&mut self, kind: OpenBlock, block: Value, out: &mut Vec<u8>) {
        self.close_block(out);
        let frame = json!({"type": "content_block_start", "index": self.next_block, "content_block": block});
        write_sse(out, Some("content_block_start"), &frame);
        self.open = Some(kind);
        self.next_block += 1;
    }

    fn delta(&self, delta: Value, out: &mut Vec<u8>) {
        let frame =
            json!({"type": "content_block_delta", "index": self.next_block - 1, "delta": delta});
        write_sse(out, Some("content_block_delta"), &frame);
    }
}

impl StreamEncoder for AnthropicStreamEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                if !self.started {
                    self.start(id, model, out);
                }
            }
            StreamEvent::TextDelta(text) if !text.is_empty() => {
                self.ensure_started(out);
                if self.open != Some(OpenBlock::Text) {
                    self.open_block(OpenBlock::Text, json!({"type": "text", "text": ""}), out);
                }
                self.delta(json!({"type": "text_delta", "text": text}), out);
            }
            StreamEvent::TextDelta(_) => {}
            StreamEvent::ToolCallStart { index, id, name } => {
                self.ensure_started(out);
                let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                self.open_block(OpenBlock::Tool(*index), block, out);
            }
            // Anthropic cannot interleave blocks, and a closed block cannot be
            // reopened; every upstream we decode streams tool calls one after
            // another, so deltas for another call than the open one are dropped.
            StreamEvent::ToolCallDelta { index, arguments } => {
                if self.open == Some(OpenBlock::Tool(*index)) && !arguments.is_empty() {
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": arguments}),
                        out,
                    );
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.ensure_started(out);
        self.close_block(out);
        let mut usage = json!({"output_tokens": self.usage.map_or(0, |u| u.output_tokens)});
        if let Some(u) = self.usage {
            // Recent SDKs take the final prompt count from here, which matters
            // when `message_start` went out before the upstream reported it.
            usage["input_tokens"] = u.input_tokens.into();
        }
        let stop_reason = stop_reason_str(self.finish.unwrap_or(FinishReason::Stop));
        let frame = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage,
        });
        write_sse(out, Some("message_delta"), &frame);
        write_sse(out, Some("message_stop"), &json!({"type": "message_stop"}));
    }

    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        write_sse(out, Some("error"), &error_body(error));
    }
}
/// Reads an Anthropic backend's SSE events.
#[derive(Default)]
pub struct AnthropicStreamDecoder {
    /// Prompt tokens from `message_start`, reported again with the output
    /// count at `message_delta`.
    input_tokens: u64,
    /// Anthropic content-block index → canonical tool-call index; text and
    /// thinking blocks take block indexes but not tool indexes.
    tool_blocks: Vec<(u64, u32)>,
}

impl AnthropicStreamDecoder {
    fn tool_index(&self, block: u64) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, t)| *t)
    }
}

fn block_index(v: &Value) -> Result<u64, StreamFault> {
    v.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| StreamFault::Malformed("content block event without `index`".into()))
}

fn text_of<'a>(v: Option<&'a Value>, key: &str) -> &'a str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn decode(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, StreamFault> {
        let v: Value =
            serde_json::from_str(data).map_err(|e| StreamFault::Malformed(e.to_string()))?;
        let mut events = Vec::new();
        // The data's own `type` is authoritative; the SSE event name repeats it.
        match v.get("type").and_then(Value::as_str).unwrap_or(event) {
            "message_start" => {
                let msg = v.get("message");
                self.input_tokens = decode_usage(msg.and_then(|m| m.get("usage"))).input_tokens;
                let id = text_of(msg, "id");
                events.push(StreamEvent::Start {
                    id: if id.is_empty() {
                        new_id("msg_")
                    } else {
                        id.to_string()
                    },
                    model: text_of(msg, "model").to_string(),
                });
            }
            "content_block_start" => {
                let block = v.get("content_block");
                match text_of(block, "type") {
                    "text" => {
                        let text = text_of(block, "text");
                        if !text.is_empty() {
                            events.push(StreamEvent::TextDelta(text.to_string()));
                        }
                    }
                    "tool_use" => {
                        let index = u32::try_from(self.tool_blocks.len())
                            .map_err(|_| StreamFault::Malformed("too many tool calls".into()))?;
                        self.tool_blocks.push((block_index(&v)?, index));
                        let id = text_of(block, "id");
                        events.push(StreamEvent::ToolCallStart {
                            index,
                            id: if id.is_empty() {
                                new_id("toolu_")
                            } else {
                                id.to_string()
                            },
                            name: text_of(block, "name").to_string(),
                        });
                        // Normally `{}` with the arguments following as deltas.
                        let input = block.and_then(|b| b.get("input"));
                        if let Some(input) =
                            input.filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            events.push(StreamEvent::ToolCallDelta {
                                index,
                                arguments: input.to_string(),
                            });
                        }
                    }
                    _ => {} // thinking and future block types
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta");
                match text_of(delta, "type") {
                    "text_delta" => {
                        let text = text_of(delta, "text");
                        if !text.is_empty() {
                            events.push(StreamEvent::TextDelta(text.to_string()));
                        }
                    }
                    "input_json_delta" => {
                        let index = self.tool_index(block_index(&v)?).ok_or_else(|| {
                            StreamFault::Malformed(
                                "input_json_delta for a block that is not tool_use".into(),
                            )
                        })?;
                        let partial = text_of(delta, "partial_json");
                        if !partial.is_empty() {
                            events.push(StreamEvent::ToolCallDelta {
                                index,
                                arguments: partial.to_string(),
                            });
                        }
                    }
                    _ => {} // thinking, signature, citations
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    let mut usage = decode_usage(Some(u));
                    // Newer API versions repeat the cumulative prompt count here.
                    usage.input_tokens = usage.input_tokens.max(self.input_tokens);
                    events.push(StreamEvent::Usage(usage));
                }
                let reason = text_of(v.get("delta"), "stop_reason");
                if !reason.is_empty() {
                    events.push(StreamEvent::Finish(decode_stop_reason(reason)));
                }
            }
            "error" => {
                let err = v.get("error");
                let kind = text_of(err, "type");
                let status = error_type_status(kind);
                return Err(StreamFault::InBand {
                    status,
                    error: super::vendor_error(status, kind, text_of(err, "message").to_string()),
                });
            }
            _ => {} // ping, content_block_stop, message_stop, future events
        }
        Ok(events)
    }
}

/// The HTTP status Anthropic answers with for each error type.
fn error_type_status(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}
