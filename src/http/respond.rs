//! Builds responses: answers and errors in the app's dialect, with the
//! `x-switchyard-*` headers.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode};

use crate::dialect::{self, ApiError};
use crate::error::{Attempt, GatewayError, UpstreamError};
use crate::failover::{Answer, Served};
use crate::model::{Dialect, StreamEvent};
use crate::telemetry::{self, Operation, RequestSpan};

/// Pause between the error event of a broken stream and the abort.
const FLUSH_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// An error the HTTP layer produced itself, outside the request path's
/// `GatewayError`s (the Responses store's "not found").
pub fn api(dialect: Dialect, api: &ApiError) -> Response {
    let (status, body) = dialect::encode_error(dialect, api);
    bytes_response(status, "application/json", Bytes::from(body))
}

/// The one place an error becomes a response.
pub fn error(dialect: Dialect, err: &GatewayError) -> Response {
    tracing::debug!(error = %err, dialect = dialect.as_str(), "request failed");
    api_error(dialect, &err.to_api(), err)
}

fn api_error(dialect: Dialect, api: &ApiError, err: &GatewayError) -> Response {
    let (status, body) = dialect::encode_error(dialect, api);
    let mut resp = bytes_response(status, "application/json", Bytes::from(body));
    if let Some(secs) = api.retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    match err {
        GatewayError::Exhausted { attempts, route } => {
            set_header(&mut resp, "x-switchyard-route", route);
            set_header(
                &mut resp,
                "x-switchyard-attempts",
                &attempts.len().to_string(),
            );
        }
        GatewayError::AllOut { route, .. } | GatewayError::NoEligibleTarget { route, .. } => {
            set_header(&mut resp, "x-switchyard-route", route);
            set_header(&mut resp, "x-switchyard-attempts", "0");
        }
        _ => {}
    }
    resp
}

pub fn json(status: u16, value: &serde_json::Value) -> Response {
    let body = serde_json::to_vec(value).expect("serialize JSON value");
    bytes_response(status, "application/json", Bytes::from(body))
}

fn bytes_response(status: u16, content_type: &'static str, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

/// Sets a header unless `value` is empty or not a valid header value.
pub fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The explain trail: each attempt's target, outcome and duration — target
/// names and reason codes only, never a URL, key or vendor message.
pub fn trail(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(|a| {
            let outcome = match &a.outcome {
                Ok(()) => "ok",
                Err(e) => e.classify().0.as_str(),
            };
            format!(
                "{};outcome={outcome};ms={}",
                a.target,
                a.duration.as_millis()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a stream is written: SSE frames, or (Gemini without `?alt=sse`)
/// one JSON array that grows chunk by chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Sse,
    JsonArray,
}

impl Framing {
    /// Gemini streams as SSE only when asked with `alt=sse`, as its API does.
    pub fn of(dialect: Dialect, uri: &http::Uri) -> Framing {
        let sse = uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        if dialect == Dialect::Gemini && !sse {
            Framing::JsonArray
        } else {
            Framing::Sse
        }
    }
}

/// What a request holds of its key until its answer ends: one of the key's
/// concurrent-request slots, its token reservation, settled with the
/// usage the vendor reported, and its abuse record, which gets the output
/// tokens the same way.
#[derive(Debug, Default)]
pub struct Hold {
    /// Held for its drop: the slot comes back when the answer ends.
    pub _in_flight: Option<crate::keys::InFlight>,
    pub reservation: Option<crate::keys::Reservation>,
    /// The request's abuse record, handed to the detector when dropped.
    pub abuse: Option<crate::abuse::live::Pending>,
}

impl Hold {
    fn settle(&mut self, usage: Option<crate::model::Usage>) {
        if let (Some(p), Some(u)) = (&mut self.abuse, usage) {
            p.settle(u.output_tokens);
        }
        if let (Some(r), Some(u)) = (self.reservation.take(), usage) {
            r.settle(u.input_tokens.saturating_add(u.output_tokens));
        }
    }
}

/// A good answer, encoded for the app.
/// `span` and the serving operation end with the answer: here for a JSON
/// body, with the body stream for a stream; `hold` too.
pub fn answer(
    dialect: Dialect,
    route: &str,
    served: Served,
    span: RequestSpan,
    framing: Framing,
    hold: Hold,
) -> Response {
    let body = move |r: &crate::model::ChatResponse| match dialect {
        Dialect::OpenAi => dialect::openai::encode_response(r),
        Dialect::Anthropic => dialect::anthropic::encode_response(r),
        Dialect::Gemini => dialect::gemini::encode_response(r),
        Dialect::Responses => {
            let meta = dialect::responses::ResponseMeta::new(serde_json::Map::new());
            let v = dialect::responses::encode_response(r, &meta);
            serde_json::to_vec(&v).expect("serialize JSON value")
        }
    };
    let encoder = match framing {
        Framing::Sse => dialect::stream_encoder(dialect),
        Framing::JsonArray => Box::new(super::array::JsonArray::new(dialect::stream_encoder(
            dialect,
        ))),
    };
    let mut resp = answer_with(route, served, span, body, encoder, hold);
    if framing == Framing::JsonArray && is_stream(&resp) {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    resp
}

fn is_stream(resp: &Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "text/event-stream")
}

/// [`answer`] with the app's encoders given: `body` for a complete answer,
/// `encoder` for a stream (a dialect whose answer carries request state).
pub fn answer_with(
    route: &str,
    served: Served,
    span: RequestSpan,
    body: impl FnOnce(&crate::model::ChatResponse) -> Vec<u8>,
    encoder: Box<dyn dialect::StreamEncoder>,
    mut hold: Hold,
) -> Response {
    let target = served.target.name.clone();
    let op = served.operation;
    let mut resp = match served.answer {
        Answer::Complete(r) => {
            span.summarize(&op);
            // The attempt's span ends before its parent's.
            drop(op);
            drop(span);
            hold.settle(Some(r.usage));
            telemetry::tokens(route, &target, r.usage.input_tokens, r.usage.output_tokens);
            let body = body(&r);
            bytes_response(200, "application/json", Bytes::from(body))
        }
        Answer::Stream { head, rest } => {
            let tally = Tally {
                route: route.to_string(),
                target,
                last: None,
                op,
                span,
                hold,
            };
            let stream = encode_stream(encoder, head, rest, tally);
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            );
            r
        }
    };
    set_header(&mut resp, "x-switchyard-route", route);
    set_header(&mut resp, "x-switchyard-target", &served.target.name);
    set_header(
        &mut resp,
        "x-switchyard-attempts",
        &served.attempts.len().to_string(),
    );
    resp
}

/// Translates the upstream stream event by event. A failure after the
/// stream began ends it with an error event in the app's dialect and then
/// an abnormal end (the body errors), never a clean end.
fn encode_stream(
    mut encoder: Box<dyn dialect::StreamEncoder>,
    head: Vec<StreamEvent>,
    mut rest: crate::failover::EventStream,
    mut usage: Tally,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream::stream! {
        let mut out = Vec::with_capacity(1024);
        for event in &head {
            usage.see(event);
            encoder.encode(event, &mut out);
        }
        yield Ok(Bytes::from(std::mem::take(&mut out)));
        loop {
            match rest.next().await {
                None => {
                    encoder.finish(&mut out);
                    yield Ok(Bytes::from(std::mem::take(&mut out)));
                    break;
                }
                Some(Ok(events)) => {
                    for event in &events {
                        usage.see(event);
                        encoder.encode(event, &mut out);
                    }
                    if !out.is_empty() {
                        yield Ok(Bytes::from(std::mem::take(&mut out)));
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "upstream stream broke after it began");
                    usage.op.broke(e.classify().0.as_str());
                    encoder.error(&mid_stream_error(&e), &mut out);
                    yield Ok(Bytes::from(std::mem::take(&mut out)));
                    // Let hyper flush the error event before the abort
                    // drops whatever is still buffered.
                    tokio::time::sleep(FLUSH_GRACE).await;
                    yield Err(std::io::Error::other("upstream stream broke"));
                    break;
                }
            }
        }
    }
}

/// Counts a stream's tokens once, from its last usage event, settles the
/// key's reservation with them (a stream that reported no usage keeps what
/// it reserved), and ends its attempt and request spans, when the stream is
/// dropped (finished, broken, or abandoned by the app).
struct Tally {
    route: String,
    target: String,
    last: Option<crate::model::Usage>,
    /// Declared before `span`: the attempt ends before its parent.
    op: Operation,
    span: RequestSpan,
    hold: Hold,
}

impl Tally {
    fn see(&mut self, event: &StreamEvent) {
        if let StreamEvent::Usage(u) = event {
            self.last = Some(*u);
        }
        self.op.see(event);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if let Some(u) = self.last {
            telemetry::tokens(&self.route, &self.target, u.input_tokens, u.output_tokens);
        }
        self.hold.settle(self.last);
        self.span.summarize(&self.op);
    }
}

fn mid_stream_error(e: &UpstreamError) -> ApiError {
    let reason = e.reason();
    ApiError::new(
        reason.api_kind(),
        format!("the backend stream broke: {}", reason.as_str()),
    )
}
