use serde_json::{json, Value};

use super::*;
use crate::dialect::{StreamDecoder, StreamEncoder, StreamFault};
use crate::model::StreamEvent;

fn decode(v: Value) -> Result<ChatRequest, DialectError> {
    decode_request(v.to_string().as_bytes())
}

#[test]
fn decodes_and_reencodes_a_tool_conversation() {
    let req = decode(json!({
        "model": "frontier", "max_tokens": 100, "stream": true, "metadata": {"user_id": "u1"},
        "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                {"type": "text", "text": "and tomorrow?"}]}],
        "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
    }))
    .unwrap();
    assert_eq!(req.system.as_deref(), Some("a\n\nb"));
    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::User]);
    assert_eq!(
        req.messages[1].content[1],
        Part::ToolCall(ToolCall {
            id: "toolu_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Paris"}"#.into()
        })
    );
    assert_eq!(req.tool_choice, Some(ToolChoice::Required));
    assert!(req.stream);

    let out = encode_request(&req, "claude-x");
    assert_eq!(out["model"], "claude-x");
    assert_eq!(
        out["metadata"]["user_id"], "u1",
        "passthrough is merged back"
    );
    let messages = out["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        3,
        "the Tool and User turns merge again: {out}"
    );
    assert_eq!(messages[2]["content"][0]["type"], "tool_result");
    assert_eq!(messages[2]["content"][1]["text"], "and tomorrow?");
    assert_eq!(messages[1]["content"][1]["input"], json!({"city": "Paris"}));
}

#[test]
fn egress_fills_max_tokens_and_merges_consecutive_tool_messages() {
    let result = |id: &str| Message {
        role: Role::Tool,
        content: vec![Part::ToolResult(ToolResult {
            call_id: id.into(),
            name: None,
            content: "ok".into(),
            is_error: id == "b",
        })],
    };
    let req = ChatRequest {
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    Part::Text("go".into()),
                    Part::Image(Image::Url("data:image/png;base64,AAA".into())),
                ],
            },
            Message {
                role: Role::Assistant,
                content: ["a", "b"]
                    .map(|id| {
                        Part::ToolCall(ToolCall {
                            id: id.into(),
                            name: "f".into(),
                            arguments: String::new(),
                        })
                    })
                    .into_iter()
                    .chain([Part::Text(String::new())])
                    .collect(),
            },
            result("a"),
            result("b"),
        ],
        tool_choice: Some(ToolChoice::Auto),
        ..ChatRequest::default()
    };
    let out = encode_request(&req, "m");
    assert_eq!(out["max_tokens"], 4096);
    assert!(
        out.get("tool_choice").is_none(),
        "no tool_choice without tools"
    );
    assert_eq!(
        out["messages"][0]["content"][1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "AAA"})
    );
    assert_eq!(
        out["messages"][1]["content"].as_array().unwrap().len(),
        2,
        "empty text dropped: {out}"
    );
    assert_eq!(out["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(
        out["messages"].as_array().unwrap().len(),
        3,
        "tool results merged: {out}"
    );
    assert_eq!(out["messages"][2]["content"][1]["is_error"], true);
}

#[test]
fn arguments_become_an_object() {
    assert_eq!(arguments_object(""), json!({}));
    assert_eq!(arguments_object(r#"{"a":1}"#), json!({"a": 1}));
    assert_eq!(
        arguments_object(r#"{"a":"#),
        json!({"raw_arguments": r#"{"a":"#})
    );
}

#[test]
fn rejects_bad_requests_with_a_param() {
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (body, param) in [
        (json!({"model": "m", "messages": msgs}), "max_tokens"),
        (json!({"max_tokens": 1, "messages": msgs}), "model"),
        (
            json!({"model": "m", "max_tokens": 1, "messages": []}),
            "messages",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "document"}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": msgs, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "max_tokens": 1, "messages": msgs, "tool_choice": {"type": "tool"}}),
            "tool_choice.name",
        ),
    ] {
        match decode(body) {
            Err(DialectError::Invalid { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("expected an error on {param}, got {other:?}"),
        }
    }
    assert!(matches!(decode_request(b"[1]"), Err(DialectError::Json(_))));
}

#[test]
fn response_round_trip() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 3, "cache_read_input_tokens": 4, "output_tokens": 5},
    });
    let resp = decode_response(body.to_string().as_bytes()).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 7,
            output_tokens: 5
        }
    );
    let back: Value = serde_json::from_slice(&encode_response(&resp)).unwrap();
    assert_eq!(back["content"], body["content"]);
    assert_eq!(back["stop_reason"], "tool_use");
    assert_eq!(
        back["usage"],
        json!({"input_tokens": 7, "output_tokens": 5})
    );
    for (reason, finish) in [
        ("end_turn", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("stop_sequence", FinishReason::StopSequence),
        ("refusal", FinishReason::ContentFilter),
    ] {
        assert_eq!(decode_stop_reason(reason), finish);
        assert_eq!(stop_reason_str(finish), reason);
    }
    assert!(decode_response(br#"{"id":"x"}"#).is_err());
}

/// A stream as Anthropic sends it: text, then a tool call, with a ping and
/// an event type from the future in between.
const CAPTURED: &[(&str, &str)] = &[
    (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ),
    ("ping", r#"{"type":"ping"}"#),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":1}"#,
    ),
    ("future_event", r#"{"type":"future_event","x":1}"#),
    (
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    ),
    ("message_stop", r#"{"type":"message_stop"}"#),
];

fn decode_all(frames: &[(&str, &str)]) -> Vec<StreamEvent> {
    let mut dec = AnthropicStreamDecoder::default();
    frames
        .iter()
        .flat_map(|(e, d)| dec.decode(e, d).unwrap())
        .collect()
}

#[test]
fn stream_decoder_reads_a_captured_stream() {
    assert_eq!(
        decode_all(CAPTURED),
        vec![
            StreamEvent::Start {
                id: "msg_1".into(),
                model: "claude-x".into()
            },
            StreamEvent::TextDelta("Let me check".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_1".into(),
                name: "get_weather".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: r#"{"city": "Paris"}"#.into()
            },
            StreamEvent::Usage(Usage {
                input_tokens: 25,
                output_tokens: 89
            }),
            StreamEvent::Finish(FinishReason::ToolCalls),
        ]
    );
}

#[test]
fn stream_decoder_faults() {
    let mut dec = AnthropicStreamDecoder::default();
    match dec.decode(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    ) {
        Err(StreamFault::InBand { status, error }) => {
            assert_eq!(status, Some(529));
            assert_eq!(error.code.as_deref(), Some("overloaded_error"));
            assert_eq!(error.message, "Overloaded");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dec.decode("message_start", "{oops"),
        Err(StreamFault::Malformed(_))
    ));
    let orphan = r#"{"type":"content_block_delta","index":4,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#;
    assert!(matches!(
        dec.decode("content_block_delta", orphan),
        Err(StreamFault::Malformed(_))
    ));
}

fn sse_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let (event, data) = frame.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], event.strip_prefix("event: ").unwrap());
            (event["event: ".len()..].to_string(), data)
        })
        .collect()
}

#[test]
fn stream_encoder_writes_the_order_the_sdk_expects() {
    let mut enc = AnthropicStreamEncoder::default();
    let mut out = Vec::new();
    // Finish and usage before the content ends, as some upstreams report them.
    let mut events = decode_all(CAPTURED);
    events.rotate_right(2);
    for e in &events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    let frames = sse_events(&out);
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(frames[0].1["message"]["id"], "msg_1");
    assert_eq!(frames[4].1["index"], 1);
    assert_eq!(
        frames[4].1["content_block"],
        json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}})
    );
    assert_eq!(frames[5].1["delta"]["partial_json"], r#"{"city": "Paris"}"#);
    assert_eq!(
        frames[7].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89, "input_tokens": 25}})
    );
}

#[test]
fn stream_encoder_synthesizes_a_start_and_writes_errors() {
    let mut enc = AnthropicStreamEncoder::default();
    let mut out = Vec::new();
    enc.encode(&StreamEvent::TextDelta("hi".into()), &mut out);
    enc.error(
        &ApiError::new(ErrorKind::Overloaded, "backend gone"),
        &mut out,
    );
    let frames = sse_events(&out);
    let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert!(frames[0].1["message"]["id"]
        .as_str()
        .unwrap()
        .starts_with("msg_"));
    assert_eq!(
        frames[3].1["error"],
        json!({"type": "overloaded_error", "message": "backend gone"})
    );
}

#[test]
fn error_shapes() {
    for (kind, status, ty) in [
        (ErrorKind::InvalidRequest, 400, "invalid_request_error"),
        (ErrorKind::Authentication, 401, "authentication_error"),
        (ErrorKind::RateLimited, 429, "rate_limit_error"),
        (ErrorKind::Overloaded, 529, "overloaded_error"),
        (ErrorKind::Timeout, 504, "api_error"),
    ] {
        let (s, body) = encode_error(&ApiError::new(kind, "m"));
        assert_eq!(s, status);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": ty, "message": "m"}})
        );
    }
    let e = decode_error(
        529,
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    );
    assert_eq!(
        (e.class, e.code.as_deref(), e.message.as_str()),
        (
            VendorClass::Overloaded,
            Some("overloaded_error"),
            "Overloaded"
        )
    );
    let e = decode_error(502, b"<html>internal-host-7</html>");
    assert_eq!(e.code, None);
    assert!(!e.message.contains("internal-host"));
}
