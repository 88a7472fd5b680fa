//! Data-plane ingress: one thin handler per dialect endpoint. A handler
//! authenticates, reads the body within its limit, decodes it to the
//! canonical request, runs the failover loop, and encodes the answer.

mod body;
mod respond;
mod responses;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use http::{HeaderMap, Request};

use crate::dialect::{self, DialectError};
use crate::error::GatewayError;
use crate::model::{ChatRequest, Dialect};
use crate::provider::Forwarded;
use sha2::{Digest, Sha256};

use crate::failover::Served;
use crate::keys::{AppKey, Denied, Refused};
use crate::state::{Auth, Live};
use crate::telemetry::{self, RequestSpan};

/// The data-plane router. At most `max_concurrent` requests are served at
/// once; the next one is shed at once (503 + `Retry-After`, in the caller's
/// dialect) rather than queued without bound.
pub fn router(live: Arc<Live>, max_concurrent: usize) -> Router {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_concurrent));
    let responses = responses::router(live.clone());
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/models", get(list_models))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1beta/models/{action}", post(gemini))
        .route("/v1/models/{action}", post(gemini))
        .with_state(live)
        .merge(responses)
        .layer(axum::middleware::from_fn(
            move |req: Request<Body>, next: axum::middleware::Next| {
                shed(permits.clone(), req, next)
            },
        ))
}

/// Holds one permit for the whole response, streamed bodies included.
async fn shed(
    permits: Arc<tokio::sync::Semaphore>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let Ok(permit) = permits.try_acquire_owned() else {
        let dialect = match req.uri().path() {
            "/v1/messages" => Dialect::Anthropic,
            p if p.starts_with("/v1/responses") => Dialect::Responses,
            p if p.starts_with("/v1beta/") || p.starts_with("/v1/models/") => Dialect::Gemini,
            _ => Dialect::OpenAi,
        };
        return respond::error(dialect, &GatewayError::Shed);
    };
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn openai_chat(State(live): State<Arc<Live>>, req: Request<Body>) -> Response {
    handle(&live, Dialect::OpenAi, req, |b| {
        dialect::openai::decode_request(b)
    })
    .await
}

async fn anthropic_messages(State(live): State<Arc<Live>>, req: Request<Body>) -> Response {
    handle(&live, Dialect::Anthropic, req, |b| {
        dialect::anthropic::decode_request(b)
    })
    .await
}

async fn gemini(
    State(live): State<Arc<Live>>,
    Path(action): Path<String>,
    req: Request<Body>,
) -> Response {
    let (route, stream) = match action.rsplit_once(':') {
        Some((route, "generateContent")) => (route.to_string(), false),
        Some((route, "streamGenerateContent")) => (route.to_string(), true),
        _ => {
            let err = GatewayError::BadRequest(DialectError::invalid(
                "the path must end in :generateContent or :streamGenerateContent",
                "path",
            ));
            return respond::error(Dialect::Gemini, &err);
        }
    };
    handle(&live, Dialect::Gemini, req, move |b| {
        dialect::gemini::decode_request(b, &route, stream)
    })
    .await
}

async fn handle(
    live: &Arc<Live>,
    dialect: Dialect,
    req: Request<Body>,
    decode: impl FnOnce(&[u8]) -> Result<ChatRequest, DialectError>,
) -> Response {
    let decode = |b: bytes::Bytes| std::future::ready(decode(&b));
    let answer = |route: &str, served, span| respond::answer(dialect, route, served, span);
    handle_with(live, dialect, req, decode, answer).await
}

/// [`handle`] with an async `decode` and the app's `answer` encoder given.
async fn handle_with<F>(
    live: &Arc<Live>,
    dialect: Dialect,
    req: Request<Body>,
    decode: impl FnOnce(bytes::Bytes) -> F,
    answer: impl FnOnce(&str, Served, RequestSpan) -> Response,
) -> Response
where
    F: std::future::Future<Output = Result<ChatRequest, DialectError>>,
{
    let span = RequestSpan::start(dialect.as_str(), req.uri().path(), req.headers());
    match serve(live, dialect, req, decode, &span).await {
        Ok(ok) => {
            telemetry::request(&ok.route, &ok.served.target.name, dialect.as_str(), "ok");
            span.served(&ok.served.target.name, ok.served.attempts.len());
            let trail = ok.explain.then(|| respond::trail(&ok.served.attempts));
            let mut resp = answer(&ok.route, ok.served, span);
            respond::set_header(
                &mut resp,
                "x-switchyard-explain",
                trail.as_deref().unwrap_or_default(),
            );
            resp
        }
        Err(failed) => {
            let mut resp = respond::error(dialect, &failed.error);
            span.failed(&failed.error, resp.status().as_u16());
            if let (true, GatewayError::Exhausted { attempts, .. }) =
                (failed.explain, &failed.error)
            {
                respond::set_header(&mut resp, "x-switchyard-explain", &respond::trail(attempts));
            }
            resp
        }
    }
}

/// A request some target answered.
struct Answered {
    route: String,
    served: Served,
    /// The app asked for the explain trail.
    explain: bool,
}

/// A request that ends with an error in the app's dialect.
struct Failed {
    error: GatewayError,
    explain: bool,
}

impl From<GatewayError> for Failed {
    fn from(error: GatewayError) -> Failed {
        Failed {
            error,
            explain: false,
        }
    }
}

/// Everything between the request and the answer. `decode` may look
/// things up (the Responses dialect resolves `previous_response_id`).
async fn serve<F>(
    live: &Arc<Live>,
    dialect: Dialect,
    req: Request<Body>,
    decode: impl FnOnce(bytes::Bytes) -> F,
    span: &RequestSpan,
) -> Result<Answered, Failed>
where
    F: std::future::Future<Output = Result<ChatRequest, DialectError>>,
{
    let snapshot = live.load();
    let (parts, body) = req.into_parts();
    let app_key = authenticate(
        live,
        &snapshot.auth,
        dialect,
        &parts.headers,
        parts.uri.query(),
    )?;
    body::check_content_type(&parts.headers)?;
    let bytes = body::read(body, snapshot.table.max_body_bytes).await?;
    let body_len = bytes.len();
    let request = decode(bytes).await.map_err(GatewayError::BadRequest)?;
    let Some(route) = snapshot.table.routes.get(&request.model) else {
        return Err(GatewayError::UnknownRoute(request.model.clone()).into());
    };
    span.route(&route.name, &request);
    if body_len > route.max_body_bytes {
        return Err(GatewayError::BodyTooLarge(route.max_body_bytes).into());
    }
    if let Some(key) = &app_key {
        let tokens = request.estimated_tokens() + u64::from(request.max_tokens.unwrap_or(0));
        match key.admit(&route.name, tokens) {
            Ok(()) => {}
            Err(Denied::Scope) => return Err(GatewayError::OutOfScope(route.name.clone()).into()),
            Err(Denied::RateLimited { what, retry_after }) => {
                return Err(GatewayError::KeyRateLimited { what, retry_after }.into())
            }
        }
    }
    let fwd = Forwarded {
        anthropic_version: parts.headers.get("anthropic-version").cloned(),
    };
    let explain = parts
        .headers
        .get("x-switchyard-explain")
        .is_some_and(|v| v.as_bytes() == b"1");
    match crate::failover::serve(live, &snapshot, route, &request, &fwd, span).await {
        Ok(served) => Ok(Answered {
            route: route.name.clone(),
            served,
            explain,
        }),
        Err(error) => {
            let outcome = match error {
                GatewayError::Rejected { .. } | GatewayError::NoEligibleTarget { .. } => "rejected",
                _ => "error",
            };
            telemetry::request(&route.name, "none", dialect.as_str(), outcome);
            Err(Failed { error, explain })
        }
    }
}

/// Finds the app key where the dialect's SDK puts it, and checks it. The
/// result is the key's identity (`None` in `any_key` mode); every failure is
/// a 401, never a default identity.
fn authenticate(
    live: &Live,
    auth: &Auth,
    dialect: Dialect,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Arc<AppKey>>, GatewayError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let key = match dialect {
        Dialect::OpenAi | Dialect::Responses => bearer,
        Dialect::Anthropic => header("x-api-key").or(bearer),
        Dialect::Gemini => header("x-goog-api-key")
            .or_else(|| query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")))),
    };
    let key = match key {
        None | Some("") => return Err(GatewayError::MissingKey),
        Some(k) => k,
    };
    if live.admin_token_digest.get() == Some(&Sha256::digest(key.as_bytes()).into()) {
        return Err(GatewayError::InvalidKey(
            "the admin token is not an app key",
        ));
    }
    match auth {
        Auth::AnyKey => Ok(None),
        Auth::Keys(store) => match store.authenticate(key) {
            Ok(k) => Ok(Some(k)),
            Err(Refused::Unknown) => Err(GatewayError::InvalidKey("invalid API key")),
            Err(Refused::Expired) => Err(GatewayError::InvalidKey("this API key has expired")),
            Err(Refused::Revoked) => Err(GatewayError::InvalidKey("this API key was revoked")),
        },
    }
}

async fn list_models(
    State(live): State<Arc<Live>>,
    Query(_q): Query<Vec<(String, String)>>,
) -> Response {
    let snapshot = live.load();
    let data: Vec<serde_json::Value> = snapshot
        .table
        .routes
        .keys()
        .map(|name| serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    respond::json(200, &serde_json::json!({"object": "list", "data": data}))
}
