//! The control plane, on its own listener (loopback by default): health,
//! readiness, the live table, and reload. Every `/admin` call needs the
//! admin bearer token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::state::Live;

#[derive(Clone)]
struct Admin {
    live: Arc<Live>,
    token: Arc<str>,
}

pub fn router(live: Arc<Live>, token: &str) -> Router {
    let state = Admin {
        live,
        token: Arc::from(token),
    };
    let protected = Router::new()
        .route("/admin/routes", get(routes))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .merge(protected)
        .with_state(state)
}

async fn require_token(State(admin): State<Admin>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), admin.token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong admin token (Authorization: Bearer $SWITCHYARD_ADMIN_TOKEN)"})),
        )
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn routes(State(admin): State<Admin>) -> Json<serde_json::Value> {
    let snap = admin.live.load();
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
            (
                t.name.clone(),
                json!({"provider": t.provider, "model": t.model, "state": "healthy"}),
            )
        })
        .collect();
    Json(json!({"version": snap.version, "routes": routes, "targets": targets}))
}

async fn reload(State(admin): State<Admin>) -> Response {
    match admin.live.reload() {
        Ok(version) => {
            tracing::info!(version, "routes reloaded");
            Json(json!({"version": version})).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "reload rejected; the old table keeps serving");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": "reload rejected", "problems": e.problems()})),
            )
                .into_response()
        }
    }
}
