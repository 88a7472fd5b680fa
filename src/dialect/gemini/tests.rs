use serde_json::{json, Value};

use super::decode::CallLedger;
use super::*;
use crate::dialect::{StreamDecoder, StreamEncoder, StreamFault};
use crate::model::{StreamEvent, ToolResult};

fn decode(v: Value) -> Result<ChatRequest, DialectError> {
    decode_request(v.to_string().as_bytes(), "frontier", false)
}

fn result(call_id: &str, name: &str, content: &str) -> Part {
    Part::ToolResult(ToolResult {
        call_id: call_id.into(),
        name: Some(name.into()),
        content: content.into(),
        is_error: false,
    })
}

#[test]
fn links_function_responses_to_calls_by_name_and_order() {
    let call =
        |name: &str, city: &str| json!({"functionCall": {"name": name, "args": {"city": city}}});
    let answer = |name: &str, r: Value| json!({"functionResponse": {"name": name, "response": r}});
    let req = decode(json!({
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather in Paris and Rome, time in Rome?"}]},
            {"role": "model", "parts": [call("weather", "Paris"), call("weather", "Rome"), call("time", "Rome")]},
            {"role": "user", "parts": [
                answer("time", json!({"result": "noon"})),
                answer("weather", json!({"content": "sunny"})),
                answer("weather", json!({"temp": 20})),
                {"text": "thanks"}]},
            {"role": "model", "parts": [{"text": "hm", "thought": true}, {"text": "Sunny, 20, noon."}]},
        ],
        "generation_config": {"temperature": 0.2, "max_output_tokens": 50, "topK": 3, "stopSequences": ["END"]},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }))
    .unwrap();
    assert_eq!(req.model, "frontier");
    assert_eq!(req.system.as_deref(), Some("be brief"));
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(
        req.messages[2].content,
        [
            result("call_2", "time", "noon"),
            result("call_0", "weather", "sunny"),
            result("call_1", "weather", r#"{"temp":20}"#)
        ]
    );
    assert_eq!(
        req.messages[4].content,
        [Part::Text("Sunny, 20, noon.".into())]
    );
    assert_eq!(
        (req.max_tokens, req.temperature, req.stop.as_slice()),
        (Some(50), Some(0.2), &["END".to_string()][..])
    );
    let pass = req.passthrough.as_ref().unwrap();
    assert_eq!(pass.fields["generationConfig"], json!({"topK": 3}));
    assert!(pass.fields.contains_key("safetySettings"));

    let out = encode_request(&req, "gemini-x");
    assert!(out.get("model").is_none(), "the model is in the URL");
    assert_eq!(
        out["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 50, "stopSequences": ["END"], "topK": 3})
    );
    assert_eq!(out["safetySettings"][0]["threshold"], "BLOCK_NONE");
    let contents = out["contents"].as_array().unwrap();
    assert_eq!(
        contents.len(),
        4,
        "Tool and User turns merge into one user Content: {out}"
    );
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "time", "response": {"content": "noon"}}})
    );
    assert_eq!(
        contents[1]["parts"][1],
        json!({"functionCall": {"name": "weather", "args": {"city": "Rome"}}})
    );
}

#[test]
fn answers_go_to_the_latest_turn_and_ids_win() {
    let mut ledger = CallLedger::default();
    ledger.model_turn();
    let old = ledger.call("f", None);
    ledger.model_turn();
    let new = ledger.call("f", None);
    let with_id = ledger.call("g", Some("abc"));
    assert_eq!(
        (old.as_str(), new.as_str(), with_id.as_str()),
        ("call_0", "call_1", "abc")
    );
    assert_eq!(ledger.answer("f", None), "call_1");
    assert_eq!(ledger.answer("g", Some("abc")), "abc");
    assert_eq!(ledger.answer("f", None), "call_0");
    assert_eq!(
        ledger.answer("f", None),
        "call_3",
        "an orphan answer gets a fresh id"
    );
}

#[test]
fn tools_images_and_tool_config() {
    let req = decode(json!({
        "contents": [{"parts": [
            {"inlineData": {"mimeType": "image/png", "data": "AAA"}},
            {"file_data": {"file_uri": "https://x/cat.jpg"}}]}],
        "tools": [
            {"functionDeclarations": [{"name": "f", "description": "d", "parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}}]},
            {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
    }))
    .unwrap();
    assert_eq!(
        req.messages[0].content[1],
        Part::Image(Image::Url("https://x/cat.jpg".into()))
    );
    assert_eq!(
        req.tools[0].parameters,
        json!({"type": "object", "properties": {"a": {"type": "string"}}})
    );
    assert_eq!(req.tool_choice, Some(ToolChoice::Tool("f".into())));
    let out = encode_request(&req, "m");
    assert_eq!(
        out["contents"][0]["parts"][1],
        json!({"fileData": {"fileUri": "https://x/cat.jpg", "mimeType": "image/jpeg"}})
    );
    assert_eq!(
        out["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]["properties"]["a"]
            ["type"],
        "string"
    );
    assert_eq!(
        out["tools"][1],
        json!({"googleSearch": {}}),
        "non-function tools pass through"
    );
    assert_eq!(
        out["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["f"]})
    );
}

#[test]
fn egress_looks_up_function_names_and_marks_errors() {
    let req = ChatRequest {
        messages: vec![
            Message {
                role: Role::Assistant,
                content: vec![Part::ToolCall(ToolCall {
                    id: "toolu_9".into(),
                    name: "lookup".into(),
                    arguments: "{".into(),
                })],
            },
            Message {
                role: Role::Tool,
                content: vec![Part::ToolResult(ToolResult {
                    call_id: "toolu_9".into(),
                    name: None,
                    content: "boom".into(),
                    is_error: true,
                })],
            },
            Message {
                role: Role::User,
                content: vec![Part::Image(Image::Url("data:image/gif;base64,R0l".into()))],
            },
        ],
        ..ChatRequest::default()
    };
    let out = encode_request(&req, "m");
    assert_eq!(
        out["contents"][0]["parts"][0]["functionCall"]["args"],
        json!({"raw_arguments": "{"})
    );
    assert_eq!(
        out["contents"][1]["parts"][0],
        json!({"functionResponse": {"name": "lookup", "response": {"error": "boom"}}})
    );
    assert_eq!(
        out["contents"][1]["parts"][1],
        json!({"inlineData": {"mimeType": "image/gif", "data": "R0l"}})
    );
}

#[test]
fn rejects_bad_requests_with_a_param() {
    for (body, param) in [
        (json!({"contents": []}), "contents"),
        (
            json!({"contents": [{"role": "system", "parts": []}]}),
            "contents[0].role",
        ),
        (
            json!({"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "x"}}]}]}),
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            json!({"contents": [{"parts": [{"executableCode": {}}]}]}),
            "contents[0].parts[0]",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}}),
            "generationConfig.candidateCount",
        ),
        (
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}}),
            "generationConfig.temperature",
        ),
    ] {
        match decode(body) {
            Err(DialectError::Invalid { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("expected an error on {param}, got {other:?}"),
        }
    }
}

#[test]
fn response_round_trip() {
    let body = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}, {"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "thoughtsTokenCount": 2, "totalTokenCount": 9},
        "modelVersion": "gemini-x", "responseId": "r1",
    });
    let resp = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 3,
            output_tokens: 6
        }
    );
    let back: Value = serde_json::from_slice(&encode_response(&resp)).unwrap();
    assert_eq!(back["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        back["candidates"][0]["content"]["parts"][1]["functionCall"]["args"],
        json!({"a": 1})
    );
    assert_eq!(
        (back["responseId"].as_str(), back["modelVersion"].as_str()),
        (Some("r1"), Some("gemini-x"))
    );
    let blocked = decode_response(br#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
    assert_eq!(
        (blocked.finish_reason, blocked.content.len()),
        (FinishReason::ContentFilter, 0)
    );
    assert!(decode_response(b"{}").is_err());
    assert_eq!(
        decode_finish(Some("MAX_TOKENS"), false),
        FinishReason::Length
    );
    assert_eq!(
        decode_finish(Some("RECITATION"), false),
        FinishReason::ContentFilter
    );
}

/// Chunks as `streamGenerateContent?alt=sse` sends them.
const CAPTURED: &[&str] = &[
    r#"{"candidates":[{"content":{"parts":[{"text":"Let me"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-x","responseId":"r1"}"#,
    r#"{"candidates":[{"content":{"parts":[{"text":" check."}],"role":"model"},"index":0}],"modelVersion":"gemini-x","responseId":"r1"}"#,
    r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"weather","args":{"city":"Paris"}}},{"functionCall":{"name":"time","args":{}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":12,"totalTokenCount":21},"modelVersion":"gemini-x","responseId":"r1"}"#,
];

fn decode_all() -> Vec<StreamEvent> {
    let mut dec = GeminiStreamDecoder::default();
    CAPTURED
        .iter()
        .flat_map(|d| dec.decode("", d).unwrap())
        .collect()
}

#[test]
fn stream_decoder_reads_a_captured_stream() {
    let mut events = decode_all();
    for e in &mut events {
        if let StreamEvent::ToolCallStart { id, .. } = e {
            assert!(id.starts_with("call_"));
            *id = "ID".into();
        }
    }
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: "r1".into(),
                model: "gemini-x".into()
            },
            StreamEvent::TextDelta("Let me".into()),
            StreamEvent::TextDelta(" check.".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "ID".into(),
                name: "weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city":"Paris"}"#.into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "ID".into(),
                name: "time".into()
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into()
            },
            StreamEvent::Usage(Usage {
                input_tokens: 9,
                output_tokens: 12
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn stream_decoder_faults() {
    let mut dec = GeminiStreamDecoder::default();
    match dec.decode(
        "",
        r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#,
    ) {
        Err(StreamFault::InBand { status, error }) => {
            assert_eq!(status, Some(503));
            assert_eq!(error.code.as_deref(), Some("UNAVAILABLE"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dec.decode("", "{oops"),
        Err(StreamFault::Malformed(_))
    ));
    assert!(matches!(
        dec.decode("", "[1]"),
        Err(StreamFault::Malformed(_))
    ));
}

fn frames(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[test]
fn stream_encoder_sends_whole_calls_and_a_last_frame() {
    let mut enc = GeminiStreamEncoder::default();
    let mut out = Vec::new();
    for e in [
        StreamEvent::Start {
            id: "r1".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("hi".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c0".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"{"a""#.into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: ":1}".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "c1".into(),
            name: "g".into(),
        },
        StreamEvent::Usage(Usage {
            input_tokens: 2,
            output_tokens: 3,
        }),
    ] {
        enc.encode(&e, &mut out);
    }
    enc.finish(&mut out);
    let f = frames(&out);
    assert_eq!(f.len(), 3, "{f:?}");
    assert_eq!(
        f[0]["candidates"][0]["content"],
        json!({"role": "model", "parts": [{"text": "hi"}]})
    );
    assert_eq!(f[0]["responseId"], "r1");
    assert_eq!(
        f[1]["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"id": "c0", "name": "f", "args": {"a": 1}})
    );
    assert!(f[1]["candidates"][0].get("finishReason").is_none());
    assert_eq!(
        f[2]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
        "g"
    );
    assert_eq!(f[2]["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        f[2]["usageMetadata"],
        json!({"promptTokenCount": 2, "candidatesTokenCount": 3, "totalTokenCount": 5})
    );
    assert!(!String::from_utf8(out).unwrap().contains("[DONE]"));
}

#[test]
fn stream_encoder_error_frame() {
    let mut enc = GeminiStreamEncoder::default();
    let mut out = Vec::new();
    enc.error(&ApiError::new(ErrorKind::Overloaded, "busy"), &mut out);
    assert_eq!(
        frames(&out),
        [json!({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})]
    );
}

#[test]
fn error_shapes() {
    for (kind, status, name) in [
        (ErrorKind::InvalidRequest, 400, "INVALID_ARGUMENT"),
        (ErrorKind::Authentication, 401, "UNAUTHENTICATED"),
        (ErrorKind::RateLimited, 429, "RESOURCE_EXHAUSTED"),
        (ErrorKind::Upstream, 502, "UNAVAILABLE"),
        (ErrorKind::Timeout, 504, "DEADLINE_EXCEEDED"),
        (ErrorKind::Internal, 500, "INTERNAL"),
    ] {
        let (s, body) = encode_error(&ApiError::new(kind, "m"));
        assert_eq!(s, status);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": status, "message": "m", "status": name}})
        );
    }
    let body =
        br#"[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}]"#;
    let e = decode_error(429, body);
    assert_eq!(
        (e.class, e.code.as_deref(), e.message.as_str()),
        (
            VendorClass::RateLimited,
            Some("RESOURCE_EXHAUSTED"),
            "Quota exceeded"
        )
    );
    let e = decode_error(502, b"<html>internal-host-7</html>");
    assert_eq!(e.code, None);
    assert!(!e.message.contains("internal-host"));
}

#[test]
fn an_unknown_status_name_leaves_the_class_to_the_http_code() {
    let overloaded = br#"{"error":{"code":529,"message":"Site is overloaded","status":"UNKNOWN"}}"#;
    assert_eq!(decode_error(529, overloaded).class, VendorClass::Overloaded);
    let unknown = br#"{"error":{"code":500,"message":"boom","status":"UNKNOWN"}}"#;
    assert_eq!(decode_error(500, unknown).class, VendorClass::ServerError);
}
