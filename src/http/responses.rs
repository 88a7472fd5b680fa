//! The OpenAI Responses API: `POST /v1/responses`, and `GET` / `DELETE
//! /v1/responses/{id}` for the turns this gateway stored.
//!
//! A turn with `previous_response_id` is rebuilt from the conversation
//! store into the whole history before routing, so whichever target serves
//! it (after a failover too) gets every earlier turn. An id the store does
//! not have is answered as OpenAI does — 400 `previous_response_not_found`
//! — never by silently dropping the context. Completed turns are stored
//! unless the app sent `store: false`; failed and cut ones never are.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::Request;

use super::respond;
use crate::conversation::{Turn, TurnStore};
use crate::dialect::responses::{
    self, ResponseMeta, ResponsesRequest, ResponsesStreamEncoder, PREVIOUS_NOT_FOUND,
};
use crate::dialect::{ApiError, DialectError, ErrorKind, StreamEncoder};
use crate::model::{ChatResponse, Dialect, StreamEvent};
use crate::state::Live;

const DIALECT: Dialect = Dialect::Responses;

#[derive(Clone)]
struct Ctx {
    live: Arc<Live>,
    store: Arc<dyn TurnStore>,
}

/// The Responses routes over `store`: this gateway's memory, or the
/// fleet's shared store (sized from `[responses]` at start either way).
pub(super) fn router(live: Arc<Live>, store: Arc<dyn TurnStore>) -> Router {
    Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(remove))
        .with_state(Ctx { live, store })
}

/// This turn's request and the stored turn it continues.
type Decoded = (ResponsesRequest, Option<Arc<Turn>>);

async fn create(State(ctx): State<Ctx>, req: Request<Body>) -> Response {
    let decoded: Mutex<Option<Arc<Decoded>>> = Mutex::new(None);
    let store = ctx.store.clone();
    let decode = |bytes: bytes::Bytes| {
        let decoded = &decoded;
        async move {
            let request = responses::decode_request(&bytes)?;
            let prior = match &request.previous_response_id {
                None => None,
                Some(id) => Some(store.get(id).await.ok_or_else(|| previous_not_found(id))?),
            };
            let chat = request.chat_with(prior.as_ref().map(|t| &t.conversation));
            *lock(decoded) = Some(Arc::new((request, prior)));
            Ok(chat)
        }
    };
    let answer = |route: &str, served, span, hold| match lock(&decoded).take() {
        Some(turn) => {
            let meta = ResponseMeta::new(turn.0.echo.clone());
            let keep = turn.0.store.then(|| ctx.store.clone());
            let encoder = Box::new(StoringEncoder {
                inner: ResponsesStreamEncoder::new(meta.clone()),
                store: keep.clone(),
                turn: turn.clone(),
            });
            let body = move |r: &ChatResponse| {
                let object = responses::encode_response(r, &meta);
                if let Some(store) = keep {
                    let conversation = conversation_after(&turn, &r.content);
                    store.put(
                        meta.id.clone(),
                        Turn {
                            response: object.clone(),
                            conversation,
                        },
                    );
                }
                serde_json::to_vec(&object).expect("serialize JSON value")
            };
            respond::answer_with(route, served, span, body, encoder, hold)
        }
        // `serve` answers only after `decode` succeeded, which set it.
        None => respond::answer(DIALECT, route, served, span, respond::Framing::Sse, hold),
    };
    super::handle_with(&ctx.live, DIALECT, req, decode, answer).await
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn conversation_after(turn: &Decoded, output: &[crate::model::Part]) -> responses::Conversation {
    turn.0
        .conversation_after(turn.1.as_ref().map(|t| &t.conversation), output)
}

fn previous_not_found(id: &str) -> DialectError {
    DialectError::invalid(
        format!("Previous response with id '{id}' not found."),
        "previous_response_id",
    )
    .with_code(PREVIOUS_NOT_FOUND)
}

/// The Responses stream encoder, storing the turn once it completed.
struct StoringEncoder {
    inner: ResponsesStreamEncoder,
    store: Option<Arc<dyn TurnStore>>,
    turn: Arc<Decoded>,
}

impl StreamEncoder for StoringEncoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        self.inner.encode(event, out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.inner.finish(out);
        if let (Some(store), Some((object, parts))) = (&self.store, self.inner.completed()) {
            let id = object["id"].as_str().unwrap_or_default().to_string();
            let conversation = conversation_after(&self.turn, parts);
            store.put(
                id,
                Turn {
                    response: object.clone(),
                    conversation,
                },
            );
        }
    }

    fn error(&mut self, error: &ApiError, out: &mut Vec<u8>) {
        self.inner.error(error, out);
    }
}

/// Authenticates a `GET` / `DELETE` the way `POST` does; the refusal.
fn refused(ctx: &Ctx, req: &Request<Body>) -> Option<Response> {
    let snapshot = ctx.live.load();
    super::authenticate(&ctx.live, &snapshot.auth, DIALECT, req.headers(), None)
        .err()
        .map(|e| respond::error(DIALECT, &e))
}

fn response_not_found(id: &str) -> Response {
    let err = ApiError {
        code: Some("response_not_found"),
        ..ApiError::new(
            ErrorKind::NotFound,
            format!("Response with id '{id}' not found."),
        )
    };
    respond::api(DIALECT, &err)
}

async fn retrieve(State(ctx): State<Ctx>, Path(id): Path<String>, req: Request<Body>) -> Response {
    if let Some(resp) = refused(&ctx, &req) {
        return resp;
    }
    match ctx.store.get(&id).await {
        Some(turn) => respond::json(200, &turn.response),
        None => response_not_found(&id),
    }
}

async fn remove(State(ctx): State<Ctx>, Path(id): Path<String>, req: Request<Body>) -> Response {
    if let Some(resp) = refused(&ctx, &req) {
        return resp;
    }
    if ctx.store.delete(&id).await {
        respond::json(
            200,
            &serde_json::json!({"id": id, "object": "response", "deleted": true}),
        )
    } else {
        response_not_found(&id)
    }
}
