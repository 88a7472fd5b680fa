//! The canonical, provider-neutral model every dialect converts to and from.
//!
//! Hub and spoke: each wire format (`crate::dialect`) knows only its own
//! fields and this model, so N dialects need 2N conversions, not N×N. Nothing
//! here does I/O or names a vendor field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which wire format a request arrived in or a backend speaks.
///
/// `OpenAiCompatible` is not a dialect of its own on the wire: it is the
/// OpenAI format with small per-server quirks, so conversions treat it as
/// OpenAI and only the provider applies the overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI Chat Completions.
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini `generateContent`.
    Gemini,
    /// OpenAI Responses (`/v1/responses`): its own items and stream events,
    /// OpenAI's error shape.
    Responses,
}

impl Dialect {
    /// Stable lowercase name, used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
            Dialect::Responses => "responses",
        }
    }
}

/// One chat request, whatever dialect it came in.
///
/// Cloneable and self-contained so the failover loop can replay it to
/// another target without touching the client's body again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The route name the app asked for (its `model` field).
    pub model: String,
    /// System prompt; several system blocks are joined with blank lines.
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    pub tool_choice: Option<ToolChoice>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// Top-level fields of the original body that this model does not carry.
    /// Re-emitted only when the backend speaks the same dialect (passthrough).
    #[serde(skip)]
    pub passthrough: Option<Passthrough>,
}

/// Unmodelled request fields, tagged with the dialect they belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Passthrough {
    pub dialect: Dialect,
    pub fields: Map<String, Value>,
}

impl ChatRequest {
    /// Whether any message carries an image; used to skip text-only targets.
    pub fn has_images(&self) -> bool {
        self.messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|p| matches!(p, Part::Image(_)))
    }

    /// Whether the request needs a target that supports tools.
    pub fn uses_tools(&self) -> bool {
        !self.tools.is_empty()
            || self
                .messages
                .iter()
                .flat_map(|m| &m.content)
                .any(|p| matches!(p, Part::ToolCall(_) | Part::ToolResult(_)))
    }

    /// A cheap upper-bound estimate of prompt tokens (4 bytes per token),
    /// enough to skip targets whose context window is clearly too small.
    pub fn estimated_tokens(&self) -> u64 {
        let mut bytes = self.system.as_ref().map_or(0, String::len);
        for part in self.messages.iter().flat_map(|m| &m.content) {
            bytes += match part {
                Part::Text(t) => t.len(),
                Part::Image(_) => 4 * 1000,
                Part::ToolCall(c) => c.name.len() + c.arguments.len(),
                Part::ToolResult(r) => r.content.len(),
            };
        }
        (bytes as u64).div_ceil(4)
    }

    /// The text of the last user message, for logs and the simulator digest.
    pub fn last_user_text(&self) -> String {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(Message::text)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    /// Carries only [`Part::ToolResult`] parts: the answer to earlier tool calls.
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

impl Message {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(t) = part {
                out.push_str(t);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Part {
    Text(String),
    Image(Image),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Image {
    /// Inline bytes, base64 encoded, with their media type.
    Base64 { media_type: String, data: String },
    /// A URL the backend must fetch itself; not every backend can.
    Url(String),
}

/// A call the model asked for. `arguments` is JSON text, kept as text
/// because streams deliver it in pieces that are not valid JSON alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    pub call_id: String,
    /// Name of the tool that was called, when the dialect carries it
    /// (Gemini needs it; encoders fall back to looking up `call_id`).
    pub name: Option<String>,
    pub content: String,
    pub is_error: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Tool(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end of turn.
    Stop,
    /// One of the request's stop sequences was hit.
    StopSequence,
    /// `max_tokens` was reached.
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::StopSequence => "stop_sequence",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A complete (non-stream) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    /// The upstream model that answered (contract §4).
    pub model: String,
    /// Text and tool-call parts, in the order the model produced them.
    pub content: Vec<Part>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// One event of a streamed answer, in the order the backend produced them.
///
/// Decoders emit these from upstream SSE events; encoders turn them into the
/// caller's SSE frames. `Finish` and `Usage` may come in either order (OpenAI
/// sends usage after the finish chunk), so encoders hold their closing frames
/// until [`crate::dialect::StreamEncoder::finish`] is called at the clean end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// First event: identity of the answer.
    Start {
        id: String,
        model: String,
    },
    TextDelta(String),
    /// A tool call begins; `index` counts tool calls from 0 within the answer.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    /// A piece of the JSON arguments of tool call `index`.
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    Usage(Usage),
    Finish(FinishReason),
}

impl StreamEvent {
    /// Content events are what the time-to-first-token clock waits for.
    pub fn is_content(&self) -> bool {
        matches!(
            self,
            StreamEvent::TextDelta(_)
                | StreamEvent::ToolCallStart { .. }
                | StreamEvent::ToolCallDelta { .. }
                | StreamEvent::Finish(_)
        )
    }
}
