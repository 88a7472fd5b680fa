//! OpenAI Responses (`POST /v1/responses`), as the official `openai` SDK's
//! `responses.create` / `responses.stream` send and parse it, and as OpenAI
//! serves it.
//!
//! A Responses request differs from a chat request in three ways the
//! canonical model does not carry, so they live here:
//! - `previous_response_id` continues a conversation the gateway answered
//!   before; the caller (the HTTP layer) owns the store and rebuilds the
//!   whole history with [`ResponsesRequest::chat_with`];
//! - the response object echoes request fields (`instructions`, `tools`,
//!   `metadata`...), kept in [`ResponseMeta::echo`];
//! - answers are *items* (`message`, `function_call`) with ids of their own.
//!
//! Errors use OpenAI's shape (`super::openai::encode_error`).

mod decode;
mod encode;
mod stream;
#[cfg(test)]
mod tests;

use crate::clock::unix_now;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{ChatRequest, Message, Part};

pub use decode::{decode_request, decode_response};
pub use encode::{encode_request, encode_response, response_object};
pub use stream::{ResponsesStreamDecoder, ResponsesStreamEncoder};

/// The error code OpenAI answers for a `previous_response_id` it does not
/// have (HTTP 400, `invalid_request_error`).
pub const PREVIOUS_NOT_FOUND: &str = "previous_response_not_found";

/// A decoded `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    /// The canonical request of this turn alone: `messages` holds this
    /// turn's input items, `system` only the `instructions`.
    pub chat: ChatRequest,
    /// Text of `system` / `developer` input items. Unlike `instructions`,
    /// they are part of the conversation and carry over to later turns.
    pub input_system: Vec<String>,
    pub previous_response_id: Option<String>,
    /// `store: false` keeps the turn out of the conversation store.
    pub store: bool,
    /// Request fields the response object repeats back.
    pub echo: Map<String, Value>,
}

/// A conversation as far as a stored turn got: everything a later turn
/// must send to whichever target serves it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// `system` / `developer` input items of every turn, in order.
    pub system: Vec<String>,
    /// Input items and answers of every turn, in order.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// A rough size in bytes, for the store's memory cap.
    pub fn approx_bytes(&self) -> usize {
        let mut n = self.system.iter().map(String::len).sum::<usize>();
        for part in self.messages.iter().flat_map(|m| &m.content) {
            n += 16
                + match part {
                    Part::Text(t) => t.len(),
                    Part::Image(crate::model::Image::Base64 { data, media_type }) => {
                        data.len() + media_type.len()
                    }
                    Part::Image(crate::model::Image::Url(u)) => u.len(),
                    Part::ToolCall(c) => c.id.len() + c.name.len() + c.arguments.len(),
                    Part::ToolResult(r) => r.call_id.len() + r.content.len(),
                };
        }
        n
    }
}

impl ResponsesRequest {
    /// The canonical request to send: `prior` (the conversation of
    /// `previous_response_id`) followed by this turn's input. The system
    /// prompt is this turn's `instructions`, then every turn's system items.
    pub fn chat_with(&self, prior: Option<&Conversation>) -> ChatRequest {
        let mut chat = self.chat.clone();
        let mut system: Vec<String> = chat.system.take().into_iter().collect();
        let mut messages = Vec::new();
        if let Some(p) = prior {
            system.extend(p.system.iter().cloned());
            messages.extend(p.messages.iter().cloned());
        }
        system.extend(self.input_system.iter().cloned());
        messages.append(&mut chat.messages);
        chat.system = (!system.is_empty()).then(|| system.join("\n\n"));
        chat.messages = messages;
        chat
    }

    /// The conversation after this turn answered `output`, for the store.
    pub fn conversation_after(
        &self,
        prior: Option<&Conversation>,
        output: &[Part],
    ) -> Conversation {
        let mut conv = prior.cloned().unwrap_or_default();
        conv.system.extend(self.input_system.iter().cloned());
        conv.messages.extend(self.chat.messages.iter().cloned());
        if !output.is_empty() {
            conv.messages.push(Message {
                role: crate::model::Role::Assistant,
                content: output.to_vec(),
            });
        }
        conv
    }
}

/// Identity of one response object: its id (the key of the conversation
/// store), creation time, and the request fields it echoes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseMeta {
    pub id: String,
    pub created_at: u64,
    pub echo: Map<String, Value>,
}

impl ResponseMeta {
    /// A fresh `resp_…` id, created now.
    pub fn new(echo: Map<String, Value>) -> ResponseMeta {
        ResponseMeta {
            id: super::util::new_id("resp_"),
            created_at: unix_now(),
            echo,
        }
    }

    /// Item ids derive from the response id, so an answer is reproducible
    /// from its id (golden files) and ids never collide across responses.
    fn item_id(&self, prefix: &str, index: usize) -> String {
        let suffix = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        format!("{prefix}_{suffix}_{index}")
    }
}
