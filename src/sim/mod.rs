//! The vendor simulator: Anthropic, OpenAI, Gemini and an open-weight
//! (vLLM-like) server on one listener, told apart by path prefix.
//!
//! `demo`, the integration tests, drills and benchmarks need real vendors
//! without keys or network. The simulator speaks each vendor's wire format
//! (JSON and SSE, error shapes, auth headers), answers deterministically (see
//! [`digest`]; a multi-turn answer also carries `history=` a digest of every
//! user and assistant text, so a test can prove the whole conversation
//! arrived) so tests can predict replies, and takes per-model fault knobs
//! ([`Knobs`]) so failover paths can be exercised on demand.
//!
//! URL layout (one listener):
//! - `POST /anthropic/v1/messages`
//! - `POST /openai/v1/chat/completions`, `POST /openai/v1/responses`
//! - `POST /local/v1/chat/completions`
//! - `POST /gemini/{v1beta|v1}/models/{model}:generateContent`
//! - `POST /gemini/{v1beta|v1}/models/{model}:streamGenerateContent[?alt=sse]`
//! - `PUT /_sim/knobs/{vendor}/{model}`, `GET|DELETE /_sim/knobs`,
//!   `GET /_sim/counts`, `POST /_sim/reset`

mod anthropic;
mod control;
mod engine;
mod gemini;
mod openai;
mod responses;
mod server;
mod text;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use text::digest;

/// Largest request body the simulated vendors accept (images are inline).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Which simulated vendor (and path prefix) a request is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Anthropic,
    Openai,
    Gemini,
    Local,
}

impl Vendor {
    /// Every vendor, for iteration in listings.
    pub const ALL: [Vendor; 4] = [
        Vendor::Anthropic,
        Vendor::Openai,
        Vendor::Gemini,
        Vendor::Local,
    ];

    /// The path prefix and the name used in replies, counts and knob URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Anthropic => "anthropic",
            Vendor::Openai => "openai",
            Vendor::Gemini => "gemini",
            Vendor::Local => "local",
        }
    }

    /// Parses [`Vendor::as_str`] back; `None` for anything else.
    pub fn parse(name: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fault and pacing knobs for one model (or `"*"`: every model of a vendor).
///
/// They let tests and drills make a simulated backend slow, flaky, dead or
/// misbehaving mid-stream, reproducibly. A model's own entry replaces the
/// `"*"` entry entirely. The JSON form uses the same field names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Delay before the response headers.
    pub latency_ms: u64,
    /// Delay after the headers, before the first content of a stream (for a
    /// non-stream answer it simply adds to the delay).
    pub ttft_ms: u64,
    /// Content pacing, in tokens (words / argument pieces) per second;
    /// 0 = unlimited.
    pub tokens_per_sec: f64,
    /// Answer with this status in the vendor's error shape...
    pub error_status: Option<u16>,
    /// ...for this fraction of requests (0..=1, default 1 when a status is
    /// set), spread evenly by a per-entry counter so runs are reproducible:
    /// the first request fails, then every `1/rate`-th.
    pub error_rate: Option<f64>,
    /// The exact error body to answer with `error_status` (a vendor's real
    /// answer, e.g. Gemini's account suspension or OpenAI's
    /// `insufficient_quota`), instead of the simulator's generic shape.
    pub error_body: Option<serde_json::Value>,
    /// Adds `Retry-After` to knob-driven error answers.
    pub retry_after_secs: Option<u64>,
    /// Answer the vendor's "model not found / disabled" 404.
    pub suspended: bool,
    /// Close the TCP connection (with a reset) without any HTTP response.
    pub reset: bool,
    /// Stream: cut the connection after N content tokens, no clean end.
    pub reset_after_tokens: Option<u32>,
    /// Stream: stop sending after N content tokens, keep the connection open.
    pub stall_after_tokens: Option<u32>,
    /// Stream: send one garbage `data: {not json` frame after N content
    /// tokens, then continue normally.
    pub malformed_after_tokens: Option<u32>,
    /// Stream: the first event is the vendor's in-band error (status from
    /// `error_status`, else the vendor's overload/server error), then the
    /// stream ends.
    pub in_band_error: bool,
    /// Answer 502 with an HTML page, as a broken proxy in front would.
    pub html_error: bool,
}

/// A knob entry plus its error-rate counter.
#[derive(Debug, Default)]
struct Slot {
    knobs: Knobs,
    hits: u64,
}

#[derive(Debug, Default)]
struct Inner {
    knobs: Mutex<HashMap<(Vendor, String), Slot>>,
    counts: Mutex<HashMap<(Vendor, String), u64>>,
    headers: Mutex<HashMap<Vendor, HeaderMap>>,
    seq: AtomicU64,
}

/// The simulator: shared state (knobs, counters, last headers) plus the axum
/// router that serves it. Cheap to clone; clones share state.
#[derive(Clone, Debug, Default)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// Locks a mutex, recovering from poisoning: the guarded maps stay valid
/// even if a holder panicked, and the simulator must never panic itself.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the request pipeline learns when a request arrives.
pub(crate) struct Admission {
    pub knobs: Knobs,
    /// Whether the error-rate counter picked this request to fail.
    pub fail: bool,
    /// A process-unique number for response ids.
    pub seq: u64,
}

impl Simulator {
    /// A simulator with no knobs set and all counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// All routes (vendor APIs and `/_sim` control), for embedding in another
    /// server. Note: the `reset` knob can only drop the TCP connection when
    /// served by [`Simulator::spawn`] / [`Simulator::serve`]; under a plain
    /// `axum::serve` it degrades to headers followed by a broken body.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/anthropic/v1/messages", post(anthropic::handle))
            .route("/openai/v1/chat/completions", post(openai::handle_openai))
            .route("/openai/v1/responses", post(responses::handle))
            .route("/local/v1/chat/completions", post(openai::handle_local))
            .route("/gemini/{version}/models/{call}", post(gemini::handle))
            .route(
                "/_sim/knobs",
                get(control::get_knobs).delete(control::clear_knobs),
            )
            .route("/_sim/knobs/{vendor}/{*model}", put(control::put_knobs))
            .route("/_sim/counts", get(control::counts))
            .route("/_sim/headers/{vendor}", get(control::last_headers))
            .route("/_sim/reset", post(control::reset))
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(self.clone())
    }

    /// Binds `addr` (port 0 picks a free port), serves in a background tokio
    /// task and returns the bound address.
    pub async fn spawn(&self, addr: std::net::SocketAddr) -> std::io::Result<std::net::SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let sim = self.clone();
        tokio::spawn(async move { sim.serve(listener).await });
        Ok(bound)
    }

    /// Serves on `listener` until the task is dropped (for `switchyard sim`,
    /// which owns its listener). HTTP/1.1 and HTTP/2 (prior knowledge).
    pub async fn serve(&self, listener: tokio::net::TcpListener) {
        server::serve(self.router(), listener).await
    }

    /// Sets the knobs of `model` (`"*"` for all models) at `vendor`,
    /// replacing any previous entry and restarting its error-rate counter.
    pub fn set_knobs(&self, vendor: Vendor, model: &str, knobs: Knobs) {
        lock(&self.inner.knobs).insert((vendor, model.to_string()), Slot { knobs, hits: 0 });
    }

    /// Removes every knob entry: all models behave normally again.
    pub fn clear_knobs(&self) {
        lock(&self.inner.knobs).clear();
    }

    /// The knob entries currently set, keyed `"vendor/model"`.
    pub fn knobs(&self) -> HashMap<String, Knobs> {
        lock(&self.inner.knobs)
            .iter()
            .map(|((v, m), s)| (format!("{v}/{m}"), s.knobs.clone()))
            .collect()
    }

    /// Clears knobs, request counters and recorded headers.
    pub fn reset(&self) {
        self.clear_knobs();
        lock(&self.inner.counts).clear();
        lock(&self.inner.headers).clear();
    }

    /// Requests received for `model` at `vendor` (every request that reached
    /// the endpoint, failed or not; unparseable bodies count under `""`).
    pub fn count(&self, vendor: Vendor, model: &str) -> u64 {
        let key = (vendor, model.to_string());
        lock(&self.inner.counts).get(&key).copied().unwrap_or(0)
    }

    /// Requests received by `vendor`, all models together.
    pub fn total(&self, vendor: Vendor) -> u64 {
        lock(&self.inner.counts)
            .iter()
            .filter(|((v, _), _)| *v == vendor)
            .map(|(_, n)| *n)
            .sum()
    }

    /// All counters, keyed `"vendor/model"`.
    pub fn counts(&self) -> HashMap<String, u64> {
        lock(&self.inner.counts)
            .iter()
            .map(|((v, m), n)| (format!("{v}/{m}"), *n))
            .collect()
    }

    /// Headers of the last request `vendor` received, so egress tests can
    /// check what the gateway sent upstream (keys, versions, no client key).
    pub fn last_headers(&self, vendor: Vendor) -> Option<HeaderMap> {
        lock(&self.inner.headers).get(&vendor).cloned()
    }

    /// Records an arriving request and returns the knobs that apply to it.
    pub(crate) fn admit(&self, vendor: Vendor, model: &str, headers: &HeaderMap) -> Admission {
        *lock(&self.inner.counts)
            .entry((vendor, model.to_string()))
            .or_insert(0) += 1;
        lock(&self.inner.headers).insert(vendor, headers.clone());
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let mut map = lock(&self.inner.knobs);
        let slot = match map.contains_key(&(vendor, model.to_string())) {
            true => map.get_mut(&(vendor, model.to_string())),
            false => map.get_mut(&(vendor, "*".to_string())),
        };
        let Some(slot) = slot else {
            return Admission {
                knobs: Knobs::default(),
                fail: false,
                seq,
            };
        };
        let fail = slot.knobs.error_status.is_some() && {
            let rate = slot.knobs.error_rate.unwrap_or(1.0).clamp(0.0, 1.0);
            let n = slot.hits as f64;
            slot.hits += 1;
            ((n + 1.0) * rate).ceil() > (n * rate).ceil()
        };
        Admission {
            knobs: slot.knobs.clone(),
            fail,
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_is_even_and_deterministic() {
        let sim = Simulator::new();
        let knobs = Knobs {
            error_status: Some(500),
            error_rate: Some(0.25),
            ..Knobs::default()
        };
        sim.set_knobs(Vendor::Openai, "*", knobs);
        let h = HeaderMap::new();
        let fails: Vec<bool> = (0..8)
            .map(|_| sim.admit(Vendor::Openai, "m", &h).fail)
            .collect();
        assert_eq!(
            fails,
            [true, false, false, false, true, false, false, false]
        );
        assert_eq!(sim.count(Vendor::Openai, "m"), 8);
        assert_eq!(sim.total(Vendor::Openai), 8);
        sim.set_knobs(Vendor::Openai, "m", Knobs::default());
        assert!(!sim.admit(Vendor::Openai, "m", &h).fail);
        sim.reset();
        assert_eq!(sim.total(Vendor::Openai), 0);
    }

    #[test]
    fn knobs_json_rejects_unknown_fields() {
        assert!(serde_json::from_str::<Knobs>(r#"{"latency":1}"#).is_err());
        let k: Knobs = serde_json::from_str(r#"{"reset_after_tokens":3}"#).unwrap();
        assert_eq!(k.reset_after_tokens, Some(3));
    }
}
