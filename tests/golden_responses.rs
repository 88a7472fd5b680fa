//! Golden fixtures for the OpenAI Responses dialect, both directions.
//!
//! `tests/golden/responses/NAME.input.json` is a `POST /v1/responses` body
//! as the openai SDK sends it: decoded into the canonical model and encoded
//! for every backend dialect (`NAME.canonical.json`, `NAME.to_*.json`).
//! `tests/golden/responses_answers/NAME.input.json` is a canonical answer:
//! encoded as the response object (`NAME.object.json`) and as the event
//! stream (`NAME.stream.json`, one `[event, data]` pair per frame). After a
//! deliberate change, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test golden_responses` and review the diff.

mod golden_support;

use golden_support::{assert_no_failures, canonical, compare, inputs};
use serde_json::{json, Value};
use switchyard::dialect::responses::{self, ResponseMeta, ResponsesStreamEncoder};
use switchyard::dialect::{anthropic, gemini, openai, StreamEncoder};
use switchyard::model::{ChatResponse, Part, StreamEvent};

#[test]
fn responses_requests_match_their_golden_files_for_every_backend() {
    let mut failures = Vec::new();
    for input in &inputs("responses") {
        let body = std::fs::read(input).expect("read fixture");
        let decoded =
            responses::decode_request(&body).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let req = decoded.chat_with(None);
        let mut view = canonical(&req);
        view["echo"] = Value::Object(decoded.echo.clone());
        compare(input, "canonical", view, &mut failures);
        compare(
            input,
            "to_openai",
            openai::encode_request(&req, "gpt-upstream", openai::Flavor::OPENAI),
            &mut failures,
        );
        compare(
            input,
            "to_anthropic",
            anthropic::encode_request(&req, "claude-upstream"),
            &mut failures,
        );
        compare(
            input,
            "to_gemini",
            gemini::encode_request(&req, "gemini-upstream"),
            &mut failures,
        );
        compare(
            input,
            "to_responses",
            responses::encode_request(&req, "responses-upstream"),
            &mut failures,
        );
    }
    assert_no_failures(&failures);
}

fn meta() -> ResponseMeta {
    let mut echo = serde_json::Map::new();
    echo.insert("metadata".into(), json!({}));
    ResponseMeta {
        id: "resp_golden".into(),
        created_at: 1_760_000_000,
        echo,
    }
}

/// The canonical stream a backend would deliver for `resp`.
fn events(resp: &ChatResponse) -> Vec<StreamEvent> {
    let mut out = vec![StreamEvent::Start {
        id: resp.id.clone(),
        model: resp.model.clone(),
    }];
    let mut calls = 0;
    for part in &resp.content {
        match part {
            Part::Text(t) => out.extend(
                t.split_inclusive(' ')
                    .map(|w| StreamEvent::TextDelta(w.to_string())),
            ),
            Part::ToolCall(c) => {
                out.push(StreamEvent::ToolCallStart {
                    index: calls,
                    id: c.id.clone(),
                    name: c.name.clone(),
                });
                let mid = c.arguments.len() / 2;
                for piece in [&c.arguments[..mid], &c.arguments[mid..]] {
                    out.push(StreamEvent::ToolCallDelta {
                        index: calls,
                        arguments: piece.to_string(),
                    });
                }
                calls += 1;
            }
            Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    out.push(StreamEvent::Finish(resp.finish_reason));
    out.push(StreamEvent::Usage(resp.usage));
    out
}

fn frames(bytes: &[u8]) -> Value {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 stream");
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let mut lines = f.lines();
            let event = lines.next().and_then(|l| l.strip_prefix("event: "));
            let data = lines.next().and_then(|l| l.strip_prefix("data: "));
            let data: Value = serde_json::from_str(data.expect("data line")).expect("JSON data");
            json!([event.expect("event line"), data])
        })
        .collect()
}

#[test]
fn responses_answers_match_their_golden_files() {
    let mut failures = Vec::new();
    for input in &inputs("responses_answers") {
        let body = std::fs::read(input).expect("read fixture");
        let resp: ChatResponse =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        compare(
            input,
            "object",
            responses::encode_response(&resp, &meta()),
            &mut failures,
        );
        let mut enc = ResponsesStreamEncoder::new(meta());
        let mut out = Vec::new();
        for e in &events(&resp) {
            enc.encode(e, &mut out);
        }
        enc.finish(&mut out);
        compare(input, "stream", frames(&out), &mut failures);
        // The stream's final object is the non-stream object.
        let (done, _) = enc.completed().expect("completed");
        if done != &responses::encode_response(&resp, &meta()) {
            failures.push(format!("{}: stream and object differ", input.display()));
        }
    }
    assert_no_failures(&failures);
}
