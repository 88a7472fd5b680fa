//! Translation benchmark: the cost of converting between dialects, for every
//! pair of app (ingress) and backend dialect, with no network.
//!
//! Per request: app `decode_request` → backend `encode_request` + serialize →
//! backend `decode_response` → app `encode_response`, on a multi-turn chat
//! (system prompt, 7 messages with a tool call and result, one tool, ~1 KB of
//! text). Per chunk: backend `StreamDecoder::decode` of one mid-stream text
//! delta → app `StreamEncoder::encode`. Bodies and upstream frames are made
//! by each dialect's own encoders, so they are that vendor's wire shape.
//!
//! Run with:
//!     cargo run --release --example translatebench
//!     cargo run --example translatebench -- --quick    (a smoke run, as CI does)
//!
//! Expected output (figures vary by machine and load; each cell is the median
//! of timed runs; PASS/MISS compares with the target, the exit code is 0):
//!     app bodies: openai 1661 B, anthropic 1744 B, gemini 1697 B; 7 messages
//!     median of 15 runs per cell
//!
//!     per request (app decode → backend encode → backend decode → app encode), target ≤ 10 µs
//!     app \ backend           openai       anthropic          gemini
//!     openai              42.01 µs MISS      38.68 µs MISS      50.66 µs MISS
//!     ...
//!     0/9 within target
//!
//!     per stream chunk (backend decode → app encode), target ≤ 2 µs
//!     app \ backend           openai       anthropic          gemini
//!     openai               4.65 µs MISS       3.57 µs MISS       3.81 µs MISS
//!     ...

use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use switchyard::dialect::{self, anthropic, gemini, openai, responses};
use switchyard::model::{
    ChatRequest, ChatResponse, Dialect, FinishReason, Message, Part, Role, StreamEvent, ToolCall,
    ToolDef, ToolResult, Usage,
};

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAi,
    Dialect::Anthropic,
    Dialect::Gemini,
    Dialect::Responses,
];
const ROUTE: &str = "frontier";
const UPSTREAM_MODEL: &str = "upstream-model-1";

/// Warm-up ms, ms per timed run, and timed runs; the iterations per run are
/// calibrated from the warm-up.
struct Budget(u64, u64, usize);

/// Median over `runs` timed runs of the ns per call of `op`.
fn median_ns(budget: &Budget, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let Budget(warmup_ms, run_ms, runs) = *budget;
    while n < 3 || start.elapsed() < Duration::from_millis(warmup_ms) {
        op();
        n += 1;
    }
    let per_op = start.elapsed().as_nanos() as f64 / n as f64;
    let iters = ((run_ms as f64 * 1e6 / per_op) as u64).max(1);
    // Recorded in tenths of a nanosecond, 3 significant figures.
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..runs {
        let t = Instant::now();
        for _ in 0..iters {
            op();
        }
        let tenth_ns = t.elapsed().as_nanos() * 10 / u128::from(iters);
        hist.record(u64::try_from(tenth_ns).unwrap_or(u64::MAX).max(1))
            .expect("record");
    }
    hist.value_at_quantile(0.5) as f64 / 10.0
}

/// The answer, both as one response and as the stream's text deltas.
const ANSWER: &str = "Early spring in Lisbon is changeable: showers come and go with Atlantic \
    fronts, so a wet Tuesday is not unusual, but the rest of the week looks drier, with sunny \
    spells and highs around 20 °C. Keep the umbrella in your bag for walks between meetings.";

const TURNS: [(Role, &str); 5] = [
    (Role::User, "I am flying to Lisbon next Tuesday for three days of meetings. What should I pack for the evenings?"),
    (Role::Assistant, "For Lisbon evenings, pack a light jacket or a sweater: it cools quickly after sunset, and the wind off the river can be cold. Comfortable shoes too, the streets are steep and cobbled."),
    (Role::User, "Can you check the actual forecast for Tuesday so I know whether to bring an umbrella?"),
    (Role::Assistant, "Tuesday in Lisbon: a high of 19 °C, a low of 12 °C, and about 4 mm of rain with moderate wind. A compact umbrella and a water-resistant jacket would be wise."),
    (Role::User, "Great, thanks. And is it usually rainy there for the rest of the week, or was Tuesday unusual?"),
];

/// The canonical multi-turn chat every app body is made from: the turns
/// above, with a tool call and its result before the forecast.
fn chat_request() -> ChatRequest {
    let msg = |role, content| Message { role, content };
    let mut messages: Vec<Message> = TURNS
        .iter()
        .map(|&(role, t)| msg(role, vec![Part::Text(t.into())]))
        .collect();
    let call = ToolCall {
        id: "call_7f3a".into(),
        name: "get_weather".into(),
        arguments: r#"{"city":"Lisbon","unit":"celsius"}"#.into(),
    };
    let result = ToolResult {
        call_id: call.id.clone(),
        name: Some(call.name.clone()),
        content: r#"{"city":"Lisbon","high_c":19,"low_c":12,"rain_mm":4,"wind_kph":18}"#.into(),
        is_error: false,
    };
    let ask = vec![
        Part::Text("Let me look that up.".into()),
        Part::ToolCall(call),
    ];
    messages.insert(3, msg(Role::Assistant, ask));
    messages.insert(4, msg(Role::Tool, vec![Part::ToolResult(result)]));
    ChatRequest {
        model: ROUTE.into(),
        system: Some(
            "You are a concise travel assistant. Answer in plain prose, cite the tools you \
             used, and never invent weather data: call get_weather when asked about it."
                .into(),
        ),
        messages,
        tools: vec![ToolDef {
            name: "get_weather".into(),
            description: Some("Current forecast for a city and date.".into()),
            parameters: json!({"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}),
        }],
        max_tokens: Some(1024),
        temperature: Some(0.7),
        ..ChatRequest::default()
    }
}

fn chat_response() -> ChatResponse {
    ChatResponse {
        id: "resp_01".into(),
        model: UPSTREAM_MODEL.into(),
        content: vec![Part::Text(ANSWER.into())],
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 412,
            output_tokens: 78,
        },
    }
}

/// The body an app speaking `d` sends: the dialect's own request shape.
fn app_body(d: Dialect, req: &ChatRequest) -> Vec<u8> {
    serde_json::to_vec(&encode_request(d, req, ROUTE)).expect("serialize")
}

fn decode_request(d: Dialect, body: &[u8]) -> ChatRequest {
    match d {
        Dialect::OpenAi => openai::decode_request(body),
        Dialect::Anthropic => anthropic::decode_request(body),
        Dialect::Gemini => gemini::decode_request(body, ROUTE, false),
        Dialect::Responses => responses::decode_request(body).map(|r| r.chat_with(None)),
    }
    .expect("decode_request")
}

fn encode_request(d: Dialect, req: &ChatRequest, model: &str) -> serde_json::Value {
    match d {
        Dialect::OpenAi => openai::encode_request(req, model, openai::Flavor::OPENAI),
        Dialect::Anthropic => anthropic::encode_request(req, model),
        Dialect::Gemini => gemini::encode_request(req, model),
        Dialect::Responses => responses::encode_request(req, model),
    }
}

fn decode_response(d: Dialect, body: &[u8]) -> ChatResponse {
    match d {
        Dialect::OpenAi => openai::decode_response(body),
        Dialect::Anthropic => anthropic::decode_response(body),
        Dialect::Gemini => gemini::decode_response(body),
        Dialect::Responses => responses::decode_response(body),
    }
    .expect("decode_response")
}

fn encode_response(d: Dialect, resp: &ChatResponse) -> Vec<u8> {
    match d {
        Dialect::OpenAi => openai::encode_response(resp),
        Dialect::Anthropic => anthropic::encode_response(resp),
        Dialect::Gemini => gemini::encode_response(resp),
        Dialect::Responses => {
            let meta = responses::ResponseMeta::default();
            serde_json::to_vec(&responses::encode_response(resp, &meta)).expect("serialize")
        }
    }
}

/// The frames, as (`event:`, `data:`), a backend speaking `d` streams for a
/// typical text answer.
fn upstream_frames(d: Dialect) -> Vec<(String, String)> {
    let start = StreamEvent::Start {
        id: "resp_01".into(),
        model: UPSTREAM_MODEL.into(),
    };
    let deltas = ANSWER
        .split_inclusive(' ')
        .map(|w| StreamEvent::TextDelta(w.into()));
    let usage = StreamEvent::Usage(Usage {
        input_tokens: 412,
        output_tokens: 40,
    });
    let events = std::iter::once(start)
        .chain(deltas)
        .chain([StreamEvent::Finish(FinishReason::Stop), usage]);
    let mut enc = dialect::stream_encoder(d);
    let mut out = Vec::new();
    for e in events {
        enc.encode(&e, &mut out);
    }
    enc.finish(&mut out);
    let text = String::from_utf8(out).expect("utf-8 frames");
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut frame = (String::new(), String::new());
            for line in f.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    frame.0 = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    frame.1 = v.trim_start().to_string();
                }
            }
            frame
        })
        .collect()
}

/// Median ns of one request's round trip through `app` and `backend`.
fn bench_request(budget: &Budget, app: Dialect, backend: Dialect, req: &ChatRequest) -> f64 {
    let body = app_body(app, req);
    let vendor_body = encode_response(backend, &chat_response());
    // The bodies must survive the trip, or the timing means nothing.
    let (decoded, resp) = (
        decode_request(app, &body),
        decode_response(backend, &vendor_body),
    );
    assert!(decoded.tools.len() == 1 && resp.content == chat_response().content);
    median_ns(budget, || {
        let req = decode_request(app, black_box(&body));
        let wire =
            serde_json::to_vec(&encode_request(backend, &req, UPSTREAM_MODEL)).expect("serialize");
        black_box(wire);
        let resp = decode_response(backend, black_box(&vendor_body));
        black_box(encode_response(app, &resp));
    })
}

/// Median ns of one text-delta chunk from `backend` re-encoded for `app`.
fn bench_chunk(budget: &Budget, app: Dialect, backend: Dialect) -> f64 {
    let frames = upstream_frames(backend);
    let mut dec = dialect::stream_decoder(backend);
    let mut enc = dialect::stream_encoder(app);
    let mut out = Vec::with_capacity(4096);
    // Feed the stream up to its 10th text-delta frame, so the decoder and the
    // encoder are in their mid-stream state; that frame is the one timed.
    let mut deltas = 0;
    let mut rest = frames.iter();
    let (event, data) = loop {
        let frame = rest.next().expect("ten text-delta frames");
        let events = dec.decode(&frame.0, &frame.1).expect("decode");
        if matches!(events.as_slice(), [StreamEvent::TextDelta(_)]) {
            deltas += 1;
            if deltas == 10 {
                break frame;
            }
        }
        for e in events {
            enc.encode(&e, &mut out);
        }
    };
    let mut step = |out: &mut Vec<u8>| {
        out.clear();
        for e in dec
            .decode(black_box(event), black_box(data))
            .expect("decode")
        {
            enc.encode(&e, out);
        }
    };
    step(&mut out);
    assert!(!out.is_empty(), "{backend:?} → {app:?}: no frame written");
    median_ns(budget, || {
        step(&mut out);
        black_box(&out);
    })
}

fn print_table(title: &str, target_ns: f64, cell: &mut dyn FnMut(Dialect, Dialect) -> f64) {
    println!("{title}, target ≤ {} µs", target_ns / 1000.0);
    print!("{:<14}", "app \\ backend");
    for b in DIALECTS {
        print!("{:>16}", b.as_str());
    }
    println!();
    let (mut pass, mut total) = (0, 0);
    for a in DIALECTS {
        print!("{:<14}", a.as_str());
        for b in DIALECTS {
            let ns = cell(a, b);
            let ok = ns <= target_ns;
            pass += usize::from(ok);
            total += 1;
            let verdict = if ok { "PASS" } else { "MISS" };
            print!("{:>11.2} µs {verdict}", ns / 1000.0);
        }
        println!();
    }
    println!("{pass}/{total} within target\n");
}

fn main() {
    let quick = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--quick") => true,
        Some(other) => {
            eprintln!("unknown argument {other} (expected --quick)");
            std::process::exit(2);
        }
    };
    let budget = if quick {
        Budget(5, 5, 3)
    } else {
        Budget(100, 20, 15)
    };
    let req = chat_request();
    let sizes = DIALECTS.map(|d| format!("{} {} B", d.as_str(), app_body(d, &req).len()));
    println!(
        "app bodies: {}; {} messages",
        sizes.join(", "),
        req.messages.len()
    );
    println!("median of {} runs per cell\n", budget.2);
    print_table(
        "per request (app decode → backend encode → backend decode → app encode)",
        10_000.0,
        &mut |a, b| bench_request(&budget, a, b, &req),
    );
    print_table(
        "per stream chunk (backend decode → app encode)",
        2_000.0,
        &mut |a, b| bench_chunk(&budget, a, b),
    );
}
