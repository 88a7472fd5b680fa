//! The fleet's side of the admin API: `GET /admin/fleet`, and the `fleet`
//! field that every fleet change (suspend, resume, chaos set and clear,
//! unquarantine) adds in fleet mode.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use crate::fleet::Op;

/// `?wait=false` (the CLI's `--no-wait`): answer once the change is
/// written, without waiting for the acks.
#[derive(Deserialize)]
pub(super) struct Wait {
    #[serde(default = "yes")]
    wait: bool,
}

fn yes() -> bool {
    true
}

/// Each live replica: id, addresses, version, routes-file hash, applied
/// epoch, last heartbeat; 404 outside fleet mode, 503 without Redis.
pub(super) async fn view(State(admin): State<Admin>) -> Response {
    let Some(fleet) = &admin.fleet else {
        return super::error(
            StatusCode::NOT_FOUND,
            "fleet mode is off on this gateway: set [fleet] redis_url or $SWITCHYARD_REDIS_URL",
        );
    };
    match fleet.view().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e, "replica": fleet.id(), "link_up": fleet.link_up()})),
        )
            .into_response(),
    }
}

/// In fleet mode, publishes a change already applied here and adds what
/// it came to under `fleet` in `body`.
pub(super) async fn publish(
    admin: &Admin,
    body: &mut serde_json::Value,
    target: &str,
    op: Op,
    actor: &str,
    wait: Wait,
) {
    if let Some(fleet) = &admin.fleet {
        let report = fleet.publish(target, op, actor, wait.wait).await;
        body["fleet"] = serde_json::to_value(report).unwrap_or_default();
    }
}
