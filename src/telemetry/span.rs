//! Traces: one span per client request (kind `SERVER`, continuing the app's
//! W3C `traceparent`) and one child per upstream attempt (kind `CLIENT`),
//! named and attributed per the OpenTelemetry GenAI conventions.
//!
//! Both are values that finish themselves when dropped, so a span ends
//! wherever its work ends: at the return of the handler, or, for a stream,
//! when the app's body ends or the app goes away. An [`Operation`] also
//! records the GenAI metrics of its attempt, whether tracing is on or not.
//! With tracing off a [`RequestSpan`] is an empty `Option` and an operation
//! holds no span.

use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use tokio::time::Instant;

use super::attributes as attr;
use crate::error::GatewayError;
use crate::model::{ChatRequest, ChatResponse, FinishReason, Part, StreamEvent, Usage};

/// Longest captured content attribute; the rest is cut (images are large).
const CONTENT_LIMIT: usize = 64 * 1024;

struct Tracing {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    options: Options,
}

/// What the operator opted into.
#[derive(Debug, Clone, Copy)]
pub(super) struct Options {
    pub capture_content: bool,
    pub propagate_to_upstream: bool,
}

static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Turns tracing on for the process (once; later calls are ignored).
pub(super) fn install(provider: &SdkTracerProvider, options: Options) {
    use opentelemetry::trace::TracerProvider as _;
    let _ = TRACING.set(Tracing {
        tracer: provider.tracer("switchyard"),
        propagator: TraceContextPropagator::new(),
        options,
    });
}

/// Whether any OpenTelemetry export runs in this process.
pub fn tracing_on() -> bool {
    TRACING.get().is_some()
}

fn cut(mut s: String) -> String {
    if s.len() > CONTENT_LIMIT {
        let mut end = CONTENT_LIMIT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(Array::String(
        items.into_iter().map(StringValue::from).collect(),
    ))
}

/// The client request's span.
pub struct RequestSpan(Option<Context>);

/// The parent an attempt hangs under; cheap to clone into a stream.
#[derive(Clone)]
pub struct Parent(Option<Context>);

impl RequestSpan {
    /// Starts the span, continuing the app's trace if it sent a
    /// `traceparent`. Records the path only: Gemini's `?key=` is a secret.
    pub fn start(dialect: &'static str, path: &str, headers: &HeaderMap) -> RequestSpan {
        let Some(t) = TRACING.get() else {
            return RequestSpan(None);
        };
        let parent = t
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        let span = t
            .tracer
            .span_builder("chat")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new(attr::GEN_AI_OPERATION_NAME, "chat"),
                KeyValue::new(attr::SWITCHYARD_DIALECT, dialect),
                KeyValue::new(attr::HTTP_REQUEST_METHOD, "POST"),
                KeyValue::new(attr::URL_PATH, path.to_string()),
            ])
            .start_with_context(&t.tracer, &parent);
        // Sampled out (`OTEL_TRACES_SAMPLER`): nothing more to do for this
        // request, nor for its attempts.
        if !span.is_recording() {
            return RequestSpan(None);
        }
        RequestSpan(Some(parent.with_span(span)))
    }

    pub fn parent(&self) -> Parent {
        Parent(self.0.clone())
    }

    /// The decoded request: its route names the span, as the GenAI
    /// conventions name it after the requested model.
    pub fn route(&self, route: &str, req: &ChatRequest) {
        let Some(cx) = &self.0 else { return };
        let span = cx.span();
        span.update_name(format!("chat {route}"));
        span.set_attributes([
            KeyValue::new(attr::GEN_AI_REQUEST_MODEL, route.to_string()),
            KeyValue::new(attr::SWITCHYARD_ROUTE, route.to_string()),
        ]);
        if TRACING.get().is_some_and(|t| t.options.capture_content) {
            span.set_attributes(content_attributes(req));
        }
    }

    /// The request ended with an error in the app's dialect.
    pub fn failed(&self, err: &GatewayError, status: u16) {
        let Some(cx) = &self.0 else { return };
        let span = cx.span();
        span.set_attribute(KeyValue::new(attr::ERROR_TYPE, err.code()));
        span.set_attribute(KeyValue::new(
            attr::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status),
        ));
        if let GatewayError::Exhausted { attempts, .. } = err {
            span.set_attribute(KeyValue::new(
                attr::SWITCHYARD_ATTEMPTS,
                attempts.len() as i64,
            ));
        }
        span.set_status(Status::error(err.to_api().message));
    }

    /// A target answered. The request's parameters, the vendor and the
    /// finish reason are on the attempt's span; this one says what the app
    /// got and what it cost.
    pub fn served(&self, target: &str, attempts: usize) {
        let Some(cx) = &self.0 else { return };
        cx.span().set_attributes([
            KeyValue::new(attr::SWITCHYARD_TARGET, target.to_string()),
            KeyValue::new(attr::SWITCHYARD_ATTEMPTS, attempts as i64),
            KeyValue::new(attr::HTTP_RESPONSE_STATUS_CODE, 200),
        ]);
    }

    /// Copies the answering model and the usage from the serving operation,
    /// at the end of the answer.
    pub fn summarize(&self, op: &Operation) {
        let Some(cx) = &self.0 else { return };
        let span = cx.span();
        span.set_attributes(op.summary.attributes(false));
        if let Some(e) = op.error_type() {
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, e));
            span.set_status(Status::error(format!("the answer broke: {e}")));
        }
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

fn request_attributes(req: &ChatRequest, model: &str) -> Vec<KeyValue> {
    let mut a = vec![KeyValue::new(attr::GEN_AI_REQUEST_MODEL, model.to_string())];
    if req.stream {
        a.push(KeyValue::new(attr::GEN_AI_REQUEST_STREAM, true));
    }
    if let Some(n) = req.max_tokens {
        a.push(KeyValue::new(attr::GEN_AI_REQUEST_MAX_TOKENS, i64::from(n)));
    }
    if let Some(t) = req.temperature {
        a.push(KeyValue::new(attr::GEN_AI_REQUEST_TEMPERATURE, t));
    }
    if let Some(p) = req.top_p {
        a.push(KeyValue::new(attr::GEN_AI_REQUEST_TOP_P, p));
    }
    a
}

fn content_attributes(req: &ChatRequest) -> Vec<KeyValue> {
    let mut a = vec![KeyValue::new(
        attr::GEN_AI_INPUT_MESSAGES,
        cut(serde_json::to_string(&req.messages).unwrap_or_default()),
    )];
    if let Some(s) = &req.system {
        a.push(KeyValue::new(
            attr::GEN_AI_SYSTEM_INSTRUCTIONS,
            cut(s.clone()),
        ));
    }
    a
}

fn output_messages(text: &str) -> KeyValue {
    let messages =
        serde_json::json!([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]);
    KeyValue::new(attr::GEN_AI_OUTPUT_MESSAGES, cut(messages.to_string()))
}

/// Who an attempt goes to, for its span and its metric labels.
#[derive(Debug, Clone, Copy)]
pub struct OperationTarget<'a> {
    pub target: &'a str,
    /// `gen_ai.provider.name`: `anthropic`, `openai`, `gcp.gemini`, ...
    pub provider: &'static str,
    /// The upstream model the target names.
    pub model: &'a str,
    /// The vendor's host and port (from the config, never a credential).
    pub server: Option<(&'a str, u16)>,
}

/// What an answer said about itself, gathered as it goes by.
#[derive(Debug, Default, Clone)]
struct Summary {
    id: Option<String>,
    model: Option<String>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    /// Output text, only when content capture is on.
    text: Option<String>,
}

impl Summary {
    /// Model, usage and captured output; `full` (attempt spans) adds the
    /// response id and finish reason.
    fn attributes(&self, full: bool) -> Vec<KeyValue> {
        let mut a = Vec::new();
        if let Some(m) = &self.model {
            a.push(KeyValue::new(attr::GEN_AI_RESPONSE_MODEL, m.clone()));
        }
        if let Some(id) = self.id.as_ref().filter(|_| full) {
            a.push(KeyValue::new(attr::GEN_AI_RESPONSE_ID, id.clone()));
        }
        if let Some(f) = self.finish.filter(|_| full) {
            a.push(KeyValue::new(
                attr::GEN_AI_RESPONSE_FINISH_REASONS,
                strings(vec![f.as_str().to_string()]),
            ));
        }
        if let Some(u) = self.usage {
            a.push(KeyValue::new(
                attr::GEN_AI_USAGE_INPUT_TOKENS,
                u.input_tokens as i64,
            ));
            a.push(KeyValue::new(
                attr::GEN_AI_USAGE_OUTPUT_TOKENS,
                u.output_tokens as i64,
            ));
        }
        if let Some(t) = &self.text {
            a.push(output_messages(t));
        }
        a
    }
}

/// One upstream attempt: its span (when tracing is on) and its GenAI
/// metrics, recorded when it is dropped.
pub struct Operation {
    started: Instant,
    target: String,
    provider: &'static str,
    model: String,
    stream: bool,
    span: Option<Span>,
    summary: Summary,
    error: Option<&'static str>,
}

impl Operation {
    pub fn start(parent: &Parent, attempt: u32, t: OperationTarget<'_>, req: &ChatRequest) -> Self {
        let tracing = TRACING.get().filter(|_| parent.0.is_some());
        let span = tracing.map(|tr| {
            let mut attrs = request_attributes(req, t.model);
            attrs.extend([
                KeyValue::new(attr::GEN_AI_OPERATION_NAME, "chat"),
                KeyValue::new(attr::GEN_AI_PROVIDER_NAME, t.provider),
                KeyValue::new(attr::SWITCHYARD_TARGET, t.target.to_string()),
                KeyValue::new(attr::SWITCHYARD_ATTEMPT, i64::from(attempt)),
            ]);
            if let Some((host, port)) = t.server {
                attrs.push(KeyValue::new(attr::SERVER_ADDRESS, host.to_string()));
                attrs.push(KeyValue::new(attr::SERVER_PORT, i64::from(port)));
            }
            tr.tracer
                .span_builder(format!("chat {}", t.model))
                .with_kind(SpanKind::Client)
                .with_attributes(attrs)
                .start_with_context(&tr.tracer, parent.0.as_ref().expect("filtered above"))
        });
        let capture = tracing.is_some_and(|t| t.options.capture_content);
        Operation {
            started: Instant::now(),
            target: t.target.to_string(),
            provider: t.provider,
            model: t.model.to_string(),
            stream: req.stream,
            span,
            summary: Summary {
                text: capture.then(String::new),
                ..Summary::default()
            },
            error: None,
        }
    }

    fn labels(&self) -> OperationTarget<'_> {
        OperationTarget {
            target: &self.target,
            provider: self.provider,
            model: &self.model,
            server: None,
        }
    }

    /// The `traceparent` for the vendor, when the operator opted in.
    pub fn traceparent(&self) -> Option<HeaderValue> {
        let t = TRACING.get().filter(|t| t.options.propagate_to_upstream)?;
        let span = self.span.as_ref()?;
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        let mut headers = HeaderMap::new();
        t.propagator
            .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(&mut headers));
        headers.remove("traceparent")
    }

    /// The stream's first content chunk arrived.
    pub fn first_chunk(&mut self) {
        let after = self.started.elapsed();
        super::time_to_first_token(&self.labels(), after);
        if let Some(span) = &mut self.span {
            span.add_event(
                attr::EVENT_FIRST_CHUNK,
                vec![KeyValue::new(
                    attr::SWITCHYARD_TIME_TO_FIRST_CHUNK,
                    after.as_secs_f64(),
                )],
            );
            span.set_attribute(KeyValue::new(
                attr::SWITCHYARD_TIME_TO_FIRST_CHUNK,
                after.as_secs_f64(),
            ));
        }
    }

    /// A complete answer.
    pub fn response(&mut self, r: &ChatResponse) {
        self.summary.id = Some(r.id.clone());
        self.summary.model = Some(r.model.clone());
        self.summary.finish = Some(r.finish_reason);
        self.summary.usage = Some(r.usage);
        if let Some(text) = &mut self.summary.text {
            for p in &r.content {
                if let Part::Text(t) = p {
                    text.push_str(t);
                }
            }
        }
    }

    /// One event of a streamed answer.
    pub fn see(&mut self, e: &StreamEvent) {
        match e {
            StreamEvent::Start { id, model } => {
                self.summary.id = Some(id.clone());
                self.summary.model = Some(model.clone());
            }
            StreamEvent::Usage(u) => self.summary.usage = Some(*u),
            StreamEvent::Finish(f) => self.summary.finish = Some(*f),
            StreamEvent::TextDelta(t) => {
                if let Some(text) = &mut self.summary.text {
                    if text.len() < CONTENT_LIMIT {
                        text.push_str(t);
                    }
                }
            }
            StreamEvent::ToolCallStart { .. } | StreamEvent::ToolCallDelta { .. } => {}
        }
    }

    /// The attempt failed with `reason`; `failover` if the request moves on.
    pub fn fail(mut self, reason: &'static str, failover: bool, status: Option<u16>) {
        self.error = Some(reason);
        if let Some(span) = &mut self.span {
            if failover {
                span.set_attribute(KeyValue::new(attr::SWITCHYARD_FAILOVER_REASON, reason));
            }
            if let Some(s) = status {
                span.set_attribute(KeyValue::new(attr::HTTP_RESPONSE_STATUS_CODE, i64::from(s)));
            }
        }
    }

    /// A stream broke after it began.
    pub fn broke(&mut self, reason: &'static str) {
        self.error = Some(reason);
    }

    /// The failure so far, if any; a stream without a finish reason (the
    /// app went away) is `incomplete`, not an answer.
    fn error_type(&self) -> Option<&'static str> {
        match self.error {
            None if self.stream && self.summary.finish.is_none() => Some("incomplete"),
            e => e,
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        self.error = self.error_type();
        let duration: Duration = self.started.elapsed();
        super::operation(&self.labels(), self.error, duration);
        if self.error.is_none() {
            if let Some(u) = self.summary.usage {
                super::token_usage(&self.labels(), u.input_tokens, u.output_tokens);
            }
        }
        let Some(mut span) = self.span.take() else {
            return;
        };
        span.set_attribute(KeyValue::new(
            attr::SWITCHYARD_OUTCOME,
            self.error.unwrap_or("ok"),
        ));
        span.set_attributes(self.summary.attributes(true));
        if let Some(e) = self.error {
            span.set_attribute(KeyValue::new(attr::ERROR_TYPE, e));
            span.set_status(Status::error(format!("attempt failed: {e}")));
        }
        span.end();
    }
}
