//! The request pipeline shared by all simulated vendors: admission (counts,
//! headers, knobs), fault injection, and the paced stream driver.
//!
//! Vendor modules only parse requests and render wire shapes (the
//! [`Dialect`] and [`Framer`] traits); the order of checks and every knob's
//! behaviour live here once, so all vendors fail the same way.

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use super::server::ResetConnection;
use super::text::{plan, Extract, Output, Plan};
use super::{Knobs, Simulator, Vendor};

/// A request boiled down to what the pipeline needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub stream: bool,
    /// OpenAI-style `stream_options.include_usage`.
    pub include_usage: bool,
    pub extract: Extract,
}

/// Per-response facts a dialect renders into ids and model fields.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub model: String,
    /// Process-unique sequence number, for response ids.
    pub seq: u64,
    /// Unix seconds, for OpenAI's `created`.
    pub created: u64,
}

/// One vendor's wire shapes for whole answers and errors.
pub(crate) trait Dialect: Sync {
    fn vendor(&self) -> Vendor;
    /// Checks the credentials this vendor insists on; `Err` is its answer.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Value)>;
    /// The vendor's error body for `status`; `None` = its usual message.
    fn error_body(&self, status: StatusCode, message: Option<&str>) -> Value;
    /// The vendor's "model not found / disabled" answer.
    fn not_found(&self, model: &str) -> (StatusCode, Value);
    /// Status used for an in-band error when no `error_status` knob is set.
    fn in_band_status(&self) -> StatusCode;
    /// The non-stream JSON answer.
    fn complete(&self, ctx: &Ctx, plan: &Plan) -> Value;
    /// The stream renderer for this answer.
    fn framer(&self, ctx: Ctx, plan: &Plan, parsed: &Parsed) -> Box<dyn Framer>;
    /// `Content-Type` of a streamed answer.
    fn stream_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }
}

/// Renders one streamed answer frame by frame.
pub(crate) trait Framer: Send {
    /// Frames sent right after the headers (before `ttft_ms`).
    fn start(&mut self) -> Vec<Bytes>;
    /// One text piece (one token).
    fn text(&mut self, piece: &str) -> Vec<Bytes>;
    /// One piece of the tool call's arguments JSON.
    fn tool(&mut self, index: usize, piece: &str, last: bool) -> Vec<Bytes>;
    /// Closing frames (finish reason, usage, terminator).
    fn finish(&mut self) -> Vec<Bytes>;
    /// A garbage frame for `malformed_after_tokens`.
    fn malformed(&mut self) -> Bytes;
    /// The whole stream when `in_band_error` is set.
    fn in_band_error(&mut self, error: Value) -> Vec<Bytes>;
}

/// A JSON response with `status`.
pub(crate) fn json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An SSE frame `data: JSON\n\n`, optionally with an `event:` line.
pub(crate) fn sse(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(e) => Bytes::from(format!("event: {e}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// Text of a message `content`: a string, or the concatenated `text` of an
/// array of `{"type":"text","text":..}` blocks (other blocks ignored).
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| matches!(b.get("type").and_then(Value::as_str), Some("text") | None))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// [`super::text::Extract::history`] from (role, text) pairs; a role of
/// `model` (Gemini) counts as `assistant`.
pub(crate) fn history<'a>(messages: impl Iterator<Item = (&'a str, String)>) -> Vec<String> {
    messages
        .filter(|(_, text)| !text.is_empty())
        .filter_map(|(role, text)| match role {
            "user" => Some(format!("user: {text}")),
            "assistant" | "model" => Some(format!("assistant: {text}")),
            _ => None,
        })
        .collect()
}

/// A header's value when present, valid text and non-empty.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Runs one vendor request through knobs, auth and generation.
///
/// `model` is the counted model name (`""` when the body is unreadable);
/// `parsed` is the request or the message of the vendor's 400.
pub(crate) async fn run(
    sim: &Simulator,
    dialect: &dyn Dialect,
    headers: &HeaderMap,
    model: &str,
    parsed: Result<Parsed, String>,
) -> Response {
    let adm = sim.admit(dialect.vendor(), model, headers);
    let knobs = adm.knobs;
    sleep_ms(knobs.latency_ms).await;
    if knobs.reset {
        return reset_response();
    }
    if knobs.html_error {
        return html_502();
    }
    if let Err((status, body)) = dialect.authorize(headers) {
        return json(status, &body);
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(msg) => {
            let status = StatusCode::BAD_REQUEST;
            return json(status, &dialect.error_body(status, Some(&msg)));
        }
    };
    if knobs.suspended {
        let (status, body) = dialect.not_found(model);
        return json(status, &body);
    }
    if adm.fail && !(knobs.in_band_error && parsed.stream) {
        let status = knob_status(&knobs, StatusCode::INTERNAL_SERVER_ERROR);
        let body = match &knobs.error_body {
            Some(body) => body.clone(),
            None => dialect.error_body(status, None),
        };
        let mut resp = json(status, &body);
        if let Some(secs) = knobs.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    let plan = plan(dialect.vendor(), model, &parsed.extract);
    let ctx = Ctx {
        model: model.to_string(),
        seq: adm.seq,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    if !parsed.stream {
        sleep_ms(knobs.ttft_ms).await;
        if let Some(gap) = token_gap(&knobs) {
            let units = u32::try_from(plan.units().saturating_sub(1)).unwrap_or(u32::MAX);
            tokio::time::sleep(gap.saturating_mul(units)).await;
        }
        return json(StatusCode::OK, &dialect.complete(&ctx, &plan));
    }
    let in_band = knobs.in_band_error.then(|| {
        let status = knob_status(&knobs, dialect.in_band_status());
        dialect.error_body(status, None)
    });
    let framer = dialect.framer(ctx, &plan, &parsed);
    let body = Body::from_stream(drive(framer, plan, knobs, in_band));
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, dialect.stream_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The status of knob-driven errors, `fallback` when unset or invalid.
fn knob_status(knobs: &Knobs, fallback: StatusCode) -> StatusCode {
    knobs
        .error_status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(fallback)
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Delay between content tokens, `None` when unlimited.
fn token_gap(knobs: &Knobs) -> Option<Duration> {
    let tps = knobs.tokens_per_sec;
    (tps > 0.0)
        .then(|| Duration::try_from_secs_f64(1.0 / tps).ok())
        .flatten()
}

/// A response the server turns into a dropped connection (see
/// [`ResetConnection`]); under a foreign server, a body that breaks at once.
fn reset_response() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<Bytes, _>(io::Error::other("sim: connection reset knob"))
    }));
    let mut resp = Response::new(body);
    resp.extensions_mut().insert(ResetConnection);
    resp
}

fn html_502() -> Response {
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
                </body>\r\n</html>\r\n";
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        page,
    )
        .into_response()
}

/// The paced frame stream of one answer, with stream knobs applied.
fn drive(
    mut framer: Box<dyn Framer>,
    plan: Plan,
    knobs: Knobs,
    in_band: Option<Value>,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    async_stream::stream! {
        if let Some(error) = in_band {
            for frame in framer.in_band_error(error) {
                yield Ok(frame);
            }
            return;
        }
        for frame in framer.start() {
            yield Ok(frame);
        }
        sleep_ms(knobs.ttft_ms).await;
        let gap = token_gap(&knobs);
        let units = plan.units();
        let mut malformed_sent = false;
        for i in 0..=units {
            // Knobs fire once `i` content tokens have been sent.
            let sent = u32::try_from(i).unwrap_or(u32::MAX);
            if knobs.malformed_after_tokens == Some(sent) && !malformed_sent {
                malformed_sent = true;
                yield Ok(framer.malformed());
            }
            if knobs.reset_after_tokens == Some(sent) {
                // Let hyper flush what was sent, then break the body so the
                // connection closes without a clean end.
                tokio::time::sleep(Duration::from_millis(30)).await;
                yield Err(io::Error::other("sim: reset_after_tokens"));
                return;
            }
            if knobs.stall_after_tokens == Some(sent) {
                futures::future::pending::<()>().await;
            }
            if i == units {
                break;
            }
            if i > 0 {
                if let Some(gap) = gap {
                    tokio::time::sleep(gap).await;
                }
            }
            let frames = match &plan.output {
                Output::Text(pieces) => framer.text(&pieces[i]),
                Output::Tool(call) => framer.tool(i, &call.pieces[i], i + 1 == units),
            };
            for frame in frames {
                yield Ok(frame);
            }
        }
        for frame in framer.finish() {
            yield Ok(frame);
        }
    }
}
