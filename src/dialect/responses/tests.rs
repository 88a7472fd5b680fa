use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::dialect::{DialectError, StreamDecoder, StreamEncoder};
use crate::model::{
    FinishReason, Image, Message, Part, Role, StreamEvent, ToolCall, ToolChoice, ToolResult, Usage,
};

#[test]
fn decodes_items_instructions_tools_and_echo() {
    let body = br#"{"model":"frontier","instructions":"be brief","input":[
        {"role":"developer","content":"answer in French"},
        {"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]},
        {"type":"message","role":"assistant","content":[{"type":"output_text","text":"calling","annotations":[]}]},
        {"type":"function_call","call_id":"c1","name":"f","arguments":"{\"a\":1}"},
        {"type":"function_call_output","call_id":"c1","output":"42"},
        {"type":"reasoning","id":"rs_1","summary":[]}],
        "tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],
        "tool_choice":{"type":"function","name":"f"},
        "max_output_tokens":9,"temperature":0.5,"store":false,"metadata":{"k":"v"},
        "previous_response_id":"resp_x","reasoning":{"effort":"low"}}"#;
    let r = decode_request(body).unwrap();
    assert_eq!(r.input_system, vec!["answer in French"]);
    assert_eq!(r.previous_response_id.as_deref(), Some("resp_x"));
    assert!(!r.store);
    assert_eq!(r.chat.tool_choice, Some(ToolChoice::Tool("f".into())));
    assert_eq!(r.chat.max_tokens, Some(9));
    assert_eq!(r.chat.messages.len(), 3, "{:?}", r.chat.messages);
    assert_eq!(
        r.chat.messages[1].content,
        vec![
            Part::Text("calling".into()),
            Part::ToolCall(ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{\"a\":1}".into()
            })
        ]
    );
    assert!(matches!(
        &r.chat.messages[2].content[0],
        Part::ToolResult(ToolResult { name: Some(n), .. }) if n == "f"
    ));
    assert!(r.chat.has_images());
    assert_eq!(r.echo["metadata"], json!({"k": "v"}));
    assert_eq!(r.echo["store"], json!(false));
    let pass = r.chat.passthrough.as_ref().unwrap();
    assert_eq!(pass.fields.keys().collect::<Vec<_>>(), ["reasoning"]);
    let chat = r.chat_with(Some(&Conversation {
        system: vec!["earlier".into()],
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::Text("turn one".into())],
        }],
    }));
    assert_eq!(
        chat.system.as_deref(),
        Some("be brief\n\nearlier\n\nanswer in French")
    );
    assert_eq!(chat.messages.len(), 4);
    assert_eq!(chat.messages[0].text(), "turn one");
}

#[test]
fn bad_requests_name_their_param() {
    for (body, param) in [
        (&br#"{"input":"x"}"#[..], "model"),
        (br#"{"model":"m"}"#, "input"),
        (br#"{"model":"m","input":[]}"#, "input"),
        (br#"{"model":"m","input":[{"role":"wizard","content":"x"}]}"#, "input[0].role"),
        (br#"{"model":"m","input":[{"type":"function_call_output","output":"x"}]}"#, "input[0].call_id"),
        (br#"{"model":"m","input":[{"type":"file_search_call"}]}"#, "input[0].type"),
        (br#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#, "tools[0].type"),
        (br#"{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"s","schema":{}}}}"#, "text.format"),
        (br#"{"model":"m","input":"x","tool_choice":"sometimes"}"#, "tool_choice"),
    ] {
        match decode_request(body) {
            Err(DialectError::Invalid { param: Some(p), .. }) => assert_eq!(p, param),
            other => panic!("expected an error on {param}, got {other:?}"),
        }
    }
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "resp_test".into(),
        created_at: 1,
        echo: serde_json::Map::new(),
    }
}

#[test]
fn the_response_object_has_items_usage_and_status() {
    let resp = crate::model::ChatResponse {
        id: "up".into(),
        model: "gpt-x".into(),
        content: vec![
            Part::Text("a".into()),
            Part::Text("b".into()),
            Part::ToolCall(ToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: "{}".into(),
            }),
        ],
        finish_reason: FinishReason::Length,
        usage: Usage {
            input_tokens: 3,
            output_tokens: 4,
        },
    };
    let v = encode_response(&resp, &meta());
    assert_eq!(v["id"], "resp_test");
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["output"][0]["content"][0]["text"], "ab");
    assert_eq!(v["output"][1]["call_id"], "c");
    assert_eq!(v["output"][1]["id"], "fc_test_1");
    assert_eq!(v["usage"]["total_tokens"], 7);
    let back = decode_response(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(back.content[0], Part::Text("ab".into()));
    assert_eq!(back.finish_reason, FinishReason::Length);
    assert_eq!(back.usage, resp.usage);
}

fn sse_frames(bytes: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let event = f.lines().next().unwrap().strip_prefix("event: ").unwrap();
            let data = f.lines().nth(1).unwrap().strip_prefix("data: ").unwrap();
            (event.to_string(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn upstream_events() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "u".into(),
            model: "m".into(),
        },
        StreamEvent::TextDelta("hel".into()),
        StreamEvent::TextDelta("lo".into()),
        StreamEvent::ToolCallStart {
            index: 0,
            id: "c1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"a\"".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: ":1}".into(),
        },
        StreamEvent::Finish(FinishReason::ToolCalls),
        StreamEvent::Usage(Usage {
            input_tokens: 2,
            output_tokens: 3,
        }),
    ]
}

#[test]
fn the_stream_follows_the_sdk_order_and_decodes_back() {
    let mut enc = ResponsesStreamEncoder::new(meta());
    let mut out = Vec::new();
    for e in &upstream_events() {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    let frames = sse_frames(&out);
    let kinds: Vec<&str> = frames.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (kind, data)) in frames.iter().enumerate() {
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["sequence_number"], i as u64);
    }
    let (done, parts) = enc.completed().unwrap();
    assert_eq!(done["usage"]["output_tokens"], 3);
    assert_eq!(parts.len(), 2);

    let mut dec = ResponsesStreamDecoder::default();
    let mut back = Vec::new();
    for (kind, data) in &frames {
        back.extend(dec.decode(kind, &data.to_string()).unwrap());
    }
    let mut want = upstream_events();
    want[0] = StreamEvent::Start {
        id: "resp_test".into(),
        model: "m".into(),
    };
    // Usage comes with the completed response, before its finish reason.
    want.swap(6, 7);
    assert_eq!(back, want);
}

#[test]
fn a_broken_stream_ends_failed_with_an_error_event() {
    let mut enc = ResponsesStreamEncoder::new(meta());
    let mut out = Vec::new();
    enc.encode(&StreamEvent::TextDelta("part".into()), &mut out);
    let err = crate::dialect::ApiError::new(crate::dialect::ErrorKind::Upstream, "cut");
    enc.error(&err, &mut out);
    let frames = sse_frames(&out);
    let n = frames.len();
    assert_eq!(frames[n - 2].0, "response.failed");
    assert_eq!(frames[n - 2].1["response"]["status"], "failed");
    assert_eq!(frames[n - 1].0, "error");
    assert_eq!(frames[n - 1].1["message"], "cut");
    assert!(enc.completed().is_none());
    assert!(!frames.iter().any(|(k, _)| k == "response.completed"));
}

fn text() -> impl Strategy<Value = String> {
    "[a-z ]{1,12}"
}

/// One user turn, optionally answered by the assistant with text and/or
/// tool calls, whose results follow.
fn turn() -> impl Strategy<Value = Vec<Message>> {
    (
        text(),
        any::<bool>(),
        proptest::option::of(text()),
        proptest::collection::vec(("[a-z]{1,6}", "[a-z0-9]{1,6}"), 0..3),
    )
        .prop_map(|(user, image, answer, calls)| {
            let mut user_parts = vec![Part::Text(user)];
            if image {
                user_parts.push(Part::Image(Image::Base64 {
                    media_type: "image/png".into(),
                    data: "AAAA".into(),
                }));
            }
            let mut out = vec![Message {
                role: Role::User,
                content: user_parts,
            }];
            let mut assistant: Vec<Part> = answer.into_iter().map(Part::Text).collect();
            let mut results = Vec::new();
            for (i, (name, args)) in calls.into_iter().enumerate() {
                let id = format!("call_{i}_{name}");
                assistant.push(Part::ToolCall(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    arguments: format!("{{\"v\":\"{args}\"}}"),
                }));
                results.push(Part::ToolResult(ToolResult {
                    call_id: id,
                    name: Some(name),
                    content: args,
                    is_error: false,
                }));
            }
            if !assistant.is_empty() {
                out.push(Message {
                    role: Role::Assistant,
                    content: assistant,
                });
            }
            if !results.is_empty() {
                out.push(Message {
                    role: Role::Tool,
                    content: results,
                });
            }
            out
        })
}

proptest! {
    /// Canonical messages → Responses input items → canonical again.
    #[test]
    fn items_round_trip_through_the_canonical_model(
        turns in proptest::collection::vec(turn(), 1..4),
        system in proptest::option::of(text()),
        max in proptest::option::of(1u32..1000),
    ) {
        let req = crate::model::ChatRequest {
            model: "r".into(),
            system,
            messages: turns.into_iter().flatten().collect(),
            max_tokens: max,
            ..Default::default()
        };
        let body = encode_request(&req, "r");
        let back = decode_request(&serde_json::to_vec(&body).unwrap()).unwrap();
        let chat = back.chat_with(None);
        prop_assert_eq!(chat.messages, req.messages);
        prop_assert_eq!(chat.system, req.system);
        prop_assert_eq!(chat.max_tokens, req.max_tokens);
        prop_assert!(!back.store);
    }
}
