//! Gemini's `:streamGenerateContent` without `?alt=sse`: the same chunks,
//! as one JSON array written as it grows (`[`, chunks separated by `,`,
//! `]`), which is what the Gemini API answers and its REST clients parse.

use crate::dialect::{ApiError, StreamEncoder};
use crate::model::StreamEvent;

/// Re-frames an SSE stream encoder's `data:` frames as JSON array elements.
pub struct JsonArray {
    inner: Box<dyn StreamEncoder>,
    /// The inner encoder's SSE output, not yet re-framed.
    sse: Vec<u8>,
    opened: bool,
}

impl JsonArray {
    pub fn new(inner: Box<dyn StreamEncoder>) -> JsonArray {
        JsonArray {
            inner,
            sse: Vec::new(),
            opened: false,
        }
    }

    /// Moves each complete frame's JSON from `sse` to `out` as an element.
    fn reframe(&mut self, out: &mut Vec<u8>) {
        let text = std::mem::take(&mut self.sse);
        for frame in text.split(|b| *b == b'\n') {
            let Some(json) = frame.strip_prefix(b"data: ") else {
                continue;
            };
            out.push(if self.opened { b',' } else { b'[' });
            self.opened = true;
            out.extend_from_slice(json);
        }
    }
}

impl StreamEncoder for JsonArray {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        self.inner.encode(event, &mut self.sse);
        self.reframe(out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(&mut self.sse);
        self.reframe(out);
        if !self.opened {
            out.push(b'[');
        }
        out.push(b']');
    }

    /// The error object becomes the last element; the array is left open,
    /// as the body then ends abnormally.
    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        self.inner.error(error, &mut self.sse);
        self.reframe(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FinishReason, Usage};

    #[test]
    fn chunks_become_one_json_array() {
        let mut enc = JsonArray::new(crate::dialect::stream_encoder(
            crate::model::Dialect::Gemini,
        ));
        let mut out = Vec::new();
        for e in [
            StreamEvent::Start {
                id: "r1".into(),
                model: "m".into(),
            },
            StreamEvent::TextDelta("Hello".into()),
            StreamEvent::TextDelta(" world".into()),
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 2,
            }),
            StreamEvent::Finish(FinishReason::Stop),
        ] {
            enc.encode(&e, &mut out);
        }
        enc.finish(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let chunks = v.as_array().unwrap();
        assert_eq!(chunks.len(), 3, "{v}");
        assert_eq!(
            chunks[0]["candidates"][0]["content"]["parts"][0]["text"],
            "Hello"
        );
        assert_eq!(chunks[2]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(chunks[2]["usageMetadata"]["candidatesTokenCount"], 2);
    }
}
