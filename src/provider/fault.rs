//! Fault injection for chaos drills, at the provider boundary: the failover
//! path sees exactly what a real vendor failure looks like (a status in the
//! vendor's terms, a reset, silence, a cut or garbled stream). Off unless
//! the config enables chaos; set per target through the admin API with a
//! TTL, and audited.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::dialect::{taxonomy, VendorError};
use crate::error::UpstreamError;
use crate::model::Dialect;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Added latency before the request is sent, with uniform jitter.
    Latency {
        ms: u64,
        #[serde(default)]
        jitter_ms: u64,
    },
    /// An error status in the vendor's terms, for a share of requests.
    Status {
        status: u16,
        #[serde(default = "one")]
        rate: f64,
        retry_after_secs: Option<u64>,
    },
    /// The vendor's "model unavailable" answer (a suspended model).
    Unavailable,
    /// The connection is reset before any header.
    Reset,
    /// No answer at all, until the attempt's deadline.
    NoAnswer,
    /// The first token of a stream comes this late.
    SlowFirstToken { ms: u64 },
    /// The stream is cut after this many chunks.
    CutAfter { chunks: u32 },
    /// A malformed chunk is slipped in after this many chunks.
    Malformed { after_chunks: u32 },
    /// Each stream chunk is delayed by this much.
    SlowTokens { ms_per_chunk: u64 },
}

fn one() -> f64 {
    1.0
}

/// A fault in force on one target, with its expiry and a counter that
/// spreads `rate` evenly (reproducible, no randomness).
#[derive(Debug)]
pub struct ActiveFault {
    pub fault: Fault,
    /// Unix seconds.
    pub until: u64,
    hits: AtomicU64,
}

/// The faults in force, by target name. They live beside the providers,
/// not in a target's health: health records how a vendor behaved, a fault
/// is what ops made it do, and the two must not be confused when health
/// is shared or carried over. One registry outlives reloads (each snapshot
/// holds the same one); ops replace the map, an attempt reads it without a
/// lock.
#[derive(Debug, Default)]
pub struct Faults {
    by_target: ArcSwap<HashMap<String, Arc<ActiveFault>>>,
}

impl Faults {
    /// The fault in force on `target`, if any and not expired.
    pub fn get(&self, target: &str) -> Option<Arc<ActiveFault>> {
        let map = self.by_target.load();
        if map.is_empty() {
            return None;
        }
        let now = crate::clock::unix_now();
        map.get(target).filter(|f| !f.expired(now)).cloned()
    }

    /// Puts `fault` on `target` (or clears it with `None`); returns the
    /// fault it replaced.
    pub fn set(&self, target: &str, fault: Option<Arc<ActiveFault>>) -> Option<Arc<ActiveFault>> {
        let mut previous = None;
        self.by_target.rcu(|map| {
            let mut map = HashMap::clone(map);
            previous = match &fault {
                Some(f) => map.insert(target.to_string(), f.clone()),
                None => map.remove(target),
            };
            map
        });
        previous
    }

    /// Every fault in force (not expired), by target: what a fleet replica
    /// re-seeds an empty Redis with.
    pub fn all(&self) -> Vec<(String, Arc<ActiveFault>)> {
        let now = crate::clock::unix_now();
        let mut all: Vec<_> = self
            .by_target
            .load()
            .iter()
            .filter(|(_, f)| !f.expired(now))
            .map(|(t, f)| (t.clone(), f.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Removes the faults whose time ran out; returns their targets so the
    /// caller can record each.
    pub fn expire(&self, now_unix: u64) -> Vec<String> {
        let mut expired = Vec::new();
        self.by_target.rcu(|map| {
            expired = map
                .iter()
                .filter(|(_, f)| f.expired(now_unix))
                .map(|(t, _)| t.clone())
                .collect();
            let mut map = HashMap::clone(map);
            map.retain(|_, f| !f.expired(now_unix));
            map
        });
        expired
    }
}

/// What to do before sending.
pub enum Before {
    Send,
    Fail(UpstreamError),
    /// Wait this long, then fail with a timeout (no answer).
    Hang,
}

impl ActiveFault {
    pub fn new(fault: Fault, until: u64) -> ActiveFault {
        ActiveFault {
            fault,
            until,
            hits: AtomicU64::new(0),
        }
    }

    pub fn expired(&self, now_unix: u64) -> bool {
        self.until <= now_unix
    }

    /// The pre-send part of the fault: a delay, and maybe a failure.
    pub async fn before_send(&self, dialect: Dialect) -> Before {
        match &self.fault {
            Fault::Latency { ms, jitter_ms } => {
                let jitter = if *jitter_ms > 0 {
                    rand::random_range(0..=*jitter_ms)
                } else {
                    0
                };
                tokio::time::sleep(Duration::from_millis(ms + jitter)).await;
                Before::Send
            }
            Fault::Status {
                status,
                rate,
                retry_after_secs,
            } => {
                let n = self.hits.fetch_add(1, Ordering::Relaxed) as f64;
                // The first fails, then one in every 1/rate, evenly.
                let fails = ((n + 1.0) * rate).ceil() > (n * rate).ceil();
                if fails {
                    Before::Fail(UpstreamError::Status {
                        status: *status,
                        vendor: vendor_error(dialect, *status),
                        retry_after: retry_after_secs.map(Duration::from_secs),
                    })
                } else {
                    Before::Send
                }
            }
            Fault::Unavailable => Before::Fail(UpstreamError::Status {
                status: 404,
                vendor: vendor_error(dialect, 404),
                retry_after: None,
            }),
            Fault::Reset => {
                Before::Fail(UpstreamError::Transport("connection reset by peer".into()))
            }
            Fault::NoAnswer => Before::Hang,
            Fault::SlowFirstToken { ms } => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                Before::Send
            }
            Fault::CutAfter { .. } | Fault::Malformed { .. } | Fault::SlowTokens { .. } => {
                Before::Send
            }
        }
    }

    /// The in-stream part of the fault, applied to the raw body chunks.
    pub fn wrap_body<S>(
        &self,
        body: S,
    ) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>
    where
        S: Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static,
    {
        let fault = self.fault.clone();
        Box::pin(async_stream::stream! {
            let mut body = std::pin::pin!(body);
            let mut n = 0u32;
            while let Some(chunk) = body.next().await {
                match &fault {
                    Fault::CutAfter { chunks } if n >= *chunks => {
                        yield Err(UpstreamError::Transport("connection reset by peer".into()));
                        return;
                    }
                    Fault::Malformed { after_chunks } if n == *after_chunks => {
                        yield Ok(Bytes::from_static(b"data: {\"malformed\": [\n\n"));
                    }
                    Fault::SlowTokens { ms_per_chunk } => {
                        tokio::time::sleep(Duration::from_millis(*ms_per_chunk)).await;
                    }
                    _ => {}
                }
                n += 1;
                yield chunk;
            }
        })
    }
}

/// What the vendor would have said, so classification sees the real thing.
fn vendor_error(dialect: Dialect, status: u16) -> VendorError {
    let code = match (dialect, status) {
        (Dialect::Anthropic, 404) => "not_found_error",
        (Dialect::Anthropic, 429) => "rate_limit_error",
        (Dialect::Anthropic, 529) => "overloaded_error",
        (Dialect::Anthropic, _) => "api_error",
        (Dialect::OpenAi | Dialect::Responses, 404) => "model_not_found",
        (Dialect::OpenAi | Dialect::Responses, 429) => "rate_limit_exceeded",
        (Dialect::OpenAi | Dialect::Responses, _) => "server_error",
        (Dialect::Gemini, 404) => "NOT_FOUND",
        (Dialect::Gemini, 429) => "RESOURCE_EXHAUSTED",
        (Dialect::Gemini, 503) => "UNAVAILABLE",
        (Dialect::Gemini, _) => "INTERNAL",
    };
    VendorError::new(
        taxonomy::fallback(Some(status), ""),
        Some(code.to_string()),
        format!("injected fault: HTTP {status}"),
    )
}
