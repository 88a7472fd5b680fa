//! Data-plane ingress: one thin handler per dialect endpoint. A handler
//! authenticates, reads the body within its limit, decodes it to the
//! canonical request, runs the failover loop, and encodes the answer.

mod array;
mod body;
mod respond;
mod responses;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
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

use crate::abuse::live::{Refusal, Who};
use crate::failover::Served;
use crate::keys::{AppKey, Denied, Refused};
use crate::state::{Auth, Live};
use crate::telemetry::{self, RequestSpan};

/// The client's address, put in each request's extensions by the server.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// The data-plane router. At most `max_concurrent` requests are served at
/// once; the next one is shed at once (503 + `Retry-After`, in the caller's
/// dialect) rather than queued without bound.
pub fn router(
    live: Arc<Live>,
    max_concurrent: usize,
    turns: Arc<dyn crate::conversation::TurnStore>,
) -> Router {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_concurrent));
    let responses = responses::router(live.clone(), turns);
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
    let framing = respond::Framing::of(dialect, req.uri());
    let answer = |route: &str, served, span, hold| {
        respond::answer(dialect, route, served, span, framing, hold)
    };
    handle_with(live, dialect, req, decode, answer).await
}

/// [`handle`] with an async `decode` and the app's `answer` encoder given.
async fn handle_with<F>(
    live: &Arc<Live>,
    dialect: Dialect,
    req: Request<Body>,
    decode: impl FnOnce(bytes::Bytes) -> F,
    answer: impl FnOnce(&str, Served, RequestSpan, respond::Hold) -> Response,
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
            let mut resp = answer(&ok.route, ok.served, span, ok.hold);
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
            if body_left_unread(&failed.error) {
                // The rest of the body may still come: do not read it.
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    }
}

/// Refusals that may come before the whole body was read: the connection
/// cannot carry another request, so it is closed with the answer.
fn body_left_unread(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::MissingKey
            | GatewayError::InvalidKey(_)
            | GatewayError::KeyRateLimited { .. }
            | GatewayError::Quarantined
            | GatewayError::UnsupportedMediaType
            | GatewayError::BodyTooLarge(_)
            | GatewayError::BodyTimeout(_)
    )
}

/// A request some target answered.
struct Answered {
    route: String,
    served: Served,
    /// The app asked for the explain trail.
    explain: bool,
    /// The key's slot and token reservation, kept until the answer ends.
    hold: respond::Hold,
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

/// The most output tokens a request may generate when the app set no
/// `max_tokens`: what the gateway asks Anthropic for in that case. Other
/// vendors may generate more; the excess is charged when settled.
const ASSUMED_MAX_OUTPUT: u64 = 4096;

/// A quarantined key's refusal: suspended (403), or over its throttled rate
/// (429 with `Retry-After`).
fn quarantined(r: Refusal) -> GatewayError {
    match r {
        Refusal::Suspended => GatewayError::Quarantined,
        Refusal::Throttled { retry_after } => GatewayError::KeyRateLimited {
            what: "requests per minute while it is throttled for suspected abuse",
            retry_after,
        },
    }
}

fn denied(route: &str, d: Denied) -> GatewayError {
    match d {
        Denied::Scope => GatewayError::OutOfScope(route.to_string()),
        Denied::RateLimited { what, retry_after } => {
            GatewayError::KeyRateLimited { what, retry_after }
        }
    }
}

/// The most output a request may generate: the app's `max_tokens` (or what
/// the gateway sends when it gave none), for each of OpenAI's `n` choices.
fn max_output(request: &ChatRequest) -> u64 {
    let choices = request
        .passthrough
        .as_ref()
        .and_then(|p| p.fields.get("n"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 128);
    request
        .max_tokens
        .map_or(ASSUMED_MAX_OUTPUT, u64::from)
        .saturating_mul(choices)
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
    let gateway = &snapshot.config.gateway;
    let (parts, body) = req.into_parts();
    let app_key = authenticate(
        live,
        &snapshot.auth,
        dialect,
        &parts.headers,
        parts.uri.query(),
    )?;
    // The name the abuse detector knows the key by, when it watches; a
    // quarantined key is refused here, before its body is read.
    let watched = live.abuse.watching().then(|| match &app_key {
        Some(k) => k.name.clone(),
        None => presented_key(dialect, &parts.headers, parts.uri.query())
            .map(crate::abuse::live::anonymous_name)
            .unwrap_or_default(),
    });
    if let Some(name) = &watched {
        live.abuse.check(name).map_err(quarantined)?;
    }
    // The key is known from the headers: its request rate and its share of
    // the gateway are checked before a byte of the body is waited for.
    let in_flight = match &app_key {
        Some(key) => {
            key.admit_request().map_err(|d| denied("", d))?;
            Some(
                key.enter(gateway.per_key_concurrency())
                    .map_err(|d| denied("", d))?,
            )
        }
        None => None,
    };
    body::check_content_type(&parts.headers)?;
    let bytes = body::read(
        body,
        snapshot.table.max_body_bytes,
        gateway.body_read_timeout,
    )
    .await?;
    let body_len = bytes.len();
    let raw = watched.as_ref().map(|_| bytes.clone());
    let request = decode(bytes).await.map_err(GatewayError::BadRequest)?;
    let Some(route) = snapshot.table.routes.get(&request.model) else {
        return Err(GatewayError::UnknownRoute(request.model.clone()).into());
    };
    span.route(&route.name, &request);
    if body_len > route.max_body_bytes {
        return Err(GatewayError::BodyTooLarge(route.max_body_bytes).into());
    }
    let reservation = match &app_key {
        Some(key) if !key.may_use(&route.name) => {
            return Err(denied(&route.name, Denied::Scope).into())
        }
        Some(key) => key
            .reserve(request.estimated_tokens(), max_output(&request))
            .map_err(|d| denied(&route.name, d))?,
        None => None,
    };
    // The request's abuse record: handed to the detector (never awaited)
    // when the answer ends, with its output tokens.
    let abuse = match (&watched, &raw) {
        (Some(key), Some(raw)) => {
            let ip = parts
                .extensions
                .get::<ClientAddr>()
                .map(|a| a.0.ip().to_string())
                .unwrap_or_default();
            let user_agent = parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let who = Who {
                key,
                ip: &ip,
                user_agent,
                dialect,
                route: &route.name,
            };
            live.abuse.begin(who, raw)
        }
        _ => None,
    };
    drop(raw);
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
            hold: respond::Hold {
                _in_flight: in_flight,
                reservation,
                abuse,
            },
        }),
        Err(error) => {
            // Nothing was generated for the app: its tokens go back.
            if let Some(r) = reservation {
                r.settle(0);
            }
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
    let key = match presented_key(dialect, headers, query) {
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
        Auth::Keys(store) => match live.authenticate_key(store, key) {
            Ok(k) => Ok(Some(k)),
            Err(Refused::Unknown) => Err(GatewayError::InvalidKey("invalid API key")),
            Err(Refused::Expired) => Err(GatewayError::InvalidKey("this API key has expired")),
            Err(Refused::Revoked) => Err(GatewayError::InvalidKey("this API key was revoked")),
        },
    }
}

/// The key where the dialect's SDK puts it, as presented.
fn presented_key<'a>(
    dialect: Dialect,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<&'a str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match dialect {
        Dialect::OpenAi | Dialect::Responses => bearer,
        Dialect::Anthropic => header("x-api-key").or(bearer),
        Dialect::Gemini => header("x-goog-api-key")
            .or_else(|| query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")))),
    }
}

/// `GET /v1/models`: the routes the caller's key may use, in OpenAI's list
/// shape. Authenticated like every data-plane path, so the table's route
/// names are not shown to anyone without a key.
async fn list_models(State(live): State<Arc<Live>>, req: Request<Body>) -> Response {
    let snapshot = live.load();
    let key = match authenticate(
        &live,
        &snapshot.auth,
        Dialect::OpenAi,
        req.headers(),
        req.uri().query(),
    ) {
        Ok(key) => key,
        Err(e) => return respond::error(Dialect::OpenAi, &e),
    };
    let data: Vec<serde_json::Value> = snapshot
        .table
        .routes
        .keys()
        .filter(|name| key.as_ref().is_none_or(|k| k.may_use(name)))
        .map(|name| serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    respond::json(200, &serde_json::json!({"object": "list", "data": data}))
}
