//! The `/_sim` control endpoints: knobs, counters and reset over HTTP, so a
//! simulator in another process (`switchyard sim`) can be driven by drills
//! and scripts the same way Rust tests drive it in-process.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use super::{Knobs, Simulator, Vendor};

/// `PUT /_sim/knobs/{vendor}/{model}` with a [`Knobs`] JSON body.
pub(crate) async fn put_knobs(
    State(sim): State<Simulator>,
    Path((vendor, model)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(vendor) = Vendor::parse(&vendor) else {
        let msg = format!("unknown vendor `{vendor}` (anthropic, openai, gemini, local)");
        return (StatusCode::NOT_FOUND, Json(json!({"error": msg}))).into_response();
    };
    let knobs = if body.iter().all(u8::is_ascii_whitespace) {
        Knobs::default()
    } else {
        match serde_json::from_slice::<Knobs>(&body) {
            Ok(k) => k,
            Err(e) => {
                let msg = format!("invalid knobs: {e}");
                return (StatusCode::BAD_REQUEST, Json(json!({"error": msg}))).into_response();
            }
        }
    };
    sim.set_knobs(vendor, &model, knobs.clone());
    Json(json!({"vendor": vendor, "model": model, "knobs": knobs})).into_response()
}

/// `GET /_sim/headers/{vendor}`: the headers of the vendor's last request,
/// credentials redacted, so tests in another process can see what the
/// gateway sends upstream (and what it must not).
pub(crate) async fn last_headers(
    State(sim): State<Simulator>,
    Path(vendor): Path<String>,
) -> Response {
    let Some(vendor) = Vendor::parse(&vendor) else {
        let msg = format!("unknown vendor `{vendor}` (anthropic, openai, gemini, local)");
        return (StatusCode::NOT_FOUND, Json(json!({"error": msg}))).into_response();
    };
    let headers = sim.last_headers(vendor).unwrap_or_default();
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| {
            let value = match k.as_str() {
                "authorization" | "x-api-key" | "x-goog-api-key" => "<redacted>".to_string(),
                _ => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (k.as_str().to_string(), value.into())
        })
        .collect();
    Json(map).into_response()
}

/// `GET /_sim/knobs`: every entry, keyed `"vendor/model"`.
pub(crate) async fn get_knobs(State(sim): State<Simulator>) -> Response {
    Json(sim.knobs()).into_response()
}

/// `DELETE /_sim/knobs`: clear all knobs (counters stay).
pub(crate) async fn clear_knobs(State(sim): State<Simulator>) -> Response {
    sim.clear_knobs();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_sim/counts`: requests per `"vendor/model"`.
pub(crate) async fn counts(State(sim): State<Simulator>) -> Response {
    Json(sim.counts()).into_response()
}

/// `POST /_sim/reset`: clear knobs, counters and recorded headers.
pub(crate) async fn reset(State(sim): State<Simulator>) -> Response {
    sim.reset();
    StatusCode::NO_CONTENT.into_response()
}
