//! The control plane, on its own listener (loopback by default): health,
//! readiness, the live table with each target's state, suspend / resume,
//! reload and the audit trail. Every `/admin` call needs the admin bearer
//! token, compared in constant time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::state::{Live, OpsError};

mod abuse;
mod fleet;
mod host;

#[derive(Clone)]
struct Admin {
    live: Arc<Live>,
    token: Arc<str>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Fleet mode: ops changes are also published to the other replicas.
    fleet: Option<Arc<crate::fleet::Fleet>>,
}

pub fn router(live: Arc<Live>, token: &str, fleet: Option<Arc<crate::fleet::Fleet>>) -> Router {
    let state = Admin {
        live,
        token: Arc::from(token),
        metrics: crate::telemetry::install(),
        fleet,
    };
    let protected = Router::new()
        .route("/admin/routes", get(routes))
        .route("/admin/reload", post(reload))
        .route("/admin/targets/{target}/suspend", post(suspend))
        .route("/admin/targets/{target}/resume", post(resume))
        .route(
            "/admin/targets/{target}/chaos",
            post(set_chaos).delete(clear_chaos),
        )
        .route("/admin/fleet", get(fleet::view))
        .route("/admin/abuse", get(abuse::view))
        .route("/admin/keys/{key}/unquarantine", post(abuse::unquarantine))
        .route("/admin/events", get(events))
        .route("/admin/events/stream", get(event_stream))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(dashboard))
        .merge(protected)
        .layer(middleware::from_fn_with_state(
            state.live.clone(),
            host::check,
        ))
        .with_state(state)
}

/// Ready as soon as it serves. Problems that do not stop serving are
/// details here, not a reason to be taken out of a load balancer: a state
/// file that cannot be written leaves every request unaffected.
async fn readyz(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let state_file = match admin.live.persist_error.load_full() {
        None => json!({"ok": true}),
        Some(e) => json!({"ok": false, "error": *e}),
    };
    Json(json!({"status": "ready", "details": {"state_file": state_file}}))
}

/// Prometheus text format. Target states and reload counters are read from
/// the live state at scrape time, so there is one source of truth.
async fn metrics(State(admin): State<Admin>) -> Response {
    admin.live.publish_gauges();
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        admin.metrics.render(),
    )
        .into_response()
}

/// The ops dashboard: one self-contained page (no external assets, works
/// offline) that asks for the admin token and then uses the admin API.
async fn dashboard() -> Response {
    (
        [
            (http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

async fn require_token(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), admin.token.as_bytes()) => next.run(req).await,
        _ => error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN)",
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who did it: `x-switchyard-actor` (the CLI sends the user name), else
/// "admin-api".
fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-switchyard-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64)
        .unwrap_or("admin-api")
        .to_string()
}

async fn routes(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let snap = admin.live.load();
    let now = tokio::time::Instant::now();
    let routes: serde_json::Map<String, serde_json::Value> = snap
        .table
        .routes
        .values()
        .map(|r| {
            let targets: Vec<&str> = r.targets.iter().map(|t| t.name.as_str()).collect();
            (r.name.clone(), json!({"targets": targets}))
        })
        .collect();
    let targets: serde_json::Map<String, serde_json::Value> = snap
        .table
        .targets
        .values()
        .map(|t| {
            let h = snap.health.targets.get(&t.name);
            let state = h.map_or("healthy", |h| h.state(now).as_str());
            let (since, why) = h.map(|h| h.last_change()).unwrap_or_default();
            let suspension = h.and_then(|h| h.suspension());
            let reason = h.and_then(|h| h.degraded_reason(now, &snap.config.health));
            (
                t.name.clone(),
                json!({
                    "provider": t.provider,
                    "model": t.model,
                    "state": state,
                    "since": since,
                    "why": why,
                    "reason": reason,
                    "suspension": suspension,
                    "requests": h.map_or(0, |h| h.requests.load(Ordering::Relaxed)),
                    "failures": h.map_or(0, |h| h.failures.load(Ordering::Relaxed)),
                    "last_minute": h.map(|h| h.last_minute()),
                }),
            )
        })
        .collect();
    let reload_error = admin
        .live
        .last_reload_error
        .load_full()
        .map(|p| (*p).clone());
    Json(json!({
        "version": snap.version,
        "routes": routes,
        "targets": targets,
        "last_reload_error": reload_error,
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadQuery {
    #[serde(default)]
    allow_removals: bool,
}

/// Re-reads the routes file. `?allow_removals=true` lets the new table drop
/// routes that carry traffic; unchanged files answer `"changed": false`.
async fn reload(
    State(admin): State<Admin>,
    Query(q): Query<ReloadQuery>,
    headers: HeaderMap,
) -> Response {
    let trigger = crate::state::Trigger::Explicit {
        allow_removals: q.allow_removals,
    };
    match crate::reload::reload_with(admin.live.clone(), actor(&headers), trigger).await {
        Ok(r) => Json(json!({"version": r.version, "changed": r.changed})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reload rejected; the old table keeps serving");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": "reload rejected; the old table keeps serving", "problems": e.problems()})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SuspendBody {
    reason: Option<String>,
    #[serde(rename = "for", default, with = "humantime_serde")]
    for_: Option<Duration>,
}

async fn suspend(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    Query(wait): Query<fleet::Wait>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parsed: SuspendBody = if body.iter().all(u8::is_ascii_whitespace) {
        SuspendBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        }
    };
    let reason = parsed.reason.unwrap_or_else(|| "suspended by ops".into());
    let actor = actor(&headers);
    match admin
        .live
        .suspend(&target, &reason, &actor, parsed.for_)
        .await
    {
        Ok(applied) => {
            let mut body =
                json!({"target": target, "state": "suspended", "suspension": applied.value});
            persisted(&mut body, applied.persist_error);
            fleet::publish(
                &admin,
                &mut body,
                &target,
                crate::fleet::Op::Suspend(applied.value),
                &actor,
                wait,
            )
            .await;
            Json(body).into_response()
        }
        Err(e) => ops_error(e),
    }
}

async fn resume(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    Query(wait): Query<fleet::Wait>,
    headers: HeaderMap,
) -> Response {
    let actor = actor(&headers);
    let applied = match admin.live.resume(&target, &actor, "resume").await {
        Ok(applied) => applied,
        Err(e) => return ops_error(e),
    };
    let mut body = match applied.value {
        Some(old) => json!({"target": target, "resumed": true, "was": old}),
        None => json!({"target": target, "resumed": false, "note": "it was not suspended"}),
    };
    persisted(&mut body, applied.persist_error);
    // Published even when it was not suspended here: another replica may
    // still hold the suspension.
    fleet::publish(
        &admin,
        &mut body,
        &target,
        crate::fleet::Op::Resume,
        &actor,
        wait,
    )
    .await;
    Json(body).into_response()
}

/// Says whether an applied change reached the state file. A change that
/// did not is still in force (200), and the answer says it would not
/// survive a restart.
fn persisted(body: &mut serde_json::Value, error: Option<crate::health::PersistError>) {
    body["persisted"] = json!(error.is_none());
    if let Some(e) = error {
        body["warning"] = json!(format!(
            "applied, but not persisted: {e}; a restart would lose this change"
        ));
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaosBody {
    fault: crate::provider::fault::Fault,
    #[serde(rename = "for", default, with = "humantime_serde")]
    for_: Option<Duration>,
}

/// Default lifetime of an injected fault: a drill that dies leaves nothing
/// broken for long.
const CHAOS_TTL: Duration = Duration::from_secs(300);

/// Injects a fault; in fleet mode every replica applies it with the same
/// expiry, and the answer reports the acks under `fleet`.
async fn set_chaos(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    Query(wait): Query<fleet::Wait>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let parsed: ChaosBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let ttl = parsed.for_.unwrap_or(CHAOS_TTL);
    let actor = actor(&headers);
    let fault = parsed.fault.clone();
    match admin.live.set_fault(&target, parsed.fault, ttl, &actor) {
        Ok(until) => {
            let mut body = json!({"target": target, "until": until});
            let op = crate::fleet::Op::Fault(crate::fleet::FaultState { fault, until });
            fleet::publish(&admin, &mut body, &target, op, &actor, wait).await;
            Json(body).into_response()
        }
        Err(e) => ops_error(e),
    }
}

/// Clears a fault; in fleet mode on every replica (published even when
/// there was none here: another replica may still hold it).
async fn clear_chaos(
    State(admin): State<Admin>,
    Path(target): Path<String>,
    Query(wait): Query<fleet::Wait>,
    headers: HeaderMap,
) -> Response {
    let actor = actor(&headers);
    match admin.live.clear_fault(&target, &actor) {
        Ok(had) => {
            let mut body = json!({"target": target, "cleared": had});
            let op = crate::fleet::Op::ClearFault;
            fleet::publish(&admin, &mut body, &target, op, &actor, wait).await;
            Json(body).into_response()
        }
        Err(e) => ops_error(e),
    }
}

fn ops_error(e: OpsError) -> Response {
    match e {
        OpsError::UnknownTarget(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        OpsError::ChaosDisabled => error(StatusCode::CONFLICT, e.to_string()),
        OpsError::Duration(_) => error(StatusCode::BAD_REQUEST, format!("`for`: {e}")),
    }
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn events(State(admin): State<Admin>, Query(q): Query<Since>) -> Json<serde_json::Value> {
    // Fleet mode: the whole fleet's trail, each event naming its replica
    // (`since` counts this replica's own events, so it reads the ring).
    if let (Some(fleet), None) = (&admin.fleet, q.since) {
        return Json(match fleet.events().await {
            Ok(events) => json!({"events": events, "source": "fleet"}),
            Err(e) => json!({"events": admin.live.events.since(0), "source": "local", "error": e}),
        });
    }
    Json(json!({"events": admin.live.events.since(q.since.unwrap_or(0))}))
}

/// The audit trail as a live SSE stream: first the events after `since`,
/// then each new one as it happens.
async fn event_stream(State(admin): State<Admin>, Query(q): Query<Since>) -> Response {
    let mut rx = admin.live.events.subscribe();
    let backlog = admin.live.events.since(q.since.unwrap_or(0));
    let stream = async_stream::stream! {
        let mut last = 0;
        for e in backlog {
            last = e.seq;
            yield Ok::<_, std::convert::Infallible>(sse_frame(&e));
        }
        loop {
            match rx.recv().await {
                Ok(e) if e.seq > last => {
                    last = e.seq;
                    yield Ok(sse_frame(&e));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    (
        [
            (http::header::CONTENT_TYPE, "text/event-stream"),
            (http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn sse_frame(e: &crate::events::Event) -> bytes::Bytes {
    let data = serde_json::to_string(e).expect("serialize event");
    bytes::Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        e.seq, e.kind
    ))
}
