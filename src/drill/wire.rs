//! What a drill request looks like in each app dialect, and how its answer
//! is judged: a non-stream answer must be the dialect's JSON (with a tool
//! call when a tool was offered); a stream must end cleanly after a finish,
//! with no error event. A stream that ends cleanly without a finish is a
//! silent truncation, the worst outcome: the app takes it for a whole answer.

use serde_json::{json, Value};

use super::format::Dialect;

/// The shape of one request.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub dialect: Dialect,
    pub stream: bool,
    pub tools: bool,
}

/// URL path (after the gateway's base URL), headers and JSON body.
pub fn request(
    kind: Kind,
    route: &str,
    key: &str,
    n: u64,
) -> (String, Vec<(&'static str, String)>, Value) {
    let text = format!("chaos drill request {n}: what is the weather in Lyon?");
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string", "description": "city name"}},
        "required": ["city"]
    });
    let about = "Current weather for a city";
    match kind.dialect {
        Dialect::Openai => {
            let mut body = json!({
                "model": route,
                "messages": [{"role": "user", "content": text}],
                "stream": kind.stream,
            });
            if kind.tools {
                body["tools"] = json!([{"type": "function", "function": {
                    "name": "get_weather", "description": about, "parameters": schema}}]);
            }
            let headers = vec![("authorization", format!("Bearer {key}"))];
            ("/v1/chat/completions".into(), headers, body)
        }
        Dialect::Anthropic => {
            let mut body = json!({
                "model": route,
                "max_tokens": 256,
                "messages": [{"role": "user", "content": text}],
                "stream": kind.stream,
            });
            if kind.tools {
                body["tools"] =
                    json!([{"name": "get_weather", "description": about, "input_schema": schema}]);
            }
            let headers = vec![
                ("x-api-key", key.to_string()),
                ("anthropic-version", "2023-06-01".into()),
            ];
            ("/v1/messages".into(), headers, body)
        }
        Dialect::Gemini => {
            let mut body = json!({"contents": [{"role": "user", "parts": [{"text": text}]}]});
            if kind.tools {
                body["tools"] = json!([{"functionDeclarations": [{
                    "name": "get_weather", "description": about, "parameters": schema}]}]);
            }
            let path = match kind.stream {
                true => format!("/v1beta/models/{route}:streamGenerateContent?alt=sse"),
                false => format!("/v1beta/models/{route}:generateContent"),
            };
            (path, vec![("x-goog-api-key", key.to_string())], body)
        }
        Dialect::Responses => {
            let mut body = json!({"model": route, "input": text, "stream": kind.stream});
            if kind.tools {
                body["tools"] = json!([{"type": "function", "name": "get_weather",
                    "description": about, "parameters": schema}]);
            }
            let headers = vec![("authorization", format!("Bearer {key}"))];
            ("/v1/responses".into(), headers, body)
        }
    }
}

/// Judges a whole non-stream answer body: `Err(label)` when it is not a
/// usable answer.
pub fn check_complete(kind: Kind, body: &[u8]) -> Result<(), &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "bad_json")?;
    // A Responses object always carries `error`, null when all went well.
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return Err("error_body");
    }
    let (has_answer, has_tool) = match kind.dialect {
        Dialect::Openai => {
            let m = &v["choices"][0]["message"];
            (
                m.is_object(),
                m["tool_calls"].as_array().is_some_and(|a| !a.is_empty()),
            )
        }
        Dialect::Anthropic => {
            let c = v["content"].as_array();
            let tool = c.is_some_and(|c| c.iter().any(|b| b["type"] == "tool_use"));
            (c.is_some(), tool)
        }
        Dialect::Gemini => {
            let parts = v["candidates"][0]["content"]["parts"].as_array();
            let tool = parts.is_some_and(|p| p.iter().any(|x| x.get("functionCall").is_some()));
            (parts.is_some(), tool)
        }
        Dialect::Responses => {
            let out = v["output"]
                .as_array()
                .filter(|_| v["status"] == "completed");
            let tool = out.is_some_and(|o| o.iter().any(|i| i["type"] == "function_call"));
            (out.is_some(), tool)
        }
    };
    match (has_answer, kind.tools, has_tool) {
        (false, _, _) => Err("bad_answer"),
        (true, true, false) => Err("no_tool_call"),
        _ => Ok(()),
    }
}

/// Follows a stream's SSE bytes as they arrive.
#[derive(Debug)]
pub struct StreamCheck {
    dialect: Dialect,
    buf: Vec<u8>,
    event: Option<String>,
    pub content: bool,
    pub finished: bool,
    pub error: bool,
}

impl StreamCheck {
    pub fn new(dialect: Dialect) -> Self {
        StreamCheck {
            dialect,
            buf: Vec::new(),
            event: None,
            content: false,
            finished: false,
            error: false,
        }
    }

    /// Feeds a chunk; returns whether the first content arrived in it.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let had = self.content;
        self.buf.extend_from_slice(chunk);
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches(['\r', '\n']));
        }
        !had && self.content
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            self.event = None;
        } else if let Some(e) = line.strip_prefix("event:") {
            self.event = Some(e.trim().to_string());
            if e.trim() == "error" {
                self.error = true;
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            self.data(d.trim());
        }
    }

    fn data(&mut self, d: &str) {
        if d == "[DONE]" {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(d) else {
            return;
        };
        if v.get("error").is_some_and(|e| !e.is_null())
            || v["type"] == "error"
            || v["type"] == "response.failed"
        {
            self.error = true;
            return;
        }
        match self.dialect {
            Dialect::Openai => {
                let c = &v["choices"][0];
                let delta = &c["delta"];
                if delta["content"].as_str().is_some_and(|s| !s.is_empty())
                    || delta["tool_calls"].is_array()
                {
                    self.content = true;
                }
                if c["finish_reason"].is_string() {
                    self.finished = true;
                }
            }
            Dialect::Anthropic => match v["type"].as_str() {
                Some("content_block_delta") | Some("content_block_start") => self.content = true,
                Some("message_stop") => self.finished = true,
                _ => {}
            },
            Dialect::Gemini => {
                let c = &v["candidates"][0];
                if c["content"]["parts"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
                {
                    self.content = true;
                }
                if c["finishReason"].is_string() {
                    self.finished = true;
                }
            }
            Dialect::Responses => match v["type"].as_str() {
                Some("response.output_text.delta")
                | Some("response.function_call_arguments.delta") => self.content = true,
                Some("response.completed") => self.finished = true,
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_stream_needs_a_finish() {
        let mut c = StreamCheck::new(Dialect::Openai);
        assert!(c.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n"
        ));
        assert!(!c.finished);
        c.feed(
            b"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        );
        assert!(c.finished && !c.error);
    }

    #[test]
    fn anthropic_error_event_is_seen_across_chunks() {
        let mut c = StreamCheck::new(Dialect::Anthropic);
        c.feed(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\nevent: err",
        );
        c.feed(b"or\ndata: {\"type\":\"error\",\"error\":{}}\n\n");
        assert!(c.content && c.error && !c.finished);
    }

    #[test]
    fn a_responses_stream_ends_with_completed_and_fails_on_response_failed() {
        let mut c = StreamCheck::new(Dialect::Responses);
        assert!(c.feed(
            b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n"
        ));
        assert!(!c.finished);
        c.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"error\":null}}\n\n");
        assert!(c.finished && !c.error);

        let mut cut = StreamCheck::new(Dialect::Responses);
        cut.feed(b"data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n");
        cut.feed(b"data: {\"type\":\"response.failed\",\"response\":{}}\n\n");
        assert!(cut.content && cut.error && !cut.finished);
    }

    #[test]
    fn responses_answers_need_a_completed_status() {
        let k = Kind {
            dialect: Dialect::Responses,
            stream: false,
            tools: true,
        };
        let call = br#"{"status":"completed","error":null,"output":[{"type":"function_call","name":"f","arguments":"{}"}]}"#;
        assert_eq!(check_complete(k, call), Ok(()));
        let text = br#"{"status":"completed","output":[{"type":"message","content":[]}]}"#;
        assert_eq!(check_complete(k, text), Err("no_tool_call"));
        let failed = br#"{"status":"failed","output":[]}"#;
        assert_eq!(check_complete(k, failed), Err("bad_answer"));
    }

    #[test]
    fn tool_answers_are_checked() {
        let k = Kind {
            dialect: Dialect::Gemini,
            stream: false,
            tools: true,
        };
        let text = br#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}]}"#;
        assert_eq!(check_complete(k, text), Err("no_tool_call"));
        let call =
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]}}]}"#;
        assert_eq!(check_complete(k, call), Ok(()));
    }
}
