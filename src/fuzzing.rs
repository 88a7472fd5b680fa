//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus
//! replay test (`tests/fuzz_corpus.rs`): one definition of what each fuzz
//! target exercises. Each must return normally on any input — an error
//! value is fine, a panic is a bug.

use crate::dialect::{self, StreamDecoder};
use crate::model::Dialect;

const DIALECTS: [Dialect; 4] = [
    Dialect::OpenAi,
    Dialect::Anthropic,
    Dialect::Gemini,
    Dialect::Responses,
];

/// Every dialect's request decoder, and re-encoding what decodes.
pub fn decode_requests(data: &[u8]) {
    let decoded = [
        dialect::openai::decode_request(data),
        dialect::anthropic::decode_request(data),
        dialect::gemini::decode_request(data, "fuzz", false),
    ];
    let responses = dialect::responses::decode_request(data).map(|r| r.chat_with(None));
    for req in decoded.into_iter().chain([responses]).flatten() {
        let _ = dialect::openai::encode_request(&req, "m", dialect::openai::Flavor::OPENAI);
        let _ = dialect::responses::encode_request(&req, "m");
        let _ = dialect::anthropic::encode_request(&req, "m");
        let _ = dialect::gemini::encode_request(&req, "m");
    }
}

/// Every dialect's response decoder, and re-encoding what decodes.
pub fn decode_responses(data: &[u8]) {
    let decoded = [
        dialect::openai::decode_response(data),
        dialect::anthropic::decode_response(data),
        dialect::gemini::decode_response(data),
        dialect::responses::decode_response(data),
    ];
    for resp in decoded.into_iter().flatten() {
        let meta = dialect::responses::ResponseMeta::default();
        let _ = dialect::responses::encode_response(&resp, &meta);
        let _ = dialect::openai::encode_response(&resp);
        let _ = dialect::anthropic::encode_response(&resp);
        let _ = dialect::gemini::encode_response(&resp);
        let _ = dialect::decode_error(Dialect::OpenAi, 500, data);
    }
}

/// The SSE parser and every stream translator: the bytes are parsed as an
/// upstream SSE body, each event decoded by each backend dialect and the
/// events encoded for each app dialect.
pub fn translate_stream(data: &[u8]) {
    let events = sse_events(data);
    for backend in DIALECTS {
        let mut decoder: Box<dyn StreamDecoder> = dialect::stream_decoder(backend);
        let mut encoders: Vec<_> = DIALECTS
            .iter()
            .map(|d| dialect::stream_encoder(*d))
            .collect();
        let mut out = Vec::new();
        for (event, data) in &events {
            let Ok(decoded) = decoder.decode(event, data) else {
                continue;
            };
            for e in &decoded {
                for enc in encoders.iter_mut() {
                    enc.encode(e, &mut out);
                }
            }
        }
        for enc in encoders.iter_mut() {
            enc.finish(&mut out);
        }
    }
}

/// Splits bytes into (event, data) pairs with the same parser the gateway
/// uses (`sseer`), synchronously.
fn sse_events(data: &[u8]) -> Vec<(String, String)> {
    use futures::StreamExt;
    let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(
        bytes::Bytes::copy_from_slice(data),
    )]);
    let stream = sseer::EventStream::new(chunks);
    futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| (e.event.to_string(), e.data.to_string()))
        .collect()
}

/// The routes.toml loader, on arbitrary text.
pub fn load_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::load_str("fuzz.toml", text, Vec::new());
    }
}
