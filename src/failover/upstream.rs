//! One attempt on one target: send, then read the answer far enough to know
//! whether it is good (whole body for non-stream, first content event for a
//! stream). Every vendor failure becomes an [`UpstreamError`].

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::dialect::{self, StreamFault};
use crate::error::UpstreamError;
use crate::model::{ChatRequest, ChatResponse, Dialect, StreamEvent};
use crate::policy::{Route, Target};
use std::sync::Arc;

use crate::provider::fault::{ActiveFault, Before};
use crate::provider::{transport_error, Forwarded, Provider};
use crate::telemetry::Operation;

/// Canonical events from an upstream stream, in batches as they arrive.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Vec<StreamEvent>, UpstreamError>> + Send>>;

/// A good answer, ready to be encoded for the app.
pub enum Answer {
    Complete(ChatResponse),
    /// A stream whose first content already arrived: `head` holds the
    /// events read so far, `rest` the remainder.
    Stream {
        head: Vec<StreamEvent>,
        rest: EventStream,
    },
}

/// Largest vendor error body read; the rest is not needed to classify it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Raw body chunks, with transport errors already classified.
type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, UpstreamError>> + Send>>;

pub async fn attempt(
    provider: &Provider,
    target: &Target,
    route: &Route,
    req: &ChatRequest,
    fwd: &Forwarded,
    fault: Option<Arc<ActiveFault>>,
    op: &mut Operation,
) -> Result<Answer, UpstreamError> {
    let started = Instant::now();
    let total = provider.request_timeout();
    // For a stream, the time-to-first-token clock also covers headers that
    // never come; a non-stream answer has the route's header deadline.
    let head_deadline = if req.stream {
        total.min(route.first_token_timeout)
    } else {
        total.min(route.header_timeout)
    };
    // What a vendor that never answers in time looks like.
    let no_head = || {
        if req.stream {
            UpstreamError::FirstTokenTimeout(route.first_token_timeout)
        } else {
            UpstreamError::Timeout
        }
    };
    if let Some(f) = &fault {
        // A gateway-side delay runs under the same deadline as a vendor's,
        // so drills measure the real failover time.
        match tokio::time::timeout_at(started + head_deadline, f.before_send(provider.dialect()))
            .await
        {
            Ok(Before::Send) => {}
            Ok(Before::Fail(e)) => return Err(e),
            Ok(Before::Hang) => {
                tokio::time::sleep_until(started + head_deadline).await;
                return Err(no_head());
            }
            Err(_) => return Err(no_head()),
        }
    }
    let left = head_deadline.saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(no_head());
    }
    let trace = op.traceparent();
    let resp = match provider.send(&target.model, req, fwd, trace, left).await {
        Err(UpstreamError::Timeout) if req.stream => {
            return Err(UpstreamError::FirstTokenTimeout(route.first_token_timeout))
        }
        other => other?,
    };
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(status_error(provider.dialect(), resp, started + total).await);
    }
    let body: ByteStream = Box::pin(
        resp.bytes_stream()
            .map(|c| c.map_err(|e| transport_error(&e))),
    );
    let body = match &fault {
        Some(f) => f.wrap_body(body),
        None => body,
    };
    if !req.stream {
        let body = read_limited(body, usize::MAX, started + total).await?;
        return dialect_decode_response(provider.dialect(), &body).map(Answer::Complete);
    }
    let mut rest = event_stream(
        body,
        provider.dialect(),
        route.idle_timeout,
        target.name.clone(),
    );
    let first_deadline = started + route.first_token_timeout;
    let mut head = Vec::new();
    loop {
        match tokio::time::timeout_at(first_deadline, rest.next()).await {
            Err(_) => return Err(UpstreamError::FirstTokenTimeout(route.first_token_timeout)),
            Ok(None) => return Err(UpstreamError::Truncated),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(events))) => {
                let content = events.iter().filter(|e| e.is_content()).count();
                head.extend(events);
                if content > 0 {
                    op.first_chunk();
                    commit(route, &mut head, &mut rest, content).await?;
                    return Ok(Answer::Stream { head, rest });
                }
            }
        }
    }
}

/// The commit window (opt-in per route): keeps reading until `commit_tokens`
/// content events have arrived, or the first upstream event after
/// `commit_time` has (whichever comes first), or the answer finished.
/// Nothing has reached the app yet, so a failure in here still fails over
/// invisibly. The window ends on an event, never on a timer: a stall right
/// after `commit_time` is still inside it (and caught by `idle_timeout`).
async fn commit(
    route: &Route,
    head: &mut Vec<StreamEvent>,
    rest: &mut EventStream,
    mut seen: usize,
) -> Result<(), UpstreamError> {
    if route.commit_tokens == 0 && route.commit_time.is_none() {
        return Ok(());
    }
    let until = route.commit_time.map(|d| Instant::now() + d);
    let enough = |seen: usize| route.commit_tokens > 0 && seen >= route.commit_tokens as usize;
    let over = || until.is_some_and(|t| Instant::now() >= t);
    while !enough(seen) && !over() && !head.iter().any(|e| matches!(e, StreamEvent::Finish(_))) {
        match rest.next().await {
            // The stream ended: whether it was complete is for the caller's
            // stream to tell, as it would be without a commit window.
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(events)) => {
                seen += events.iter().filter(|e| e.is_content()).count();
                head.extend(events);
            }
        }
    }
    Ok(())
}

fn dialect_decode_response(dialect: Dialect, body: &[u8]) -> Result<ChatResponse, UpstreamError> {
    let decoded = match dialect {
        Dialect::OpenAi => dialect::openai::decode_response(body),
        Dialect::Anthropic => dialect::anthropic::decode_response(body),
        Dialect::Gemini => dialect::gemini::decode_response(body),
        Dialect::Responses => dialect::responses::decode_response(body),
    };
    decoded.map_err(|e| UpstreamError::Malformed(e.to_string()))
}

async fn status_error(
    dialect: Dialect,
    resp: reqwest::Response,
    deadline: Instant,
) -> UpstreamError {
    let status = resp.status().as_u16();
    let retry_after =
        dialect::taxonomy::reset_from_headers(resp.headers(), std::time::SystemTime::now());
    let body: ByteStream = Box::pin(
        resp.bytes_stream()
            .map(|c| c.map_err(|e| transport_error(&e))),
    );
    let body = read_limited(body, ERROR_BODY_LIMIT, deadline)
        .await
        .unwrap_or_default();
    UpstreamError::Status {
        status,
        vendor: dialect::decode_error(dialect, status, &body),
        retry_after,
    }
}

/// Reads a body up to `limit` bytes (the rest is dropped) before `deadline`.
async fn read_limited(
    mut chunks: ByteStream,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<u8>, UpstreamError> {
    let mut body = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(None) => return Ok(body),
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(chunk))) => {
                let room = limit.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= limit {
                    return Ok(body);
                }
            }
        }
    }
}

/// Parses the upstream SSE body and decodes it event by event. Ends with
/// `Truncated` if the body ended without a finish reason, and with
/// `Timeout` if the upstream went silent for longer than `idle`.
fn event_stream(body: ByteStream, dialect: Dialect, idle: Duration, target: String) -> EventStream {
    let mut decoder = dialect::stream_decoder(dialect);
    let mut sse = sseer::EventStream::new(body);
    Box::pin(async_stream::stream! {
        let mut finished = false;
        loop {
            let next = match tokio::time::timeout(idle, sse.next()).await {
                Err(_) => { yield Err(UpstreamError::Timeout); break; }
                Ok(next) => next,
            };
            match next {
                None => {
                    if !finished {
                        yield Err(UpstreamError::Truncated);
                    }
                    break;
                }
                Some(Err(sseer::errors::EventStreamError::Transport(e))) => {
                    yield Err(e);
                    break;
                }
                Some(Err(e)) => {
                    yield Err(UpstreamError::Malformed(e.to_string()));
                    break;
                }
                Some(Ok(event)) => match decoder.decode(&event.event, &event.data) {
                    Ok(events) => {
                        finished |= events.iter().any(|e| matches!(e, StreamEvent::Finish(_)));
                        yield Ok(events);
                    }
                    Err(StreamFault::InBand { status, error }) => {
                        yield Err(UpstreamError::InBand { status, vendor: error });
                        break;
                    }
                    // One bad event is not a broken stream: drop it, go on.
                    Err(StreamFault::Malformed(m)) => {
                        tracing::debug!(error = %m, target = %target, "dropped a malformed upstream stream event");
                        crate::telemetry::malformed_event(&target);
                    }
                },
            }
        }
    })
}
