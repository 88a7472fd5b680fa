//! Wire formats: one module per vendor dialect, each converting between its
//! own JSON and the canonical model in `crate::model`.
//!
//! Every dialect module offers the same set of functions, used in two
//! directions:
//! - ingress (an app speaks it): `decode_request`, `encode_response`,
//!   a `StreamEncoder`, `encode_error`, `encode_stream_error`;
//! - egress (a backend speaks it): `encode_request`, `decode_response`,
//!   a `StreamDecoder`, `decode_error`.
//!
//! Dialects never do I/O and never see credentials.

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod taxonomy;
mod util;

use std::time::Duration;

pub use taxonomy::VendorClass;

use crate::model::{Dialect, StreamEvent};

/// Why a request body could not be understood; always the client's fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DialectError {
    #[error("invalid JSON in request body: {0}")]
    Json(String),
    #[error("{message}")]
    Invalid {
        message: String,
        /// The offending field, as a dotted path, when known.
        param: Option<String>,
        /// A machine-readable code for the app's SDK, when the dialect
        /// defines one (`previous_response_not_found`).
        code: Option<&'static str>,
    },
}

impl DialectError {
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        DialectError::Invalid {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// The same error, tagged with a dialect-defined code.
    pub fn with_code(self, code: &'static str) -> Self {
        match self {
            DialectError::Invalid { message, param, .. } => DialectError::Invalid {
                message,
                param,
                code: Some(code),
            },
            json => json,
        }
    }
}

/// The kinds of error every dialect can express, each with its own status
/// and type name (see each module's `encode_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    /// The client did not send its request in time (408).
    RequestTimeout,
    UnsupportedMediaType,
    RateLimited,
    /// Anthropic's 529; other dialects answer 503.
    Overloaded,
    /// A backend failed or answered badly (502 in most dialects).
    Upstream,
    Timeout,
    Internal,
}

/// An error as shown to the app: a kind and a message free of secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    /// Seconds the app should wait before retrying, sent as `Retry-After`.
    pub retry_after: Option<u64>,
    /// A vendor error code to pass on where the app's dialect has such a
    /// field (OpenAI `code`: `context_length_exceeded`).
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            retry_after: None,
            code: None,
        }
    }
}

impl From<DialectError> for ApiError {
    fn from(e: DialectError) -> Self {
        let (param, code) = match &e {
            DialectError::Invalid { param, code, .. } => (param.clone(), *code),
            DialectError::Json(_) => (None, None),
        };
        ApiError {
            kind: ErrorKind::InvalidRequest,
            message: e.to_string(),
            param,
            retry_after: None,
            code,
        }
    }
}

/// What a vendor's error body said, parsed from its own shape and
/// classified by the backend dialect (see [`taxonomy`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VendorError {
    /// What the error means, decoded from the vendor's structured fields.
    pub class: VendorClass,
    /// The vendor's error type or status string (`overloaded_error`,
    /// `RESOURCE_EXHAUSTED`, `model_not_found`...).
    pub code: Option<String>,
    pub message: String,
    /// The context window the vendor states in a context-length error.
    pub context_limit: Option<u32>,
    /// When the vendor's body says to retry (Gemini `RetryInfo`).
    pub retry_in: Option<Duration>,
}

impl VendorError {
    /// An error of `class`; a context-length error keeps the limit its
    /// message states, when it states one.
    pub fn new(class: VendorClass, code: Option<String>, message: String) -> Self {
        let context_limit = (class == VendorClass::ContextLength)
            .then(|| taxonomy::stated_context_limit(&message))
            .flatten();
        VendorError {
            class,
            code,
            message,
            context_limit,
            retry_in: None,
        }
    }

    /// An unreadable error body: classified from the status alone, with a
    /// message that never echoes the body.
    pub fn opaque(status: u16) -> Self {
        VendorError::new(
            taxonomy::fallback(Some(status), ""),
            None,
            util::opaque_error(status),
        )
    }
}

/// A problem inside an upstream stream, reported by a [`StreamDecoder`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StreamFault {
    /// The vendor sent an error event in band (status is what the vendor
    /// would have answered, when the event says).
    #[error("in-band error: {}", .error.message)]
    InBand {
        status: Option<u16>,
        error: VendorError,
    },
    /// A chunk that is not what the dialect allows (bad JSON, wrong shape).
    #[error("malformed stream chunk: {0}")]
    Malformed(String),
}

/// Turns a backend's SSE events into canonical stream events.
pub trait StreamDecoder: Send {
    /// `event` is the SSE `event:` field (empty when absent), `data` the data.
    fn decode(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, StreamFault>;
}

/// Turns canonical stream events into the app's SSE frames.
pub trait StreamEncoder: Send {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
    /// Called once, when the upstream stream ended cleanly with a finish
    /// reason: writes the closing frames (usage, stop, `[DONE]`...).
    fn finish(&mut self, out: &mut Vec<u8>);
    /// Called instead of `finish` when the stream broke after it began:
    /// writes a well-formed error event so the app's SDK raises.
    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>);
}

/// The stream encoder for an app speaking `dialect`.
pub fn stream_encoder(dialect: Dialect) -> Box<dyn StreamEncoder> {
    match dialect {
        Dialect::OpenAi => Box::new(openai::OpenAiStreamEncoder::default()),
        Dialect::Anthropic => Box::new(anthropic::AnthropicStreamEncoder::default()),
        Dialect::Gemini => Box::new(gemini::GeminiStreamEncoder::default()),
        Dialect::Responses => Box::new(responses::ResponsesStreamEncoder::default()),
    }
}

/// The stream decoder for a backend speaking `dialect`.
pub fn stream_decoder(dialect: Dialect) -> Box<dyn StreamDecoder> {
    match dialect {
        Dialect::OpenAi => Box::new(openai::OpenAiStreamDecoder::default()),
        Dialect::Anthropic => Box::new(anthropic::AnthropicStreamDecoder::default()),
        Dialect::Gemini => Box::new(gemini::GeminiStreamDecoder::default()),
        Dialect::Responses => Box::new(responses::ResponsesStreamDecoder::default()),
    }
}

/// Status and JSON body of an error in the app's dialect.
pub fn encode_error(dialect: Dialect, error: &ApiError) -> (u16, Vec<u8>) {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => openai::encode_error(error),
        Dialect::Anthropic => anthropic::encode_error(error),
        Dialect::Gemini => gemini::encode_error(error),
    }
}

/// Parses a vendor's error body; never fails (unparseable bodies become a
/// generic message that does not echo the body).
pub fn decode_error(dialect: Dialect, status: u16, body: &[u8]) -> VendorError {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => openai::decode_error(status, body),
        Dialect::Anthropic => anthropic::decode_error(status, body),
        Dialect::Gemini => gemini::decode_error(status, body),
    }
}

/// Writes one SSE frame: optional `event:` line, one `data:` line, blank line.
pub fn write_sse(out: &mut Vec<u8>, event: Option<&str>, data: &serde_json::Value) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // Writing a Value into a Vec cannot fail.
    serde_json::to_writer(&mut *out, data).expect("serialize JSON value");
    out.extend_from_slice(b"\n\n");
}
