//! Property tests: every dialect converts the canonical model to its wire
//! format and back without losing what the dialect can carry.
//!
//! Three properties per dialect (OpenAI, Anthropic, Gemini):
//! - requests: `decode_request(encode_request(req)) == normalize(req)`;
//! - responses: `decode_response(encode_response(resp)) == normalize(resp)`;
//! - streams: canonical events through the dialect's `StreamEncoder`, the
//!   SSE frames through the same dialect's `StreamDecoder`, give the same
//!   id, model, text, tool calls (id, name, parsed arguments), finish reason
//!   and usage, up to the normalization below.
//!
//! Generated requests are restricted to what every dialect can carry and to
//! well-formed conversations: user turns (text, base64 or URL images),
//! assistant turns (text and/or tool calls with JSON-object arguments), and
//! after an assistant turn with calls, the results of all its calls in call
//! order (one Tool message, or one per result). Text is never empty
//! (Anthropic and Gemini refuse empty text blocks), images are `image/*`.
//!
//! Normalization applied to BOTH sides before comparing:
//! - all dialects: tool-call `arguments` are compared as parsed JSON (both
//!   sides are re-serialized compactly, keys sorted), so whitespace and key
//!   order of the JSON text do not matter.
//!
//! Requests, per dialect (applied to the original only):
//! - OpenAI: an assistant message's text parts are concatenated into one text
//!   part (dropped when empty) placed before its tool calls (the wire has one
//!   `content` string plus `tool_calls`); a Tool message holding several
//!   results becomes one Tool message per result (one `role: tool` message
//!   each); results lose `name` and `is_error` (the wire has neither).
//! - Anthropic: `max_tokens` None becomes Some(4096) (required on the wire);
//!   an empty system prompt becomes None; `tool_choice` without tools becomes
//!   None (not sent); Tool messages are user turns on the wire, so
//!   consecutive messages of the same wire role (user+tool / assistant) are
//!   merged, and each merged user turn decodes as a Tool message (its
//!   results, first) followed by a User message (the rest, if any); results
//!   lose `name`.
//! - Gemini: the same merging as Anthropic (user/model Contents); empty
//!   system becomes None; `tool_choice` without tools becomes None; Gemini
//!   carries no call ids, so ids are compared modulo renaming: the n-th tool
//!   call of the conversation (0-based) is renamed `call_{n}` and every
//!   result follows the renaming of the call it answers; a result's `name`
//!   becomes the name of the call it answers (Gemini requires it). `model`
//!   and `stream` travel in the URL, so they are passed out of band.
//!
//! Responses, per dialect:
//! - OpenAI: text parts concatenated into one (dropped when empty) before the
//!   tool calls; `StopSequence` becomes `Stop` (OpenAI says `stop` for both).
//! - Anthropic: empty text parts are dropped; every finish reason survives.
//! - Gemini: `StopSequence`, `Stop` and `ToolCalls` are all `STOP` on the
//!   wire, decoded as `ToolCalls` when the answer holds a call, else `Stop`.
//!
//! Streams, per dialect (events are encoded in order, then `finish()`):
//! - OpenAI: `StopSequence` becomes `Stop`; absent usage stays absent.
//! - Anthropic: absent usage decodes as zero usage (`message_delta` always
//!   carries `output_tokens`); every finish reason survives.
//! - Gemini: finish as for responses (`ToolCalls` iff a call was streamed);
//!   absent usage stays absent; a call's arguments arrive whole.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchyard::dialect::{anthropic, gemini, openai, StreamDecoder, StreamEncoder};
use switchyard::model::{
    ChatRequest, ChatResponse, FinishReason, Image, Message, Part, Role, StreamEvent, ToolCall,
    ToolChoice, ToolDef, ToolResult, Usage,
};

const CASES: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    OpenAi,
    Anthropic,
    Gemini,
}

const ALL: [Which; 3] = [Which::OpenAi, Which::Anthropic, Which::Gemini];

// ------------------------------------------------------------- strategies

/// Non-empty text with JSON-hostile and non-ASCII characters.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.!?\"\\\\{}<>/\n\té漢🙂-]{1,16}"
}

fn tool_name() -> impl Strategy<Value = String> {
    // A small set, so that one name is often called several times.
    prop::sample::select(vec!["get_weather", "lookup", "sum_all"]).prop_map(str::to_owned)
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        text().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// A JSON object, as argument text: compact or pretty-printed.
fn arguments() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        json_leaf(),
        prop::collection::vec(json_leaf(), 0..3).prop_map(Value::from)
    ];
    (
        prop::collection::btree_map("[a-z_]{1,8}", value, 0..4),
        any::<bool>(),
    )
        .prop_map(|(map, pretty)| {
            let v = Value::Object(map.into_iter().collect());
            if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            }
        })
}

fn image() -> impl Strategy<Value = Image> {
    let mime = prop::sample::select(vec!["image/png", "image/jpeg", "image/webp", "image/gif"]);
    prop_oneof![
        (mime, "[A-Za-z0-9+/]{4,24}={0,2}").prop_map(|(m, d)| Image::Base64 {
            media_type: m.to_string(),
            data: d,
        }),
        "[a-z]{1,8}".prop_map(|n| Image::Url(format!("https://img.example/{n}.png"))),
    ]
}

fn user_part() -> impl Strategy<Value = Part> {
    prop_oneof![3 => text().prop_map(Part::Text), 1 => image().prop_map(Part::Image)]
}

/// One step of a conversation, before ids are assigned.
#[derive(Debug, Clone)]
enum Turn {
    User(Vec<Part>),
    AssistantText(Vec<String>),
    /// Assistant text (maybe none), calls, then one result per call:
    /// (content, is_error, carries the name), sent as one Tool message or
    /// one message per result.
    Calls {
        text: Vec<String>,
        calls: Vec<(String, String)>,
        results: Vec<(String, bool, bool)>,
        split_results: bool,
    },
}

fn turn() -> impl Strategy<Value = Turn> {
    let calls = prop::collection::vec((tool_name(), arguments()), 1..4);
    prop_oneof![
        3 => prop::collection::vec(user_part(), 1..4).prop_map(Turn::User),
        1 => prop::collection::vec(text(), 1..3).prop_map(Turn::AssistantText),
        2 => (
            prop::collection::vec(text(), 0..2),
            calls,
            prop::collection::vec(("[a-z ,0-9]{0,12}", any::<bool>(), any::<bool>()), 3),
            any::<bool>(),
        )
            .prop_map(|(text, calls, mut results, split_results)| {
                results.truncate(calls.len());
                Turn::Calls { text, calls, results, split_results }
            }),
    ]
}

fn messages() -> impl Strategy<Value = Vec<Message>> {
    (prop::collection::vec(turn(), 1..6), "[a-z0-9]{4}").prop_map(|(turns, salt)| {
        let mut out = Vec::new();
        let mut next = 0;
        for t in turns {
            match t {
                Turn::User(parts) => out.push(Message {
                    role: Role::User,
                    content: parts,
                }),
                Turn::AssistantText(texts) => out.push(Message {
                    role: Role::Assistant,
                    content: texts.into_iter().map(Part::Text).collect(),
                }),
                Turn::Calls {
                    text,
                    calls,
                    results,
                    split_results,
                } => {
                    let mut content: Vec<Part> = text.into_iter().map(Part::Text).collect();
                    let mut answers = Vec::new();
                    for ((name, arguments), (result, is_error, named)) in
                        calls.into_iter().zip(results)
                    {
                        let id = format!("toolu_{salt}{next}");
                        next += 1;
                        answers.push(Part::ToolResult(ToolResult {
                            call_id: id.clone(),
                            name: named.then(|| name.clone()),
                            content: result,
                            is_error,
                        }));
                        content.push(Part::ToolCall(ToolCall {
                            id,
                            name,
                            arguments,
                        }));
                    }
                    out.push(Message {
                        role: Role::Assistant,
                        content,
                    });
                    if split_results {
                        out.extend(answers.into_iter().map(|a| Message {
                            role: Role::Tool,
                            content: vec![a],
                        }));
                    } else {
                        out.push(Message {
                            role: Role::Tool,
                            content: answers,
                        });
                    }
                }
            }
        }
        out
    })
}

fn tool_def() -> impl Strategy<Value = ToolDef> {
    (
        tool_name(),
        prop::option::of(text()),
        prop::collection::btree_set("[a-z]{1,6}", 0..3),
    )
        .prop_map(|(name, description, props)| {
            let properties: serde_json::Map<String, Value> = props
                .iter()
                .map(|p| (p.clone(), json!({"type": "string"})))
                .collect();
            ToolDef {
                name,
                description,
                parameters: json!({"type": "object", "properties": properties,
                                   "required": props.into_iter().take(1).collect::<Vec<_>>()}),
            }
        })
}

fn tool_choice() -> impl Strategy<Value = Option<ToolChoice>> {
    prop::option::of(prop_oneof![
        Just(ToolChoice::Auto),
        Just(ToolChoice::None),
        Just(ToolChoice::Required),
        tool_name().prop_map(ToolChoice::Tool),
    ])
}

/// Values on a 0.01 grid: short decimals survive any JSON float parser.
fn unit_float() -> impl Strategy<Value = Option<f64>> {
    prop::option::of((0u32..=200).prop_map(|k| f64::from(k) / 100.0))
}

fn request() -> impl Strategy<Value = ChatRequest> {
    (
        "[a-z][a-z0-9-]{0,10}",
        prop::option::of(text()),
        messages(),
        prop::collection::vec(tool_def(), 0..3),
        tool_choice(),
        prop::option::of(1u32..100_000),
        (unit_float(), unit_float()),
        prop::collection::vec(text(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(
                model,
                system,
                messages,
                tools,
                tool_choice,
                max_tokens,
                (temperature, top_p),
                stop,
                stream,
            )| {
                ChatRequest {
                    model,
                    system,
                    messages,
                    tools,
                    tool_choice,
                    max_tokens,
                    temperature,
                    top_p,
                    stop,
                    stream,
                    passthrough: None,
                }
            },
        )
}

fn finish_reason() -> impl Strategy<Value = FinishReason> {
    prop::sample::select(vec![
        FinishReason::Stop,
        FinishReason::StopSequence,
        FinishReason::Length,
        FinishReason::ToolCalls,
        FinishReason::ContentFilter,
    ])
}

fn usage() -> impl Strategy<Value = Usage> {
    (0u64..1_000_000, 0u64..1_000_000).prop_map(|(i, o)| Usage {
        input_tokens: i,
        output_tokens: o,
    })
}

fn response() -> impl Strategy<Value = ChatResponse> {
    let part = prop_oneof![
        2 => text().prop_map(Part::Text),
        1 => ("call_[a-z0-9]{6}", tool_name(), arguments())
            .prop_map(|(id, name, arguments)| Part::ToolCall(ToolCall { id, name, arguments })),
    ];
    (
        "[a-z0-9_-]{1,20}",
        "[a-z][a-z0-9.-]{0,12}",
        prop::collection::vec(part, 0..5),
        finish_reason(),
        usage(),
    )
        .prop_map(|(id, model, content, finish_reason, usage)| ChatResponse {
            id,
            model,
            content,
            finish_reason,
            usage,
        })
}

/// A piece of a stream before tool indexes are assigned.
#[derive(Debug, Clone)]
enum Segment {
    Text(Vec<String>),
    /// A call: id, name, its arguments JSON cut into pieces at these points.
    Call(String, String, String, Vec<usize>),
}

/// A canonical stream: Start, text and (sequential) tool-call segments,
/// then usage (maybe absent) and the finish reason in either order.
fn stream_events() -> impl Strategy<Value = Vec<StreamEvent>> {
    let segment = prop_oneof![
        // Empty deltas included: encoders must skip them harmlessly.
        prop::collection::vec(prop_oneof![4 => text(), 1 => Just(String::new())], 1..5)
            .prop_map(Segment::Text),
        (
            "call_[a-z0-9]{6}",
            tool_name(),
            arguments(),
            prop::collection::vec(0usize..64, 0..4)
        )
            .prop_map(|(id, name, args, cuts)| Segment::Call(id, name, args, cuts)),
    ];
    (
        ("[a-z0-9_-]{1,20}", "[a-z][a-z0-9.-]{0,12}"),
        prop::collection::vec(segment, 0..5),
        prop::option::of(usage()),
        finish_reason(),
        any::<bool>(),
    )
        .prop_map(|((id, model), segments, usage, finish, usage_first)| {
            let mut events = vec![StreamEvent::Start { id, model }];
            let mut index = 0;
            for s in segments {
                match s {
                    Segment::Text(pieces) => {
                        events.extend(pieces.into_iter().map(StreamEvent::TextDelta))
                    }
                    Segment::Call(id, name, args, cuts) => {
                        events.push(StreamEvent::ToolCallStart { index, id, name });
                        for piece in cut(&args, &cuts) {
                            events.push(StreamEvent::ToolCallDelta {
                                index,
                                arguments: piece,
                            });
                        }
                        index += 1;
                    }
                }
            }
            let mut tail = vec![StreamEvent::Finish(finish)];
            if let Some(u) = usage {
                let at = if usage_first { 0 } else { 1 };
                tail.insert(at, StreamEvent::Usage(u));
            }
            events.extend(tail);
            events
        })
}

/// `s` cut at the given char positions (clamped, sorted), keeping every char.
fn cut(s: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points.into_iter().chain([chars.len()]) {
        out.push(chars[start..p].iter().collect());
        start = p;
    }
    out
}

// ---------------------------------------------------------- normalization

/// Compact JSON text with sorted keys (serde_json's map is a BTreeMap).
fn canon_json(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {text:?}"))
        .to_string()
}

fn canon_args(parts: &mut [Part]) {
    for p in parts {
        if let Part::ToolCall(c) = p {
            c.arguments = canon_json(&c.arguments);
        }
    }
}

fn canon_request_args(req: &mut ChatRequest) {
    for m in &mut req.messages {
        canon_args(&mut m.content);
    }
}

fn texts_then_calls(parts: &[Part]) -> Vec<Part> {
    let text: String = parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    if !text.is_empty() {
        out.push(Part::Text(text));
    }
    out.extend(
        parts
            .iter()
            .filter(|p| matches!(p, Part::ToolCall(_)))
            .cloned(),
    );
    out
}

/// Anthropic and Gemini: merge consecutive messages of one wire role
/// (Tool counts as user), drop empty text, then split each user turn into
/// a Tool message (results) and a User message (the rest).
fn merge_wire_turns(messages: &[Message]) -> Vec<Message> {
    let mut turns: Vec<(bool, Vec<Part>)> = Vec::new();
    for m in messages {
        let assistant = m.role == Role::Assistant;
        let parts: Vec<Part> = m
            .content
            .iter()
            .filter(|p| !matches!(p, Part::Text(t) if t.is_empty()))
            .cloned()
            .collect();
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, open)) if *last == assistant => open.extend(parts),
            _ => turns.push((assistant, parts)),
        }
    }
    let mut out = Vec::new();
    for (assistant, parts) in turns {
        if assistant {
            out.push(Message {
                role: Role::Assistant,
                content: parts,
            });
            continue;
        }
        let (results, rest): (Vec<Part>, Vec<Part>) = parts
            .into_iter()
            .partition(|p| matches!(p, Part::ToolResult(_)));
        if !results.is_empty() {
            out.push(Message {
                role: Role::Tool,
                content: results,
            });
        }
        if !rest.is_empty() {
            out.push(Message {
                role: Role::User,
                content: rest,
            });
        }
    }
    out
}

fn map_results(messages: &mut [Message], f: impl Fn(&mut ToolResult)) {
    for p in messages.iter_mut().flat_map(|m| &mut m.content) {
        if let Part::ToolResult(r) = p {
            f(r);
        }
    }
}

/// What `which` decodes back from the original request (see the module doc).
fn normalize_request(which: Which, req: &ChatRequest) -> ChatRequest {
    let mut want = req.clone();
    match which {
        Which::OpenAi => {
            let mut messages = Vec::new();
            for m in &req.messages {
                match m.role {
                    Role::User => messages.push(m.clone()),
                    Role::Assistant => messages.push(Message {
                        role: Role::Assistant,
                        content: texts_then_calls(&m.content),
                    }),
                    Role::Tool => messages.extend(m.content.iter().map(|p| Message {
                        role: Role::Tool,
                        content: vec![p.clone()],
                    })),
                }
            }
            map_results(&mut messages, |r| {
                r.name = None;
                r.is_error = false;
            });
            want.messages = messages;
        }
        Which::Anthropic => {
            want.max_tokens = Some(req.max_tokens.unwrap_or(4096));
            want.system = req.system.clone().filter(|s| !s.is_empty());
            if req.tools.is_empty() {
                want.tool_choice = None;
            }
            want.messages = merge_wire_turns(&req.messages);
            map_results(&mut want.messages, |r| r.name = None);
        }
        Which::Gemini => {
            want.system = req.system.clone().filter(|s| !s.is_empty());
            if req.tools.is_empty() {
                want.tool_choice = None;
            }
            // Rename call ids by conversation order; results follow.
            let mut renamed: BTreeMap<String, (String, String)> = BTreeMap::new();
            for p in req.messages.iter().flat_map(|m| &m.content) {
                if let Part::ToolCall(c) = p {
                    let n = renamed.len();
                    renamed.insert(c.id.clone(), (format!("call_{n}"), c.name.clone()));
                }
            }
            want.messages = merge_wire_turns(&req.messages);
            for p in want.messages.iter_mut().flat_map(|m| &mut m.content) {
                match p {
                    Part::ToolCall(c) => c.id = renamed[&c.id].0.clone(),
                    Part::ToolResult(r) => {
                        let (id, name) = renamed[&r.call_id].clone();
                        r.call_id = id;
                        r.name = Some(name);
                    }
                    _ => {}
                }
            }
        }
    }
    canon_request_args(&mut want);
    want
}

fn round_trip_request(which: Which, req: &ChatRequest) -> (Value, ChatRequest) {
    let wire = match which {
        Which::OpenAi => openai::encode_request(req, &req.model, openai::Flavor::OPENAI),
        Which::Anthropic => anthropic::encode_request(req, &req.model),
        Which::Gemini => gemini::encode_request(req, &req.model),
    };
    let body = serde_json::to_vec(&wire).unwrap();
    let decoded = match which {
        Which::OpenAi => openai::decode_request(&body),
        Which::Anthropic => anthropic::decode_request(&body),
        Which::Gemini => gemini::decode_request(&body, &req.model, req.stream),
    };
    let mut decoded =
        decoded.unwrap_or_else(|e| panic!("{which:?} refused its own encoding: {e}\n{wire:#}"));
    canon_request_args(&mut decoded);
    (wire, decoded)
}

fn normalize_response(which: Which, resp: &ChatResponse) -> ChatResponse {
    let mut want = resp.clone();
    match which {
        Which::OpenAi => {
            want.content = texts_then_calls(&resp.content);
            if want.finish_reason == FinishReason::StopSequence {
                want.finish_reason = FinishReason::Stop;
            }
        }
        Which::Anthropic => {
            want.content
                .retain(|p| !matches!(p, Part::Text(t) if t.is_empty()));
        }
        Which::Gemini => {
            let has_calls = resp.content.iter().any(|p| matches!(p, Part::ToolCall(_)));
            want.finish_reason = gemini_finish(resp.finish_reason, has_calls);
        }
    }
    canon_args(&mut want.content);
    want
}

fn gemini_finish(f: FinishReason, has_calls: bool) -> FinishReason {
    match f {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls if has_calls => {
            FinishReason::ToolCalls
        }
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::ToolCalls => {
            FinishReason::Stop
        }
        other => other,
    }
}

// ---------------------------------------------------------------- streams

/// What an app (or the gateway) learns from a stream.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    id: String,
    model: String,
    text: String,
    /// (id, name, arguments as canonical JSON), in call order.
    calls: Vec<(String, String, String)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

fn summarize(events: &[StreamEvent]) -> Summary {
    let mut s = Summary::default();
    let mut args: BTreeMap<u32, String> = BTreeMap::new();
    let mut order: Vec<u32> = Vec::new();
    let mut heads: BTreeMap<u32, (String, String)> = BTreeMap::new();
    for e in events {
        match e {
            StreamEvent::Start { id, model } => {
                s.id = id.clone();
                s.model = model.clone();
            }
            StreamEvent::TextDelta(t) => s.text.push_str(t),
            StreamEvent::ToolCallStart { index, id, name } => {
                order.push(*index);
                heads.insert(*index, (id.clone(), name.clone()));
                args.entry(*index).or_default();
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                args.entry(*index).or_default().push_str(arguments)
            }
            StreamEvent::Usage(u) => s.usage = Some(*u),
            StreamEvent::Finish(f) => s.finish = Some(*f),
        }
    }
    for i in order {
        let (id, name) = heads[&i].clone();
        s.calls.push((id, name, canon_json(&args[&i])));
    }
    s
}

/// Splits SSE bytes into (event, data) frames; `event` is "" when absent.
fn sse_frames(bytes: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(bytes).expect("SSE is UTF-8");
    assert!(
        text.ends_with("\n\n"),
        "the last frame is terminated: {text:?}"
    );
    text.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|frame| {
            let (mut event, mut data) = (String::new(), Vec::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                } else {
                    panic!("unexpected SSE line {line:?}");
                }
            }
            (event, data.join("\n"))
        })
        .collect()
}

fn stream_round_trip(which: Which, events: &[StreamEvent]) -> (Vec<u8>, Vec<StreamEvent>) {
    let (mut enc, mut dec): (Box<dyn StreamEncoder>, Box<dyn StreamDecoder>) = match which {
        Which::OpenAi => (
            Box::new(openai::OpenAiStreamEncoder::default()),
            Box::new(openai::OpenAiStreamDecoder::default()),
        ),
        Which::Anthropic => (
            Box::new(anthropic::AnthropicStreamEncoder::default()),
            Box::new(anthropic::AnthropicStreamDecoder::default()),
        ),
        Which::Gemini => (
            Box::new(gemini::GeminiStreamEncoder::default()),
            Box::new(gemini::GeminiStreamDecoder::default()),
        ),
    };
    let mut out = Vec::new();
    for e in events {
        enc.encode(e, &mut out);
    }
    enc.finish(&mut out);
    let mut decoded = Vec::new();
    for (event, data) in sse_frames(&out) {
        decoded.extend(
            dec.decode(&event, &data)
                .unwrap_or_else(|f| panic!("{which:?}: {f} in {data}")),
        );
    }
    (out, decoded)
}

fn expected_summary(which: Which, events: &[StreamEvent]) -> Summary {
    let mut want = summarize(events);
    match which {
        Which::OpenAi => {
            if want.finish == Some(FinishReason::StopSequence) {
                want.finish = Some(FinishReason::Stop);
            }
        }
        Which::Anthropic => {
            want.usage.get_or_insert(Usage::default());
        }
        Which::Gemini => {
            let has_calls = !want.calls.is_empty();
            want.finish = want.finish.map(|f| gemini_finish(f, has_calls));
        }
    }
    want
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn requests_round_trip(req in request()) {
        for which in ALL {
            let want = normalize_request(which, &req);
            let (wire, got) = round_trip_request(which, &req);
            prop_assert_eq!(&got, &want, "{:?} wire body:\n{:#}", which, wire);
        }
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        for which in ALL {
            let body = match which {
                Which::OpenAi => openai::encode_response(&resp),
                Which::Anthropic => anthropic::encode_response(&resp),
                Which::Gemini => gemini::encode_response(&resp),
            };
            let got = match which {
                Which::OpenAi => openai::decode_response(&body),
                Which::Anthropic => anthropic::decode_response(&body),
                Which::Gemini => gemini::decode_response(&body),
            };
            let mut got = got.unwrap_or_else(|e| panic!("{which:?}: {e}"));
            canon_args(&mut got.content);
            prop_assert_eq!(&got, &normalize_response(which, &resp), "{:?} wire body:\n{}",
                which, String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn streams_round_trip(events in stream_events()) {
        for which in ALL {
            let (wire, decoded) = stream_round_trip(which, &events);
            prop_assert_eq!(summarize(&decoded), expected_summary(which, &events),
                "{:?} SSE:\n{}", which, String::from_utf8_lossy(&wire));
            // Exactly one Start, first, and one Finish.
            let starts_first = matches!(decoded.first(), Some(StreamEvent::Start { .. }));
            prop_assert!(starts_first, "{:?}: the first event is not Start", which);
            let finishes = decoded.iter().filter(|e| matches!(e, StreamEvent::Finish(_))).count();
            prop_assert_eq!(finishes, 1);
        }
    }
}

// ------------------------------------------------- fixed, readable examples

#[test]
fn gemini_renames_ids_and_restores_result_names() {
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![Part::Text("hi".into())],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::ToolCall(ToolCall {
                        id: "a".into(),
                        name: "f".into(),
                        arguments: "{}".into(),
                    }),
                    Part::ToolCall(ToolCall {
                        id: "b".into(),
                        name: "f".into(),
                        arguments: r#"{"x":1}"#.into(),
                    }),
                ],
            },
            Message {
                role: Role::Tool,
                content: vec![
                    Part::ToolResult(ToolResult {
                        call_id: "a".into(),
                        name: None,
                        content: "1".into(),
                        is_error: false,
                    }),
                    Part::ToolResult(ToolResult {
                        call_id: "b".into(),
                        name: None,
                        content: "2".into(),
                        is_error: true,
                    }),
                ],
            },
        ],
        ..ChatRequest::default()
    };
    let (_, got) = round_trip_request(Which::Gemini, &req);
    let ids: Vec<(String, Option<String>, String)> = got
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolResult(r) => Some((r.call_id.clone(), r.name.clone(), r.content.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            ("call_0".into(), Some("f".into()), "1".into()),
            ("call_1".into(), Some("f".into()), "2".into())
        ]
    );
    assert_eq!(got, normalize_request(Which::Gemini, &req));
}

#[test]
fn anthropic_merges_turns_and_puts_results_first() {
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![Part::Text("a".into())],
            },
            Message {
                role: Role::User,
                content: vec![Part::Text("b".into())],
            },
        ],
        ..ChatRequest::default()
    };
    let (wire, got) = round_trip_request(Which::Anthropic, &req);
    assert_eq!(wire["messages"].as_array().unwrap().len(), 1);
    assert_eq!(wire["max_tokens"], 4096);
    assert_eq!(
        got.messages,
        vec![Message {
            role: Role::User,
            content: vec![Part::Text("a".into()), Part::Text("b".into())]
        }]
    );
}

#[test]
fn cut_keeps_every_char() {
    assert_eq!(cut("{\"a\":1}", &[2, 0, 99]).concat(), "{\"a\":1}");
    assert_eq!(cut("", &[3]), vec![String::new(), String::new()]);
}
